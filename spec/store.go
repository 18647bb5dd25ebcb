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
}
