package serving_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/mlpgen"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// countingRuntime wraps the real ONNX runtime and counts loads.
type countingRuntime struct {
	runtime.Runtime
	loads     atomic.Int32
	pathLoads atomic.Int32  // loads that read the file themselves (not from verified bytes)
	gate      chan struct{} // if set, loads wait for it (to pile up concurrent requests)
	runs      *runGate      // if set, models' runs go through it
}

func (c *countingRuntime) Load(ctx context.Context, path string, opts runtime.Options) (runtime.Model, error) {
	c.pathLoads.Add(1)
	return c.wrap(func() (runtime.Model, error) { return c.Runtime.Load(ctx, path, opts) })
}

// LoadBytes is how the manager loads (runtime.BytesLoader): from the bytes
// it read and verified.
func (c *countingRuntime) LoadBytes(ctx context.Context, data []byte, opts runtime.Options) (runtime.Model, error) {
	return c.wrap(func() (runtime.Model, error) { return c.Runtime.(runtime.BytesLoader).LoadBytes(ctx, data, opts) })
}

func (c *countingRuntime) wrap(load func() (runtime.Model, error)) (runtime.Model, error) {
	c.loads.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	m, err := load()
	if err != nil || c.runs == nil {
		return m, err
	}
	return &heldModel{Model: m, h: c.runs}, nil
}

// Init initializes the real runtime (so measured costs leave its setup out).
func (c *countingRuntime) Init() error { return c.Runtime.(*onnx.Runtime).Init() }

func (c *countingRuntime) Version() string { return c.Runtime.(*onnx.Runtime).Version() }

// runGate counts the runs of a countingRuntime's models and, while closed,
// holds them: tests pile up requests behind it on purpose.
type runGate struct {
	mu            sync.Mutex
	cond          *sync.Cond
	open          bool
	runs, running int
	peak          int
	fail          error            // if set, runs fail with it
	last          []*tensor.Tensor // the inputs of the last run
}

func newRunGate(open bool) *runGate {
	g := &runGate{open: open}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *runGate) set(open bool) {
	g.mu.Lock()
	g.open = open
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *runGate) stats() (runs, running, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs, g.running, g.peak
}

type heldModel struct {
	runtime.Model
	h *runGate
}

func (m *heldModel) Run(ctx context.Context, in []*tensor.Tensor, out []string) ([]*tensor.Tensor, error) {
	g := m.h
	g.mu.Lock()
	g.runs++
	g.last = in
	g.running++
	g.peak = max(g.peak, g.running)
	for !g.open {
		g.cond.Wait()
	}
	fail := g.fail
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	if fail != nil {
		return nil, fail
	}
	return m.Model.Run(ctx, in, out)
}

type env struct {
	reg      *registry.Registry
	blobs    *blob.FS
	rt       *countingRuntime
	mgr      *serving.Manager
	now      atomic.Int64
	verifies atomic.Int32 // artifact reads (each hashed whole) the manager asked for
}

// countingArtifacts counts the manager's artifact verifications.
type countingArtifacts struct {
	*blob.FS
	n *atomic.Int32
}

func (c countingArtifacts) Verify(ctx context.Context, sha256 string) error {
	c.n.Add(1)
	return c.FS.Verify(ctx, sha256)
}

func (c countingArtifacts) ReadVerified(ctx context.Context, sha256 string) ([]byte, error) {
	c.n.Add(1)
	return c.FS.ReadVerified(ctx, sha256)
}

func newEnv(t testing.TB) *env { t.Helper(); return newEnvWith(t, nil, nil) }

