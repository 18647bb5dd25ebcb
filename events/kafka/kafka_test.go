package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/eventstest"
	"github.com/nimbus-ai/nimbus/events/kafka"
)

// No Kafka broker can run on this machine, so these tests run against
// franz-go's in-process kfake cluster (a fake, said so here); set
// NIMBUS_TEST_KAFKA_BROKERS=host:9092,... to run the same suite against a
// real cluster (topics named for the test).

var seq atomic.Int64

func brokers(t *testing.T, topics ...string) []string {
	t.Helper()
	if env := os.Getenv("NIMBUS_TEST_KAFKA_BROKERS"); env != "" {
		bs := strings.Split(env, ",")
		for _, topic := range topics {
			cl, err := kgo.NewClient(kgo.SeedBrokers(bs...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			// Created by producing with auto-create, or by kafka.NewSource's Create.
			if _, err := kafka.NewSource(context.Background(), kafka.SourceConfig{Brokers: bs, Topic: topic, Group: "setup", Create: true}); err != nil {
				t.Fatal(err)
			}
		}
		return bs
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func unique(p string) string {
	return fmt.Sprintf("nimbus-test-%s-%d-%d", p, time.Now().UnixNano(), seq.Add(1))
}

func TestConformance(t *testing.T) {
	eventstest.Run(t, func(t *testing.T) eventstest.Bus {
		ctx := context.Background()
		in, out := unique("in"), unique("out")
		bs := brokers(t, in, out)
		group := unique("group")
		producer, err := kgo.NewClient(kgo.SeedBrokers(bs...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(producer.Close)
		sink, err := kafka.NewSink(ctx, kafka.SinkConfig{Brokers: bs, Topic: out})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		reader, err := kgo.NewClient(kgo.SeedBrokers(bs...), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(reader.Close)
		return eventstest.Bus{
			Open: func(t *testing.T) events.Source {
				s, err := kafka.NewSource(ctx, kafka.SourceConfig{Brokers: bs, Topic: in, Group: group})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Inject: func(t *testing.T, ps ...[]byte) {
				var recs []*kgo.Record
				for _, p := range ps {
					recs = append(recs, &kgo.Record{Topic: in, Value: p})
				}
				if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
					t.Fatal(err)
				}
			},
			Sink: sink,
			Read: func(t *testing.T, n int, within time.Duration) []events.Record {
				var got []events.Record
				deadline := time.Now().Add(within)
				for len(got) < n && time.Now().Before(deadline) {
					pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					fs := reader.PollRecords(pctx, n-len(got))
					cancel()
					for _, r := range fs.Records() {
						rec := events.Record{Payload: r.Value, Headers: map[string][]string{}}
						for _, h := range r.Headers {
							rec.Headers[h.Key] = append(rec.Headers[h.Key], string(h.Value))
						}
						got = append(got, rec)
					}
				}
				if len(got) != n {
					t.Fatalf("read %d records, want %d", len(got), n)
				}
				return got
			},
			Redelivery:       2 * time.Second,
			NoRedeliveryMark: true,
		}
	})
}

// TestATopicIsNotCreated: a missing topic is ErrMissing unless Create.
func TestATopicIsNotCreated(t *testing.T) {
	bs := brokers(t)
	ctx := context.Background()
	topic := unique("missing")
	if _, err := kafka.NewSource(ctx, kafka.SourceConfig{Brokers: bs, Topic: topic, Group: "g"}); !errors.Is(err, events.ErrMissing) {
		t.Fatalf("missing topic: %v", err)
	}
	if _, err := kafka.NewSink(ctx, kafka.SinkConfig{Brokers: bs, Topic: topic}); !errors.Is(err, events.ErrMissing) {
		t.Fatalf("missing sink topic: %v", err)
	}
	s, err := kafka.NewSource(ctx, kafka.SourceConfig{Brokers: bs, Topic: topic, Group: "g", Create: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
