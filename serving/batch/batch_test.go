package batch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// gatedModel wraps a real ONNX Runtime model. Tests arm it to hold the next runs
// until released, so they can fill the queue deterministically; it records the
// rows of every runtime call and how many run at once. (The model and its
// outputs are real.)
type gatedModel struct {
	runtime.Model
	hold    atomic.Int32 // runs still to hold
	entered chan struct{}
	release chan struct{}
	running atomic.Int32 // runtime calls in progress
	peak    atomic.Int32 // most calls in progress at once since resetPeak

	panicOn []byte // a run whose first input contains these bytes panics

	mu      sync.Mutex
	batches []int64
	seen    [][]byte // first input's bytes per call
}

func newGated(t testing.TB, name string) *gatedModel {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "models", name+".onnx")
	m, err := onnx.New("", nil).Load(context.Background(), path, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &gatedModel{Model: m, entered: make(chan struct{}, 64), release: make(chan struct{}, 64)}
}

func (g *gatedModel) Run(ctx context.Context, in []*tensor.Tensor, out []string) ([]*tensor.Tensor, error) {
	if g.panicOn != nil && bytes.Contains(in[0].Data, g.panicOn) {
		panic("model exploded")
	}
	g.mu.Lock()
	g.batches = append(g.batches, in[0].Shape[0])
	g.seen = append(g.seen, slices.Clone(in[0].Data))
	g.mu.Unlock()
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	if g.hold.Add(-1) >= 0 {
		g.entered <- struct{}{}
		<-g.release
	} else {
		g.hold.Add(1)
	}
	return g.Model.Run(ctx, in, out)
}

// resetPeak starts a new peak measurement from the calls running now.
func (g *gatedModel) resetPeak() { g.peak.Store(g.running.Load()) }

func (g *gatedModel) calls() []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

func (g *gatedModel) sawData(data []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.seen {
		if bytes.Contains(s, data) {
			return true
		}
	}
	return false
}

func batching(maxBatch int, delay time.Duration, instances int, preferred ...int) Config {
	return Config{MaxBatchSize: maxBatch, MaxQueueDelay: delay, PreferredBatchSizes: preferred, Instances: instances}
}

func newTestBatcher(t *testing.T, g *gatedModel, cfg Config) *Batcher {
	t.Helper()
	b := New(context.Background(), g, cfg, nil, discardLog())
	t.Cleanup(b.Close)
	return b
}

func (b *Batcher) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func row(vals ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{int64(len(vals) / 4), 4}, Data: b}
}

type answer struct {
	outs []*tensor.Tensor
	err  error
}

// submitAsync submits in a goroutine; the answer arrives on the returned channel.
func submitAsync(ctx context.Context, b *Batcher, in *tensor.Tensor, outputs []string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		outs, _, err := b.Submit(ctx, []*tensor.Tensor{in}, outputs)
		ch <- answer{outs, err}
	}()
	return ch
}

func TestBatchesFormAndResultsSplitCorrectly(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(64, 0, 1))
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered // the only instance is busy now
	const n = 150
	inputs := make([]*tensor.Tensor, n)
	answers := make([]<-chan answer, n)
	for i := range n {
		inputs[i] = row(float32(i), float32(-i), float32(i)/7, 1)
		answers[i] = submitAsync(context.Background(), b, inputs[i], []string{"probs", "y"})
	}
	waitFor(t, "150 queued requests", func() bool { return b.queued() == n })
	g.release <- struct{}{}
	if a := <-first; a.err != nil {
		t.Fatal(a.err)
	}
	for i := range n {
		a := <-answers[i]
		if a.err != nil {
			t.Fatalf("request %d: %v", i, a.err)
		}
		want, err := g.Model.Run(context.Background(), []*tensor.Tensor{inputs[i]}, []string{"probs", "y"})
		if err != nil {
			t.Fatal(err)
		}
		if len(a.outs) != 2 || a.outs[0].Name != "probs" || a.outs[1].Name != "y" {
			t.Fatalf("request %d outputs: %v", i, names(a.outs))
		}
		for j := range want {
			if !bytes.Equal(a.outs[j].Data, want[j].Data) || fmt.Sprint(a.outs[j].Shape) != "[1 3]" {
				t.Fatalf("request %d output %s differs from its own unbatched run", i, want[j].Name)
			}
		}
	}
	// One held call, then the 150 queued rows in batches of at most 64.
	if got := g.calls(); fmt.Sprint(got) != "[1 64 64 22]" {
		t.Errorf("runtime calls by rows = %v, want [1 64 64 22]", got)
	}
}

