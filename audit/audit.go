// Package audit is the append-only record of every change made to a Nimbus
// server: who (a token's identity, or "local"), when, from which source (api,
// cli, gitops), what (kind, namespace, name, action) and the diff. Events are
// appended, listed and never rewritten: the stores refuse updates and deletes.
package audit

import (
	"context"
	"time"
)

// Actions.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// Sources say through what a change arrived.
const (
	SourceAPI = "api"
	SourceCLI = "cli"
)

// LocalActor is the actor of changes made without a token.
const LocalActor = "local"

// Event is one recorded change.
type Event struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Source    string    `json:"source"`
	Action    string    `json:"action"`
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	// Generation is the resource's generation after the change (0 if none).
	Generation int64 `json:"generation,omitempty"`
	// Summary is one line for humans ("traffic fraud-detector@challenger 10 -> 50").
	Summary string `json:"summary,omitempty"`
	// Diff is a unified diff of the resource's YAML, before -> after.
	Diff string `json:"diff,omitempty"`
}

// Query selects events, oldest first. Zero fields do not filter.
type Query struct {
	Namespace string
	// Namespaces, when set, keeps only events of these namespaces (what a
	// token scoped to them may read).
	Namespaces []string
	Kind       string
	Name       string
	Since      time.Time
	// After is an event ID: only later events (for paging and following).
	After int64
	// Limit caps the result (0: DefaultLimit, at most MaxLimit).
	Limit int
	// Latest selects the newest Limit matching events instead of the oldest;
	// they are still returned oldest first. With After it selects the newest
	// events after that ID.
	Latest bool
}

// Limits of one query.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Log stores events. Append assigns ID (increasing) and, if zero, Time.
type Log interface {
	AppendEvent(ctx context.Context, e Event) (Event, error)
	ListEvents(ctx context.Context, q Query) ([]Event, error)
}

type originKey struct{}

type origin struct{ actor, source string }

// WithOrigin returns ctx saying who makes a change (the actor) and through
// what (the source): the edge that knows the caller sets it, the domain that
// makes the change records it.
func WithOrigin(ctx context.Context, actor, source string) context.Context {
	return context.WithValue(ctx, originKey{}, origin{actor: actor, source: source})
}

// OriginOf returns the actor and source ctx carries; LocalActor and SourceAPI
// for whatever it does not say.
func OriginOf(ctx context.Context) (actor, source string) {
	o, _ := ctx.Value(originKey{}).(origin)
	actor, source = o.actor, o.source
	if actor == "" {
		actor = LocalActor
	}
	if source == "" {
		source = SourceAPI
	}
	return actor, source
}
