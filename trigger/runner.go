// Package trigger runs Triggers: a loop that fetches events from a source,
// maps each to an inference request, sends it through the same router and
// batcher as REST and gRPC, and publishes the result — or a dead-letter
// record naming the error — before it acknowledges the event. Delivery is
// at least once: an event is acknowledged only once its result or its
// dead-letter record is durably published. A sink that is down stops the
// loop (back-pressure) instead of dropping: what was fetched is held and
// published again, and nothing more is fetched meanwhile.
package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
)

// Inferer answers inference requests (the router).
type Inferer interface {
	Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error)
}

// Config is one running trigger.
type Config struct {
	Namespace, Name string
	// Service is the InferenceService (or model[@ref]) the events feed.
	Service, Version string
	Inferer          Inferer
	Source           events.Source
	Sink, DeadLetter events.Sink
	// Codec turns events into requests and answers into results.
	Codec Codec
	// FetchMax and FetchWait bound one pull (default 128, 5ms).
	FetchMax  int
	FetchWait time.Duration
	// Concurrency bounds the requests in flight at once (default 4).
	Concurrency int
	Logger      *slog.Logger
	// Fetched, when set, is told how many events each fetch brought in;
	// Observe, when set, is told what became of each of them. Between the
	// two, an event is in flight.
	Fetched func(n int)
	Observe func(Outcome)
	// SourceDown, when set, is told of every failed fetch (the broker is
	// unavailable) and, with nil, of the first fetch that succeeds after.
	SourceDown func(err error)
	// SinkDown, when set, is told of every failed publish to the sink
	// ("sink") or the dead-letter destination ("deadLetter") and, with nil,
	// of the first publish there that succeeds after.
	SinkDown func(which string, err error)
}

// Outcome is what became of one event that left the trigger: published and
// acknowledged (Result or DeadLetter), given back to its source because the
// service could not take it (Retried), or left unacknowledged because the
// trigger stopped before its result was published (Abandoned); the source
// delivers the last two again.
type Outcome struct {
	Result      bool // published to the sink
	DeadLetter  bool // published to the dead-letter destination
	Retried     bool
	Abandoned   bool
	Redelivered bool
	Latency     time.Duration // from receipt to acknowledgement
}

// Codec maps an event to an inference request (with its inputs; the
// trigger names the service) and the answer to a result. An error from
// Request or Result dead-letters the event with its message.
type Codec interface {
	// Request decodes m; state is handed back to Result (the decoded event).
	Request(m *events.Message) (req *serving.InferRequest, state any, err error)
	Result(state any, req *serving.InferRequest, resp *serving.InferResponse) ([]byte, error)
}

// FlatJSON is the Codec of flat JSON events: fields to input rows, output
// expressions and kept fields to a result object (package events/format).
type FlatJSON struct {
	Inputs  *format.Inputs
	Outputs *format.Outputs
}

// Request implements Codec.
func (c FlatJSON) Request(m *events.Message) (*serving.InferRequest, any, error) {
	ev, err := c.Inputs.Decode(m.Payload)
	if err != nil {
		return nil, nil, err
	}
	inputs, err := c.Inputs.Tensors(ev)
	if err != nil {
		return nil, nil, err
	}
	return &serving.InferRequest{ID: ev.ID, Inputs: inputs}, ev, nil
}

// Result implements Codec.
func (c FlatJSON) Result(state any, _ *serving.InferRequest, resp *serving.InferResponse) ([]byte, error) {
	return c.Outputs.Result(state.(format.Event), resp.Outputs)
}

// DeadLetter is the record published for an event that cannot be scored.
type DeadLetter struct {
	Error    string `json:"error"`
	Trigger  string `json:"trigger"`
	Source   string `json:"source,omitempty"` // the position of the event
	ID       string `json:"id,omitempty"`
	Payload  string `json:"payload"` // the event as received (UTF-8; invalid bytes replaced)
	FailedAt string `json:"failedAt"`
}