func names(ts []*tensor.Tensor) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func TestBatchingOffRunsOneRequestPerCall(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, Config{})
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered
	var answers []<-chan answer
	for i := range 5 {
		answers = append(answers, submitAsync(context.Background(), b, row(float32(i), 0, 0, 0), nil))
	}
	waitFor(t, "queued", func() bool { return b.queued() == 5 })
	g.release <- struct{}{}
	<-first
	for _, a := range answers {
		if r := <-a; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 1 1 1 1 1]" {
		t.Errorf("calls = %v", got)
	}
}

func TestPreferredBatchSizes(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(8, 0, 1, 4))
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered
	var answers []<-chan answer
	for i := range 6 {
		answers = append(answers, submitAsync(context.Background(), b, row(float32(i), 0, 0, 0), nil))
	}
	waitFor(t, "queued", func() bool { return b.queued() == 6 })
	g.release <- struct{}{}
	<-first
	for _, a := range answers {
		if r := <-a; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 4 2]" {
		t.Errorf("calls = %v, want [1 4 2] (cut at the preferred size 4)", got)
	}
}

// TestBadRequestNeverFailsItsBatchMates: an index out of range makes ONNX Runtime
// fail the whole batch; the batcher re-runs each request alone.
func TestBadRequestNeverFailsItsBatchMates(t *testing.T) {
	g := newGated(t, "lookup")
	b := newTestBatcher(t, g, batching(16, 0, 1))
	idx := func(v int64) *tensor.Tensor {
		d := make([]byte, 8)
		binary.LittleEndian.PutUint64(d, uint64(v))
		return &tensor.Tensor{Name: "idx", DataType: tensor.Int64, Shape: []int64{1, 1}, Data: d}
	}
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, idx(0), nil)
	<-g.entered
	good1 := submitAsync(context.Background(), b, idx(3), nil)
	bad := submitAsync(context.Background(), b, idx(99), nil)
	good2 := submitAsync(context.Background(), b, idx(9), nil)
	waitFor(t, "queued", func() bool { return b.queued() == 3 })
	g.release <- struct{}{}
	<-first
	for i, ch := range []<-chan answer{good1, good2} {
		a := <-ch
		if a.err != nil {
			t.Fatalf("good request %d failed with its bad batch-mate: %v", i, a.err)
		}
	}
	if a := <-bad; a.err == nil {
		t.Fatal("the out-of-range request succeeded")
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 3 1 1 1]" {
		t.Errorf("calls = %v, want the batch of 3 then each alone", got)
	}
}

func TestQueuedRequestsThatExpireNeverRun(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(8, 0, 1))
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered
	dctx, cancel1 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel1()
	cctx, cancel2 := context.WithCancel(context.Background())
	expiring := submitAsync(dctx, b, row(111, 111, 111, 111), nil)
	canceled := submitAsync(cctx, b, row(222, 222, 222, 222), nil)
	kept := submitAsync(context.Background(), b, row(333, 333, 333, 333), nil)
	waitFor(t, "queued", func() bool { return b.queued() == 3 })
	cancel2()
	a := <-expiring
	if !errors.Is(a.err, context.DeadlineExceeded) || errs.KindOf(a.err) != errs.DeadlineExceeded {
		t.Errorf("expired request: %v", a.err)
	}
	if a := <-canceled; errs.KindOf(a.err) != errs.Canceled {
		t.Errorf("canceled request: %v", a.err)
	}
	waitFor(t, "abandoned requests leave the queue", func() bool { return b.queued() == 1 })
	g.release <- struct{}{}
	<-first
	if a := <-kept; a.err != nil {
		t.Fatal(a.err)
	}
	for _, v := range []float32{111, 222} {
		if g.sawData(row(v, v, v, v).Data) {
			t.Errorf("request %v ran after it was dropped", v)
		}
	}
}

