// Package mqtt is the MQTT adapter of package events (MQTT 3.1.1, Eclipse
// Paho): a source subscribed at QoS 1 in a persistent session (clean
// session off, a fixed client id) whose PUBACK is sent only when the
// trigger acknowledges, so the broker redelivers what was not acknowledged
// when the session resumes; and a sink that publishes at QoS 1 and waits
// for the broker's PUBACK.
//
// MQTT gives a message no identity that survives redelivery: a message's
// ID is its topic and a hash of its payload (two identical events share
// one, which is what deduplication by ID would want). A message given back
// (Nak) comes again after the source reconnects, which it does on its next
// Fetch. The broker bounds what is in flight (Mosquitto's
// max_inflight_messages, 20 by default): the source buffers at most that
// much.
//
// Mosquitto also queues at most max_queued_messages (1,000 by default) per
// session and DROPS QoS 1 messages beyond that: a burst larger than the
// queue is lost at the broker, before any client sees it. Run a broker for
// triggers with max_queued_messages 0 (no limit) or a limit above the
// largest burst.
package mqtt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/nimbus-ai/nimbus/events"
)

// SourceConfig names what a source reads.
type SourceConfig struct {
	Broker   string // tcp://host:1883
	Topic    string
	ClientID string // the persistent session's identity
	Username string
	Password string
	// Dialer, when set, makes the connections (one obeying the egress
	// rule).
	Dialer *net.Dialer
	// TLSConfig, when set, is the TLS of ssl:// and mqtts:// brokers.
	TLSConfig *tls.Config
}

// Source is a QoS 1 subscription in a persistent session.
type Source struct {
	cfg SourceConfig
	in  chan paho.Message

	mu        sync.Mutex
	cl        paho.Client
	reconnect bool // a message was given back: resume the session to get it again
}

var _ events.Source = (*Source)(nil)

// buffer bounds the messages delivered and not fetched; the broker's own
// in-flight bound is usually lower.
const buffer = 1024

// NewSource connects and subscribes.
func NewSource(ctx context.Context, cfg SourceConfig) (*Source, error) {
	if cfg.Broker == "" || cfg.Topic == "" || cfg.ClientID == "" {
		return nil, fmt.Errorf("mqtt: a source needs a broker, a topic and a client id")
	}
	s := &Source{cfg: cfg, in: make(chan paho.Message, buffer)}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) connect(ctx context.Context) error {
	opts := s.options().SetCleanSession(false).
		SetAutoAckDisabled(true).SetOrderMatters(true).SetAutoReconnect(true).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { s.in <- m })
	cl := paho.NewClient(opts)
	if err := wait(ctx, cl.Connect()); err != nil {
		return fmt.Errorf("mqtt: connect to %s: %w: %w", s.cfg.Broker, events.ErrUnavailable, err)
	}
	if err := wait(ctx, cl.Subscribe(s.cfg.Topic, 1, nil)); err != nil {
		cl.Disconnect(100)
		return fmt.Errorf("mqtt: subscribe to %s: %w: %w", s.cfg.Topic, events.ErrUnavailable, err)
	}
	s.mu.Lock()
	s.cl = cl
	s.mu.Unlock()
	return nil
}

// options are the client options every connection of the source shares.
func (s *Source) options() *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(s.cfg.Broker).SetClientID(s.cfg.ClientID).
		SetUsername(s.cfg.Username).SetPassword(s.cfg.Password)
	if s.cfg.Dialer != nil {
		o.SetDialer(s.cfg.Dialer)
	}
	if s.cfg.TLSConfig != nil {
		o.SetTLSConfig(s.cfg.TLSConfig)
	}
	return o
}

