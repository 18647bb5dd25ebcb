package trigger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/events/natsjs"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/tensor"
	"github.com/nimbus-ai/nimbus/trigger"
	"github.com/nimbus-ai/nimbus/trigger/oipcodec"
)

// These tests score events from the real NATS server (JetStream, on
// 127.0.0.1:4222 or NIMBUS_TEST_NATS_URL) with a real Nimbus server's router
// and the real fraud model, on streams named for the test.

var seq atomic.Int64

type rig struct {
	t            testing.TB
	nc           *nats.Conn
	js           jetstream.JetStream
	in, out, dlq string // stream names; subjects are nimbus.test.<name>
	srv          *testutil.Server
}

func newRig(t testing.TB) *rig {
	t.Helper()
	url := os.Getenv("NIMBUS_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	r := &rig{t: t, nc: nc, js: js, srv: testutil.StartServer(t)}
	n := fmt.Sprintf("%d_%d", time.Now().UnixNano(), seq.Add(1))
	r.in, r.out, r.dlq = "TXNS_"+n, "SCORED_"+n, "DLQ_"+n
	for _, s := range []string{r.in, r.out, r.dlq} {
		r.stream(s)
		name := s
		t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	}
	r.srv.Push(t, "fraud-detector", "fraud_v1")
	return r
}

func (r *rig) stream(name string) {
	r.t.Helper()
	if _, err := r.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{"nimbus.test." + name}}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) publish(payloads ...string) {
	r.t.Helper()
	for _, p := range payloads {
		if _, err := r.js.Publish(context.Background(), "nimbus.test."+r.in, []byte(p)); err != nil {
			r.t.Fatal(err)
		}
	}
}

// read returns the payloads stream holds once it holds n (or fails).
func (r *rig) read(stream string, n int) []string {
	r.t.Helper()
	ctx := context.Background()
	testutil.Eventually(r.t, 60*time.Second, func() bool {
		st, err := r.js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(n)
	}, fmt.Sprintf("%d messages in %s", n, stream))
	cons, err := r.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for len(out) < n {
		b, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			r.t.Fatal(err)
		}
		for m := range b.Messages() {
			out = append(out, string(m.Data()))
		}
	}
	return out
}

// start runs the trigger pulling 32 events at a time with 4 requests in
// flight.
func (r *rig) start(ctx context.Context) <-chan error {
	r.t.Helper()
	src, err := natsjs.NewSource(ctx, r.nc, natsjs.SourceConfig{Stream: r.in, Subject: "nimbus.test." + r.in, Durable: "scorer", AckWait: 5 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	sink, err := natsjs.NewSink(ctx, r.nc, natsjs.SinkConfig{Subject: "nimbus.test." + r.out})
	if err != nil {
		r.t.Fatal(err)
	}
	dlq, err := natsjs.NewSink(ctx, r.nc, natsjs.SinkConfig{Subject: "nimbus.test." + r.dlq})
	if err != nil {
		r.t.Fatal(err)
	}
	in, err := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}}}, false)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "score", Service: "fraud-detector", Inferer: r.srv.Sys.Router,
			Source: src, Sink: sink, DeadLetter: dlq, Codec: trigger.FlatJSON{Inputs: in, Outputs: out}, FetchMax: 32, Concurrency: 4})
	}()
	return done
}

func txn(i int) string {
	return fmt.Sprintf(`{"id":"t%d","amount":%d.5,"merchant_risk":0.3,"foreign":%t,"hour":%d}`, i, i%500, i%3 == 0, i%24)
}