// newEnvWith builds a manager over a real registry and the real runtime; runs,
// if set, gates and counts model runs; opts adjusts the manager's options.
func newEnvWith(t testing.TB, runs *runGate, opts func(*serving.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(context.Background(), dir+"/nimbus.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := blob.NewFS(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{blobs: blobs, rt: &countingRuntime{Runtime: onnx.New("", nil), runs: runs}}
	e.now.Store(time.Now().UnixNano())
	e.reg = registry.New(store, blobs, map[string]runtime.Inspector{"onnx": onnx.Inspector{}}, nil)
	o := serving.Options{
		Runtimes: []runtime.Runtime{e.rt},
		Now:      func() time.Time { return time.Unix(0, e.now.Load()) },
	}
	if opts != nil {
		opts(&o)
	}
	e.mgr = serving.NewManager(e.reg, countingArtifacts{blobs, &e.verifies}, o)
	// Wired as internal/system wires the server.
	e.reg.OnChange(func(c registry.Change) {
		switch c.Kind {
		case registry.VersionDeleted, registry.ServingChanged:
			e.mgr.Forget(c.Namespace, c.Model, c.Version, false)
		case registry.ModelDeleted:
			e.mgr.Forget(c.Namespace, c.Model, 0, true)
		default:
			e.mgr.Invalidate(c.Namespace, c.Model)
		}
	})
	t.Cleanup(func() { e.mgr.Close() })
	return e
}

func (e *env) push(t testing.TB, ns, name, model string, aliases ...string) registry.Version {
	t.Helper()
	f, err := os.Open(testutil.Model(model))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := e.reg.PutBlob(context.Background(), f, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.reg.CreateVersion(context.Background(), registry.CreateVersionRequest{Namespace: ns, Model: name, SHA256: info.SHA256, Aliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func f32(name string, shape []int64, vals ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return &tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

func TestInferMatchesRawRuntime(t *testing.T) {
	e := newEnv(t)
	v := e.push(t, "default", "mlp", "mlp", "champion")
	in := f32("x", []int64{2, 4}, 0.1, 0.2, 0.3, 0.4, -1, 2, -3, 4)

	raw, err := onnx.New("", nil).Load(context.Background(), e.blobs.Path(v.SHA256), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	want, err := raw.Run(context.Background(), []*tensor.Tensor{in}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"", "1", "champion"} {
		resp, err := e.mgr.Infer(context.Background(), &serving.InferRequest{Model: "mlp", Version: ref, Inputs: []*tensor.Tensor{in}})
		if err != nil {
			t.Fatalf("ref %q: %v", ref, err)
		}
		if resp.ModelName != "mlp" || resp.ModelVersion != "1" || len(resp.Outputs) != len(want) {
			t.Fatalf("ref %q: unexpected response %+v", ref, resp)
		}
		for i := range want {
			if resp.Outputs[i].Name != want[i].Name || !bytes.Equal(resp.Outputs[i].Data, want[i].Data) {
				t.Errorf("ref %q output %s differs from the raw runtime", ref, want[i].Name)
			}
		}
	}
	// Output selection returns only what was asked, in order.
	resp, err := e.mgr.Infer(context.Background(), &serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{in},
		Outputs: []serving.OutputRequest{{Name: "probs"}}})
	if err != nil || len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probs" {
		t.Fatalf("output selection: %v %+v", err, resp)
	}
}

func TestInvalidRequests(t *testing.T) {
	e := newEnv(t)
	e.push(t, "default", "mlp", "mlp")
	e.push(t, "default", "zip", "tree_zipmap")
	good := f32("x", []int64{1, 4}, 1, 2, 3, 4)
	cases := []struct {
		name string
		req  serving.InferRequest
		kind errs.Kind
		msg  string
	}{
		{"unknown model", serving.InferRequest{Model: "nope", Inputs: []*tensor.Tensor{good}}, errs.NotFound, "nope"},
		{"unknown version", serving.InferRequest{Model: "mlp", Version: "9", Inputs: []*tensor.Tensor{good}}, errs.NotFound, "9"},
		{"unknown alias", serving.InferRequest{Model: "mlp", Version: "champion", Inputs: []*tensor.Tensor{good}}, errs.NotFound, "champion"},
		{"wrong shape", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("x", []int64{1, 3}, 1, 2, 3)}}, errs.InvalidArgument,
			"input x expects shape [-1,4] FP32, got [1,3] FP32"},
		{"wrong dtype", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{{Name: "x", DataType: tensor.FP64, Shape: []int64{1, 4}, Data: make([]byte, 32)}}},
			errs.InvalidArgument, "input x expects shape [-1,4] FP32, got [1,4] FP64"},
		{"unknown input", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("z", []int64{1, 4}, 1, 2, 3, 4)}}, errs.InvalidArgument,
			`unknown input "z": model mlp expects x FP32 [-1,4]`},
		{"missing input", serving.InferRequest{Model: "mlp"}, errs.InvalidArgument, "missing input x FP32 [-1,4]"},
		{"short data", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 12)}}},
			errs.InvalidArgument, "needs 16 bytes, got 12"},
		{"duplicate input", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{good, good}}, errs.InvalidArgument, "given twice"},
		{"output twice", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{good}, Outputs: []serving.OutputRequest{{Name: "y"}, {Name: "y"}}},
			errs.InvalidArgument, "output y is requested twice"},
		{"unknown output", serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{good}, Outputs: []serving.OutputRequest{{Name: "q"}}},
			errs.InvalidArgument, `unknown output "q"`},
		{"zipmap output", serving.InferRequest{Model: "zip", Inputs: []*tensor.Tensor{{Name: "input", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}},
			Outputs: []serving.OutputRequest{{Name: "output_probability"}}}, errs.InvalidArgument, "which the Open Inference Protocol cannot carry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.mgr.Infer(context.Background(), &c.req)
			if err == nil {
				t.Fatal("expected an error")
			}
			if k := errs.KindOf(err); k != c.kind {
				t.Errorf("kind = %v, want %v (%v)", k, c.kind, err)
			}
			if !strings.Contains(errs.PublicMessage(err), c.msg) {
				t.Errorf("message %q lacks %q", errs.PublicMessage(err), c.msg)
			}
		})
	}
	if n := e.rt.loads.Load(); n > 0 {
		t.Errorf("invalid requests caused %d loads", n)
	}
}

