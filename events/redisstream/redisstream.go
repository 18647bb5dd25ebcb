// Package redisstream is the Redis Streams adapter of package events: a
// source reading a stream through a consumer group (XREADGROUP), which
// acknowledges with XACK, takes back its own unacknowledged entries when it
// opens, and claims (XAUTOCLAIM) entries another consumer of the group left
// idle longer than the ack wait — a consumer that died; and a sink that
// appends with XADD. An entry's event is its "payload" field; a record's
// headers travel as "h:NAME" fields.
//
// The stream and the group are never created unless told to (Create).
package redisstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nimbus-ai/nimbus/events"
)

// PayloadField is the entry field that holds an event.
const PayloadField = "payload"

// headerPrefix marks the entry fields that carry a record's headers.
const headerPrefix = "h:"

// SourceConfig names what a source reads.
type SourceConfig struct {
	Stream, Group, Consumer string
	// Create makes the stream and the group (reading from the start of the
	// stream) when they do not exist.
	Create bool
	// AckWait is how long an entry stays with a consumer that does not
	// acknowledge it before another may claim it (default 30s).
	AckWait time.Duration
}

// Source reads a stream through a consumer group.
type Source struct {
	rdb *redis.Client
	cfg SourceConfig

	mu sync.Mutex
	// ownDone: this consumer's entries left from before it opened have
	// been handed over again.
	ownDone bool
	// given are the ids given back (Nak) to hand over again first.
	given []string
}

var _ events.Source = (*Source)(nil)

// NewSource checks (or, with Create, makes) the stream and the group.
func NewSource(ctx context.Context, rdb *redis.Client, cfg SourceConfig) (*Source, error) {
	if cfg.Stream == "" || cfg.Group == "" || cfg.Consumer == "" {
		return nil, fmt.Errorf("redisstream: a source needs a stream, a group and a consumer name")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	groups, err := rdb.XInfoGroups(ctx, cfg.Stream).Result()
	switch {
	case err != nil && strings.Contains(err.Error(), "no such key"):
		if !cfg.Create {
			return nil, fmt.Errorf("redisstream: stream %s: %w (create it, or set create: true)", cfg.Stream, events.ErrMissing)
		}
	case err != nil:
		return nil, fmt.Errorf("redisstream: stream %s: %w", cfg.Stream, unavailable(err))
	}
	found := false
	for _, g := range groups {
		found = found || g.Name == cfg.Group
	}
	if !found {
		if !cfg.Create {
			return nil, fmt.Errorf("redisstream: group %s on stream %s: %w (create it, or set create: true)", cfg.Group, cfg.Stream, events.ErrMissing)
		}
		if err := rdb.XGroupCreateMkStream(ctx, cfg.Stream, cfg.Group, "0").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			return nil, fmt.Errorf("redisstream: create group %s on %s: %w", cfg.Group, cfg.Stream, unavailable(err))
		}
	}
	return &Source{rdb: rdb, cfg: cfg}, nil
}

// Fetch hands over, in this order: entries given back, this consumer's
// entries from before it opened, entries idle past the ack wait at other
// consumers, then new entries (waiting at most maxWait for them).
func (s *Source) Fetch(ctx context.Context, limit int, maxWait time.Duration) ([]*events.Message, error) {
	s.mu.Lock()
	given := s.given
	s.given = nil
	ownDone := s.ownDone
	s.mu.Unlock()
	if len(given) > 0 {
		ms, err := s.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: s.cfg.Stream, Group: s.cfg.Group, Consumer: s.cfg.Consumer, MinIdle: 0, Messages: given}).Result()
		if err != nil {
			s.giveBack(given...)
			return nil, fmt.Errorf("redisstream: claim given-back entries: %w", unavailable(err))
		}
		if len(ms) > 0 {
			return s.messages(ms, true), nil
		}
	}
	if !ownDone {
		ms, err := s.read(ctx, "0", limit, 0)
		if err != nil {
			return nil, err
		}
		if len(ms) > 0 {
			return s.messages(ms, true), nil
		}
		s.mu.Lock()
		s.ownDone = true
		s.mu.Unlock()
	}
	claimed, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: s.cfg.Stream, Group: s.cfg.Group, Consumer: s.cfg.Consumer,
		MinIdle: s.cfg.AckWait, Start: "0-0", Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstream: autoclaim: %w", unavailable(err))
	}
	if len(claimed) > 0 {
		return s.messages(claimed, true), nil
	}
	ms, err := s.read(ctx, ">", limit, max(maxWait, time.Millisecond))
	if err != nil {
		return nil, err
	}
	return s.messages(ms, false), nil
}

