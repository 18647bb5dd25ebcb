package trigger_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-ai/nimbus/analysis"
	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/events/kafka"
	"github.com/nimbus-ai/nimbus/events/mqtt"
	"github.com/nimbus-ai/nimbus/events/redisstream"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/tensor"
	"github.com/nimbus-ai/nimbus/trigger"
)

// benchEvents is how many events one benchmark iteration moves.
const benchEvents = 20_000

// benchModel is a model the benchmarks score with, and its events.
type benchModel struct {
	label, name, file string
	fields            []string
	event             func(i int) string
}

// benchModels: the small fraud MLP (4 fields, 4→16→1) and the medium MLP
// (64 fields, 64→512→512→10; 1.2 MB of weights).
var benchModels = []benchModel{
	{"small", "fraud-detector", "fraud_v1", []string{"amount", "merchant_risk", "foreign", "hour"}, txn},
	{"medium", "mlp-medium", "mlp_medium", mediumFields(), mediumEvent},
}

func mediumFields() []string {
	f := make([]string, 64)
	for i := range f {
		f[i] = fmt.Sprintf("f%d", i)
	}
	return f
}

// mediumEvent is a flat event of 64 numeric fields, about 600 bytes.
func mediumEvent(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":"t%d"`, i)
	for j := range 64 {
		fmt.Fprintf(&b, `,"f%d":%d.%d`, j, (i+j)%10, (i*j)%100)
	}
	b.WriteByte('}')
	return b.String()
}

// pushBenchModels stores both models in srv.
func pushBenchModels(b *testing.B, srv *testutil.Server) {
	for _, m := range benchModels {
		if m.name != "fraud-detector" { // newRig pushed it
			srv.Push(b, m.name, m.file)
		}
	}
}

// prefill publishes n events to the rig's input stream (not timed).
func (r *rig) prefill(b *testing.B, n int, event func(int) string) {
	b.Helper()
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		f, err := r.js.PublishAsync("nimbus.test."+r.in, []byte(event(i)))
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
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) {
			r := newRig(b)
			pushBenchModels(b, r.srv)
			for range b.N {
				b.StopTimer()
				r.prefill(b, benchEvents, m.event)
				src, sink, dlq := openBus(b, "nats", r.in, r.out, r.dlq)
				runBench(b, r.srv, m, src, sink, dlq, func() int { return r.count(r.out) })
				r.purge(b, r.out)
			}
		})
	}
}

// BenchmarkNATSPassThrough: fetch 128, publish each to the result stream
// awaiting its ack, acknowledge — the trigger's broker work without a model.
func BenchmarkNATSPassThrough(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) { natsPassThrough(b, m) })
	}
}

func natsPassThrough(b *testing.B, m benchModel) {
	r := newRig(b)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		r.prefill(b, benchEvents, m.event)
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
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) {
			srv := benchServer(b)
			for range b.N {
				b.StopTimer()
				rdb, in, out, dlq := redisStreams(b)
				prefillRedis(b, rdb, in, benchEvents, m.event)
				src, sink, dl := openBus(b, "redis", in, out, dlq)
				runBench(b, srv, m, src, sink, dl, func() int { n, _ := rdb.XLen(context.Background(), out).Result(); return int(n) })
			}
		})
	}
}

// benchServer is a server with both benchmark models.
func benchServer(b *testing.B) *testutil.Server {
	srv := testutil.StartServer(b)
	srv.Push(b, "fraud-detector", "fraud_v1")
	pushBenchModels(b, srv)
	return srv
}

// runBench times the trigger from src to sink until produced() reaches
// benchEvents, and reports events/s and the p50 and p99 of the time each
// event spent in Nimbus (fetched to acknowledged; with a backlog, the
// broker's own wait is not in it).
func runBench(b *testing.B, srv *testutil.Server, m benchModel, src events.Source, sink, dlq events.Sink, produced func() int) {
	b.Helper()
	inputs, _ := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: m.fields}}, false)
	outputs, _ := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
	lat := analysis.NewHistogram(1e-6, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	b.StartTimer()
	go func() {
		done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "bench", Service: m.name, Inferer: srv.Sys.Router,
			Source: src, Sink: sink, DeadLetter: dlq, Codec: trigger.FlatJSON{Inputs: inputs, Outputs: outputs}, FetchMax: 128, Concurrency: 64,
			Observe: func(o trigger.Outcome) {
				if o.Result || o.DeadLetter {
					lat.Record(o.Latency.Seconds())
				}
			}})
	}()
	for produced() < benchEvents {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	took := time.Since(start)
	cancel()
	<-done
	snap := lat.Snapshot()
	n := snap.Count()
	b.ReportMetric(float64(benchEvents)/took.Seconds(), "events/s")
	b.ReportMetric(snap.ValueAtRank((n+1)/2)*1e3, "p50-ms")
	b.ReportMetric(snap.ValueAtRank(max(1, n*99/100))*1e3, "p99-ms")
}

func BenchmarkRedisPassThrough(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) { redisPassThrough(b, m) })
	}
}

