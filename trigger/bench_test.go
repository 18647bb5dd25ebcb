package trigger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchEvents is how many events one benchmark iteration moves.
const benchEvents = 20_000

// prefill publishes n transactions to the rig's input stream (not timed).
func (r *rig) prefill(b *testing.B, n int) {
	b.Helper()
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		f, err := r.js.PublishAsync("nimbus.test."+r.in, []byte(txn(i)))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

// BenchmarkTriggerNATS: events/s from a JetStream stream through the small
// fraud MLP (real server, real router and batcher) to a result stream,
// beside BenchmarkNATSPassThrough, the same broker path with no model: the
// limit. `go test -run '^$' -bench 'TriggerNATS|NATSPassThrough' -benchtime 1x -count 3 ./trigger/`
func BenchmarkTriggerNATS(b *testing.B) {
	r := newRig(b)
	for range b.N {
		b.StopTimer()
		r.prefill(b, benchEvents)
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		b.StartTimer()
		done := r.startWith(ctx, 128, 64)
		r.waitFor(b, r.out, benchEvents)
		b.StopTimer()
		took := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(float64(benchEvents)/took.Seconds(), "events/s")
		r.purge(b, r.out)
	}
}

// BenchmarkNATSPassThrough: fetch 128, publish each to the result stream
// awaiting its ack, acknowledge — the trigger's broker work without a model.
func BenchmarkNATSPassThrough(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		r.prefill(b, benchEvents)
		cons, err := r.js.CreateOrUpdateConsumer(ctx, r.in, jetstream.ConsumerConfig{Durable: fmt.Sprintf("raw%d", time.Now().UnixNano()), AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		moved := 0
		for moved < benchEvents {
			batch, err := cons.Fetch(128, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				b.Fatal(err)
			}
			var msgs []jetstream.Msg
			var futures []jetstream.PubAckFuture
			for m := range batch.Messages() {
				f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: "nimbus.test." + r.out, Data: m.Data()})
				if err != nil {
					b.Fatal(err)
				}
				msgs, futures = append(msgs, m), append(futures, f)
			}
			for i, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
				msgs[i].Ack()
			}
			moved += len(msgs)
		}
		b.StopTimer()
		b.ReportMetric(float64(benchEvents)/time.Since(start).Seconds(), "events/s")
		r.purge(b, r.out)
		r.purge(b, r.in)
	}
}

// waitFor polls until stream holds n messages.
func (r *rig) waitFor(b *testing.B, stream string, n int) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := r.js.Stream(ctx, stream)
		if err == nil {
			if info, err := st.Info(ctx); err == nil && info.State.Msgs >= uint64(n) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%s never held %d messages", stream, n)
}

func (r *rig) purge(b *testing.B, stream string) {
	b.Helper()
	st, err := r.js.Stream(context.Background(), stream)
	if err == nil {
		err = st.Purge(context.Background())
	}
	if err != nil {
		b.Fatal(err)
	}
}
