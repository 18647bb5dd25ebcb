// Package natsjs is the NATS JetStream adapter of package events: a source
// on a durable pull consumer with explicit acknowledgement, and a sink that
// publishes to a subject a stream captures and waits for the stream's
// acknowledgement of each message (with Nats-Msg-Id set, so a republished
// duplicate inside the stream's duplicate window is dropped by the server).
//
// It never creates or changes a stream unless told to (Create); the durable
// consumer is the trigger's own state and is created when missing.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-ai/nimbus/events"
)

// SourceConfig names what a source reads.
type SourceConfig struct {
	Stream, Subject, Durable string
	// Create makes the stream (capturing Subject) when it does not exist.
	Create bool
	// AckWait is how long the server waits for an acknowledgement before
	// it delivers a message again (default 30s).
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acknowledged
	// (default 4096): the in-flight bound of the trigger.
	MaxAckPending int
}

// Source reads a JetStream durable pull consumer.
type Source struct {
	js      jetstream.JetStream
	cons    jetstream.Consumer
	stream  string
	durable string
}

var _ events.Source = (*Source)(nil)

// NewSource binds to (or creates) the durable consumer on cfg.Stream. A
// missing stream is events.ErrMissing unless cfg.Create.
func NewSource(ctx context.Context, nc *nats.Conn, cfg SourceConfig) (*Source, error) {
	if cfg.Stream == "" || cfg.Durable == "" {
		return nil, fmt.Errorf("natsjs: a source needs a stream and a durable name")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	st, err := js.Stream(ctx, cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && cfg.Create:
		if cfg.Subject == "" {
			return nil, fmt.Errorf("natsjs: creating stream %s needs a subject", cfg.Stream)
		}
		st, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: cfg.Stream, Subjects: []string{cfg.Subject}})
		if err != nil {
			return nil, fmt.Errorf("natsjs: create stream %s: %w", cfg.Stream, unavailable(err))
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("natsjs: stream %s: %w (create it, or set create: true)", cfg.Stream, events.ErrMissing)
	case err != nil:
		return nil, fmt.Errorf("natsjs: stream %s: %w", cfg.Stream, unavailable(err))
	}
	cc := jetstream.ConsumerConfig{
		Durable: cfg.Durable, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: cfg.Subject,
		AckWait: cfg.AckWait, MaxAckPending: cfg.MaxAckPending,
	}
	if cc.AckWait <= 0 {
		cc.AckWait = 30 * time.Second
	}
	if cc.MaxAckPending <= 0 {
		cc.MaxAckPending = 4096
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, unavailable(err))
	}
	return &Source{js: js, cons: cons, stream: cfg.Stream, durable: cfg.Durable}, nil
}

// Fetch pulls up to max messages, waiting at most maxWait for the first.
//
// A pull the server ends by its expiry while it is still delivering loses
// what it had on the way: those messages count as delivered and come again
// only after the ack wait (nats-server 2.9 does this under load). So the
// pulls that take a backlog do not expire: what is waiting is taken with
// no-wait pulls (the server answers with what it has, then ends them), and
// only an empty stream is waited on, for one message, whose arrival ends
// the pull.
func (s *Source) Fetch(ctx context.Context, max int, maxWait time.Duration) ([]*events.Message, error) {
	if maxWait < time.Millisecond {
		maxWait = time.Millisecond
	}
	// Not a context: a pull the client abandons leaves messages already on
	// their way undelivered until the ack wait brings them again.
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	batch, err := s.cons.FetchNoWait(max)
	if err != nil {
		return nil, fmt.Errorf("natsjs: fetch: %w", unavailable(err))
	}
	out, err := s.collect(ctx, batch, nil)
	if len(out) > 0 || err != nil {
		return out, err
	}
	if batch, err = s.cons.Fetch(1, jetstream.FetchMaxWait(maxWait)); err != nil {
		return nil, fmt.Errorf("natsjs: fetch: %w", unavailable(err))
	}
	if out, err = s.collect(ctx, batch, nil); len(out) == 0 || err != nil || max == 1 {
		return out, err
	}
	// One came: take what came with it.
	if batch, err = s.cons.FetchNoWait(max - 1); err != nil {
		return out, nil // what came is delivered; the next fetch reports the error
	}
	return s.collect(ctx, batch, out)
}

