package trigger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/events/redisstream"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/tensor"
	"github.com/nimbus-ai/nimbus/trigger"
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

// BenchmarkTriggerRedis is BenchmarkTriggerNATS on Redis Streams, beside
// BenchmarkRedisPassThrough (read 128 through the group, append each to the
// result stream in one MULTI/EXEC, XACK them): the limit.
func BenchmarkTriggerRedis(b *testing.B) {
	srv := testutil.StartServer(b)
	srv.Push(b, "fraud-detector", "fraud_v1")
	for range b.N {
		b.StopTimer()
		rdb, in, out, dlq := redisStreams(b)
		prefillRedis(b, rdb, in, benchEvents)
		src, sink, dl := openBus(b, "redis", in, out, dlq)
		inputs, _ := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}}}, false)
		outputs, _ := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		b.StartTimer()
		go func() {
			done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "bench", Service: "fraud-detector", Inferer: srv.Sys.Router,
				Source: src, Sink: sink, DeadLetter: dl, Inputs: inputs, Outputs: outputs, FetchMax: 128, Concurrency: 64})
		}()
		for n, _ := rdb.XLen(context.Background(), out).Result(); n < benchEvents; n, _ = rdb.XLen(context.Background(), out).Result() {
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		took := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(float64(benchEvents)/took.Seconds(), "events/s")
	}
}

func BenchmarkRedisPassThrough(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		rdb, in, out, _ := redisStreams(b)
		prefillRedis(b, rdb, in, benchEvents)
		b.StartTimer()
		start := time.Now()
		for moved := 0; moved < benchEvents; {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crash", Consumer: "raw", Streams: []string{in, ">"}, Count: 128, Block: time.Second}).Result()
			if err != nil {
				b.Fatal(err)
			}
			ms := res[0].Messages
			var ids []string
			if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, m := range ms {
					p.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{redisstream.PayloadField, m.Values[redisstream.PayloadField]}})
					ids = append(ids, m.ID)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if err := rdb.XAck(ctx, in, "crash", ids...).Err(); err != nil {
				b.Fatal(err)
			}
			moved += len(ms)
		}
		b.StopTimer()
		b.ReportMetric(float64(benchEvents)/time.Since(start).Seconds(), "events/s")
	}
}

// redisStreams makes fresh input (with group "crash"), output and
// dead-letter streams, deleted when the benchmark ends.
func redisStreams(b *testing.B) (*redis.Client, string, string, string) {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b.Cleanup(func() { rdb.Close() })
	id := fmt.Sprintf("%d:%d", time.Now().UnixNano(), seq.Add(1))
	in, out, dlq := "nimbus-bench:in:"+id, "nimbus-bench:out:"+id, "nimbus-bench:dlq:"+id
	b.Cleanup(func() { rdb.Del(context.Background(), in, out, dlq) })
	if err := rdb.XGroupCreateMkStream(context.Background(), in, "crash", "0").Err(); err != nil {
		b.Fatal(err)
	}
	return rdb, in, out, dlq
}

func prefillRedis(b testing.TB, rdb *redis.Client, stream string, n int) {
	b.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{redisstream.PayloadField, txn(i)}})
		if i%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
}
