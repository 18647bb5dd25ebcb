// Package batch schedules the runtime calls of one loaded model version: it
// bounds them to the configured execution instances, queues what does not fit
// (bounded; shedding past it) and, when batching is on, concatenates queued
// requests along dim 0 into one call and splits the results back. It knows
// nothing of the registry or the serving statistics: it takes a Config and
// reports what happens to an Observer.
package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Runner runs one call: a loaded model (runtime.Model satisfies it).
type Runner interface {
	Signature() tensor.Signature
	Run(ctx context.Context, inputs []*tensor.Tensor, outputs []string) ([]*tensor.Tensor, error)
}

// Config is how a Batcher schedules.
type Config struct {
	// MaxBatchSize is the most rows per runtime call; 0 or 1 turns batching off.
	// The caller checks that the model can batch (registry.CheckBatchable).
	MaxBatchSize int
	// MaxQueueDelay is the most a request waits for batch-mates while another
	// instance runs.
	MaxQueueDelay time.Duration
	// PreferredBatchSizes are cut points for a batch.
	PreferredBatchSizes []int
	// MaxQueueSize bounds the requests waiting for an instance; past it they are
	// refused with ResourceExhausted. 0 means DefaultMaxQueueSize.
	MaxQueueSize int
	// Instances is the number of runtime calls that may run at once (at least 1).
	Instances int
}

// DefaultMaxQueueSize is the queue bound when Config sets none (as
// registry.DefaultMaxQueueSize).
const DefaultMaxQueueSize = 1024

// Observer hears what a Batcher does; its methods must be cheap and safe for
// concurrent use (*telemetry.VersionMetrics has the same methods).
type Observer interface {
	SetInstances(n int)
	SetQueueDepth(n int)
	ObserveQueueWait(d time.Duration)
	// ObserveBatch is one runtime call of rows rows.
	ObserveBatch(rows int64)
	Rejected()
	TimedOut()
}

type noObserver struct{}

func (noObserver) SetInstances(int)               {}
func (noObserver) SetQueueDepth(int)              {}
func (noObserver) ObserveQueueWait(time.Duration) {}
func (noObserver) ObserveBatch(int64)             {}
func (noObserver) Rejected()                      {}
func (noObserver) TimedOut()                      {}

// Batcher runs one loaded version: it bounds concurrent runtime calls to the
// configured instances, queues what does not fit (bounded; shedding past it),
// and, when batching is on, concatenates queued requests along dim 0 into one
// runtime call and splits the results back.
//
// Scheduling rules:
//   - A request that finds an instance free and nothing queued runs at once, in
//     the caller's goroutine: batching never adds latency at low load.
//   - Otherwise it queues. A worker takes the oldest request and every queued
//     request of the same shape (FIFO) up to maxBatchSize rows, cut at the largest
//     preferred batch size that fits.
//   - If that batch is smaller than the next preferred size (or maxBatchSize) and
//     another instance is still running, the worker waits for batch-mates until
//     the oldest request has waited maxQueueDelay. An idle model never waits.
//   - Requests whose context ends while queued are dropped and never run.
//   - A batch whose runtime call fails is re-run request by request, so one bad
//     request never fails its batch-mates.
//   - Once stop ends (the server's shutdown deadline passed), running batches
//     are cancelled and queued requests are answered without running.
type Batcher struct {
	model Runner
	// stop ends when the manager aborts: batch runs use it (they belong to no
	// single request), and queued work is refused once it has ended.
	stop      context.Context
	sig       tensor.Signature
	instances int // execution instances now (guarded by mu; the autoscaler moves it)
	started   int // worker goroutines started (guarded by mu); never fewer than instances
	maxRows   int // 1: batching off
	delay     time.Duration
	preferred []int
	queueCap  int
	obs       Observer
	log       *slog.Logger

	mu     sync.Mutex
	wake   *sync.Cond // signalled when work arrives or an instance frees
	queue  []*pending
	busy   int // instances in use: runtime calls in progress, or a worker lingering
	linger int // workers waiting for batch-mates
	// saturated is set while workers find more queued work after each batch; it
	// closes the inline path so arrivals join the next batch instead of taking
	// an instance for a call of one request.
	saturated bool
	// lastRows is the size of the latest runtime call: the wave a saturated
	// worker can expect back. Waiting for more than the load delivers would hold
	// every batch for the full maxQueueDelay.
	lastRows int64
	closed   bool
	workers  sync.WaitGroup

	// active counts requests inside submit, running or queued: the load signal
	// the autoscaler samples.
	active atomic.Int64
}

