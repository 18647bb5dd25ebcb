package trigger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/events/natsjs"
	"github.com/nimbus-ai/nimbus/events/redisstream"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/tensor"
	"github.com/nimbus-ai/nimbus/trigger"
)

// The crash test: events are published, a separate process (this test
// binary, re-run as a helper) scores them through a real Nimbus server and
// is killed with SIGKILL in the middle, then a new one finishes the job.
// Every input must end with at least one result; the duplicates (results
// published before the kill whose events were not acknowledged yet) are
// counted and reported. NIMBUS_CRASH_EVENTS sets the number (default
// 20,000; the run uses 100,000).

const helperEnv = "NIMBUS_TRIGGER_CRASH_HELPER"

func crashEvents() int {
	if n, err := strconv.Atoi(os.Getenv("NIMBUS_CRASH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 20_000
}

// TestCrashHelper is the helper process's body: it runs the trigger named
// by the environment until killed.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return // not the helper process: nothing to do (TestCrash* run it)
	}
	srv := testutil.StartServer(t)
	srv.Push(t, "fraud-detector", "fraud_v1")
	ctx := context.Background()
	src, sink, dlq := openBus(t, os.Getenv(helperEnv), os.Getenv("NIMBUS_CRASH_IN"), os.Getenv("NIMBUS_CRASH_OUT"), os.Getenv("NIMBUS_CRASH_DLQ"))
	in, _ := format.NewInputs([]format.Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}}}, false)
	out, _ := format.NewOutputs(map[string]string{"score": "y[0]"}, []string{"id"})
	fmt.Println("helper ready")
	trigger.Run(ctx, trigger.Config{Namespace: "default", Name: "crash", Service: "fraud-detector", Inferer: srv.Sys.Router,
		Source: src, Sink: sink, DeadLetter: dlq, Codec: trigger.FlatJSON{Inputs: in, Outputs: out}, FetchMax: 128, Concurrency: 64})
}

// openBus opens the source and sinks of bus ("nats" or "redis") on the
// given stream names.
func openBus(t testing.TB, bus, in, out, dlq string) (events.Source, events.Sink, events.Sink) {
	t.Helper()
	ctx := context.Background()
	switch bus {
	case "nats":
		nc, err := nats.Connect("nats://127.0.0.1:4222")
		if err != nil {
			t.Fatal(err)
		}
		src, err := natsjs.NewSource(ctx, nc, natsjs.SourceConfig{Stream: in, Subject: "nimbus.test." + in, Durable: "crash", AckWait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sink, err := natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: "nimbus.test." + out})
		if err != nil {
			t.Fatal(err)
		}
		dl, err := natsjs.NewSink(ctx, nc, natsjs.SinkConfig{Subject: "nimbus.test." + dlq})
		if err != nil {
			t.Fatal(err)
		}
		return src, sink, dl
	case "redis":
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		src, err := redisstream.NewSource(ctx, rdb, redisstream.SourceConfig{Stream: in, Group: "crash", Consumer: "c1", AckWait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sink, _ := redisstream.NewSink(rdb, redisstream.SinkConfig{Stream: out})
		dl, _ := redisstream.NewSink(rdb, redisstream.SinkConfig{Stream: dlq})
		return src, sink, dl
	}
	t.Fatalf("unknown bus %q", bus)
	return nil, nil, nil
}

// helper starts the helper process on bus.
func helper(t *testing.T, bus, in, out, dlq string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), helperEnv+"="+bus, "NIMBUS_CRASH_IN="+in, "NIMBUS_CRASH_OUT="+out, "NIMBUS_CRASH_DLQ="+dlq)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// crash runs the test on a bus: publish, start, kill at about half, start
// again, then check every input was scored.
func crash(t *testing.T, bus string, publish func(n int), count func(stream string) int, results func() map[string]int, in, out, dlq string) {
	n := crashEvents()
	publish(n)
	first := helper(t, bus, in, out, dlq)
	testutil.Eventually(t, 5*time.Minute, func() bool { return count(out) >= n/2 }, "half the results before the kill")
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	atKill := count(out)
	second := helper(t, bus, in, out, dlq)
	testutil.Eventually(t, 5*time.Minute, func() bool {
		seen := results()
		for i := range n {
			if seen[fmt.Sprintf("t%d", i)] == 0 {
				return false
			}
		}
		return true
	}, "a result for every input after the restart")
	// Stopped before counting: what it still publishes would be counted
	// by one reading and not by the other.
	second.Process.Signal(syscall.SIGKILL)
	second.Wait()
	seen := results()
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	t.Logf("%s: %d events; killed with %d results published; %d results in all, %d duplicates (%.2f%%), 0 lost",
		bus, n, atKill, count(out), dups, 100*float64(dups)/float64(n))
	if count(dlq) != 0 {
		t.Fatalf("%d dead letters for well-formed events", count(dlq))
	}
}

func TestCrashNATS(t *testing.T) {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	id := fmt.Sprintf("%d_%d", time.Now().UnixNano(), seq.Add(1))
	in, out, dlq := "CRASH_IN_"+id, "CRASH_OUT_"+id, "CRASH_DLQ_"+id
	for _, s := range []string{in, out, dlq} {
		// The shortest duplicate window the server takes (100ms) keeps the
		// results republished after the restart: duplicates are counted
		// here, not dropped by the server (as a longer window would).
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: s, Subjects: []string{"nimbus.test." + s}, Duplicates: 100 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		name := s
		t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	}
	count := func(stream string) int {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return 0
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0
		}
		return int(info.State.Msgs)
	}
	crash(t, "nats", func(n int) {
		for i := range n {
			if _, err := js.PublishAsync("nimbus.test."+in, []byte(txn(i))); err != nil {
				t.Fatal(err)
			}
			if i%2000 == 1999 {
				<-js.PublishAsyncComplete()
			}
		}
		<-js.PublishAsyncComplete()
	}, count, func() map[string]int {
		seen := map[string]int{}
		cons, err := js.OrderedConsumer(ctx, out, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		total := count(out)
		for got := 0; got < total; {
			b, err := cons.Fetch(min(total-got, 1000), jetstream.FetchMaxWait(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for m := range b.Messages() {
				var v struct{ ID string }
				json.Unmarshal(m.Data(), &v)
				seen[v.ID]++
				k++
			}
			if k == 0 {
				break
			}
			got += k
		}
		return seen
	}, in, out, dlq)
}

func TestCrashRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	ctx := context.Background()
	id := fmt.Sprintf("%d:%d", time.Now().UnixNano(), seq.Add(1))
	in, out, dlq := "nimbus-test:crash-in:"+id, "nimbus-test:crash-out:"+id, "nimbus-test:crash-dlq:"+id
	t.Cleanup(func() { rdb.Del(context.Background(), in, out, dlq) })
	if err := rdb.XGroupCreateMkStream(ctx, in, "crash", "0").Err(); err != nil {
		t.Fatal(err)
	}
	count := func(stream string) int { n, _ := rdb.XLen(ctx, stream).Result(); return int(n) }
	crash(t, "redis", func(n int) {
		prefillRedis(t, rdb, in, n, txn)
	}, count, func() map[string]int {
		seen := map[string]int{}
		start := "-"
		for {
			ms, err := rdb.XRangeN(ctx, out, start, "+", 5000).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				var v struct{ ID string }
				s, _ := m.Values[redisstream.PayloadField].(string)
				json.Unmarshal([]byte(s), &v)
				seen[v.ID]++
			}
			if len(ms) < 5000 {
				return seen
			}
			start = "(" + ms[len(ms)-1].ID
		}
	}, in, out, dlq)
}