func TestConcurrentFirstRequestsLoadOnce(t *testing.T) {
	e := newEnv(t)
	e.push(t, "default", "mlp", "mlp")
	e.rt.gate = make(chan struct{})
	const n = 1000 // the race detector allows 8,128 goroutines
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.mgr.Infer(context.Background(), &serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}})
			errc <- err
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return e.rt.loads.Load() == 1 }, "no load started")
	close(e.rt.gate)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.rt.loads.Load(); got != 1 {
		t.Fatalf("loads = %d, want 1", got)
	}
	st, err := e.mgr.Stats(context.Background(), "default", "mlp", "1")
	if err != nil || len(st) != 1 || st[0].InferenceCount != n || st[0].Success.Count != n {
		t.Fatalf("stats: %v %+v", err, st)
	}
	rep, err := e.mgr.Status(context.Background(), "default", "mlp")
	if err != nil || len(rep.Versions) != 1 {
		t.Fatalf("status: %v %+v", err, rep)
	}
	if vs := rep.Versions[0]; vs.State != residency.Ready || vs.Loads != 1 || vs.ColdStarts != 1 || vs.MemoryBytes <= 0 {
		t.Fatalf("status after the burst: %+v", vs)
	}
}

func TestCorruptArtifactRefusedWithoutRetryStorm(t *testing.T) {
	e := newEnv(t)
	v := e.push(t, "default", "mlp", "mlp")
	path := e.blobs.Path(v.SHA256)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	req := &serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	for range 3 {
		_, err := e.mgr.Infer(context.Background(), req)
		if errs.KindOf(err) != errs.Unavailable || !strings.Contains(errs.PublicMessage(err), "corrupt") {
			t.Fatalf("want Unavailable corrupt error, got %v", err)
		}
	}
	if ready, _ := e.mgr.ModelReady(context.Background(), "default", "mlp", ""); ready {
		t.Error("a model that failed to load reports ready")
	}
	if n := e.rt.loads.Load(); n != 0 {
		t.Errorf("corrupt artifact reached the runtime %d times", n)
	}
	idx, err := e.mgr.RepositoryIndex(context.Background(), "default", false)
	if err != nil || len(idx) != 1 || idx[0].State != serving.StateUnavailable || !strings.Contains(idx[0].Reason, "corrupt") {
		t.Fatalf("index: %v %+v", err, idx)
	}
	rep, err := e.mgr.Status(context.Background(), "default", "mlp")
	if err != nil || len(rep.Versions) != 1 || rep.Versions[0].State != residency.Failed || !strings.Contains(rep.Versions[0].Reason, "corrupt") {
		t.Fatalf("status: %v %+v", err, rep)
	}
	// Repaired bytes load once the retry window has passed.
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.now.Add(int64(10 * time.Second))
	if _, err := e.mgr.Infer(context.Background(), req); err != nil {
		t.Fatalf("after repair: %v", err)
	}
}

func TestUnloadAndLoad(t *testing.T) {
	e := newEnv(t)
	e.push(t, "default", "mlp", "mlp")
	ctx := context.Background()
	req := &serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if err := e.mgr.LoadModel(ctx, "default", "mlp"); err != nil {
		t.Fatal(err)
	}
	if got := e.mgr.Loaded(); len(got) != 1 || got[0] != "default/mlp:1" {
		t.Fatalf("loaded = %v", got)
	}
	if err := e.mgr.UnloadModel(ctx, "default", "mlp"); err != nil {
		t.Fatal(err)
	}
	if got := e.mgr.Loaded(); len(got) != 0 {
		t.Fatalf("after unload: %v", got)
	}
	if _, err := e.mgr.Infer(ctx, req); errs.KindOf(err) != errs.Unavailable {
		t.Fatalf("infer after unload: %v", err)
	}
	if ready, err := e.mgr.ModelReady(ctx, "default", "mlp", ""); err != nil || ready {
		t.Fatalf("ready after unload = %v, %v", ready, err)
	}
	if err := e.mgr.LoadModel(ctx, "default", "mlp"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.UnloadModel(ctx, "default", "nope"); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("unload unknown: %v", err)
	}
}

