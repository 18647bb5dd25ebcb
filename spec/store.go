package spec

import (
	"context"
	"encoding/json"
	"time"
)

// StoredResource is a resource as the store keeps it: the declared (normalized)
// spec as JSON and the server-owned metadata. For a Model the registry holds
// the live versions, aliases and serving settings; Spec is what was last applied,
// so an alias dropped from the file can be told from one set by hand.
type StoredResource struct {
	Kind            string            `json:"kind"`
	Namespace       string            `json:"namespace"`
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	Spec            json.RawMessage   `json:"spec"`
	Generation      int64             `json:"generation"`
	ResourceVersion int64             `json:"resourceVersion"`
	CreatedAt       time.Time         `json:"createdAt"`
	UpdatedAt       time.Time         `json:"updatedAt"`
	// ManagedBy is the owning GitSource ("" = made by hand); PutResource
	// stores it as given.
	ManagedBy string `json:"managedBy,omitempty"`
	// AppliedBy is the identity that last applied the resource (a token id,
	// "local" with auth off); a GitSource syncs as it.
	AppliedBy string `json:"appliedBy,omitempty"`
}

// ResourceStore persists resources. Implementations return errs kinds NotFound
// and Conflict, and are safe for concurrent use.
type ResourceStore interface {
	// GetResource returns one resource (NotFound if absent).
	GetResource(ctx context.Context, kind, ns, name string) (StoredResource, error)
	// ListResources lists a kind's resources by namespace, then name; ns ""
	// means every namespace.
	ListResources(ctx context.Context, kind, ns string) ([]StoredResource, error)
	// PutResource creates (expect == 0: Conflict if it exists) or replaces
	// (expect == the stored ResourceVersion: Conflict otherwise) a resource. The
	// stored ResourceVersion becomes expect+1; CreatedAt is kept on replace.
	PutResource(ctx context.Context, r StoredResource, expect int64) (StoredResource, error)
	// DeleteResource removes a resource (NotFound if absent; Conflict if expect
	// != 0 and differs from the stored ResourceVersion).
	DeleteResource(ctx context.Context, kind, ns, name string, expect int64) error
	// GetStatus returns a resource's recorded status (NotFound if none).
	GetStatus(ctx context.Context, kind, ns, name string) (Status, error)
	// PutStatus records a resource's status without changing its
	// resourceVersion or generation (NotFound if the resource is gone).
	// DeleteResource deletes the status too.
	PutStatus(ctx context.Context, kind, ns, name string, st Status) error
}

// Status is what a controller observed of a resource, stored apart from its
// spec so that writing it never bumps resourceVersion or generation (no
// spurious conflicts for users) and it survives a restart.
type Status struct {
	// ObservedGeneration is the generation the controller last acted on.
	ObservedGeneration int64       `json:"observedGeneration"`
	Conditions         []Condition `json:"conditions,omitempty"`
	// Details holds the kind's own status fields as JSON (a GitSource's
	// commits), nil when it has none.
	Details   json.RawMessage `json:"details,omitempty"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// Condition returns the condition of type t (ok false: none).
func (s Status) Condition(t string) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// SetCondition sets c in conds, keeping its LastTransitionTime when its Status
// did not change and setting it to now when it did (as Kubernetes does).
func SetCondition(conds []Condition, c Condition, now time.Time) []Condition {
	for i, old := range conds {
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.LastTransitionTime != nil {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			t := now.UTC()
			c.LastTransitionTime = &t
		}
		conds[i] = c
		return conds
	}
	t := now.UTC()
	c.LastTransitionTime = &t
	return append(conds, c)
}