// collect appends the messages of batch to out.
func (s *Source) collect(ctx context.Context, batch jetstream.MessageBatch, out []*events.Message) ([]*events.Message, error) {
	for m := range batch.Messages() {
		msg := m
		em := events.NewMessage(m.Data(), func(context.Context) error { return msg.Ack() }, func(context.Context) error { return msg.Nak() })
		em.Headers = map[string][]string(m.Headers())
		if md, err := m.Metadata(); err == nil {
			em.ID = s.stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
			em.Position = fmt.Sprintf("stream %s seq %d", s.stream, md.Sequence.Stream)
			em.Redelivered = md.NumDelivered > 1
		}
		out = append(out, em)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		if len(out) > 0 {
			return out, nil // what came is delivered; the next fetch reports the error
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("natsjs: fetch: %w", unavailable(err))
	}
	return out, nil
}

// Close does nothing: the durable consumer stays, the connection is the
// caller's.
func (s *Source) Close() error { return nil }

// Remove deletes the durable consumer (one already gone is not an error).
func (s *Source) Remove(ctx context.Context) error {
	err := s.js.DeleteConsumer(ctx, s.stream, s.durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("natsjs: delete consumer %s on stream %s: %w", s.durable, s.stream, unavailable(err))
	}
	return nil
}

// Lag is the consumer's messages not yet delivered.
func (s *Source) Lag(ctx context.Context) (int64, error) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsjs: consumer info: %w", unavailable(err))
	}
	return int64(info.NumPending), nil
}

var (
	_ events.Remover = (*Source)(nil)
	_ events.Lagger  = (*Source)(nil)
)

// SinkConfig names where a sink publishes.
type SinkConfig struct {
	Subject string
}

// Sink publishes to a subject a JetStream stream captures.
type Sink struct {
	js      jetstream.JetStream
	subject string
}

var _ events.Sink = (*Sink)(nil)

// NewSink checks that a stream captures cfg.Subject (events.ErrMissing
// otherwise: a message no stream stores would be acknowledged by nobody).
func NewSink(ctx context.Context, nc *nats.Conn, cfg SinkConfig) (*Sink, error) {
	if cfg.Subject == "" {
		return nil, fmt.Errorf("natsjs: a sink needs a subject")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	if _, err := js.StreamNameBySubject(ctx, cfg.Subject); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("natsjs: no stream captures subject %s: %w", cfg.Subject, events.ErrMissing)
		}
		return nil, fmt.Errorf("natsjs: subject %s: %w", cfg.Subject, unavailable(err))
	}
	return &Sink{js: js, subject: cfg.Subject}, nil
}

// Publish sends every record, then waits for each acknowledgement.
func (s *Sink) Publish(ctx context.Context, rs []events.Record) error {
	futures := make([]jetstream.PubAckFuture, 0, len(rs))
	for _, r := range rs {
		f, err := s.js.PublishMsgAsync(message(s.subject, r))
		if err != nil {
			return fmt.Errorf("natsjs: publish to %s: %w", s.subject, unavailable(err))
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("natsjs: publish to %s: %w", s.subject, unavailable(err))
		case <-ctx.Done():
			return fmt.Errorf("natsjs: publish to %s: %w", s.subject, ctx.Err())
		}
	}
	return nil
}

// Close does nothing: the connection is the caller's.
func (s *Sink) Close() error { return nil }

// CoreSink publishes to a core NATS subject, with no stream behind it:
// Publish returns once the server has received every record (a flush), not
// once anything stored it, so a result published while no subscriber
// listens is lost — at most once. Triggers use it only when the sink says
// durable: false, and their status warns.
type CoreSink struct {
	nc      *nats.Conn
	subject string
}

var _ events.Sink = (*CoreSink)(nil)

// flushWithin bounds a core sink's flush when the caller sets no deadline.
const flushWithin = 5 * time.Second

// NewCoreSink returns a core NATS sink on subject.
func NewCoreSink(nc *nats.Conn, subject string) (*CoreSink, error) {
	if subject == "" {
		return nil, fmt.Errorf("natsjs: a sink needs a subject")
	}
	return &CoreSink{nc: nc, subject: subject}, nil
}

// Publish sends every record, then flushes.
func (s *CoreSink) Publish(ctx context.Context, rs []events.Record) error {
	for _, r := range rs {
		if err := s.nc.PublishMsg(message(s.subject, r)); err != nil {
			return fmt.Errorf("natsjs: publish to %s: %w", s.subject, unavailable(err))
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushWithin)
		defer cancel()
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsjs: flush to %s: %w", s.subject, unavailable(err))
	}
	return nil
}

// Close does nothing: the connection is the caller's.
func (s *CoreSink) Close() error { return nil }

// message is r as a NATS message on subject, its ID as Nats-Msg-Id (the
// key JetStream deduplicates by).
func message(subject string, r events.Record) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: r.Payload, Header: nats.Header{}}
	for k, vs := range r.Headers {
		m.Header[k] = vs
	}
	if r.ID != "" {
		m.Header.Set(jetstream.MsgIDHeader, r.ID)
	}
	return m
}

// unavailable marks connection-level failures as events.ErrUnavailable.
func unavailable(err error) error {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
	}
	return err
}