func redisPassThrough(b *testing.B, m benchModel) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		rdb, in, out, _ := redisStreams(b)
		prefillRedis(b, rdb, in, benchEvents, m.event)
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

func prefillRedis(b testing.TB, rdb *redis.Client, stream string, n int, event func(int) string) {
	b.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{redisstream.PayloadField, event(i)}})
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

// count is how many messages stream holds.
func (r *rig) count(stream string) int {
	st, err := r.js.Stream(context.Background(), stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(context.Background())
	if err != nil {
		return 0
	}
	return int(info.State.Msgs)
}

// BenchmarkTriggerKafka is BenchmarkTriggerNATS on franz-go's in-process
// kfake cluster (no Kafka broker runs on this machine: a fake, sharing the
// cores with the server), beside BenchmarkKafkaPassThrough.
func BenchmarkTriggerKafka(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) { triggerKafka(b, m) })
	}
}

func triggerKafka(b *testing.B, m benchModel) {
	srv := benchServer(b)
	for range b.N {
		b.StopTimer()
		bs, in, out, dlq := kafkaTopics(b)
		prefillKafka(b, bs, in, benchEvents, m.event)
		src, err := kafka.NewSource(context.Background(), kafka.SourceConfig{Brokers: bs, Topic: in, Group: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		sink, err := kafka.NewSink(context.Background(), kafka.SinkConfig{Brokers: bs, Topic: out})
		if err != nil {
			b.Fatal(err)
		}
		dl, err := kafka.NewSink(context.Background(), kafka.SinkConfig{Brokers: bs, Topic: dlq})
		if err != nil {
			b.Fatal(err)
		}
		runBench(b, srv, m, src, sink, dl, func() int { return kafkaCount(b, bs, out) })
		src.Close()
		sink.Close()
		dl.Close()
	}
}

func BenchmarkKafkaPassThrough(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) { kafkaPassThrough(b, m) })
	}
}

func kafkaPassThrough(b *testing.B, m benchModel) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		bs, in, out, _ := kafkaTopics(b)
		prefillKafka(b, bs, in, benchEvents, m.event)
		cl, err := kgo.NewClient(kgo.SeedBrokers(bs...), kgo.ConsumerGroup("raw"), kgo.ConsumeTopics(in),
			kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for moved := 0; moved < benchEvents; {
			fs := cl.PollRecords(ctx, 128)
			var recs []*kgo.Record
			for _, r := range fs.Records() {
				recs = append(recs, &kgo.Record{Topic: out, Value: r.Value})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				b.Fatal(err)
			}
			moved += len(recs)
		}
		b.StopTimer()
		b.ReportMetric(float64(benchEvents)/time.Since(start).Seconds(), "events/s")
		cl.Close()
	}
}

func kafkaTopics(b *testing.B) (brokers []string, in, out, dlq string) {
	b.Helper()
	in, out, dlq = "bench-in", "bench-out", "bench-dlq"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, in, out, dlq))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c.ListenAddrs(), in, out, dlq
}

func prefillKafka(b *testing.B, brokers []string, topic string, n int, event func(int) string) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range n {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(event(i))}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

// kafkaCount is the end offset of topic's partition 0: how many records it
// holds.
func kafkaCount(b *testing.B, brokers []string, topic string) int {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		return 0
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok {
		return 0
	}
	return int(o.Offset)
}

// mqttBench is one MQTT topology on the loopback Mosquitto: the input
// topic's persistent session (the trigger's source), a reader of the result
// topic counting what arrives, and a producer. Mosquitto queues at most
// 1,000 QoS 1 messages per session and drops the rest, so the producer is
// paced: it keeps at most mqttWindow events ahead of the results. Both the
// trigger and the pass-through run against the same producer and reader.
type mqttBench struct {
	in            string // the input topic
	src           events.Source
	sink, dlq     events.Sink
	produced      atomic.Int64
	stopReader    context.CancelFunc
	readerStopped chan struct{}
}

const mqttWindow = 500

