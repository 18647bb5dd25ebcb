// Package events is how Triggers talk to message buses: one small Source
// and Sink interface, with one semantics for every bus — a message is
// acknowledged only after its result (or its dead-letter record) is durably
// published, so delivery is at least once; a source never creates the
// topology it reads unless told to. Adapters live in sub-packages
// (events/nats, …) and pass one conformance suite (events/eventstest).
package events

import (
	"context"
	"errors"
	"time"
)

// Message is one event read from a source.
type Message struct {
	Payload []byte
	Headers map[string][]string
	// ID identifies the message at its source for idempotency (a JetStream
	// stream sequence, a Kafka partition/offset, a Redis entry id): results
	// carry it so consumers can drop duplicates.
	ID string
	// Position says where the message sits, for a dead-letter record
	// ("stream TXNS seq 42").
	Position string
	// Redelivered is true when the bus delivered it before (a crash or a
	// timeout between delivery and acknowledgement).
	Redelivered bool
	// Received is when the source handed it over.
	Received time.Time

	// ack and nak settle the message at its source (set by the adapter).
	ack func(ctx context.Context) error
	nak func(ctx context.Context) error
}

// NewMessage returns a message that ack and nak settle (for adapters).
func NewMessage(payload []byte, ack, nak func(ctx context.Context) error) *Message {
	return &Message{Payload: payload, ack: ack, nak: nak, Received: time.Now()}
}

// Ack acknowledges the message: its source will not deliver it again.
func (m *Message) Ack(ctx context.Context) error {
	if m.ack == nil {
		return nil
	}
	return m.ack(ctx)
}

// Nak gives the message back for redelivery (a failure that is not the
// message's fault: the model or a sink was unavailable).
func (m *Message) Nak(ctx context.Context) error {
	if m.nak == nil {
		return nil
	}
	return m.nak(ctx)
}

// Source reads messages.
type Source interface {
	// Fetch returns up to max messages, waiting at most maxWait for them;
	// none and no error when none came. It returns ErrUnavailable when the
	// broker cannot be reached (the caller backs off and retries).
	Fetch(ctx context.Context, max int, maxWait time.Duration) ([]*Message, error)
	// Close releases the source; a durable consumer stays at the broker.
	Close() error
}

// Remover is a Source whose consumer (a durable, a group member, a
// persistent session) can be removed from the broker once the trigger is
// deleted. Call it after Close.
type Remover interface {
	Remove(ctx context.Context) error
}

// Lagger is a Source that can say how many messages wait at the broker for
// it (not yet delivered).
type Lagger interface {
	Lag(ctx context.Context) (int64, error)
}

// Record is one message to publish.
type Record struct {
	Payload []byte
	Headers map[string][]string
	// ID, when set, lets a bus that deduplicates (JetStream's Nats-Msg-Id)
	// drop a republished duplicate.
	ID string
}

// Sink publishes records.
type Sink interface {
	// Publish publishes every record and returns once the bus has
	// acknowledged each (durably stored, where the bus stores); an error
	// means some may not be, and the caller publishes them again.
	Publish(ctx context.Context, rs []Record) error
	Close() error
}

// Errors adapters return (wrapped).
var (
	// ErrUnavailable: the broker cannot be reached now; retry with backoff.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrMissing: the stream, topic or group the trigger names does not
	// exist and the trigger may not create it (status SourceMissing).
	ErrMissing = errors.New("not found at the broker")
)