// pending is one queued request.
type pending struct {
	ctx     context.Context
	inputs  []*tensor.Tensor // in signature order
	outputs []string         // nil: all supported
	rows    int64
	key     string // requests with equal keys can share a batch
	enq     time.Time
	done    chan result // buffered 1
	state   atomic.Int32
}

const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

type result struct {
	outs  []*tensor.Tensor
	err   error
	queue time.Duration // time spent queued
}

// New starts a Batcher for model. Runs that belong to no single request (a
// batch) use stop: once it ends they are cancelled and queued work is refused.
// obs and log may be nil.
func New(stop context.Context, model Runner, cfg Config, obs Observer, log *slog.Logger) *Batcher {
	if obs == nil {
		obs = noObserver{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Batcher{
		stop:      stop,
		model:     model,
		sig:       model.Signature(),
		instances: max(1, cfg.Instances),
		maxRows:   max(1, cfg.MaxBatchSize),
		queueCap:  cfg.MaxQueueSize,
		obs:       obs,
		log:       log,
	}
	if b.queueCap <= 0 {
		b.queueCap = DefaultMaxQueueSize
	}
	if b.maxRows > 1 {
		b.delay = cfg.MaxQueueDelay
		b.preferred = slices.Clone(cfg.PreferredBatchSizes)
	}
	b.wake = sync.NewCond(&b.mu)
	b.mu.Lock()
	b.startWorkersLocked()
	b.mu.Unlock()
	b.obs.SetInstances(b.instances)
	return b
}

// startWorkersLocked starts workers until there is one per instance. Workers are
// never stopped before close: past the instance count they wait in next(), since
// b.busy bounds the runtime calls. b.mu is held.
func (b *Batcher) startWorkersLocked() {
	for b.started < b.instances {
		b.started++
		b.workers.Add(1)
		go b.worker()
	}
}

// SetInstances changes how many runtime calls may run at once. Fewer takes effect
// as running calls finish; more wakes queued work at once.
func (b *Batcher) SetInstances(n int) {
	n = max(1, n)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || n == b.instances {
		return
	}
	b.instances = n
	b.startWorkersLocked()
	b.wake.Broadcast()
	b.obs.SetInstances(n)
}

// Instances is the current number of execution instances.
func (b *Batcher) Instances() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.instances
}

// Active is the number of requests inside Submit, running or queued: the load
// signal an autoscaler samples.
func (b *Batcher) Active() int64 { return b.active.Load() }

// Submit runs one request (inputs already validated) and returns its outputs
// and how long it waited in the queue.
func (b *Batcher) Submit(ctx context.Context, inputs []*tensor.Tensor, outputs []string) ([]*tensor.Tensor, time.Duration, error) {
	b.active.Add(1)
	defer b.active.Add(-1)
	ordered := b.order(inputs)
	if b.aborted() {
		return nil, 0, errShuttingDown()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, 0, errs.New(errs.Unavailable, "model version is unloading")
	}
	if b.busy < b.instances && len(b.queue) == 0 && !b.saturated {
		// An instance is free and nobody is waiting: run now, in this goroutine.
		b.busy++
		b.mu.Unlock()
		rows := Rows(ordered)
		defer b.release()
		outs, err := b.execute(ctx, ordered, outputs, rows)
		b.mu.Lock()
		b.lastRows = rows
		b.mu.Unlock()
		return outs, 0, err
	}
	if len(b.queue) >= b.queueCap {
		b.mu.Unlock()
		b.obs.Rejected()
		return nil, 0, &errs.Error{Kind: errs.ResourceExhausted, RetryAfter: time.Second,
			Message: fmt.Sprintf("model is overloaded: %d requests queued (maxQueueSize); retry later", b.queueCap)}
	}
	p := &pending{ctx: ctx, inputs: ordered, outputs: outputs, rows: Rows(ordered), enq: time.Now(), done: make(chan result, 1)}
	if b.maxRows > 1 {
		p.key = shapeKey(ordered)
	}
	b.queue = append(b.queue, p)
	b.obs.SetQueueDepth(len(b.queue))
	b.signal()
	b.mu.Unlock()

	select {
	case r := <-p.done:
		return r.outs, r.queue, r.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(stateQueued, stateAbandoned) {
			b.mu.Lock()
			if i := slices.Index(b.queue, p); i >= 0 {
				b.queue = slices.Delete(b.queue, i, i+1)
				b.obs.SetQueueDepth(len(b.queue))
			}
			b.mu.Unlock()
			b.obs.TimedOut()
			return nil, time.Since(p.enq), errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "request %s while queued", ctxVerb(ctx.Err()))
		}
		// Already taken by a worker: its run is under way; the caller has gone.
		return nil, time.Since(p.enq), errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "request %s", ctxVerb(ctx.Err()))
	}
}

