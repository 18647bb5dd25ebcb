package mqtt_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/eventstest"
	"github.com/nimbus-ai/nimbus/events/mqtt"
)

// These tests run against the real Mosquitto on 127.0.0.1:1883
// (NIMBUS_TEST_MQTT_URL to use another), on topics and client ids named
// for the test.

var seq atomic.Int64

func broker() string {
	if u := os.Getenv("NIMBUS_TEST_MQTT_URL"); u != "" {
		return u
	}
	return "tcp://127.0.0.1:1883"
}

func unique(p string) string {
	return fmt.Sprintf("nimbus-test-%s-%d-%d", p, time.Now().UnixNano(), seq.Add(1))
}

func client(t *testing.T, id string, onMessage paho.MessageHandler) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(broker()).SetClientID(id)
	if onMessage != nil {
		opts.SetDefaultPublishHandler(onMessage)
	}
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to MQTT at %s: %v", broker(), tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

func TestConformance(t *testing.T) {
	eventstest.Run(t, func(t *testing.T) eventstest.Bus {
		ctx := context.Background()
		in, out := unique("in"), unique("out")
		clientID := unique("scorer")
		publisher := client(t, unique("pub"), nil)
		received := make(chan []byte, 1024)
		reader := client(t, unique("reader"), func(_ paho.Client, m paho.Message) { received <- m.Payload() })
		if tok := reader.Subscribe(out, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		sink, err := mqtt.NewSink(ctx, mqtt.SinkConfig{Broker: broker(), Topic: out, ClientID: unique("sink")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		return eventstest.Bus{
			Open: func(t *testing.T) events.Source {
				s, err := mqtt.NewSource(ctx, mqtt.SourceConfig{Broker: broker(), Topic: in, ClientID: clientID})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Inject: func(t *testing.T, ps ...[]byte) {
				for _, p := range ps {
					if tok := publisher.Publish(in, 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						t.Fatal(tok.Error())
					}
				}
			},
			Sink: sink,
			Read: func(t *testing.T, n int, within time.Duration) []events.Record {
				var got []events.Record
				timeout := time.After(within)
				for len(got) < n {
					select {
					case p := <-received:
						got = append(got, events.Record{Payload: p})
					case <-timeout:
						t.Fatalf("read %d records, want %d", len(got), n)
					}
				}
				return got
			},
			// A message comes again when the session resumes, at once; the
			// longer bound leaves room for Mosquitto's pace (20 messages in
			// flight per client by default: about 1,000 a second here).
			Redelivery: 10 * time.Second,
			NoHeaders:  true,
			// Mosquitto queues at most 1,000 QoS 1 messages per session
			// beyond the 20 in flight (max_queued_messages) and drops the
			// rest: a burst larger than that loses messages at the broker.
			Burst: 900,
		}
	})
}