// read is XREADGROUP from id ("0": this consumer's pending entries, ">":
// new ones), blocking up to block for new ones.
func (s *Source) read(ctx context.Context, id string, count int, block time.Duration) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{Group: s.cfg.Group, Consumer: s.cfg.Consumer, Streams: []string{s.cfg.Stream, id}, Count: int64(count), Block: block}
	if block == 0 {
		args.Block = -1 // no BLOCK argument: answer at once
	}
	res, err := s.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("redisstream: read %s: %w", s.cfg.Stream, unavailable(err))
	}
	var out []redis.XMessage
	for _, st := range res {
		out = append(out, st.Messages...)
	}
	return out, nil
}

func (s *Source) messages(ms []redis.XMessage, redelivered bool) []*events.Message {
	out := make([]*events.Message, 0, len(ms))
	for _, m := range ms {
		id := m.ID
		payload, _ := m.Values[PayloadField].(string)
		em := events.NewMessage([]byte(payload),
			func(ctx context.Context) error {
				if err := s.rdb.XAck(ctx, s.cfg.Stream, s.cfg.Group, id).Err(); err != nil {
					return fmt.Errorf("redisstream: ack %s: %w", id, unavailable(err))
				}
				return nil
			},
			func(context.Context) error { s.giveBack(id); return nil })
		em.ID = s.cfg.Stream + ":" + id
		em.Position = fmt.Sprintf("stream %s entry %s", s.cfg.Stream, id)
		em.Redelivered = redelivered
		for k, v := range m.Values {
			if name, ok := strings.CutPrefix(k, headerPrefix); ok {
				if sv, ok := v.(string); ok {
					if em.Headers == nil {
						em.Headers = map[string][]string{}
					}
					em.Headers[name] = []string{sv}
				}
			}
		}
		out = append(out, em)
	}
	return out
}

func (s *Source) giveBack(ids ...string) {
	s.mu.Lock()
	s.given = append(s.given, ids...)
	s.mu.Unlock()
}

// Close does nothing: the group keeps the consumer's pending entries; the
// client is the caller's.
func (s *Source) Close() error { return nil }

// Remove deletes this consumer from its group (the group stays: others
// may read through it). Call it once what it was handed is settled: Redis
// drops the consumer's pending entries with it.
func (s *Source) Remove(ctx context.Context) error {
	if err := s.rdb.XGroupDelConsumer(ctx, s.cfg.Stream, s.cfg.Group, s.cfg.Consumer).Err(); err != nil && !strings.Contains(err.Error(), "no such key") && !strings.Contains(err.Error(), "NOGROUP") {
		return fmt.Errorf("redisstream: delete consumer %s of group %s: %w", s.cfg.Consumer, s.cfg.Group, unavailable(err))
	}
	return nil
}

// Lag is the group's entries not yet delivered (Redis 7; -1 where the
// server cannot tell).
func (s *Source) Lag(ctx context.Context) (int64, error) {
	groups, err := s.rdb.XInfoGroups(ctx, s.cfg.Stream).Result()
	if err != nil {
		return 0, fmt.Errorf("redisstream: stream %s: %w", s.cfg.Stream, unavailable(err))
	}
	for _, g := range groups {
		if g.Name == s.cfg.Group {
			return g.Lag, nil
		}
	}
	return 0, fmt.Errorf("redisstream: group %s on stream %s: %w", s.cfg.Group, s.cfg.Stream, events.ErrMissing)
}

var (
	_ events.Remover = (*Source)(nil)
	_ events.Lagger  = (*Source)(nil)
)

// SinkConfig names where a sink appends.
type SinkConfig struct {
	Stream string
	// MaxLen, when set, trims the stream to about that many entries.
	MaxLen int64
}

// Sink appends records to a stream.
type Sink struct {
	rdb *redis.Client
	cfg SinkConfig
}

var _ events.Sink = (*Sink)(nil)

// NewSink returns a sink on cfg.Stream (appending creates the stream, as
// Redis does: there is no topology to check).
func NewSink(rdb *redis.Client, cfg SinkConfig) (*Sink, error) {
	if cfg.Stream == "" {
		return nil, fmt.Errorf("redisstream: a sink needs a stream")
	}
	return &Sink{rdb: rdb, cfg: cfg}, nil
}

// Publish appends every record in one pipeline (MULTI/EXEC); Redis has
// answered for each when it returns.
func (s *Sink) Publish(ctx context.Context, rs []events.Record) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range rs {
			values := []any{PayloadField, r.Payload}
			for k, vs := range r.Headers {
				if len(vs) > 0 {
					values = append(values, headerPrefix+k, vs[0])
				}
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.cfg.Stream, Values: values, MaxLen: s.cfg.MaxLen, Approx: s.cfg.MaxLen > 0})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstream: append to %s: %w", s.cfg.Stream, unavailable(err))
	}
	return nil
}

// Close does nothing: the client is the caller's.
func (s *Sink) Close() error { return nil }

// unavailable marks connection failures as events.ErrUnavailable.
func unavailable(err error) error {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, redis.ErrClosed) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
	}
	return err
}