func newMQTTBench(b *testing.B) *mqttBench {
	b.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("nimbus-bench-%d-%d", time.Now().UnixNano(), seq.Add(1))
	broker := "tcp://127.0.0.1:1883"
	src, err := mqtt.NewSource(ctx, mqtt.SourceConfig{Broker: broker, Topic: id + "/in", ClientID: id + "-src"})
	if err != nil {
		b.Fatalf("Mosquitto must run on 127.0.0.1:1883: %v", err)
	}
	reader, err := mqtt.NewSource(ctx, mqtt.SourceConfig{Broker: broker, Topic: id + "/out", ClientID: id + "-reader"})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := mqtt.NewSink(ctx, mqtt.SinkConfig{Broker: broker, Topic: id + "/out", ClientID: id + "-sink"})
	if err != nil {
		b.Fatal(err)
	}
	dlq, err := mqtt.NewSink(ctx, mqtt.SinkConfig{Broker: broker, Topic: id + "/dlq", ClientID: id + "-dlq"})
	if err != nil {
		b.Fatal(err)
	}
	m := &mqttBench{in: id + "/in", src: src, sink: sink, dlq: dlq, readerStopped: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	m.stopReader = cancel
	go func() {
		defer close(m.readerStopped)
		for rctx.Err() == nil {
			ms, err := reader.Fetch(rctx, 128, 5*time.Millisecond)
			if err != nil {
				continue
			}
			for _, msg := range ms {
				msg.Ack(ctx)
			}
			m.produced.Add(int64(len(ms)))
		}
	}()
	b.Cleanup(func() {
		m.stopReader()
		<-m.readerStopped
		for _, s := range []interface{ Close() error }{src, reader, sink, dlq} {
			s.Close()
		}
		src.Remove(ctx)
		reader.Remove(ctx)
	})
	return m
}

// produce publishes n events at QoS 1, paced by the results, until done.
func (m *mqttBench) produce(b *testing.B, id string, n int, event func(int) string) {
	b.Helper()
	pub, err := mqtt.NewSink(context.Background(), mqtt.SinkConfig{Broker: "tcp://127.0.0.1:1883", Topic: id, ClientID: fmt.Sprintf("nimbus-bench-pub-%d", seq.Add(1))})
	if err != nil {
		b.Fatal(err)
	}
	start := m.produced.Load()
	go func() {
		defer pub.Close()
		for i := 0; i < n; {
			if int64(i)-(m.produced.Load()-start) > mqttWindow {
				time.Sleep(time.Millisecond)
				continue
			}
			var rs []events.Record
			for j := 0; j < 100 && i < n; j++ {
				rs = append(rs, events.Record{Payload: []byte(event(i))})
				i++
			}
			if err := pub.Publish(context.Background(), rs); err != nil {
				return
			}
		}
	}()
}

// BenchmarkTriggerMQTT is BenchmarkTriggerNATS on the loopback Mosquitto
// (QoS 1 in, QoS 1 out), with a paced producer (see mqttBench), beside
// BenchmarkMQTTPassThrough.
func BenchmarkTriggerMQTT(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) {
			srv := benchServer(b)
			for range b.N {
				b.StopTimer()
				mb := newMQTTBench(b)
				base := mb.produced.Load()
				mb.produce(b, mb.in, benchEvents, m.event)
				runBench(b, srv, m, mb.src, mb.sink, mb.dlq, func() int { return int(mb.produced.Load() - base) })
			}
		})
	}
}

// BenchmarkMQTTPassThrough: fetch up to 128 through the same adapter,
// publish them at QoS 1 awaiting the PUBACKs, acknowledge — the trigger's
// broker work without a model, with the same producer and reader.
func BenchmarkMQTTPassThrough(b *testing.B) {
	for _, m := range benchModels {
		b.Run(m.label, func(b *testing.B) {
			ctx := context.Background()
			for range b.N {
				b.StopTimer()
				mb := newMQTTBench(b)
				base := mb.produced.Load()
				mb.produce(b, mb.in, benchEvents, m.event)
				b.StartTimer()
				start := time.Now()
				for mb.produced.Load()-base < benchEvents {
					ms, err := mb.src.Fetch(ctx, 128, 5*time.Millisecond)
					if err != nil {
						b.Fatal(err)
					}
					rs := make([]events.Record, len(ms))
					for i, msg := range ms {
						rs[i] = events.Record{Payload: msg.Payload}
					}
					if len(rs) > 0 {
						if err := mb.sink.Publish(ctx, rs); err != nil {
							b.Fatal(err)
						}
					}
					for _, msg := range ms {
						msg.Ack(ctx)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(benchEvents)/time.Since(start).Seconds(), "events/s")
			}
		})
	}
}

// BenchmarkTriggerBacklogMemory: a backlog of NIMBUS_BENCH_BACKLOG events
// (default 200,000) waiting in JetStream, drained by the trigger through the
// small MLP, reporting the peak Go heap in use while it drains (the server
// and the trigger share this process). In flight is bounded by fetch.max
// and concurrency, so the peak does not grow with the backlog: compare two
// sizes. `NIMBUS_BENCH_BACKLOG=50000 go test -run '^$' -bench BacklogMemory -benchtime 1x ./trigger/`
func BenchmarkTriggerBacklogMemory(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("NIMBUS_BENCH_BACKLOG")); err == nil && v > 0 {
		n = v
	}
	r := newRig(b)
	m := benchModels[0]
	for range b.N {
		b.StopTimer()
		r.prefill(b, n, m.event)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		src, sink, dlq := openBus(b, "nats", r.in, r.out, r.dlq)
		inputs, _ := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: m.fields}}, false)
		outputs, _ := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() {
			done <- trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "backlog", Service: m.name, Inferer: r.srv.Sys.Router,
				Source: src, Sink: sink, DeadLetter: dlq, Codec: trigger.FlatJSON{Inputs: inputs, Outputs: outputs}, FetchMax: 128, Concurrency: 64})
		}()
		var peak uint64
		for r.count(r.out) < n {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			time.Sleep(50 * time.Millisecond)
		}
		b.StopTimer()
		took := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(float64(base)/(1<<20), "heap-before-MB")
		b.ReportMetric(float64(peak)/(1<<20), "heap-peak-MB")
		r.purge(b, r.out)
		r.purge(b, r.in)
	}
}