func TestFullQueueSheds(t *testing.T) {
	g := newGated(t, "mlp")
	cfg := batching(4, 0, 1)
	cfg.MaxQueueSize = 2
	b := newTestBatcher(t, g, cfg)
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered
	q1 := submitAsync(context.Background(), b, row(1, 0, 0, 0), nil)
	q2 := submitAsync(context.Background(), b, row(2, 0, 0, 0), nil)
	waitFor(t, "queue full", func() bool { return b.queued() == 2 })
	_, _, err := b.Submit(context.Background(), []*tensor.Tensor{row(3, 0, 0, 0)}, nil)
	if errs.KindOf(err) != errs.ResourceExhausted || errs.RetryAfterOf(err) <= 0 {
		t.Fatalf("over the queue bound: %v (retry after %v)", err, errs.RetryAfterOf(err))
	}
	g.release <- struct{}{}
	for _, ch := range []<-chan answer{first, q1, q2} {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
}

// TestWaitsForBatchMatesWhileAnotherInstanceRuns: with two instances, a free
// worker whose batch is short waits for batch-mates while the other instance runs.
func TestWaitsForBatchMatesWhileAnotherInstanceRuns(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(2, 10*time.Second, 2))
	g.hold.Store(2)
	a1 := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	a2 := submitAsync(context.Background(), b, row(0, 0, 0, 1), nil)
	<-g.entered
	<-g.entered // both instances busy
	r1 := submitAsync(context.Background(), b, row(1, 1, 1, 1), nil)
	waitFor(t, "r1 queued", func() bool { return b.queued() == 1 })
	g.release <- struct{}{} // one instance frees: it takes r1 and waits for a mate
	waitFor(t, "r1 taken", func() bool { return b.queued() == 0 })
	r2 := submitAsync(context.Background(), b, row(2, 2, 2, 2), nil)
	for _, ch := range []<-chan answer{r1, r2} {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	g.release <- struct{}{} // the other held run
	<-a1
	<-a2
	if got := g.calls(); fmt.Sprint(got) != "[1 1 2]" {
		t.Errorf("calls = %v, want r1 and r2 in one batch of 2", got)
	}
}

// TestIdleModelNeverWaits: a lone request on an idle model runs at once, even
// with a long maxQueueDelay (its deadline is far shorter than the delay).
func TestIdleModelNeverWaits(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(64, time.Hour, 1))
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := b.Submit(ctx, []*tensor.Tensor{row(float32(i), 0, 0, 0)}, nil)
		cancel()
		if err != nil {
			t.Fatalf("request %d on an idle model: %v", i, err)
		}
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 1 1]" {
		t.Errorf("calls = %v", got)
	}
}

// TestNextWaveAfterABurstFormsOneBatch: after a batch of several requests the
// worker keeps its instance for up to maxQueueDelay and expects a wave as large
// as that batch, so the callers' next wave (sent one by one, as closed-loop
// clients do) runs as one batch, not as a call of one followed by the rest.
func TestNextWaveAfterABurstFormsOneBatch(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, batching(8, time.Hour, 1))
	g.hold.Store(1)
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered
	var burst []<-chan answer
	for i := range 3 {
		burst = append(burst, submitAsync(context.Background(), b, row(float32(i+1), 0, 0, 0), nil))
	}
	waitFor(t, "queued", func() bool { return b.queued() == 3 })
	g.release <- struct{}{}
	for _, ch := range append(burst, first) {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	var wave []<-chan answer
	for i := range 3 {
		wave = append(wave, submitAsync(context.Background(), b, row(float32(10+i), 0, 0, 0), nil))
		waitFor(t, "the wave request reached the batcher", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.queue) == 0 // taken by the waiting worker
		})
	}
	for _, ch := range wave {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 3 3]" {
		t.Errorf("calls = %v, want the held call, the burst of 3, then the wave of 3 as one batch", got)
	}
}

