package apply_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

const connYAML = `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: nats-main, namespace: payments}
spec: {nats: {url: "nats://127.0.0.1:4222"}}
`

const triggerYAML = `apiVersion: nimbus.dev/v1
kind: Trigger
metadata: {name: score, namespace: payments}
spec:
  service: fraud
  source: {connection: nats-main, nats: {stream: TXNS, subject: txns.new, durable: scorer}}
  sink: {connection: nats-main, nats: {subject: txns.scored}}
  deadLetter: {connection: nats-main, nats: {subject: txns.dlq}}
  format:
    input: {json: {fields: {x: [amount, merchant_risk]}}}
    output: {json: {fields: {score: "y[0]"}, keep: [id]}}
`

// TestConnectionsAndTriggers: both kinds are stored with their defaults,
// applied again unchanged, and shown by Get with a Pending status until the
// controller records one.
func TestConnectionsAndTriggers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	resp, err := e.apply(ctx, connYAML+"---\n"+triggerYAML)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(resp); got != "Connection payments/nats-main created, Trigger payments/score created" {
		t.Fatalf("apply: %s", got)
	}
	resp, err = e.apply(ctx, connYAML+"---\n"+triggerYAML)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(resp); got != "Connection payments/nats-main unchanged, Trigger payments/score unchanged" {
		t.Fatalf("apply again: %s", got)
	}
	obj, err := e.engine.Get(ctx, spec.KindTrigger, "payments", "score")
	if err != nil {
		t.Fatal(err)
	}
	tr := obj.(*spec.Trigger)
	if tr.Spec.Fetch == nil || tr.Spec.Fetch.Max != spec.DefaultTriggerFetchMax || tr.Spec.Concurrency != spec.DefaultTriggerConcurrency {
		t.Errorf("defaults not stored: %+v", tr.Spec)
	}
	if tr.Status == nil || len(tr.Status.Conditions) != 1 || tr.Status.Conditions[0].Reason != "Pending" {
		t.Errorf("status: %+v", tr.Status)
	}
	if tr.Metadata.Generation != 1 {
		t.Errorf("generation %d", tr.Metadata.Generation)
	}
	// A change bumps the generation and shows in the diff.
	resp, err = e.apply(ctx, strings.Replace(triggerYAML, "service: fraud", "service: fraud@champion", 1))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Action != spec.ActionConfigured || resp.Results[0].Generation != 2 ||
		!strings.Contains(resp.Results[0].Diff, "+  service: fraud@champion") {
		t.Errorf("change: %+v", resp.Results[0])
	}
	list, err := e.engine.List(ctx, spec.KindConnection, "")
	if err != nil || len(list) != 1 || list[0].(*spec.Connection).Spec.Bus() != "nats" {
		t.Errorf("list connections: %v %v", list, err)
	}
}

// TestTriggerConnectionChecks: a trigger naming a connection that is not in
// its namespace, or one of another bus, is refused naming the field.
func TestTriggerConnectionChecks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.apply(ctx, triggerYAML)
	wantApplyError(t, err, errs.NotFound, `f.yaml:6: spec.source.connection: connection "nats-main" not found in namespace payments`)
	e.mustApply(t, strings.ReplaceAll(connYAML, "namespace: payments", "namespace: other"))
	_, err = e.apply(ctx, triggerYAML)
	wantApplyError(t, err, errs.NotFound, `connection "nats-main" not found in namespace payments`)

	e.mustApply(t, `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: redis-main, namespace: payments}
spec: {redis: {url: "redis://127.0.0.1:6379"}}
`)
	_, err = e.apply(ctx, connYAML+"---\n"+strings.Replace(triggerYAML, "sink: {connection: nats-main", "sink: {connection: redis-main", 1))
	wantApplyError(t, err, errs.InvalidArgument, `spec.sink: connection "redis-main" is a redis connection, not nats`)
	if _, err := e.engine.Get(ctx, spec.KindConnection, "payments", "nats-main"); errs.KindOf(err) != errs.NotFound {
		t.Errorf("a refused apply stored its connection: %v", err)
	}
}

// TestConnectionDeleteRefusedWhileUsed: a connection a trigger names cannot
// go alone; with the trigger, in one request, it can.
func TestConnectionDeleteRefusedWhileUsed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.mustApply(t, connYAML+"---\n"+triggerYAML)
	_, err := e.engine.Delete(ctx, spec.DeleteRequest{Kind: spec.KindConnection, Namespace: "payments", Name: "nats-main"})
	if errs.KindOf(err) != errs.Conflict || !strings.Contains(err.Error(), "used by trigger(s) [score]") {
		t.Fatalf("delete a used connection: %v", err)
	}
	resp, err := e.engine.DeleteFiles(ctx, spec.Request{Files: []spec.File{{Name: "f.yaml", Content: connYAML + "---\n" + triggerYAML}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(resp); got != "Trigger payments/score deleted, Connection payments/nats-main deleted" {
		t.Errorf("delete both: %s", got)
	}
}

// TestConnectionsAreAdminOnly: Authorize is asked with the kind, so a
// server can keep Connections to admins while deployers apply Triggers.
func TestConnectionsAreAdminOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var asked []string
	deployer := func(kind, ns string) error {
		asked = append(asked, kind+"/"+ns)
		if spec.AdminOnly(kind) {
			return errs.New(errs.PermissionDenied, "not an admin of %s", ns)
		}
		return nil
	}
	_, err := e.engine.Apply(ctx, spec.Request{Files: []spec.File{{Name: "f.yaml", Content: connYAML}}, Authorize: deployer})
	wantApplyError(t, err, errs.PermissionDenied, "f.yaml:3: metadata.namespace: not an admin of payments")
	e.mustApply(t, connYAML)
	if _, err := e.engine.Apply(ctx, spec.Request{Files: []spec.File{{Name: "f.yaml", Content: triggerYAML}}, Authorize: deployer}); err != nil {
		t.Fatalf("a deployer applies a trigger: %v", err)
	}
	if strings.Join(asked, " ") != "Connection/payments Trigger/payments" {
		t.Errorf("asked %v", asked)
	}
}

func actions(r *spec.Response) string {
	var out []string
	for _, res := range r.Results {
		out = append(out, res.Kind+" "+res.Namespace+"/"+res.Name+" "+res.Action)
	}
	return strings.Join(out, ", ")
}

func wantApplyError(t *testing.T, err error, kind errs.Kind, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	var fes spec.Errors
	if !errors.As(err, &fes) || len(fes) != 1 || fes[0].Code != kind.String() || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v; want one %v containing %q", err, kind, want)
	}
}