// aborted reports whether stop has ended, without taking its lock (a select on
// Done is lock-free once the channel exists).
func (b *Batcher) aborted() bool {
	select {
	case <-b.stop.Done():
		return true
	default:
		return false
	}
}

// errShuttingDown answers requests refused because the server is shutting down.
func errShuttingDown() error { return errs.New(errs.Unavailable, "server is shutting down") }

func ctxVerb(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return "canceled"
}

// release frees an instance and wakes a worker if work is waiting.
func (b *Batcher) release() {
	b.mu.Lock()
	b.busy--
	b.wakeAfterRelease()
	b.mu.Unlock()
}

// wakeAfterRelease wakes a worker for queued work after an instance frees; while
// closing, every worker, so that one waiting to drain the queue cannot miss it.
// b.mu is held.
func (b *Batcher) wakeAfterRelease() {
	switch {
	case b.closed:
		b.wake.Broadcast()
	case len(b.queue) > 0 || b.linger > 0:
		b.signal()
	}
}

// signal wakes a worker; every worker while one lingers, since the lingering one
// must see new batch-mates (and a freed instance) at once. b.mu is held.
func (b *Batcher) signal() {
	if b.linger > 0 {
		b.wake.Broadcast()
		return
	}
	b.wake.Signal()
}

func (b *Batcher) worker() {
	defer b.workers.Done()
	for {
		batch := b.next() // nil only once closed and drained
		if batch == nil {
			return
		}
		for batch != nil {
			b.runBatch(batch)
			batch = b.continueOrRelease(batch)
		}
	}
}

// continueOrRelease keeps the worker's instance and returns the next batch when
// work is queued (no gap in which a lone request could take the instance for a
// call of one). After a batch of several requests — evidence of load — it also
// holds the instance up to maxQueueDelay for the next wave of requests, as
// closed-loop clients send it right after their answers. Otherwise, or when more
// instances are busy than setInstances now allows (so that scaling down takes
// effect under sustained load, not only once the queue empties), it frees the
// instance and returns nil.
func (b *Batcher) continueOrRelease(last []*pending) []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastRows = 0
	for _, p := range last {
		b.lastRows += p.rows
	}
	batching := b.maxRows > 1 && b.delay > 0
	if len(b.queue) == 0 && batching && len(last) > 1 && !b.closed && b.busy <= b.instances {
		b.saturated = true
		b.linger++
		deadline := time.Now().Add(b.delay)
		for len(b.queue) == 0 && !b.closed {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			b.waitAtMost(wait)
		}
		b.linger--
	}
	if b.busy > b.instances {
		// Scaled down (setInstances): this instance is one too many. The load has
		// not changed, so saturated stays as the remaining workers left it.
		b.busy--
		b.wakeAfterRelease()
		return nil
	}
	if len(b.queue) > 0 {
		b.saturated = b.maxRows > 1
		if batch := b.take(); len(batch) > 0 {
			if batching && b.saturated {
				batch = b.waitForMates(batch)
			}
			b.obs.SetQueueDepth(len(b.queue))
			return batch
		}
	}
	b.saturated = false
	b.busy--
	b.wakeAfterRelease()
	return nil
}

