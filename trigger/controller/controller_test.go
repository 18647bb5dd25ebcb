package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/kafka"
	"github.com/nimbus-ai/nimbus/events/mqtt"
	"github.com/nimbus-ai/nimbus/events/redisstream"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/trigger"
)

// These tests run a whole Nimbus server (the real ONNX Runtime, SQLite,
// the router) against the real NATS JetStream, Redis and Mosquitto brokers
// of this machine, with unique stream, subject and topic names per test.

const natsURL = "nats://127.0.0.1:4222"

func unique(p string) string { return fmt.Sprintf("%s%d", p, time.Now().UnixNano()) }

type rig struct {
	t   *testing.T
	srv *testutil.Server
	ctx context.Context
}

func newRig(t *testing.T) *rig {
	srv := testutil.StartServer(t)
	srv.Push(t, "fraud-detector", "fraud_v1")
	return &rig{t: t, srv: srv, ctx: context.Background()}
}

func (r *rig) apply(yaml string) {
	r.t.Helper()
	if _, err := r.srv.Sys.Resources.Apply(r.ctx, spec.Request{Files: []spec.File{{Name: "t.yaml", Content: yaml}}}); err != nil {
		r.t.Fatalf("apply: %v", err)
	}
}

// status syncs the trigger (a pass now) and returns it as a user sees it.
func (r *rig) status(name string) *spec.TriggerStatus {
	r.t.Helper()
	if err := r.srv.Sys.Triggers.Sync(r.ctx, "default", name); err != nil {
		r.t.Fatalf("sync: %v", err)
	}
	obj, err := r.srv.Sys.Resources.Get(r.ctx, spec.KindTrigger, "default", name)
	if err != nil {
		r.t.Fatal(err)
	}
	return obj.(*spec.Trigger).Status
}

func ready(st *spec.TriggerStatus) spec.Condition {
	for _, c := range st.Conditions {
		if c.Type == spec.ConditionReady {
			return c
		}
	}
	return spec.Condition{}
}

// natsTopology makes three streams: events in, results out, dead letters.
type natsTopology struct {
	js              jetstream.JetStream
	in, out, dlq    string // stream names
	inS, outS, dlqS string // subjects
}

