package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/eventstest"
	"github.com/nimbus-ai/nimbus/events/redisstream"
)

// These tests run against the real Redis on 127.0.0.1:6379
// (NIMBUS_TEST_REDIS_ADDR to use another), on keys named for the test,
// deleted afterwards.

var seq atomic.Int64

func connect(t *testing.T) *redis.Client {
	t.Helper()
	addr := os.Getenv("NIMBUS_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("connect to Redis at %s (or set NIMBUS_TEST_REDIS_ADDR): %v", addr, err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func unique(prefix string) string {
	return fmt.Sprintf("nimbus-test:%s:%d:%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

func TestConformance(t *testing.T) {
	eventstest.Run(t, func(t *testing.T) eventstest.Bus {
		rdb := connect(t)
		ctx := context.Background()
		in, out := unique("in"), unique("out")
		t.Cleanup(func() { rdb.Del(context.Background(), in, out) })
		if err := rdb.XGroupCreateMkStream(ctx, in, "scorers", "0").Err(); err != nil {
			t.Fatal(err)
		}
		sink, err := redisstream.NewSink(rdb, redisstream.SinkConfig{Stream: out})
		if err != nil {
			t.Fatal(err)
		}
		var readFrom atomic.Value
		readFrom.Store("0")
		return eventstest.Bus{
			Open: func(t *testing.T) events.Source {
				s, err := redisstream.NewSource(ctx, rdb, redisstream.SourceConfig{Stream: in, Group: "scorers", Consumer: "c1", AckWait: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Inject: func(t *testing.T, ps ...[]byte) {
				pipe := rdb.Pipeline()
				for _, p := range ps {
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: in, Values: []any{redisstream.PayloadField, p}})
				}
				if _, err := pipe.Exec(ctx); err != nil {
					t.Fatal(err)
				}
			},
			Sink: sink,
			Read: func(t *testing.T, n int, within time.Duration) []events.Record {
				var got []events.Record
				deadline := time.Now().Add(within)
				for len(got) < n && time.Now().Before(deadline) {
					res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{out, readFrom.Load().(string)}, Count: int64(n - len(got)), Block: 200 * time.Millisecond}).Result()
					if errors.Is(err, redis.Nil) {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range res[0].Messages {
						r := events.Record{Headers: map[string][]string{}}
						for k, v := range m.Values {
							if k == redisstream.PayloadField {
								r.Payload = []byte(v.(string))
							} else if name, ok := strings.CutPrefix(k, "h:"); ok {
								r.Headers[name] = []string{v.(string)}
							}
						}
						got = append(got, r)
						readFrom.Store(m.ID)
					}
				}
				if len(got) != n {
					t.Fatalf("read %d records, want %d", len(got), n)
				}
				return got
			},
			Redelivery: 2 * time.Second,
		}
	})
}

// TestTopologyIsNotCreated: a missing stream or group is ErrMissing unless
// Create; with Create both are made.
func TestTopologyIsNotCreated(t *testing.T) {
	rdb := connect(t)
	ctx := context.Background()
	key := unique("missing")
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	cfg := redisstream.SourceConfig{Stream: key, Group: "g", Consumer: "c"}
	if _, err := redisstream.NewSource(ctx, rdb, cfg); !errors.Is(err, events.ErrMissing) {
		t.Fatalf("missing stream: %v", err)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("the stream was created without create: true")
	}
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"payload", "{}"}})
	if _, err := redisstream.NewSource(ctx, rdb, cfg); !errors.Is(err, events.ErrMissing) || !strings.Contains(err.Error(), "group g") {
		t.Fatalf("missing group: %v", err)
	}
	cfg.Create = true
	if _, err := redisstream.NewSource(ctx, rdb, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestADeadConsumersEntriesAreClaimed: entries a consumer read and never
// acknowledged (it died) are handed to another consumer of the group once
// idle past the ack wait (XAUTOCLAIM), marked redelivered.
func TestADeadConsumersEntriesAreClaimed(t *testing.T) {
	rdb := connect(t)
	ctx := context.Background()
	key := unique("claim")
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	cfg := redisstream.SourceConfig{Stream: key, Group: "g", Consumer: "dead", Create: true, AckWait: 500 * time.Millisecond}
	dead, err := redisstream.NewSource(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"payload", fmt.Sprintf(`{"n":%d}`, i)}})
	}
	if ms, err := dead.Fetch(ctx, 10, 100*time.Millisecond); err != nil || len(ms) != 3 {
		t.Fatalf("first consumer: %d, %v", len(ms), err)
	}
	cfg.Consumer = "alive"
	alive, err := redisstream.NewSource(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := alive.Fetch(ctx, 10, 100*time.Millisecond); len(ms) != 0 {
		t.Fatalf("claimed %d entries before the ack wait", len(ms))
	}
	time.Sleep(600 * time.Millisecond) // the ack wait of the dead consumer's entries
	ms, err := alive.Fetch(ctx, 10, 100*time.Millisecond)
	if err != nil || len(ms) != 3 || !ms[0].Redelivered {
		t.Fatalf("after the ack wait: %d, %v", len(ms), err)
	}
}