// next blocks until it can take a batch (an instance is free and work is queued)
// and returns it with b.busy incremented; nil once closed and drained.
func (b *Batcher) next() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for !b.closed && (len(b.queue) == 0 || b.busy >= b.instances) {
			b.wake.Wait()
		}
		if len(b.queue) == 0 {
			return nil // closed and drained
		}
		if b.busy >= b.instances {
			b.wake.Wait() // closing: wait for a free instance to drain the queue
			continue
		}
		batch := b.take()
		if len(batch) == 0 {
			continue
		}
		others := b.busy
		b.busy++ // claim the instance now, so nobody takes what we wait for
		if b.maxRows > 1 && b.delay > 0 && (others > 0 || b.saturated) && !b.closed {
			batch = b.waitForMates(batch)
		}
		b.obs.SetQueueDepth(len(b.queue))
		return batch
	}
}

// take removes the oldest live request and its compatible followers (up to
// maxRows, cut at a preferred size) from the queue. b.mu is held.
func (b *Batcher) take() []*pending {
	var batch []*pending
	rows := int64(0)
	kept := b.queue[:0]
	for i, p := range b.queue {
		if p.state.Load() != stateQueued {
			continue
		}
		fits := len(batch) == 0 || (b.maxRows > 1 && p.key == batch[0].key && rows+p.rows <= int64(b.maxRows))
		if !fits {
			kept = append(kept, p)
			if b.maxRows <= 1 || rows >= int64(b.maxRows) {
				kept = append(kept, b.queue[i+1:]...)
				break
			}
			continue
		}
		if !p.state.CompareAndSwap(stateQueued, stateTaken) {
			continue // abandoned a moment ago
		}
		batch = append(batch, p)
		rows += p.rows
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	if cut := b.preferredCut(batch); cut < len(batch) {
		var back []*pending
		for _, p := range batch[cut:] {
			p.state.Store(stateQueued)
			// A caller whose context ended while we held its request could not
			// take it out of the queue; do it for it.
			if p.ctx.Err() != nil && p.state.CompareAndSwap(stateQueued, stateAbandoned) {
				continue
			}
			back = append(back, p)
		}
		b.queue = append(back, b.queue...)
		batch = batch[:cut]
		if len(back) > 0 {
			b.signal() // another instance may be free for them
		}
	}
	return batch
}

// preferredCut returns how many requests of batch to keep so its rows do not pass
// the largest preferred size that the batch reaches (whole requests only).
func (b *Batcher) preferredCut(batch []*pending) int {
	if len(b.preferred) == 0 || len(batch) < 2 {
		return len(batch)
	}
	total := int64(0)
	for _, p := range batch {
		total += p.rows
	}
	target := int64(0)
	for _, s := range b.preferred {
		if int64(s) <= total {
			target = int64(s)
		}
	}
	if target == 0 || target == total || total == int64(b.maxRows) {
		return len(batch)
	}
	rows := int64(0)
	for i, p := range batch {
		if rows+p.rows > target {
			return max(i, 1)
		}
		rows += p.rows
	}
	return len(batch)
}

// waitForMates waits (b.mu held, released while waiting) for batch-mates until
// the batch reaches its goal or the oldest request has waited maxQueueDelay, and,
// unless the batcher is saturated, stops as soon as no other instance is busy.
// The caller holds one instance (b.busy).
func (b *Batcher) waitForMates(batch []*pending) []*pending {
	goal := int64(b.maxRows)
	rows := int64(0)
	for _, p := range batch {
		rows += p.rows
	}
	for _, s := range b.preferred {
		if int64(s) > rows {
			goal = int64(s)
			break
		}
	}
	// Expect no more than the load has shown it delivers: the last call's rows
	// (at least one mate when another instance is the reason to wait).
	if b.saturated {
		goal = min(goal, b.lastRows)
	} else {
		goal = min(goal, max(b.lastRows, 2))
	}
	deadline := batch[0].enq.Add(b.delay)
	b.linger++
	defer func() { b.linger-- }()
	for rows < goal && !b.closed && (b.busy > 1 || b.saturated) {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		b.waitAtMost(wait)
		for i := 0; i < len(b.queue) && rows < goal; {
			p := b.queue[i]
			if p.key != batch[0].key || rows+p.rows > int64(b.maxRows) || !p.state.CompareAndSwap(stateQueued, stateTaken) {
				i++
				continue
			}
			batch = append(batch, p)
			rows += p.rows
			b.queue = slices.Delete(b.queue, i, i+1)
		}
	}
	return batch
}

// runBatch executes a batch taken from the queue and answers every request in it.
func (b *Batcher) runBatch(batch []*pending) {
	start := time.Now()
	if b.aborted() {
		for _, p := range batch {
			p.done <- result{err: errShuttingDown(), queue: start.Sub(p.enq)}
		}
		return
	}
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			b.obs.TimedOut()
			p.done <- result{err: errs.Wrap(errs.KindOf(err), err, "request %s while queued", ctxVerb(err)), queue: start.Sub(p.enq)}
			continue
		}
		b.obs.ObserveQueueWait(start.Sub(p.enq))
		live = append(live, p)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		p := live[0]
		outs, err := b.execute(p.ctx, p.inputs, p.outputs, p.rows)
		p.done <- result{outs: outs, err: err, queue: start.Sub(p.enq)}
		return
	}
	outs, err := b.executeBatch(live)
	if err != nil && b.aborted() {
		// Cancelled by the shutdown, not by a bad request: nothing to re-run.
		for _, p := range live {
			p.done <- result{err: errs.Wrap(errs.Unavailable, err, "server is shutting down"), queue: start.Sub(p.enq)}
		}
		return
	}
	if err != nil {
		// One request may be at fault: run each alone so the others still succeed.
		b.log.Debug("batch failed; retrying its requests one by one", "requests", len(live), "err", err)
		for _, p := range live {
			outs, err := b.execute(p.ctx, p.inputs, p.outputs, p.rows)
			p.done <- result{outs: outs, err: err, queue: start.Sub(p.enq)}
		}
		return
	}
	for i, p := range live {
		p.done <- result{outs: outs[i], queue: start.Sub(p.enq)}
	}
}