func TestBatchingEveryDatatype(t *testing.T) {
	g := newGated(t, "dtypes")
	b := newTestBatcher(t, g, batching(8, 0, 1))
	mk := func(seed byte) []*tensor.Tensor {
		var ins []*tensor.Tensor
		for _, s := range g.Signature().Inputs {
			tt := &tensor.Tensor{Name: s.Name, DataType: s.DataType, Shape: []int64{1, 2}}
			if s.DataType == tensor.Bytes {
				tt.Strings = [][]byte{{'a', seed}, {'b', seed, seed}}
			} else {
				tt.Data = bytes.Repeat([]byte{seed & 1}, 2*s.DataType.Size()) // 0/1 is valid for BOOL too
				if s.DataType != tensor.Bool {
					tt.Data[0] = seed
				}
			}
			ins = append(ins, tt)
		}
		return ins
	}
	g.hold.Store(1)
	first := make(chan answer, 1)
	go func() { o, _, err := b.Submit(context.Background(), mk(0), nil); first <- answer{o, err} }()
	<-g.entered
	chans := make([]chan answer, 3)
	for i := range chans {
		chans[i] = make(chan answer, 1)
		go func() { o, _, err := b.Submit(context.Background(), mk(byte(i+1)), nil); chans[i] <- answer{o, err} }()
	}
	waitFor(t, "queued", func() bool { return b.queued() == 3 })
	g.release <- struct{}{}
	<-first
	for i, ch := range chans {
		a := <-ch
		if a.err != nil {
			t.Fatal(a.err)
		}
		want := mk(byte(i + 1))
		for j, o := range a.outs {
			if o.DataType == tensor.Bytes {
				if fmt.Sprint(o.Strings) != fmt.Sprint(want[j].Strings) {
					t.Errorf("request %d %s = %q", i, o.Name, o.Strings)
				}
			} else if !bytes.Equal(o.Data, want[j].Data) {
				t.Errorf("request %d %s = %v, want %v", i, o.Name, o.Data, want[j].Data)
			}
		}
	}
	if got := g.calls(); fmt.Sprint(got) != "[1 3]" {
		t.Errorf("calls = %v", got)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestPanickingModelLosesNoInstance: a panic inside the runtime becomes that
// request's error, on the inline path and in a worker, and the instance keeps
// serving (a leaked instance would queue every later request forever).
func TestPanickingModelLosesNoInstance(t *testing.T) {
	g := newGated(t, "mlp")
	bad := row(666, 666, 666, 666)
	g.panicOn = bad.Data
	b := newTestBatcher(t, g, batching(8, 0, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := b.Submit(ctx, []*tensor.Tensor{bad}, nil); errs.KindOf(err) != errs.Internal {
		t.Fatalf("inline panic: %v", err)
	}
	if _, _, err := b.Submit(ctx, []*tensor.Tensor{row(1, 2, 3, 4)}, nil); err != nil {
		t.Fatalf("after an inline panic: %v", err)
	}
	// In a worker: the panicking request is batched with a good one; the batch
	// fails, both re-run alone, only the bad one fails.
	g.hold.Store(1)
	first := submitAsync(ctx, b, row(0, 0, 0, 0), nil)
	<-g.entered
	badCh := submitAsync(ctx, b, bad, nil)
	goodCh := submitAsync(ctx, b, row(5, 6, 7, 8), nil)
	waitFor(t, "queued", func() bool { return b.queued() == 2 })
	g.release <- struct{}{}
	if a := <-first; a.err != nil {
		t.Fatal(a.err)
	}
	if a := <-badCh; errs.KindOf(a.err) != errs.Internal {
		t.Errorf("worker panic: %v", a.err)
	}
	if a := <-goodCh; a.err != nil {
		t.Errorf("good batch-mate of a panicking request: %v", a.err)
	}
	if _, _, err := b.Submit(ctx, []*tensor.Tensor{row(1, 2, 3, 4)}, nil); err != nil {
		t.Fatalf("after a worker panic: %v", err)
	}
}

// TestCloseDrainsQueueWhileCallersHoldInstances: close waits for queued work even
// when the instances are held by inline callers that finish in any order.
func TestCloseDrainsQueueWhileCallersHoldInstances(t *testing.T) {
	for range 3 { // which held call finishes first varies; any order must drain
		g := newGated(t, "mlp")
		b := New(context.Background(), g, Config{Instances: 2}, nil, discardLog())
		g.hold.Store(2)
		held := []<-chan answer{submitAsync(context.Background(), b, row(0, 0, 0, 0), nil), submitAsync(context.Background(), b, row(0, 0, 0, 1), nil)}
		<-g.entered
		<-g.entered
		q := []<-chan answer{submitAsync(context.Background(), b, row(1, 0, 0, 0), nil), submitAsync(context.Background(), b, row(2, 0, 0, 0), nil)}
		waitFor(t, "queued", func() bool { return b.queued() == 2 })
		closed := make(chan struct{})
		go func() { b.Close(); close(closed) }()
		g.release <- struct{}{}
		g.release <- struct{}{}
		<-held[0]
		<-held[1]
		for _, ch := range q {
			if a := <-ch; a.err != nil {
				t.Fatal(a.err)
			}
		}
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("close never returned: a worker missed the wake-up to drain")
		}
	}
}

// TestFewerInstancesTakeEffectUnderLoad: setInstances(1) under sustained load
// (closed-loop callers keep the queue full) brings the runtime calls in progress
// down to one. A worker finishing a call must give its instance back while more
// are busy than the count allows, even with work queued.
func TestFewerInstancesTakeEffectUnderLoad(t *testing.T) {
	g := newGated(t, "mlp")
	b := newTestBatcher(t, g, Config{Instances: 4})
	const callers = 16
	g.hold.Store(1 << 30) // every call waits for a release
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { // before b.close (cleanups run last-registered first)
		cancel()
		g.hold.Store(-1 << 30)
		close(g.release)
		wg.Wait()
	})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := b.Submit(ctx, []*tensor.Tensor{row(float32(i), 0, 0, 0)}, nil); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	busy := func(running, queued int) func() bool {
		return func() bool { return int(g.running.Load()) == running && b.queued() == queued }
	}
	// Four inline calls; once they finish the workers take over the queue and
	// keep their instances while it stays full.
	waitFor(t, "4 calls running, 12 queued", busy(4, callers-4))
	for range 4 {
		<-g.entered
	}
	for range 4 { // all four held calls are inline ones: no worker can start yet
		g.release <- struct{}{}
	}
	for range 4 {
		<-g.entered // the workers' calls
	}
	waitFor(t, "4 worker calls running, 12 queued", busy(4, callers-4))

	b.SetInstances(1)
	for range 3 {
		g.release <- struct{}{}
	}
	waitFor(t, "1 call running after setInstances(1)", busy(1, callers-1))
	// From now on one call at a time, however long the queue stays full.
	g.resetPeak()
	for range 10 {
		g.release <- struct{}{}
		<-g.entered
	}
	if p := g.peak.Load(); p != 1 {
		t.Fatalf("%d calls ran at once with 1 instance", p)
	}
}

// TestAbortCancelsRunningBatchAndAnswersQueued: once stop ends (the shutdown's
// drain deadline passed), a batch in its runtime call is cancelled — and not
// re-run request by request — and requests still queued are answered without
// running; both get Unavailable.
func TestAbortCancelsRunningBatchAndAnswersQueued(t *testing.T) {
	g := newGated(t, "mlp")
	stop, abort := context.WithCancel(context.Background())
	defer abort()
	b := New(stop, g, batching(2, 0, 1), nil, discardLog())
	t.Cleanup(b.Close)

	g.hold.Store(2) // the request run alone, then the first batch
	first := submitAsync(context.Background(), b, row(0, 0, 0, 0), nil)
	<-g.entered // the only instance is busy
	var batched, queued []<-chan answer
	for i := range 2 {
		batched = append(batched, submitAsync(context.Background(), b, row(float32(i+1), 0, 0, 0), nil))
	}
	waitFor(t, "2 queued requests", func() bool { return b.queued() == 2 })
	g.release <- struct{}{}
	if a := <-first; a.err != nil {
		t.Fatal(a.err)
	}
	<-g.entered // the batch of two is in its runtime call
	for i := range 3 {
		queued = append(queued, submitAsync(context.Background(), b, row(float32(i+10), 0, 0, 0), nil))
	}
	waitFor(t, "3 more queued requests", func() bool { return b.queued() == 3 })

	abort()
	g.release <- struct{}{}
	for i, ch := range append(batched, queued...) {
		a := <-ch
		if errs.KindOf(a.err) != errs.Unavailable || !strings.Contains(errs.PublicMessage(a.err), "shutting down") {
			t.Errorf("request %d after abort: %v, want Unavailable: server is shutting down", i, a.err)
		}
	}
	// One call alone, one batch of two (cancelled); nothing re-run, nothing run from the queue.
	if got := g.calls(); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("runtime calls by rows = %v, want [1 2]", got)
	}
	if _, _, err := b.Submit(context.Background(), []*tensor.Tensor{row(1, 2, 3, 4)}, nil); errs.KindOf(err) != errs.Unavailable {
		t.Errorf("a request after abort: %v, want Unavailable", err)
	}
}
