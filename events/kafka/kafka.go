// Package kafka is the Kafka adapter of package events (franz-go): a source
// in a consumer group that commits a partition's offset only up to the
// records acknowledged without a gap — a record whose result is not yet
// published holds back the commit of every later one, so a crash replays
// from the first unsettled record (at least once) — and a sink that
// produces synchronously (acks from all in-sync replicas).
//
// A topic is never created unless told to (Create). Kafka creates a group
// on its first join; that cannot be avoided.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-ai/nimbus/events"
)

// SourceConfig names what a source reads.
type SourceConfig struct {
	Brokers      []string
	Topic, Group string
	// Create makes the topic (1 partition, replication 1) when missing.
	Create bool
	// Options are extra client options (TLS, SASL, a dialer obeying the
	// egress rule).
	Options []kgo.Opt
}

// Source consumes a topic in a consumer group.
type Source struct {
	cl           *kgo.Client
	topic, group string

	mu sync.Mutex
	// parts tracks each partition's acknowledged offsets.
	parts map[int32]*partition
	// given are records given back (Nak), handed over again first.
	given []*kgo.Record
	dirty bool // offsets advanced since the last commit
}

// partition is what is settled of one partition: next is the first offset
// not yet acknowledged (what is committed), acked the acknowledged offsets
// past it.
type partition struct {
	next  int64
	acked map[int64]bool
	epoch int32
	// fetched is the offset after the last record polled (delivered to the
	// trigger), for the lag.
	fetched int64
}

var (
	_ events.Source = (*Source)(nil)
	_ events.Lagger = (*Source)(nil)
)

// NewSource joins cfg.Group on cfg.Topic (from the earliest offset when the
// group has none). A missing topic is events.ErrMissing unless cfg.Create.
func NewSource(ctx context.Context, cfg SourceConfig) (*Source, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, fmt.Errorf("kafka: a source needs brokers, a topic and a group")
	}
	if err := ensureTopic(ctx, cfg.Brokers, cfg.Topic, cfg.Create, cfg.Options); err != nil {
		return nil, err
	}
	s := &Source{topic: cfg.Topic, group: cfg.Group, parts: map[int32]*partition{}}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(cfg.Topic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) { s.commit(ctx) }),
	}, cfg.Options...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.cl = cl
	return s, nil
}

// ensureTopic checks that topic exists, creating it when create.
func ensureTopic(ctx context.Context, brokers []string, topic string, create bool, extra []kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafka: list topic %s: %w: %w", topic, events.ErrUnavailable, err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return nil
	}
	if !create {
		return fmt.Errorf("kafka: topic %s: %w (create it, or set create: true)", topic, events.ErrMissing)
	}
	resp, err := adm.CreateTopics(ctx, 1, 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %s: %w", topic, err)
	}
	return nil
}

// Fetch hands over records given back first, then polls up to limit new
// ones, waiting at most maxWait. It commits what was acknowledged since
// the last call.
func (s *Source) Fetch(ctx context.Context, limit int, maxWait time.Duration) ([]*events.Message, error) {
	s.commit(ctx)
	s.mu.Lock()
	given := s.given
	if len(given) > limit {
		given, s.given = given[:limit], given[limit:]
	} else {
		s.given = nil
	}
	s.mu.Unlock()
	if len(given) > 0 {
		return s.messages(given, true), nil
	}
	pctx, cancel := context.WithTimeout(ctx, max(maxWait, time.Millisecond))
	defer cancel()
	fetches := s.cl.PollRecords(pctx, limit)
	if fetches.IsClientClosed() {
		return nil, fmt.Errorf("kafka: %w: client closed", events.ErrUnavailable)
	}
	var errs []error
	fetches.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", t, p, err))
		}
	})
	recs := fetches.Records()
	if len(recs) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("kafka: poll: %w: %w", events.ErrUnavailable, errors.Join(errs...))
	}
	s.mu.Lock()
	for _, r := range recs {
		p := s.parts[r.Partition]
		if p == nil || r.Offset < p.next { // new, or replayed after a rebalance
			p = &partition{next: r.Offset, acked: map[int64]bool{}, epoch: r.LeaderEpoch}
			s.parts[r.Partition] = p
		}
		p.fetched = max(p.fetched, r.Offset+1)
	}
	s.mu.Unlock()
	return s.messages(recs, false), nil
}