func TestUnloadWaitsForInFlight(t *testing.T) {
	e := newEnv(t)
	e.push(t, "default", "medium", "mlp_medium")
	ctx := context.Background()
	rows := 512
	in := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{int64(rows), 64}, Data: make([]byte, rows*64*4)}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				_, err := e.mgr.Infer(ctx, &serving.InferRequest{Model: "medium", Inputs: []*tensor.Tensor{in}})
				if err != nil && errs.KindOf(err) != errs.Unavailable {
					t.Errorf("unexpected error: %v", err)
				}
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(e.mgr.Loaded()) == 1 }, "never loaded")
	// Unloading while runs are in flight must neither crash ORT nor fail a running request.
	if err := e.mgr.UnloadModel(ctx, "default", "medium"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

func TestNamespacesIsolate(t *testing.T) {
	e := newEnv(t)
	e.push(t, "payments", "fraud", "mlp")
	ctx := context.Background()
	req := serving.InferRequest{Model: "fraud", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(ctx, &req); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("default namespace sees payments/fraud: %v", err)
	}
	req.Namespace = "payments"
	if _, err := e.mgr.Infer(ctx, &req); err != nil {
		t.Fatal(err)
	}
}

func TestAliasChangeIsSeenImmediately(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp", "champion")
	e.push(t, "default", "m", "mlp_medium")
	in := f32("x", []int64{1, 4}, 1, 2, 3, 4)
	resp, err := e.mgr.Infer(ctx, &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{in}})
	if err != nil || resp.ModelVersion != "1" {
		t.Fatalf("champion: %v %+v", err, resp)
	}
	if err := e.reg.DeleteAlias(ctx, "default", "m", "champion"); err != nil {
		t.Fatal(err)
	}
	// No champion: latest (2) serves; it takes 64 features, so metadata must say so.
	md, err := e.mgr.ModelMetadata(ctx, "default", "m", "")
	if err != nil || md.Inputs[0].Shape[1] != 64 || len(md.Versions) != 2 {
		t.Fatalf("metadata after alias removal: %v %+v", err, md)
	}
}

func idleCfg(idle time.Duration, minInstances int) registry.ServingConfig {
	return registry.ServingConfig{IdleTimeout: registry.Duration(idle), Instances: &registry.InstancesConfig{Min: minInstances}}
}

// TestIdleVersionsScaleToZero: a version unused for its idleTimeout is unloaded and
// loads again on the next request; instances.min >= 1 keeps it.
func TestIdleVersionsScaleToZero(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", idleCfg(time.Minute, 0)); err != nil {
		t.Fatal(err)
	}
	req := &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := e.mgr.UnloadIdle(); n != 0 {
		t.Fatalf("unloaded %d versions that were just used", n)
	}
	e.now.Add(int64(59 * time.Second))
	if n := e.mgr.UnloadIdle(); n != 0 {
		t.Fatalf("unloaded before the idle timeout: %d", n)
	}
	e.now.Add(int64(2 * time.Second))
	if n := e.mgr.UnloadIdle(); n != 1 || len(e.mgr.Loaded()) != 0 {
		t.Fatalf("idle unload: %d, loaded %v", n, e.mgr.Loaded())
	}
	if ready, err := e.mgr.ModelReady(ctx, "default", "m", ""); err != nil || !ready {
		t.Errorf("a cold version must stay ready (servable): %v %v", ready, err)
	}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatalf("cold start after scale to zero: %v", err)
	}
	if got := e.rt.loads.Load(); got != 2 {
		t.Errorf("loads = %d, want 2", got)
	}
	// min 1 keeps it however long it idles.
	if _, err := e.reg.SetModelServing(ctx, "default", "m", idleCfg(time.Minute, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	e.now.Add(int64(24 * time.Hour))
	if n := e.mgr.UnloadIdle(); n != 0 || len(e.mgr.Loaded()) != 1 {
		t.Fatalf("instances.min 1 was unloaded: %d %v", n, e.mgr.Loaded())
	}
}

// TestIdleUnloadSkipsBusyVersions: a version running a request is never unloaded,
// however old its last use looks.
func TestIdleUnloadSkipsBusyVersions(t *testing.T) {
	runs := newRunGate(false) // the request's run waits until the test opens it
	e := newEnvWith(t, runs, nil)
	t.Cleanup(func() { runs.set(true) }) // before the manager closes, should the test fail
	ctx := context.Background()
	e.push(t, "default", "m", "mlp_medium")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", idleCfg(time.Second, 0)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.mgr.Infer(ctx, mediumReq("m"))
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { _, running, _ := runs.stats(); return running == 1 }, "the request never started")
	e.now.Add(int64(time.Hour))
	if n := e.mgr.UnloadIdle(); n != 0 {
		t.Fatalf("unloaded a version with a request running")
	}
	runs.set(true)
	if err := <-done; err != nil {
		t.Fatalf("the running request failed: %v", err)
	}
	e.now.Add(int64(time.Hour))
	if n := e.mgr.UnloadIdle(); n != 1 {
		t.Fatalf("idle after its request: unloaded %d", n)
	}
}