// TestScoresAndDeadLetters: good events are scored by the real model with
// their id kept; bad ones go to the dead-letter stream with the error, the
// payload and their source position, and never hold up the others.
func TestScoresAndDeadLetters(t *testing.T) {
	r := newRig(t)
	var want []string
	for i := range 200 {
		switch {
		case i%20 == 7:
			want = append(want, "")
			r.publish(fmt.Sprintf(`{"id":"t%d","amount":1,"merchant_risk":0.3,"foreign":true}`, i)) // no hour
		case i%20 == 13:
			want = append(want, "")
			r.publish(`{"id":"bad","amount":"lots"`) // not JSON
		default:
			want = append(want, fmt.Sprintf("t%d", i))
			r.publish(txn(i))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := r.start(ctx)
	results := r.read(r.out, 180)
	dead := r.read(r.dlq, 20)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, res := range results {
		var v struct {
			ID    string   `json:"id"`
			Score *float64 `json:"score"`
		}
		if err := json.Unmarshal([]byte(res), &v); err != nil || v.ID == "" || v.Score == nil {
			t.Fatalf("result %s: %v", res, err)
		}
		seen[v.ID] = true
	}
	for _, id := range want {
		if id != "" && !seen[id] {
			t.Fatalf("no result for %s", id)
		}
	}
	var missing, notJSON int
	for _, d := range dead {
		var v trigger.DeadLetter
		if err := json.Unmarshal([]byte(d), &v); err != nil || v.Payload == "" || !strings.Contains(v.Source, "stream "+r.in+" seq ") {
			t.Fatalf("dead letter %s: %v", d, err)
		}
		switch {
		case strings.Contains(v.Error, `field "hour" is missing`):
			missing++
		case strings.Contains(v.Error, "not a JSON object"):
			notJSON++
		default:
			t.Fatalf("dead letter error %q", v.Error)
		}
	}
	if missing != 10 || notJSON != 10 {
		t.Fatalf("dead letters: %d missing a field, %d not JSON; want 10 and 10", missing, notJSON)
	}
	// The same score as the model gives over REST.
	code, body := postJSON(t, r.srv.URL+"/v2/models/fraud-detector/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.5,0.3,0,1]}]}`)
	if code != 200 || !strings.Contains(body, `"data":[`) {
		t.Fatalf("REST: %d %s", code, body)
	}
	var rest struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	json.Unmarshal([]byte(body), &rest)
	for _, res := range results {
		if strings.Contains(res, `"id":"t1"`) && !strings.Contains(res, fmt.Sprintf(`"score":%v`, float32(rest.Outputs[0].Data[0]))) {
			t.Fatalf("t1 scored %s over NATS, %v over REST", res, rest.Outputs[0].Data[0])
		}
	}
}

// TestASinkThatIsDownHoldsTheStream: with the result stream gone the
// trigger holds its batch and fetches nothing more; once the stream is
// back every event gets its result, none lost.
func TestASinkThatIsDownHoldsTheStream(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := r.start(ctx)
	r.publish(txn(1))
	r.read(r.out, 1)
	if err := r.js.DeleteStream(ctx, r.out); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 50; i++ {
		r.publish(txn(i))
	}
	// The consumer holds at most one batch: most events stay pending.
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, err := r.js.Consumer(ctx, r.in, "scorer")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending > 0
	}, "the trigger to hold a batch")
	c, _ := r.js.Consumer(ctx, r.in, "scorer")
	info, _ := c.Info(ctx)
	if info.NumAckPending+int(info.NumPending) < 49 || info.AckFloor.Stream > 1 {
		t.Fatalf("with the sink down: %d pending ack, %d not delivered, ack floor %d; want all 49 unacknowledged", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
	}
	r.stream(r.out) // back
	results := r.read(r.out, 49)
	ids := map[string]bool{}
	for _, res := range results {
		var v struct{ ID string }
		json.Unmarshal([]byte(res), &v)
		ids[v.ID] = true
	}
	for i := 2; i <= 50; i++ {
		if !ids[fmt.Sprintf("t%d", i)] {
			t.Fatalf("t%d has no result after the sink came back (results: %d)", i, len(results))
		}
	}
	cancel()
	<-done
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := testutil.Client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOIPEvents: events that are OIP v2 JSON requests are answered with
// OIP v2 JSON responses; a malformed one is dead-lettered with the REST
// API's own message.
func TestOIPEvents(t *testing.T) {
	r := newRig(t)
	r.publish(`{"id":"a1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.5,0.3,0,1]}]}`,
		`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, sink, dlq := openBus(t, "nats", r.in, r.out, r.dlq)
	done := make(chan error, 1)
	go func() {
		done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "oip", Service: "fraud-detector", Inferer: r.srv.Sys.Router,
			Source: src, Sink: sink, DeadLetter: dlq, Codec: oipcodec.Codec{}})
	}()
	res := r.read(r.out, 1)[0]
	dead := r.read(r.dlq, 1)[0]
	cancel()
	<-done
	var resp struct {
		ID           string `json:"id"`
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(res), &resp); err != nil || resp.ID != "a1" || resp.ModelVersion != "1" || len(resp.Outputs) != 1 || resp.Outputs[0].Name != "y" {
		t.Fatalf("result %s: %v", res, err)
	}
	var dl trigger.DeadLetter
	if err := json.Unmarshal([]byte(dead), &dl); err != nil || dl.Error != `not an inference request: input "x": shape [1,4] needs 4 elements, data has 3` {
		t.Fatalf("dead letter %s: %v", dead, err)
	}
}

// A service that is not found (deleted while the trigger runs, or not
// routed yet) is not the event's fault: the event is given back, not
// dead-lettered, and is scored once the service exists.
func TestAMissingServiceGivesEventsBack(t *testing.T) {
	r := newRig(t)
	r.publish(txn(1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, sink, dlq := openBus(t, "nats", r.in, r.out, r.dlq)
	in, _ := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}}}, false)
	out, _ := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
	retried := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "late", Service: "late-model", Inferer: r.srv.Sys.Router,
			Source: src, Sink: sink, DeadLetter: dlq, Codec: trigger.FlatJSON{Inputs: in, Outputs: out},
			Observe: func(o trigger.Outcome) {
				if o.Retried {
					retried <- struct{}{}
				}
			}})
	}()
	select {
	case <-retried:
	case <-time.After(20 * time.Second):
		t.Fatal("the event was never given back")
	}
	r.srv.Push(t, "late-model", "fraud_v1")
	res := r.read(r.out, 1)[0]
	cancel()
	<-done
	if !strings.Contains(res, `"id":"t1"`) {
		t.Errorf("result %s", res)
	}
	if n := r.count(r.dlq); n != 0 {
		t.Errorf("%d dead letters for a missing service", n)
	}
}