func newNATS(t *testing.T) *natsTopology {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("NATS must run on %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	id := unique("")
	n := &natsTopology{js: js, in: "TIN" + id, out: "TOUT" + id, dlq: "TDLQ" + id,
		inS: "nimbus.t.in." + id, outS: "nimbus.t.out." + id, dlqS: "nimbus.t.dlq." + id}
	for name, subj := range map[string]string{n.in: n.inS, n.out: n.outS, n.dlq: n.dlqS} {
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	}
	return n
}

func (n *natsTopology) publish(t *testing.T, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := n.js.Publish(context.Background(), n.inS, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// read waits for count messages on stream.
func (n *natsTopology) read(t *testing.T, stream string, count int) []string {
	t.Helper()
	ctx := context.Background()
	c, err := n.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < count && time.Now().Before(deadline) {
		batch, err := c.Fetch(count-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, string(m.Data()))
		}
	}
	if len(out) != count {
		t.Fatalf("stream %s: %d messages, want %d: %q", stream, len(out), count, out)
	}
	return out
}

func (n *natsTopology) connection(name string) string {
	return `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: ` + name + `}
spec: {nats: {url: "` + natsURL + `"}}
`
}

func (n *natsTopology) trigger(name, service, extra string) string {
	return `---
apiVersion: nimbus.dev/v1
kind: Trigger
metadata: {name: ` + name + `}
spec:
  service: ` + service + `
  source: {connection: nats-main, nats: {stream: ` + n.in + `, subject: ` + n.inS + `, durable: ` + name + `}}
  sink: {connection: nats-main, nats: {subject: ` + n.outS + `}}
  deadLetter: {connection: nats-main, nats: {subject: ` + n.dlqS + `}}
  format:
    input: {json: {fields: {x: [amount, merchant_risk, foreign, hour]}}}
    output: {json: {fields: {score: "y[0]"}, keep: [id]}}
` + extra
}

func event(i int) string {
	return fmt.Sprintf(`{"id":"t%d","amount":%d.5,"merchant_risk":0.3,"foreign":%t,"hour":%d}`, i, i, i%2 == 0, i%24)
}

// The whole life of a NATS trigger: it runs once applied, scores what comes
// (results with the kept id, dead letters for what does not map), reports
// its counts, stops fetching when suspended (what comes meanwhile waits),
// resumes, and removes its durable consumer when deleted.
func TestNATSTriggerLifecycle(t *testing.T) {
	n := newNATS(t) // before the server: it stops first, then the streams go
	r := newRig(t)
	r.apply(n.connection("nats-main") + n.trigger("fraud", "fraud-detector", ""))
	if c := ready(r.status("fraud")); c.Status != spec.ConditionTrue || c.Reason != spec.ReasonRunning {
		t.Fatalf("ready = %+v", c)
	}

	n.publish(t, event(1), event(2), `{"id":"bad","amount":1}`, event(3))
	results := n.read(t, n.out, 3)
	ids := map[string]bool{}
	for _, res := range results {
		var got struct {
			ID    string   `json:"id"`
			Score *float64 `json:"score"`
		}
		if err := json.Unmarshal([]byte(res), &got); err != nil || got.Score == nil {
			t.Fatalf("result %s: %v", res, err)
		}
		ids[got.ID] = true
	}
	if !ids["t1"] || !ids["t2"] || !ids["t3"] {
		t.Errorf("results %q", results)
	}
	var dl trigger.DeadLetter
	if err := json.Unmarshal([]byte(n.read(t, n.dlq, 1)[0]), &dl); err != nil || !strings.Contains(dl.Error, "hour") ||
		dl.Trigger != "default/fraud" || dl.Payload != `{"id":"bad","amount":1}` {
		t.Errorf("dead letter %+v (%v)", dl, err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, _ := r.srv.Sys.Triggers.TriggerCounts("default", "fraud")
		return c.Consumed == 4 && c.Produced == 3 && c.DeadLettered == 1 && c.InFlight == 0
	}, "counts never settled at 4 consumed, 3 produced, 1 dead-lettered")
	st := r.status("fraud")
	if st.Consumed != 4 || st.Produced != 3 || st.DeadLettered != 1 || st.LatencyP50Ms <= 0 || st.LatencyP99Ms < st.LatencyP50Ms {
		t.Errorf("status counts %+v", st.TriggerCounts)
	}

	// Suspended: the loop is stopped by the time the pass returns, so what
	// is published now waits at the broker.
	r.apply(n.connection("nats-main") + n.trigger("fraud", "fraud-detector", "  suspend: true\n"))
	if c := ready(r.status("fraud")); c.Status != spec.ConditionFalse || c.Reason != spec.ReasonSuspended {
		t.Fatalf("suspended: ready = %+v", c)
	}
	n.publish(t, event(4), event(5))
	info, err := n.js.Consumer(r.ctx, n.in, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(r.ctx)
	if err != nil || ci.NumPending != 2 {
		t.Fatalf("suspended consumer: %+v, %v (want 2 pending)", ci, err)
	}
	r.apply(n.connection("nats-main") + n.trigger("fraud", "fraud-detector", ""))
	if c := ready(r.status("fraud")); c.Reason != spec.ReasonRunning {
		t.Fatalf("resumed: ready = %+v", c)
	}
	n.read(t, n.out, 5)

	// Deleted: the durable consumer goes with it.
	if _, err := r.srv.Sys.Resources.Delete(r.ctx, spec.DeleteRequest{Kind: spec.KindTrigger, Namespace: "default", Name: "fraud"}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Sys.Triggers.Sync(r.ctx, "default", "fraud"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.js.Consumer(r.ctx, n.in, "fraud"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer after delete: %v", err)
	}
	if _, ok := r.srv.Sys.Triggers.TriggerCounts("default", "fraud"); ok {
		t.Error("a deleted trigger still has counts")
	}
}

// A trigger that cannot run says why, and runs once the cause is gone.
func TestTriggerSaysWhyItDoesNotRun(t *testing.T) {
	n := newNATS(t) // before the server: it stops first, then the streams go
	r := newRig(t)

	// The service does not exist yet: nothing is fetched (the events would
	// be dead-lettered), until the model is pushed.
	r.apply(n.connection("nats-main") + n.trigger("early", "scorer", ""))
	if c := ready(r.status("early")); c.Reason != spec.ReasonServiceMissing || !strings.Contains(c.Message, "scorer") {
		t.Fatalf("ready = %+v", c)
	}
	n.publish(t, event(1))
	r.srv.Push(t, "scorer", "fraud_v1")
	if c := ready(r.status("early")); c.Reason != spec.ReasonRunning {
		t.Fatalf("after push: ready = %+v", c)
	}
	n.read(t, n.out, 1)

	// A stream that does not exist, without create: SourceMissing.
	missing := strings.Replace(n.trigger("nostream", "fraud-detector", ""), "stream: "+n.in, "stream: NOPE"+n.in, 1)
	r.apply(n.connection("nats-main") + missing)
	if c := ready(r.status("nostream")); c.Reason != spec.ReasonSourceMissing || !strings.Contains(c.Message, "create: true") {
		t.Errorf("missing stream: ready = %+v", c)
	}

	// A format that does not fit the service: Invalid, naming the field.
	bad := strings.Replace(n.trigger("badfmt", "fraud-detector", ""), `score: "y[0]"`, `score: "z[0]"`, 1)
	r.apply(n.connection("nats-main") + bad)
	if c := ready(r.status("badfmt")); c.Reason != spec.ReasonInvalid || !strings.Contains(c.Message, "has no output z (its outputs: y)") {
		t.Errorf("bad format: ready = %+v", c)
	}

	// A broker that does not answer, and one the egress rule refuses.
	down := `apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: nats-main}
spec: {nats: {url: "nats://127.0.0.1:1"}}
`
	r.apply(down + n.trigger("down", "fraud-detector", ""))
	if c := ready(r.status("down")); c.Reason != spec.ReasonBrokerUnavailable || !strings.Contains(c.Message, "127.0.0.1:1") {
		t.Errorf("broker down: ready = %+v", c)
	}
	far := strings.Replace(down, "127.0.0.1:1", "10.255.255.1:4222", 1)
	r.apply(far + n.trigger("down", "fraud-detector", ""))
	if c := ready(r.status("down")); c.Reason != spec.ReasonBrokerUnavailable || !strings.Contains(c.Message, "egress") {
		t.Errorf("egress: ready = %+v", c)
	}
}

// busCase is one bus: its Connection, the endpoints of a trigger on it, an
// injector (the adapter's own sink, publishing where the trigger reads) and
// readers (the adapter's own sources on the result and dead-letter
// destinations, opened before the trigger runs).
type busCase struct {
	conn                     string // the Connection's spec
	source, sink, deadLetter string // the endpoints' bus fields
	inject                   events.Sink
	results, dead            events.Source
}

func readAll(t *testing.T, src events.Source, n int) []string {
	t.Helper()
	var out []string
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		ms, err := src.Fetch(context.Background(), n-len(out), 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			out = append(out, string(m.Payload))
			m.Ack(context.Background())
		}
	}
	if len(out) != n {
		t.Fatalf("read %d records, want %d: %q", len(out), n, out)
	}
	return out
}

func redisCase(t *testing.T) busCase {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })
	id := unique("nimbus-t-")
	in, out, dlq := id+"-in", id+"-out", id+"-dlq"
	t.Cleanup(func() { rdb.Del(ctx, in, out, dlq) })
	inject, err := redisstream.NewSink(rdb, redisstream.SinkConfig{Stream: in})
	if err != nil {
		t.Fatal(err)
	}
	open := func(stream string) events.Source {
		s, err := redisstream.NewSource(ctx, rdb, redisstream.SourceConfig{Stream: stream, Group: "reader", Consumer: "r", Create: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return busCase{
		conn:   `{redis: {url: "redis://127.0.0.1:6379"}}`,
		source: `redis: {stream: ` + in + `, group: scorers, create: true}`, sink: `redis: {stream: ` + out + `}`, deadLetter: `redis: {stream: ` + dlq + `}`,
		inject: inject, results: open(out), dead: open(dlq),
	}
}

func mqttCase(t *testing.T) busCase {
	ctx := context.Background()
	id := unique("nimbus-t-")
	in, out, dlq := id+"/in", id+"/out", id+"/dlq"
	inject, err := mqtt.NewSink(ctx, mqtt.SinkConfig{Broker: "tcp://127.0.0.1:1883", Topic: in, ClientID: id + "-inject"})
	if err != nil {
		t.Fatalf("Mosquitto must run on 127.0.0.1:1883: %v", err)
	}
	t.Cleanup(func() { inject.Close() })
	open := func(topic, cid string) events.Source {
		s, err := mqtt.NewSource(ctx, mqtt.SourceConfig{Broker: "tcp://127.0.0.1:1883", Topic: topic, ClientID: cid})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); s.Remove(ctx) })
		return s
	}
	return busCase{
		conn:   `{mqtt: {url: "tcp://127.0.0.1:1883"}}`,
		source: `mqtt: {topic: ` + in + `, clientId: ` + id + `-scorer}`, sink: `mqtt: {topic: ` + out + `}`, deadLetter: `mqtt: {topic: ` + dlq + `}`,
		inject: inject, results: open(out, id+"-results"), dead: open(dlq, id+"-dead"),
	}
}

// kafkaCase runs on kfake, franz-go's in-process Kafka cluster: no Kafka
// broker runs on this machine (it needs a JVM).
func kafkaCase(t *testing.T) busCase {
	ctx := context.Background()
	id := unique("nimbus-t-")
	in, out, dlq := id+"-in", id+"-out", id+"-dlq"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, in, out, dlq))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	bs := c.ListenAddrs()
	inject, err := kafka.NewSink(ctx, kafka.SinkConfig{Brokers: bs, Topic: in})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inject.Close() })
	open := func(topic string) events.Source {
		s, err := kafka.NewSource(ctx, kafka.SourceConfig{Brokers: bs, Topic: topic, Group: "reader"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return busCase{
		conn:   `{kafka: {brokers: ["` + strings.Join(bs, `", "`) + `"]}}`,
		source: `kafka: {topic: ` + in + `, group: scorers}`, sink: `kafka: {topic: ` + out + `}`, deadLetter: `kafka: {topic: ` + dlq + `}`,
		inject: inject, results: open(out), dead: open(dlq),
	}
}

// Every bus runs through the same controller: a Connection and a Trigger
// applied, events scored, results and dead letters published on the bus.
func TestEveryBusThroughTheServer(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) busCase{"redis": redisCase, "mqtt": mqttCase, "kafka": kafkaCase} {
		t.Run(name, func(t *testing.T) {
			bc := mk(t) // before the server: it stops first, then the topology goes
			r := newRig(t)
			r.apply(`apiVersion: nimbus.dev/v1
kind: Connection
metadata: {name: bus}
spec: ` + bc.conn + `
---
apiVersion: nimbus.dev/v1
kind: Trigger
metadata: {name: scorer}
spec:
  service: fraud-detector
  source: {connection: bus, ` + bc.source + `}
  sink: {connection: bus, ` + bc.sink + `}
  deadLetter: {connection: bus, ` + bc.deadLetter + `}
  format: {input: {json: {fields: {x: [amount, merchant_risk, foreign, hour]}}}}
`)
			if c := ready(r.status("scorer")); c.Reason != spec.ReasonRunning {
				t.Fatalf("ready = %+v", c)
			}
			var recs []events.Record
			for _, p := range []string{event(1), `{"amount": "x"}`, event(2)} {
				recs = append(recs, events.Record{Payload: []byte(p)})
			}
			if err := bc.inject.Publish(r.ctx, recs); err != nil {
				t.Fatal(err)
			}
			for _, res := range readAll(t, bc.results, 2) {
				// With no output format, each output is a field under its name.
				var got struct{ Y []float64 }
				if err := json.Unmarshal([]byte(res), &got); err != nil || len(got.Y) != 1 {
					t.Errorf("result %s: %v", res, err)
				}
			}
			var dl trigger.DeadLetter
			if err := json.Unmarshal([]byte(readAll(t, bc.dead, 1)[0]), &dl); err != nil || dl.Payload != `{"amount": "x"}` {
				t.Errorf("dead letter %+v: %v", dl, err)
			}
			// The lag, where the broker reports it (polled every 5 s): nothing waits.
			wantLag := int64(0)
			if name == "mqtt" {
				wantLag = -1
			}
			testutil.Eventually(t, 15*time.Second, func() bool {
				c, ok := r.srv.Sys.Triggers.TriggerCounts("default", "scorer")
				return ok && c.Lag == wantLag && c.Consumed == 3
			}, "the lag never settled")
		})
	}
}

// A core NATS sink (durable: false) needs no stream; the trigger runs with a
// warning in its status that delivery is at most once.
func TestCoreNATSSinkRunsWithAWarning(t *testing.T) {
	n := newNATS(t) // before the server: it stops first, then the streams go
	r := newRig(t)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject := "nimbus.t.core." + unique("")
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	yaml := strings.Replace(n.trigger("core", "fraud-detector", ""), "subject: "+n.outS+"}", "subject: "+subject+", durable: false}", 1)
	r.apply(n.connection("nats-main") + yaml)
	st := r.status("core")
	if c := ready(st); c.Reason != spec.ReasonRunning || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "at most once") {
		t.Fatalf("status = %+v", st)
	}
	n.publish(t, event(7))
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"id":"t7"`) || m.Header.Get("Nimbus-Source-Id") == "" {
		t.Fatalf("core NATS result: %v %v", m, err)
	}
}

// With no field mapping, events are OIP v2 requests (here wrapped in
// structured-mode CloudEvents) and results OIP v2 responses.
func TestOIPRequestsInCloudEvents(t *testing.T) {
	n := newNATS(t)
	r := newRig(t)
	yaml := n.trigger("oip", "fraud-detector", "")
	yaml = yaml[:strings.Index(yaml, "  format:")] + "  format: {input: {cloudEvents: true}}\n"
	r.apply(n.connection("nats-main") + yaml)
	if c := ready(r.status("oip")); c.Reason != spec.ReasonRunning {
		t.Fatalf("ready = %+v", c)
	}
	n.publish(t, `{"specversion":"1.0","id":"ce-1","type":"txn","source":"/shop","data":{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[900,0.9,1,3]}]}}`,
		`{"specversion":"1.0","id":"ce-2","data":{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}}`)
	var resp struct {
		ID        string `json:"id"`
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(n.read(t, n.out, 1)[0]), &resp); err != nil || resp.ID != "ce-1" || resp.ModelName != "fraud-detector" ||
		len(resp.Outputs) != 1 || resp.Outputs[0].Name != "y" || len(resp.Outputs[0].Data) != 1 {
		t.Errorf("response %+v (%v)", resp, err)
	}
	var dl trigger.DeadLetter
	if err := json.Unmarshal([]byte(n.read(t, n.dlq, 1)[0]), &dl); err != nil || !strings.Contains(dl.Error, "shape") {
		t.Errorf("dead letter %+v (%v)", dl, err)
	}
}

// A sink that fails while the source works holds the batch, says so in the
// status (BrokerUnavailable, naming the sink) and in the metrics, and
// resumes by itself: the held result is published once the sink is back.
func TestASinkThatFailsIsReported(t *testing.T) {
	n := newNATS(t)
	r := newRig(t)
	r.apply(n.connection("nats-main") + n.trigger("held", "fraud-detector", ""))
	if c := ready(r.status("held")); c.Reason != spec.ReasonRunning {
		t.Fatalf("ready = %+v", c)
	}
	if err := n.js.DeleteStream(r.ctx, n.out); err != nil { // nothing captures the sink's subject now
		t.Fatal(err)
	}
	n.publish(t, event(1))
	testutil.Eventually(t, 20*time.Second, func() bool {
		c := ready(r.status("held"))
		return c.Reason == spec.ReasonBrokerUnavailable && strings.Contains(c.Message, "spec.sink cannot be published to")
	}, "the status never said the sink fails")
	if _, err := n.js.CreateStream(r.ctx, jetstream.StreamConfig{Name: n.out, Subjects: []string{n.outS}}); err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, n.out, 1)[0]; !strings.Contains(got, `"id":"t1"`) {
		t.Errorf("held result %s", got)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return ready(r.status("held")).Reason == spec.ReasonRunning }, "never Running again")
	if c, _ := r.srv.Sys.Triggers.TriggerCounts("default", "held"); c.Produced != 1 || c.DeadLettered != 0 {
		t.Errorf("counts %+v", c)
	}
}

// A Connection that goes away behind the engine's back (a row removed from
// the store; the engine itself refuses to delete a used one) stops the
// trigger with ConnectionMissing, naming it.
func TestAVanishedConnectionStopsTheTrigger(t *testing.T) {
	n := newNATS(t)
	r := newRig(t)
	r.apply(n.connection("nats-main") + n.trigger("orphan", "fraud-detector", ""))
	if c := ready(r.status("orphan")); c.Reason != spec.ReasonRunning {
		t.Fatalf("ready = %+v", c)
	}
	if err := r.srv.Sys.Store.(spec.ResourceStore).DeleteResource(r.ctx, spec.KindConnection, "default", "nats-main", 0); err != nil {
		t.Fatal(err)
	}
	if c := ready(r.status("orphan")); c.Reason != spec.ReasonConnectionMissing || !strings.Contains(c.Message, "no Connection nats-main in namespace default") {
		t.Errorf("ready = %+v", c)
	}
}