// TestIdleUnloadSparesAVersionUsedAfterTheScan: a request that comes and goes
// between UnloadIdle's scan and its unload makes the version not idle: it stays.
func TestIdleUnloadSparesAVersionUsedAfterTheScan(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", idleCfg(time.Minute, 0)); err != nil {
		t.Fatal(err)
	}
	req := &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	e.now.Add(int64(2 * time.Minute))
	n := e.mgr.UnloadIdleAround(func() {
		if _, err := e.mgr.Infer(ctx, req); err != nil {
			t.Error(err)
		}
	})
	if n != 0 || len(e.mgr.Loaded()) != 1 {
		t.Fatalf("unloaded %d versions, one of them just used; loaded %v", n, e.mgr.Loaded())
	}
	if got := e.rt.loads.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
	e.now.Add(int64(2 * time.Minute))
	if n := e.mgr.UnloadIdle(); n != 1 {
		t.Fatalf("idle for its timeout again: unloaded %d", n)
	}
}

// TestDeletedModelForgetsItsHistory: deleting a model drops its residency
// records (they would otherwise grow with model churn); a model re-created
// under the same name starts with none.
func TestDeletedModelForgetsItsHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	req := &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	rep, err := e.mgr.Status(ctx, "default", "m")
	if err != nil || len(rep.Versions) != 1 || rep.Versions[0].Loads != 1 || rep.Versions[0].ColdStarts != 1 {
		t.Fatalf("before the delete: %v %+v", err, rep)
	}
	if err := e.reg.DeleteModel(ctx, "default", "m", true); err != nil {
		t.Fatal(err)
	}
	e.push(t, "default", "m", "mlp")
	rep, err = e.mgr.Status(ctx, "default", "m")
	if err != nil || len(rep.Versions) != 1 {
		t.Fatalf("after re-creating: %v %+v", err, rep)
	}
	if v := rep.Versions[0]; v.Loads != 0 || v.ColdStarts != 0 || !v.LastUsed.IsZero() || v.LoadDuration != 0 ||
		v.State != residency.Idle || !strings.Contains(v.Reason, "not loaded yet") {
		t.Fatalf("the re-created model inherited the deleted one's history: %+v", v)
	}
}

// BenchmarkManagerInfer is the serving layer's per-request cost around a small
// model (resolve, validate, acquire, run, stats) at one and at 8 callers.
// `go test -run '^$' -bench ManagerInfer -benchmem ./serving`
func BenchmarkManagerInfer(b *testing.B) {
	e := newEnv(b)
	e.push(b, "default", "mlp", "mlp")
	req := &serving.InferRequest{Model: "mlp", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("callers=%d", par), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.mgr.Infer(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkColdLoad: one cold load (read, verify, session, first run) of a
// generated MLP with 64 MB of weights, unloaded again between iterations:
// `go test -run '^$' -bench ColdLoad -benchtime 20x ./serving/`.
func BenchmarkColdLoad(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	model := mlpgen.MLPSpec{Inputs: 4, Hidden: 1 << 22, Outputs: 1, Seed: 3}.ONNX()
	info, err := e.reg.PutBlob(ctx, bytes.NewReader(model), "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: "default", Model: "big", SHA256: info.SHA256}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(model)))
	for b.Loop() {
		if err := e.mgr.LoadModel(ctx, "default", "big"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := e.mgr.UnloadModel(ctx, "default", "big"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