// Run serves cfg until ctx ends; what is in flight then is finished
// (published and acknowledged, or left unacknowledged for redelivery).
func Run(ctx context.Context, cfg Config) error {
	if cfg.FetchMax <= 0 {
		cfg.FetchMax = 128
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = 5 * time.Millisecond
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Inferer == nil || cfg.Codec == nil || cfg.Source == nil || cfg.Sink == nil || cfg.DeadLetter == nil {
		return errors.New("trigger: a service, a codec, a source, a sink and a dead-letter sink are required")
	}
	log := cfg.Logger.With("trigger", cfg.Namespace+"/"+cfg.Name)
	var backoff time.Duration
	down := false
	for ctx.Err() == nil {
		msgs, err := cfg.Source.Fetch(ctx, cfg.FetchMax, cfg.FetchWait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if cfg.SourceDown != nil {
				cfg.SourceDown(err)
			}
			down = true
			backoff = next(backoff)
			log.Warn("source unavailable; retrying", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			continue
		}
		if down && cfg.SourceDown != nil {
			cfg.SourceDown(nil)
		}
		backoff, down = 0, false
		if len(msgs) == 0 {
			continue
		}
		if cfg.Fetched != nil {
			cfg.Fetched(len(msgs))
		}
		// The batch is finished even when ctx ends: its results are
		// published and its events acknowledged, or it is left for
		// redelivery — never half-published silently.
		if retried := processBatch(context.WithoutCancel(ctx), ctx, cfg, msgs, log); retried {
			// The service could not take some events: they were given back;
			// wait before fetching them again.
			backoff = next(backoff)
			sleep(ctx, backoff)
		}
	}
	return nil
}

// scored is one event's outcome before publication.
type scored struct {
	msg    *events.Message
	result []byte // nil: dead letter (or retry)
	dead   []byte
	retry  bool // not the event's fault (the service is unavailable): give it back
}

// processBatch scores msgs with at most cfg.Concurrency requests at once,
// publishes results and dead letters (retrying while stop is not done),
// then acknowledges what was published. It reports whether some events
// were given back because the service could not take them.
func processBatch(ctx, stop context.Context, cfg Config, msgs []*events.Message, log *slog.Logger) (retried bool) {
	out := make([]scored, len(msgs))
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for i, m := range msgs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = score(ctx, cfg, m)
		}()
	}
	wg.Wait()

	var results, dead []events.Record
	for _, s := range out {
		switch {
		case s.result != nil:
			results = append(results, record(s.msg, s.result))
		case s.dead != nil:
			dead = append(dead, record(s.msg, s.dead))
		}
	}
	if !publish(ctx, stop, cfg, cfg.Sink, results, "sink", log) || !publish(ctx, stop, cfg, cfg.DeadLetter, dead, "deadLetter", log) {
		// Stopping with results unpublished: leave the events unacknowledged
		// (redelivered after the restart).
		if cfg.Observe != nil {
			for _, s := range out {
				cfg.Observe(Outcome{Abandoned: true, Redelivered: s.msg.Redelivered})
			}
		}
		return false
	}
	for _, s := range out {
		var err error
		if s.retry {
			retried = true
			err = s.msg.Nak(ctx)
		} else {
			err = s.msg.Ack(ctx)
		}
		if err != nil {
			log.Warn("cannot settle an event; it will be delivered again", "id", s.msg.ID, "err", err)
		}
		if cfg.Observe != nil {
			cfg.Observe(Outcome{Result: s.result != nil, DeadLetter: s.dead != nil, Retried: s.retry,
				Redelivered: s.msg.Redelivered, Latency: time.Since(s.msg.Received)})
		}
	}
	return retried
}

// publish retries rs with backoff until it is published or stop ends
// (false). which is "sink" or "deadLetter".
func publish(ctx, stop context.Context, cfg Config, sink events.Sink, rs []events.Record, which string, log *slog.Logger) bool {
	if len(rs) == 0 {
		return true
	}
	what := map[string]string{"sink": "sink", "deadLetter": "dead-letter destination"}[which]
	var backoff time.Duration
	failed := false
	for {
		err := sink.Publish(ctx, rs)
		if err == nil {
			if failed && cfg.SinkDown != nil {
				cfg.SinkDown(which, nil)
			}
			return true
		}
		failed = true
		if cfg.SinkDown != nil {
			cfg.SinkDown(which, err)
		}
		if stop.Err() != nil {
			return false
		}
		backoff = next(backoff)
		log.Warn("cannot publish to the "+what+"; holding the batch and retrying", "records", len(rs), "err", err, "retry_in", backoff)
		sleep(stop, backoff)
	}
}

func record(m *events.Message, payload []byte) events.Record {
	r := events.Record{Payload: payload, ID: m.ID, Headers: map[string][]string{}}
	for k, v := range m.Headers {
		r.Headers[k] = v
	}
	if m.ID != "" {
		r.Headers["Nimbus-Source-Id"] = []string{m.ID}
	}
	return r
}

// score runs one event through the service.
func score(ctx context.Context, cfg Config, m *events.Message) scored {
	s := scored{msg: m}
	dead := func(err error) scored {
		s.dead = deadLetter(cfg, m, err)
		return s
	}
	req, ev, err := cfg.Codec.Request(m)
	if err != nil {
		return dead(err)
	}
	req.Namespace, req.Model, req.Version = cfg.Namespace, cfg.Service, cfg.Version
	if req.ID == "" {
		req.ID = m.ID
	}
	// A batch the model fails on is re-run request by request by the
	// batcher, so an error here is this event's own.
	resp, err := cfg.Inferer.Infer(ctx, req)
	if err != nil {
		if rejected(err) {
			return dead(fmt.Errorf("the service rejected the event: %s", errs.PublicMessage(err)))
		}
		s.retry = true
		return s
	}
	if s.result, err = cfg.Codec.Result(ev, req, resp); err != nil {
		return dead(err)
	}
	return s
}

// rejected says whether err is the event's fault (a dead letter) rather
// than the service's (retried): a malformed or mismatched input, or a model
// that failed on this input. A service that is not found (deleted, or not
// routed yet) is not the event's fault: the event is given back.
func rejected(err error) bool {
	switch errs.KindOf(err) {
	case errs.InvalidArgument, errs.FailedPrecondition, errs.Internal:
		return true
	}
	return false
}

func deadLetter(cfg Config, m *events.Message, cause error) []byte {
	b, _ := json.Marshal(DeadLetter{
		Error: cause.Error(), Trigger: cfg.Namespace + "/" + cfg.Name, Source: m.Position, ID: m.ID,
		Payload: string(m.Payload), FailedAt: time.Now().UTC().Format(time.RFC3339Nano),
	})
	return b
}

// next is the next backoff: doubling from 50ms to 5s, with ±25% jitter.
func next(d time.Duration) time.Duration {
	d = min(max(2*d, 50*time.Millisecond), 5*time.Second)
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