// execute is one runtime call for one request.
func (b *Batcher) execute(ctx context.Context, inputs []*tensor.Tensor, outputs []string, rows int64) ([]*tensor.Tensor, error) {
	b.obs.ObserveBatch(rows)
	return b.run(ctx, inputs, outputs)
}

// run calls the model, turning a panic into an error so that an instance is never
// lost and a worker never dies with requests in hand.
func (b *Batcher) run(ctx context.Context, inputs []*tensor.Tensor, outputs []string) (outs []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("model run panicked", "panic", r)
			outs, err = nil, errs.Wrap(errs.Internal, fmt.Errorf("panic: %v", r), "model run failed")
		}
	}()
	return b.model.Run(ctx, inputs, outputs)
}

// executeBatch concatenates the requests' inputs, runs them once and splits the
// outputs per request (each request gets the outputs it selected, in its order).
func (b *Batcher) executeBatch(batch []*pending) ([][]*tensor.Tensor, error) {
	total := int64(0)
	for _, p := range batch {
		total += p.rows
	}
	inputs := make([]*tensor.Tensor, len(batch[0].inputs))
	for i, first := range batch[0].inputs {
		t := &tensor.Tensor{Name: first.Name, DataType: first.DataType, Shape: slices.Clone(first.Shape)}
		t.Shape[0] = total
		if first.DataType == tensor.Bytes {
			for _, p := range batch {
				t.Strings = append(t.Strings, p.inputs[i].Strings...)
			}
		} else {
			n := 0
			for _, p := range batch {
				n += len(p.inputs[i].Data)
			}
			t.Data = make([]byte, 0, n)
			for _, p := range batch {
				t.Data = append(t.Data, p.inputs[i].Data...)
			}
		}
		inputs[i] = t
	}
	outputs := unionOutputs(batch)
	b.obs.ObserveBatch(total)
	// The batch belongs to no single request: one caller's cancellation must not
	// stop the others' work (their own contexts were checked just before); only
	// the shutdown's abort does.
	outs, err := b.run(b.stop, inputs, outputs)
	if err != nil {
		return nil, err
	}
	res := make([][]*tensor.Tensor, len(batch))
	off := int64(0)
	for i, p := range batch {
		res[i] = make([]*tensor.Tensor, 0, len(outs))
		for _, o := range outs {
			if p.outputs != nil && !slices.Contains(p.outputs, o.Name) {
				continue
			}
			part, err := sliceRows(o, off, p.rows, total)
			if err != nil {
				return nil, err
			}
			res[i] = append(res[i], part)
		}
		if p.outputs != nil {
			slices.SortFunc(res[i], func(x, y *tensor.Tensor) int {
				return slices.Index(p.outputs, x.Name) - slices.Index(p.outputs, y.Name)
			})
		}
		off += p.rows
	}
	return res, nil
}