func (s *Source) messages(recs []*kgo.Record, redelivered bool) []*events.Message {
	out := make([]*events.Message, 0, len(recs))
	for _, r := range recs {
		rec := r
		m := events.NewMessage(r.Value, func(context.Context) error { s.ack(rec); return nil },
			func(context.Context) error { s.giveBack(rec); return nil })
		m.ID = r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
		m.Position = fmt.Sprintf("topic %s partition %d offset %d", r.Topic, r.Partition, r.Offset)
		m.Redelivered = redelivered
		if len(r.Headers) > 0 {
			m.Headers = map[string][]string{}
			for _, h := range r.Headers {
				m.Headers[h.Key] = append(m.Headers[h.Key], string(h.Value))
			}
		}
		out = append(out, m)
	}
	return out
}

// ack settles r; the partition's committable offset moves past every
// record acknowledged without a gap.
func (s *Source) ack(r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[r.Partition]
	if p == nil || r.Offset < p.next {
		return
	}
	p.acked[r.Offset] = true
	for p.acked[p.next] {
		delete(p.acked, p.next)
		p.next++
		s.dirty = true
	}
}

func (s *Source) giveBack(r *kgo.Record) {
	s.mu.Lock()
	s.given = append(s.given, r)
	s.mu.Unlock()
}

// commit commits each partition's settled offset (best effort: a failed
// commit replays more after a restart, never less).
func (s *Source) commit(ctx context.Context) {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	offsets := map[string]map[int32]kgo.EpochOffset{s.topic: {}}
	for id, p := range s.parts {
		offsets[s.topic][id] = kgo.EpochOffset{Epoch: p.epoch, Offset: p.next}
	}
	s.dirty = false
	s.mu.Unlock()
	s.cl.CommitOffsetsSync(ctx, offsets, nil)
}

// Lag is the records of the topic not yet delivered to this source: per
// partition, its end offset less what was polled (or, for a partition not
// polled yet, the group's committed offset, or the start of the log).
func (s *Source) Lag(ctx context.Context) (int64, error) {
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(ctx, s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafka: end offsets of %s: %w: %w", s.topic, events.ErrUnavailable, err)
	}
	starts, err := adm.ListStartOffsets(ctx, s.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafka: start offsets of %s: %w: %w", s.topic, events.ErrUnavailable, err)
	}
	committed, err := adm.FetchOffsets(ctx, s.group)
	if err != nil {
		return 0, fmt.Errorf("kafka: offsets of group %s: %w: %w", s.group, events.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		pos := int64(0)
		if st, ok := starts.Lookup(s.topic, o.Partition); ok {
			pos = st.Offset
		}
		if c, ok := committed.Lookup(s.topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			pos = max(pos, c.At)
		}
		if p := s.parts[o.Partition]; p != nil {
			pos = max(pos, p.fetched)
		}
		lag += max(0, o.Offset-pos)
	})
	return lag, nil
}

// Close commits what was acknowledged and leaves the group.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.commit(ctx)
	s.cl.Close()
	return nil
}

// SinkConfig names where a sink produces.
type SinkConfig struct {
	Brokers []string
	Topic   string
	Options []kgo.Opt
}

// Sink produces to a topic.
type Sink struct {
	cl    *kgo.Client
	topic string
}

var _ events.Sink = (*Sink)(nil)

// NewSink checks that the topic exists (events.ErrMissing otherwise).
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, fmt.Errorf("kafka: a sink needs brokers and a topic")
	}
	if err := ensureTopic(ctx, cfg.Brokers, cfg.Topic, false, cfg.Options); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, cfg.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Sink{cl: cl, topic: cfg.Topic}, nil
}

// Publish produces every record and waits for each acknowledgement; the
// record's ID is its key.
func (s *Sink) Publish(ctx context.Context, rs []events.Record) error {
	recs := make([]*kgo.Record, len(rs))
	for i, r := range rs {
		kr := &kgo.Record{Topic: s.topic, Value: r.Payload}
		if r.ID != "" {
			kr.Key = []byte(r.ID)
		}
		for k, vs := range r.Headers {
			for _, v := range vs {
				kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
		}
		recs[i] = kr
	}
	if err := s.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafka: produce to %s: %w: %w", s.topic, events.ErrUnavailable, err)
	}
	return nil
}

// Close flushes and closes the client.
func (s *Sink) Close() error {
	s.cl.Close()
	return nil
}
