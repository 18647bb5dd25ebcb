package registry

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nimbus-ai/nimbus/audit"
)

// AuditLog is where the registry records the changes it makes. audit.Log
// satisfies it; the SQLite store is one, so a change and its event share a
// transaction.
type AuditLog interface {
	AppendEvent(ctx context.Context, e audit.Event) (audit.Event, error)
}

// SetAuditLog makes every change record an event in l, inside the change's
// transaction: a change is never stored without its event, and a failing
// append fails the change. The actor and source come from the ctx
// (audit.WithOrigin). Set it before the Registry is used; nil records nothing.
func (r *Registry) SetAuditLog(l AuditLog) { r.audit = l }

type noAuditKey struct{}

// WithoutAudit returns ctx for a caller that records its changes itself (the
// apply engine writes one event per resource, with a diff): registry calls
// made with it record none.
func WithoutAudit(ctx context.Context) context.Context {
	return context.WithValue(ctx, noAuditKey{}, true)
}

// Audit event kinds of registry changes ("Model" is spec.KindModel).
const (
	auditModel = "Model"
	auditBlob  = "Blob"
)

// record appends ev (Kind, Action, Namespace, Name, Summary set by the
// caller) with the origin ctx carries, through ctx: inside the change's
// transaction.
func (r *Registry) record(ctx context.Context, ev audit.Event) error {
	if r.audit == nil || ctx.Value(noAuditKey{}) != nil {
		return nil
	}
	ev.Actor, ev.Source = audit.OriginOf(ctx)
	if _, err := r.audit.AppendEvent(ctx, ev); err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	return nil
}

// modelEvent is an event about a model; body, when not nil, is what was asked
// for, as JSON (the request of an imperative change).
func modelEvent(action, ns, model, summary string, body any) audit.Event {
	ev := audit.Event{Action: action, Kind: auditModel, Namespace: ns, Name: model, Summary: summary}
	if body != nil {
		if b, err := json.Marshal(body); err == nil {
			ev.Diff = string(b)
		}
	}
	return ev
}

// forced marks the summary of a delete made with force.
func forced(summary string, force bool) string {
	if force {
		return summary + " (force=true)"
	}
	return summary
}