// Fetch takes up to max delivered messages, waiting at most maxWait for
// the first. After a message was given back it resumes the session first.
func (s *Source) Fetch(ctx context.Context, limit int, maxWait time.Duration) ([]*events.Message, error) {
	s.mu.Lock()
	resume := s.reconnect
	s.reconnect = false
	s.mu.Unlock()
	if resume {
		s.mu.Lock()
		s.cl.Disconnect(100)
		s.mu.Unlock()
		s.drain()
		if err := s.connect(ctx); err != nil {
			s.mu.Lock()
			s.reconnect = true
			s.mu.Unlock()
			return nil, err
		}
	}
	var out []*events.Message
	timer := time.NewTimer(max(maxWait, time.Millisecond))
	defer timer.Stop()
	for len(out) < limit {
		select {
		case m := <-s.in:
			out = append(out, s.message(m))
			continue
		default:
		}
		if len(out) > 0 {
			return out, nil
		}
		select {
		case m := <-s.in:
			out = append(out, s.message(m))
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// drain drops what the closed session delivered and was not fetched: the
// broker delivers it again in the resumed session.
func (s *Source) drain() {
	for {
		select {
		case <-s.in:
		default:
			return
		}
	}
}

func (s *Source) message(m paho.Message) *events.Message {
	sum := sha256.Sum256(m.Payload())
	em := events.NewMessage(m.Payload(), func(context.Context) error { m.Ack(); return nil },
		func(context.Context) error {
			s.mu.Lock()
			s.reconnect = true
			s.mu.Unlock()
			return nil
		})
	em.ID = m.Topic() + "/" + hex.EncodeToString(sum[:12])
	em.Position = fmt.Sprintf("topic %s", m.Topic())
	em.Redelivered = m.Duplicate()
	return em
}

// Close ends the connection; the session (and what it did not
// acknowledge) stays at the broker.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cl.Disconnect(100)
	return nil
}

// Remove ends the persistent session at the broker: a clean-session
// connect under its client id discards it.
func (s *Source) Remove(ctx context.Context) error {
	cl := paho.NewClient(s.options().SetCleanSession(true).SetAutoReconnect(false))
	if err := wait(ctx, cl.Connect()); err != nil {
		return fmt.Errorf("mqtt: remove session %s: %w: %w", s.cfg.ClientID, events.ErrUnavailable, err)
	}
	cl.Disconnect(100)
	return nil
}

var _ events.Remover = (*Source)(nil)

// SinkConfig names where a sink publishes.
type SinkConfig struct {
	Broker, Topic, ClientID string
	Username, Password      string
	Dialer                  *net.Dialer
	TLSConfig               *tls.Config
}

// Sink publishes at QoS 1.
type Sink struct {
	cl    paho.Client
	topic string
}

var _ events.Sink = (*Sink)(nil)

// NewSink connects.
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	if cfg.Broker == "" || cfg.Topic == "" || cfg.ClientID == "" {
		return nil, fmt.Errorf("mqtt: a sink needs a broker, a topic and a client id")
	}
	o := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).SetAutoReconnect(true).
		SetUsername(cfg.Username).SetPassword(cfg.Password)
	if cfg.Dialer != nil {
		o.SetDialer(cfg.Dialer)
	}
	if cfg.TLSConfig != nil {
		o.SetTLSConfig(cfg.TLSConfig)
	}
	cl := paho.NewClient(o)
	if err := wait(ctx, cl.Connect()); err != nil {
		return nil, fmt.Errorf("mqtt: connect to %s: %w: %w", cfg.Broker, events.ErrUnavailable, err)
	}
	return &Sink{cl: cl, topic: cfg.Topic}, nil
}

// Publish sends every record at QoS 1 and waits for each PUBACK. MQTT 3.1.1
// carries no headers: records go as their payload.
func (s *Sink) Publish(ctx context.Context, rs []events.Record) error {
	tokens := make([]paho.Token, len(rs))
	for i, r := range rs {
		tokens[i] = s.cl.Publish(s.topic, 1, false, r.Payload)
	}
	for _, t := range tokens {
		if err := wait(ctx, t); err != nil {
			return fmt.Errorf("mqtt: publish to %s: %w: %w", s.topic, events.ErrUnavailable, err)
		}
	}
	return nil
}

// Close disconnects.
func (s *Sink) Close() error {
	s.cl.Disconnect(250)
	return nil
}

// wait waits for t or ctx.
func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
