// Package eventstest is the conformance suite every events adapter passes:
// what Fetch returns, how long an empty fetch waits, redelivery of what
// was not acknowledged (and not of what was), stable message IDs, and a
// sink whose published records arrive with their headers.
package eventstest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/events"
)

// Bus is one fresh topology (unique names) on a real broker.
type Bus struct {
	// Open opens the source's consumer (again: the same durable state).
	Open func(t *testing.T) events.Source
	// Inject publishes payloads where the source reads.
	Inject func(t *testing.T, payloads ...[]byte)
	// Sink publishes where Read reads.
	Sink events.Sink
	// Read returns the next n records the sink published, in order,
	// waiting at most within.
	Read func(t *testing.T, n int, within time.Duration) []events.Record
	// Redelivery is the longest a message given back (Nak) or left
	// unacknowledged by a closed source takes to come again.
	Redelivery time.Duration
	// NoRedeliveryMark: the bus cannot tell a message read again after a
	// restart from a new one (Kafka replays offsets without a count), so
	// Redelivered is checked only for messages given back in-session.
	NoRedeliveryMark bool
	// NoHeaders: the bus carries payloads only (MQTT 3.1.1).
	NoHeaders bool
	// Burst is how many messages the in-flight test publishes at once
	// (default 3,000): a bus that queues less per consumer sets its limit.
	Burst int
}

