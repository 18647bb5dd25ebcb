package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/eventstest"
	"github.com/nimbus-ai/nimbus/events/natsjs"
)

// These tests run against the real NATS server with JetStream on
// 127.0.0.1:4222 (NIMBUS_TEST_NATS_URL to use another), on streams named
// for the test, deleted afterwards.

var seq atomic.Int64

func natsURL() string {
	if u := os.Getenv("NIMBUS_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(natsURL(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS at %s (start it with JetStream, or set NIMBUS_TEST_NATS_URL): %v", natsURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// unique is a name no other test or run uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

func newStream(t *testing.T, js jetstream.JetStream, name, subject string) {
	t.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
}

func TestConformance(t *testing.T) {
	eventstest.Run(t, func(t *testing.T) eventstest.Bus {
		nc, js := connect(t)
		ctx := context.Background()
		in, out := unique("IN"), unique("OUT")
		inSubj, outSubj := "nimbus.test."+in, "nimbus.test."+out
		newStream(t, js, in, inSubj)
		newStream(t, js, out, outSubj)
		cfg := natsjs.SourceConfig{Stream: in, Subject: inSubj, Durable: "scorer", AckWait: 2 * time.Second}
		sink, err := natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: outSubj})
		if err != nil {
			t.Fatal(err)
		}
		reader, err := js.CreateOrUpdateConsumer(ctx, out, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		return eventstest.Bus{
			Open: func(t *testing.T) events.Source {
				s, err := natsjs.NewSource(ctx, nc, cfg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Inject: func(t *testing.T, ps ...[]byte) {
				for _, p := range ps {
					if _, err := js.Publish(ctx, inSubj, p); err != nil {
						t.Fatal(err)
					}
				}
			},
			Sink: sink,
			Read: func(t *testing.T, n int, within time.Duration) []events.Record {
				var out []events.Record
				deadline := time.Now().Add(within)
				for len(out) < n && time.Now().Before(deadline) {
					b, err := reader.Fetch(n-len(out), jetstream.FetchMaxWait(200*time.Millisecond))
					if err != nil {
						t.Fatal(err)
					}
					for m := range b.Messages() {
						out = append(out, events.Record{Payload: m.Data(), Headers: m.Headers()})
						m.Ack()
					}
				}
				if len(out) != n {
					t.Fatalf("read %d records, want %d", len(out), n)
				}
				return out
			},
			Redelivery: 2 * time.Second,
		}
	})
}

// TestTopologyIsNotCreated: a missing stream is ErrMissing unless Create
// says otherwise; a sink subject no stream captures is ErrMissing.
func TestTopologyIsNotCreated(t *testing.T) {
	nc, js := connect(t)
	ctx := context.Background()
	name := unique("MISSING")
	_, err := natsjs.NewSource(ctx, nc, natsjs.SourceConfig{Stream: name, Subject: "nimbus.test." + name, Durable: "d"})
	if !errorsIs(err, events.ErrMissing) {
		t.Fatalf("missing stream: %v; want ErrMissing", err)
	}
	if _, err := js.Stream(ctx, name); err == nil {
		t.Fatal("the stream was created without create: true")
	}
	if _, err := natsjs.NewSource(ctx, nc, natsjs.SourceConfig{Stream: name, Subject: "nimbus.test." + name, Durable: "d", Create: true}); err != nil {
		t.Fatalf("create: true: %v", err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	if _, err := natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: "nimbus.test.nowhere." + unique("x")}); !errorsIs(err, events.ErrMissing) {
		t.Fatalf("sink subject without a stream: %v; want ErrMissing", err)
	}
}

// TestSinkDeduplicatesByID: publishing the same record twice (a retry
// after a crash) stores it once, as JetStream's duplicate window allows.
func TestSinkDeduplicatesByID(t *testing.T) {
	nc, js := connect(t)
	ctx := context.Background()
	name := unique("DEDUP")
	newStream(t, js, name, "nimbus.test."+name)
	sink, err := natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: "nimbus.test." + name})
	if err != nil {
		t.Fatal(err)
	}
	r := []events.Record{{Payload: []byte(`{"score":1}`), ID: "TXNS:42"}}
	for range 2 {
		if err := sink.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := js.Stream(ctx, name)
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages (%v); want 1", info.State.Msgs, err)
	}
}

func errorsIs(err, target error) bool { return err != nil && errors.Is(err, target) }