// sliceRows returns rows [off, off+n) of t, whose first dim must be total.
func sliceRows(t *tensor.Tensor, off, n, total int64) (*tensor.Tensor, error) {
	if len(t.Shape) == 0 || t.Shape[0] != total {
		return nil, fmt.Errorf("output %s has shape %s, not %d rows: cannot split a batch", t.Name, tensor.ShapeString(t.Shape), total)
	}
	part := &tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: slices.Clone(t.Shape)}
	part.Shape[0] = n
	if t.DataType == tensor.Bytes {
		per := int64(len(t.Strings)) / max(total, 1)
		part.Strings = t.Strings[off*per : (off+n)*per : (off+n)*per]
		return part, nil
	}
	per := int64(len(t.Data)) / max(total, 1)
	part.Data = t.Data[off*per : (off+n)*per : (off+n)*per]
	return part, nil
}

// unionOutputs is every output any request selected; nil if one wants all.
func unionOutputs(batch []*pending) []string {
	var names []string
	for _, p := range batch {
		if p.outputs == nil {
			return nil
		}
		for _, n := range p.outputs {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// order returns inputs in signature order (validation guarantees a 1:1 match).
func (b *Batcher) order(inputs []*tensor.Tensor) []*tensor.Tensor {
	if len(inputs) < 2 {
		return inputs
	}
	out := make([]*tensor.Tensor, 0, len(inputs))
	for _, s := range b.sig.Inputs {
		for _, in := range inputs {
			if in.Name == s.Name {
				out = append(out, in)
				break
			}
		}
	}
	return out
}

// shapeKey identifies requests that can be concatenated: the same non-batch dims
// for every input (datatypes are fixed by the signature).
func shapeKey(inputs []*tensor.Tensor) string {
	var sb strings.Builder
	for _, in := range inputs {
		for _, d := range in.Shape[1:] {
			sb.WriteString(strconv.FormatInt(d, 10))
			sb.WriteByte(',')
		}
		sb.WriteByte(';')
	}
	return sb.String()
}

// waitAtMost waits on b.wake (b.mu held) until woken or d has passed.
func (b *Batcher) waitAtMost(d time.Duration) {
	t := time.AfterFunc(d, func() {
		b.mu.Lock()
		b.wake.Broadcast()
		b.mu.Unlock()
	})
	b.wake.Wait()
	t.Stop()
}

// Close stops accepting requests, lets the workers drain the queue, and waits.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.wake.Broadcast()
	b.mu.Unlock()
	b.workers.Wait()
}

// Rows is the number of rows of a request: the first input's first dim (1 for
// a scalar or no input).
func Rows(inputs []*tensor.Tensor) int64 {
	if len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return 1
	}
	return inputs[0].Shape[0]
}
