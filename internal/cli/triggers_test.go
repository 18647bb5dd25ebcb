package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/spec"
)

const triggerYAML = `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: nats-main}
spec: {nats: {url: "nats://127.0.0.1:4222", auth: {tokenFrom: {env: NIMBUS_SECRET_NATS}}}}
---
apiVersion: nimbus.dev/v1
kind: Trigger
metadata: {name: score}
spec:
  service: fraud
  source: {connection: nats-main, nats: {stream: TXNS, subject: txns.new, durable: scorer}}
  sink: {connection: nats-main, nats: {subject: txns.scored}}
  deadLetter: {connection: nats-main, nats: {subject: txns.dlq}}
  format:
    input: {json: {fields: {x: [amount, merchant_risk]}}}
    output: {json: {fields: {score: "y[0]"}, keep: [id]}}
`

// get and describe show a trigger's endpoints, state and counts, and a
// connection's endpoint and how it authenticates — never a secret.
func TestGetAndDescribeTriggers(t *testing.T) {
	s := newResourceServer(t)
	cli(t, s.url, "apply", "-f", modelFile(t, "t.yaml", triggerYAML))

	// Not reconciled yet (no controller runs here): Pending, no counts.
	out := cli(t, s.url, "get", "triggers")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") ||
		withoutAge(lines[1], 15) != "score fraud nats-main: stream TXNS subject txns.new durable scorer Unknown Pending 0 0 0 -" {
		t.Errorf("get triggers:\n%s", out)
	}

	// A running trigger's counts, as the controller reports them.
	s.triggers["default/score"] = spec.TriggerCounts{Consumed: 10, Produced: 8, DeadLettered: 2, InFlight: 1, Redelivered: 3, Lag: -1, LatencyP50Ms: 1.5, LatencyP99Ms: 9.25}
	if err := s.store.PutStatus(context.Background(), spec.KindTrigger, "default", "score", spec.Status{ObservedGeneration: 1,
		Conditions: []spec.Condition{{Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: spec.ReasonRunning, Message: "scoring nats events with fraud"}}}); err != nil {
		t.Fatal(err)
	}
	out = cli(t, s.url, "get", "tr", "score", "-o", "wide")
	row := withoutAge(strings.Split(strings.TrimSpace(out), "\n")[1], 15)
	if want := "score fraud nats-main: stream TXNS subject txns.new durable scorer True Running 10 8 2 - 1 3 1.5 9.25 nats-main: subject txns.scored scoring nats events with fraud"; row != want {
		t.Errorf("get tr -o wide:\n got %s\nwant %s", row, want)
	}
	var obj struct {
		Status spec.TriggerStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(cli(t, s.url, "get", "trigger/score", "-o", "json")), &obj); err != nil ||
		obj.Status.Consumed != 10 || obj.Status.DeadLettered != 2 || obj.Status.Lag != -1 || obj.Status.ObservedGeneration != 1 {
		t.Errorf("get -o json: %+v (%v)", obj.Status, err)
	}

	desc := cli(t, s.url, "describe", "trigger", "score")
	for _, want := range []string{
		"Service:", "Dead letters:", "nats nats-main: subject txns.dlq",
		"flat JSON x=[amount,merchant_risk] -> score=y[0] keep id",
		"Consumed:", "Dead-lettered:", "Latency p50:", "1.5 ms", "9.25 ms", "Running",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe trigger lacks %q:\n%s", want, desc)
		}
	}

	out = cli(t, s.url, "get", "connections")
	if row := withoutAge(strings.Split(strings.TrimSpace(out), "\n")[1], 7); row != "nats-main nats nats://127.0.0.1:4222 token from env NIMBUS_SECRET_NATS" {
		t.Errorf("get connections:\n%s", out)
	}
	if desc := cli(t, s.url, "describe", "conn", "nats-main"); !strings.Contains(desc, "token from env NIMBUS_SECRET_NATS") {
		t.Errorf("describe connection:\n%s", desc)
	}
}

// withoutAge is a table row's words without the AGE word at index i.
func withoutAge(line string, i int) string {
	f := strings.Fields(line)
	if i >= len(f) || !strings.HasSuffix(f[i], "s") {
		return line
	}
	return strings.Join(append(f[:i:i], f[i+1:]...), " ")
}