// Run runs the suite; newBus makes a fresh Bus for each test.
func Run(t *testing.T, newBus func(t *testing.T) Bus) {
	ctx := context.Background()
	payloads := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = fmt.Appendf(nil, `{"n":%d}`, i)
		}
		return out
	}
	fetchAll := func(t *testing.T, src events.Source, n int, within time.Duration) []*events.Message {
		t.Helper()
		var got []*events.Message
		deadline := time.Now().Add(within)
		for len(got) < n && time.Now().Before(deadline) {
			ms, err := src.Fetch(ctx, n-len(got), 200*time.Millisecond)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			got = append(got, ms...)
		}
		if len(got) != n {
			t.Fatalf("fetched %d messages within %s, want %d", len(got), within, n)
		}
		return got
	}

	t.Run("FetchReturnsWhatWasPublishedInOrderUpToMax", func(t *testing.T) {
		b := newBus(t)
		src := b.Open(t)
		defer src.Close()
		b.Inject(t, payloads(10)...)
		first := fetchAll(t, src, 4, 5*time.Second)
		rest := fetchAll(t, src, 6, 5*time.Second)
		all := append(first, rest...)
		ids := map[string]bool{}
		for i, m := range all {
			if string(m.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Fatalf("message %d: %s", i, m.Payload)
			}
			if m.ID == "" || ids[m.ID] || m.Position == "" || m.Redelivered {
				t.Fatalf("message %d: id %q (seen %v) position %q redelivered %v", i, m.ID, ids[m.ID], m.Position, m.Redelivered)
			}
			ids[m.ID] = true
			if err := m.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if ms, err := src.Fetch(ctx, 4, 10*time.Millisecond); err != nil || len(ms) > 4 {
			t.Fatalf("fetch beyond max: %d, %v", len(ms), err)
		}
	})

	t.Run("AnEmptyFetchWaitsMaxWait", func(t *testing.T) {
		b := newBus(t)
		src := b.Open(t)
		defer src.Close()
		start := time.Now()
		ms, err := src.Fetch(ctx, 8, 300*time.Millisecond)
		took := time.Since(start)
		if err != nil || len(ms) != 0 {
			t.Fatalf("empty fetch: %d messages, %v", len(ms), err)
		}
		if took < 250*time.Millisecond || took > 3*time.Second {
			t.Fatalf("empty fetch took %s; want about the 300ms maxWait", took)
		}
	})

	t.Run("WhatIsNotAcknowledgedComesAgainAndWhatIsDoesNot", func(t *testing.T) {
		b := newBus(t)
		src := b.Open(t)
		b.Inject(t, payloads(4)...)
		got := fetchAll(t, src, 4, 5*time.Second)
		// 0 and 1 acknowledged, 2 given back, 3 left hanging by a closed source.
		for _, m := range got[:2] {
			if err := m.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := got[2].Nak(ctx); err != nil {
			t.Fatal(err)
		}
		src.Close()
		src = b.Open(t)
		defer src.Close()
		// Acknowledged as they come: one not acknowledged in time would
		// (rightly) come a third time.
		again := map[string]*events.Message{}
		deadline := time.Now().Add(b.Redelivery + 5*time.Second)
		for len(again) < 2 && time.Now().Before(deadline) {
			ms, err := src.Fetch(ctx, 2, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if err := m.Ack(ctx); err != nil {
					t.Fatal(err)
				}
				again[m.ID] = m
			}
		}
		for _, want := range got[2:] {
			m, ok := again[want.ID]
			if !ok || string(m.Payload) != string(want.Payload) || !m.Redelivered && !b.NoRedeliveryMark {
				t.Fatalf("redelivered: %v; want %s (id %q) again, marked redelivered", again, want.Payload, want.ID)
			}
		}
		if len(again) != 2 {
			t.Fatalf("redelivered %d distinct messages, want 2 (the acknowledged ones came again?)", len(again))
		}
		if ms, err := src.Fetch(ctx, 8, 500*time.Millisecond); err != nil || len(ms) != 0 {
			t.Fatalf("after every message was acknowledged: %d more, %v", len(ms), err)
		}
	})

	t.Run("ShortFetchesLoseNothingInFlight", func(t *testing.T) {
		// Many small pulls with a tiny wait, as a busy trigger makes: a
		// message on its way when a pull ends must still be handed over,
		// not left for the ack wait to bring again.
		b := newBus(t)
		burst := b.Burst
		if burst == 0 {
			burst = 3000
		}
		src := b.Open(t)
		defer src.Close()
		b.Inject(t, payloads(burst)...)
		got := map[string]bool{}
		deadline := time.Now().Add(b.Redelivery / 2)
		for len(got) < burst && time.Now().Before(deadline) {
			ms, err := src.Fetch(ctx, 128, 5*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.Redelivered || got[m.ID] {
					t.Fatalf("message %s came twice: a pull lost it in flight", m.ID)
				}
				got[m.ID] = true
				m.Ack(ctx)
			}
		}
		if len(got) != burst {
			t.Fatalf("%d of %d messages within %s (half the redelivery time): pulls lose messages in flight", len(got), burst, b.Redelivery/2)
		}
	})

	t.Run("TheSinkPublishesRecordsWithTheirHeaders", func(t *testing.T) {
		b := newBus(t)
		var rs []events.Record
		for i, p := range payloads(5) {
			rs = append(rs, events.Record{Payload: p, ID: fmt.Sprintf("in:%d", i), Headers: map[string][]string{"Nimbus-Source-Id": {fmt.Sprintf("in:%d", i)}}})
		}
		if err := b.Sink.Publish(ctx, rs); err != nil {
			t.Fatal(err)
		}
		got := b.Read(t, 5, 5*time.Second)
		for i, r := range got {
			if string(r.Payload) != string(rs[i].Payload) || !b.NoHeaders && !slices.Equal(r.Headers["Nimbus-Source-Id"], rs[i].Headers["Nimbus-Source-Id"]) {
				t.Fatalf("record %d: %s %v; want %s %v", i, r.Payload, r.Headers, rs[i].Payload, rs[i].Headers)
			}
		}
	})

	t.Run("LagCountsWhatWaitsAndRemoveIsIdempotent", func(t *testing.T) {
		b := newBus(t)
		src := b.Open(t)
		b.Inject(t, payloads(5)...)
		if l, ok := src.(events.Lagger); ok {
			deadline := time.Now().Add(5 * time.Second)
			var lag int64
			var err error
			for time.Now().Before(deadline) {
				if lag, err = l.Lag(ctx); err == nil && lag == 5 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil || lag != 5 {
				t.Fatalf("lag before any fetch: %d, %v; want 5", lag, err)
			}
			for _, m := range fetchAll(t, src, 5, 5*time.Second) {
				if err := m.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if lag, err = l.Lag(ctx); err != nil || lag != 0 {
				t.Fatalf("lag after all were fetched: %d, %v; want 0", lag, err)
			}
		}
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if r, ok := src.(events.Remover); ok {
			for i := range 2 {
				if err := r.Remove(ctx); err != nil {
					t.Fatalf("remove %d: %v", i+1, err)
				}
			}
		}
	})
}
