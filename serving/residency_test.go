package serving_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

func budget(b int64) func(*serving.Options) {
	return func(o *serving.Options) { o.MemoryBudget = b }
}

func mediumReq(model string) *serving.InferRequest {
	return &serving.InferRequest{Model: model, Inputs: []*tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 64}, Data: make([]byte, 256)}}}
}

func status(t *testing.T, e *env, model string) residency.Report {
	t.Helper()
	rep, err := e.mgr.Status(context.Background(), "default", model)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func versionState(t *testing.T, e *env, model string) residency.VersionStatus {
	t.Helper()
	rep := status(t, e, model)
	if len(rep.Versions) != 1 {
		t.Fatalf("%s: %d versions", model, len(rep.Versions))
	}
	return rep.Versions[0]
}

// TestEvictionUnderConcurrentTraffic: four models share a budget that holds two;
// concurrent requests over all four evict and reload least recently used versions,
// and none fails. The budget holds at every load.
func TestEvictionUnderConcurrentTraffic(t *testing.T) {
	const budgetBytes = 3 << 20 // mlp_medium costs ~1.3 MB: two fit, three do not
	e := newEnvWith(t, nil, budget(budgetBytes))
	models := []string{"a", "b", "c", "d"}
	for _, m := range models {
		e.push(t, "default", m, "mlp_medium")
	}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := models[(w+i*(w+1))%len(models)]
				resp, err := e.mgr.Infer(context.Background(), mediumReq(m))
				if err == nil && (resp.ModelName != m || len(resp.Outputs) != 1 || resp.Outputs[0].Shape[1] != 10) {
					err = fmt.Errorf("%s answered %+v", m, resp)
				}
				if err != nil {
					errc <- err
				}
				if rep, err := e.mgr.Status(context.Background(), "default", ""); err != nil || rep.Memory.UsedBytes > budgetBytes {
					errc <- fmt.Errorf("over budget: %v %+v", err, rep.Memory)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	rep := status(t, e, "")
	var evictions, loads int64
	for _, v := range rep.Versions {
		evictions += v.Evictions
		loads += v.Loads
		if v.MemoryBytes < 1_200_000 || v.MemoryBytes > 2<<20 {
			t.Errorf("%s costs %d bytes; mlp_medium weighs 1.2 MB", v.Model, v.MemoryBytes)
		}
	}
	if evictions == 0 || loads <= int64(len(models)) {
		t.Fatalf("no eviction happened (evictions %d, loads %d): the test did not test", evictions, loads)
	}
	if rep.Memory.Resident > 2 || rep.Memory.UsedBytes > budgetBytes {
		t.Fatalf("memory after the run: %+v", rep.Memory)
	}
}

// TestVersionInUseIsNeverEvicted: while a request runs on the only resident
// version, a load that needs its room waits; when the request ends the version
// is evicted and the waiting request answered. Nobody fails.
func TestVersionInUseIsNeverEvicted(t *testing.T) {
	runs := newRunGate(true)
	e := newEnvWith(t, runs, budget(2<<20)) // holds one mlp_medium
	e.push(t, "default", "a", "mlp_medium")
	e.push(t, "default", "b", "mlp_medium")
	if _, err := e.mgr.Infer(context.Background(), mediumReq("a")); err != nil {
		t.Fatal(err)
	}
	runs.set(false)
	t.Cleanup(func() { runs.set(true) })
	aDone := make(chan error, 1)
	go func() { _, err := e.mgr.Infer(context.Background(), mediumReq("a")); aDone <- err }()
	testutil.Eventually(t, 5*time.Second, func() bool { _, running, _ := runs.stats(); return running == 1 }, "a's request never ran")
	bDone := make(chan error, 1)
	go func() { _, err := e.mgr.Infer(context.Background(), mediumReq("b")); bDone <- err }()
	testutil.Eventually(t, 5*time.Second, func() bool { return versionState(t, e, "b").State == residency.Loading }, "b never started loading")
	if a := versionState(t, e, "a"); a.State != residency.Ready || a.InFlight != 1 {
		t.Fatalf("a, with a request running: %+v", a)
	}
	runs.set(true)
	if err := <-aDone; err != nil {
		t.Fatalf("a's request: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("b's request: %v", err)
	}
	a := versionState(t, e, "a")
	if a.State != residency.Evicted || a.Evictions != 1 || !strings.Contains(a.Reason, "make room for b") {
		t.Fatalf("a after b loaded: %+v", a)
	}
}

// TestModelBiggerThanTheBudget: a version that cannot fit even alone gets a clear
// error, reaches neither the runtime nor evicts anything.
func TestModelBiggerThanTheBudget(t *testing.T) {
	e := newEnvWith(t, nil, budget(1<<20))
	e.push(t, "default", "small", "mlp")
	e.push(t, "default", "big", "mlp_medium")
	ctx := context.Background()
	if _, err := e.mgr.Infer(ctx, &serving.InferRequest{Model: "small", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}); err != nil {
		t.Fatal(err)
	}
	loads, verifies := e.rt.loads.Load(), e.verifies.Load()
	for range 3 {
		e.now.Add(int64(10 * time.Second)) // past FailedRetryAfter: every request tries again
		_, err := e.mgr.Infer(ctx, mediumReq("big"))
		msg := errs.PublicMessage(err)
		if errs.KindOf(err) != errs.Unavailable || !strings.Contains(msg, "more than the whole memory budget of 1.0 MiB") || !strings.Contains(msg, "--memory-budget") {
			t.Fatalf("want a clear budget error, got %v", err)
		}
	}
	if got := e.rt.loads.Load(); got != loads {
		t.Errorf("the runtime loaded the oversized model %d times", got-loads)
	}
	if got := e.verifies.Load(); got != verifies {
		t.Errorf("the oversized model's artifact was verified (hashed) %d times before the budget refused it", got-verifies)
	}
	if m := status(t, e, "").Memory; m.Resident != 1 {
		t.Errorf("resident = %d, want 1: a failed load holds no memory (%+v)", m.Resident, m)
	}
	if s := versionState(t, e, "small"); s.State != residency.Ready || s.Evictions != 0 {
		t.Errorf("small was disturbed: %+v", s)
	}
	if b := versionState(t, e, "big"); b.State != residency.Failed || !strings.Contains(b.Reason, "memory budget") {
		t.Errorf("big: %+v", b)
	}
}

// TestIdleUnloadReturnsItsMemoryCharge: scale to zero (fake clock) releases the
// version's charge and says why in the status.
func TestIdleUnloadReturnsItsMemoryCharge(t *testing.T) {
	e := newEnvWith(t, nil, budget(64<<20))
	ctx := context.Background()
	e.push(t, "default", "m", "mlp_medium")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", idleCfg(time.Minute, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Infer(ctx, mediumReq("m")); err != nil {
		t.Fatal(err)
	}
	rep := status(t, e, "m")
	if rep.Memory.UsedBytes != rep.Versions[0].MemoryBytes || rep.Memory.UsedBytes < 1_200_000 {
		t.Fatalf("resident: %+v", rep)
	}
	e.now.Add(int64(2 * time.Minute))
	if n := e.mgr.UnloadIdle(); n != 1 {
		t.Fatalf("unloaded %d", n)
	}
	rep = status(t, e, "m")
	v := rep.Versions[0]
	if rep.Memory.UsedBytes != 0 || rep.Memory.Resident != 0 || v.State != residency.Idle || v.IdleUnloads != 1 || !strings.Contains(v.Reason, "idleTimeout") {
		t.Fatalf("after idle unload: %+v", rep)
	}
	if v.MemoryBytes < 1_200_000 {
		t.Errorf("the measured cost is forgotten after unload: %+v", v)
	}
}

// TestInstancesFollowLoad: a burst of requests against one instance scales it up
// within one sample (panic window); once the load is gone for a stable window
// it scales back to min. Fake clock; requests held by a gate.
func TestInstancesFollowLoad(t *testing.T) {
	runs := newRunGate(true)
	e := newEnvWith(t, runs, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	cfg := registry.ServingConfig{Instances: &registry.InstancesConfig{Min: 1, Max: 4, TargetConcurrency: 1, StableWindow: registry.Duration(10 * time.Second)}}
	if _, err := e.reg.SetModelServing(ctx, "default", "m", cfg); err != nil {
		t.Fatal(err)
	}
	req := &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if _, err := e.mgr.Infer(ctx, req); err != nil {
		t.Fatal(err)
	}
	tick := func() { e.now.Add(int64(500 * time.Millisecond)); e.mgr.Autoscale() }
	tick()
	if v := versionState(t, e, "m"); v.Instances != 1 || v.MinInstances != 1 || v.MaxInstances != 4 {
		t.Fatalf("idle: %+v", v)
	}

	runs.set(false)
	t.Cleanup(func() { runs.set(true) }) // before the manager closes, should the test fail
	const burst = 8                      // with the idle sample, a panic-window average of 4
	done := make(chan error, burst)
	for range burst {
		go func() { _, err := e.mgr.Infer(ctx, req); done <- err }()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return versionState(t, e, "m").InFlight == burst }, "the burst never arrived")
	if _, running, _ := runs.stats(); running != 1 {
		t.Fatalf("one instance runs %d calls", running)
	}
	tick()
	if v := versionState(t, e, "m"); v.Instances != 4 {
		t.Fatalf("after a burst of %d: %d instances, want max 4", burst, v.Instances)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { _, running, _ := runs.stats(); return running == 4 }, "the new instances never ran the queued requests")
	runs.set(true)
	for range burst {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Quiet: the panic window holds the count for one stable window, then the
	// stable average decays and the count falls to min.
	tick()
	if v := versionState(t, e, "m"); v.Instances != 4 {
		t.Fatalf("scaled down at once after the burst (panic mode must hold): %d", v.Instances)
	}
	for range 60 { // 30 s of samples: past the panic hold and a whole stable window
		tick()
	}
	if v := versionState(t, e, "m"); v.Instances != 1 {
		t.Fatalf("after a quiet stable window: %d instances, want min 1", v.Instances)
	}
}

// TestVersionSwitchUnderLoad: moving the champion alias while requests flow
// keeps the old version answering until the new one is loaded (here held on
// purpose); then every request goes to the new one. No request fails or waits
// for the load.
func TestVersionSwitchUnderLoad(t *testing.T) {
	e := newEnvWith(t, nil, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp", "champion")
	e.push(t, "default", "m", "mlp")
	req := func() *serving.InferRequest {
		return &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	}
	if resp, err := e.mgr.Infer(ctx, req()); err != nil || resp.ModelVersion != "1" {
		t.Fatalf("before: %v %+v", err, resp)
	}
	e.rt.gate = make(chan struct{}) // hold the next load
	var (
		mu       sync.Mutex
		answered = map[string]int{}
		failed   []error
		cold     int
		back     int // answers from 1 after the same client got one from 2
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switched := false
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := e.mgr.Infer(ctx, req())
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					answered[resp.ModelVersion]++
					if resp.ColdStart > 0 {
						cold++
					}
					if switched && resp.ModelVersion == "1" {
						back++
					}
					switched = switched || resp.ModelVersion == "2"
				}
				mu.Unlock()
			}
		}()
	}
	count := func(v string) int { mu.Lock(); defer mu.Unlock(); return answered[v] }
	testutil.Eventually(t, 5*time.Second, func() bool { return count("1") > 100 }, "no traffic")
	if err := e.reg.SetAlias(ctx, "default", "m", "champion", 2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return e.rt.loads.Load() == 2 }, "version 2 never started loading")
	before := count("1")
	testutil.Eventually(t, 5*time.Second, func() bool { return count("1") > before+100 }, "version 1 stopped answering while 2 loads")
	if count("2") != 0 {
		t.Fatal("version 2 answered before its load finished")
	}
	close(e.rt.gate)
	testutil.Eventually(t, 5*time.Second, func() bool { return count("2") > 300 }, "traffic never moved to version 2")
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d requests failed during the switch, first: %v", len(failed), failed[0])
	}
	if back != 0 {
		t.Errorf("%d answers came from version 1 after the same client had one from version 2", back)
	}
	if cold != 0 {
		t.Errorf("%d requests waited for a load during the switch", cold)
	}
}

// TestWarmupRunsBeforeReady: warm-up requests run before the version serves, so
// the first request's run is not the first run.
func TestWarmupRunsBeforeReady(t *testing.T) {
	runs := newRunGate(true)
	e := newEnvWith(t, runs, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "multi_io")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", registry.ServingConfig{Warmup: &registry.WarmupConfig{Runs: 3, BatchSize: 2}}); err != nil {
		t.Fatal(err)
	}
	ready, err := e.mgr.ModelReady(ctx, "default", "m", "")
	if err != nil || !ready {
		t.Fatal(ready, err)
	}
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := runs.stats(); n != 3 {
		t.Fatalf("%d warm-up runs before ready, want 3", n)
	}
}

// countingMeter is the real meter with its trims counted.
type countingMeter struct {
	serving.MemoryMeter
	trims, reads atomic.Int32
}

func (c *countingMeter) Trim() { c.trims.Add(1); c.MemoryMeter.Trim() }

func (c *countingMeter) InUse() (int64, bool) { c.reads.Add(1); return c.MemoryMeter.InUse() }

// TestUnloadsTrimMemoryInTheBackground: unloads give memory back through one
// coalesced trim; shutting down does not trim.
func TestUnloadsTrimMemoryInTheBackground(t *testing.T) {
	meter := &countingMeter{MemoryMeter: serving.DefaultMemory()}
	e := newEnvWith(t, nil, func(o *serving.Options) { o.Memory = meter })
	ctx := context.Background()
	for _, m := range []string{"a", "b", "c"} {
		e.push(t, "default", m, "mlp")
		if _, err := e.mgr.Infer(ctx, &serving.InferRequest{Model: m, Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := meter.trims.Load(); n != 0 {
		t.Fatalf("%d trims before any unload", n)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := e.mgr.UnloadModel(ctx, "default", m); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return meter.trims.Load() >= 1 }, "no trim after unloads")
	if n := meter.trims.Load(); n > 2 {
		t.Errorf("%d trims for three unloads in a row: not coalesced", n)
	}
}

// TestFailedWarmupFailsTheLoad: a version whose warm-up fails is not ready; the
// status says why.
func TestFailedWarmupFailsTheLoad(t *testing.T) {
	runs := newRunGate(true)
	runs.fail = errors.New("kernel exploded")
	e := newEnvWith(t, runs, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	if _, err := e.reg.SetModelServing(ctx, "default", "m", registry.ServingConfig{Warmup: &registry.WarmupConfig{Runs: 2}}); err != nil {
		t.Fatal(err)
	}
	err := e.mgr.LoadModel(ctx, "default", "m")
	if errs.KindOf(err) != errs.Unavailable || !strings.Contains(errs.PublicMessage(err), "warm-up request 1 of 2 failed") {
		t.Fatalf("load with a failing warm-up: %v", err)
	}
	// The status says which step failed; the runtime's own text stays in the log.
	if v := versionState(t, e, "m"); v.State != residency.Failed || !strings.Contains(v.Reason, "warm-up request 1 of 2 failed") ||
		strings.Contains(v.Reason, "kernel exploded") {
		t.Fatalf("status: %+v", v)
	}
	if ready, _ := e.mgr.ModelReady(ctx, "default", "m", ""); ready {
		t.Error("a version whose warm-up failed reports ready")
	}
}

// TestSwitchToABrokenVersionKeepsTheOldOneServing: the champion moves to a
// version whose artifact is corrupt; the old version keeps answering and the
// status shows why. Once the artifact is repaired and the retry window has
// passed, traffic moves.
func TestSwitchToABrokenVersionKeepsTheOldOneServing(t *testing.T) {
	e := newEnvWith(t, nil, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp", "champion")
	// Version 2: the same network as another artifact (a doc_string field
	// appended to the ModelProto: field 6, wire type 2).
	base, err := os.ReadFile(testutil.Model("mlp"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.reg.PutBlob(ctx, bytes.NewReader(append(base, 0x32, 2, 'v', '2')), "")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: "default", Model: "m", SHA256: info.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	req := &serving.InferRequest{Model: "m", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	if resp, err := e.mgr.Infer(ctx, req); err != nil || resp.ModelVersion != "1" {
		t.Fatal(resp, err)
	}
	path := e.blobs.Path(v2.SHA256)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetAlias(ctx, "default", "m", "champion", 2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		rep := status(t, e, "m")
		return len(rep.Versions) == 2 && rep.Versions[1].State == residency.Failed
	}, "version 2 never failed")
	for range 20 {
		if resp, err := e.mgr.Infer(ctx, req); err != nil || resp.ModelVersion != "1" {
			t.Fatalf("while version 2 is broken: %v %+v", err, resp)
		}
	}
	if rep := status(t, e, "m"); !strings.Contains(rep.Versions[1].Reason, "corrupt") {
		t.Fatalf("version 2's reason: %+v", rep.Versions[1])
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	e.now.Add(int64(10 * time.Second)) // past FailedRetryAfter
	testutil.Eventually(t, 5*time.Second, func() bool {
		resp, err := e.mgr.Infer(ctx, req)
		if err != nil {
			t.Fatalf("after the repair: %v", err)
		}
		return resp.ModelVersion == "2"
	}, "traffic never moved to the repaired version 2")
}

// During an alias switch a request is checked against the version that
// will answer it: while the new champion (another signature) loads, the old
// one answers requests shaped for it; once the new one serves, those are
// refused naming what it expects, and its own requests are answered.
func TestASwitchChecksTheAnsweringVersion(t *testing.T) {
	e := newEnvWith(t, nil, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp", "champion") // x [?,4]
	e.push(t, "default", "m", "mlp_medium")      // x [?,64]
	narrow := func() *serving.InferRequest {
		return &serving.InferRequest{Model: "m", Version: "champion", Inputs: []*tensor.Tensor{f32("x", []int64{1, 4}, 1, 2, 3, 4)}}
	}
	if resp, err := e.mgr.Infer(ctx, narrow()); err != nil || resp.ModelVersion != "1" {
		t.Fatalf("before: %v %+v", err, resp)
	}
	e.rt.gate = make(chan struct{}) // hold version 2's load
	if err := e.reg.SetAlias(ctx, "default", "m", "champion", 2); err != nil {
		t.Fatal(err)
	}
	e.mgr.Invalidate("default", "m")
	if resp, err := e.mgr.Infer(ctx, narrow()); err != nil || resp.ModelVersion != "1" {
		t.Fatalf("while version 2 loads, a request shaped for version 1: %v %+v (want version 1's answer)", err, resp)
	}
	close(e.rt.gate)
	wide := &serving.InferRequest{Model: "m", Version: "champion", Inputs: []*tensor.Tensor{f32("x", []int64{1, 64}, make([]float32, 64)...)}}
	testutil.Eventually(t, 5*time.Second, func() bool {
		resp, err := e.mgr.Infer(ctx, wide)
		return err == nil && resp.ModelVersion == "2"
	}, "version 2 never answered")
	_, err := e.mgr.Infer(ctx, narrow())
	if errs.KindOf(err) != errs.InvalidArgument || !strings.Contains(err.Error(), "expects shape [-1,64]") {
		t.Fatalf("version 2 serving, a request shaped for version 1: %v", err)
	}
}

// A stored sample request is the warm-up: it runs as given before the
// version serves. One that fits no version is refused when it is set,
// naming the version; a version pushed later that it does not fit warms up
// with zero-valued inputs instead of failing to load.
func TestWarmupWithASampleRequest(t *testing.T) {
	runs := newRunGate(true)
	e := newEnvWith(t, runs, nil)
	ctx := context.Background()
	e.push(t, "default", "m", "mlp")
	sample := &registry.WarmupConfig{Runs: 2, Inputs: []registry.WarmupInput{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Data: registry.SampleValues{"0.3", "12", "1", "0"}}}}
	if _, err := e.reg.SetModelServing(ctx, "default", "m", registry.ServingConfig{Warmup: sample}); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	n, _, _ := runs.stats()
	runs.mu.Lock()
	last := runs.last
	runs.mu.Unlock()
	want := f32("x", []int64{1, 4}, 0.3, 12, 1, 0)
	if n != 2 || len(last) != 1 || !bytes.Equal(last[0].Data, want.Data) {
		t.Fatalf("%d warm-up runs, last with %+v; want 2 runs of the sample", n, last)
	}

	wrong := &registry.WarmupConfig{Inputs: []registry.WarmupInput{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}, Data: registry.SampleValues{"1", "2", "3"}}}}
	_, err := e.reg.SetModelServing(ctx, "default", "m", registry.ServingConfig{Warmup: wrong})
	if errs.KindOf(err) != errs.InvalidArgument || !strings.Contains(err.Error(), "version 1: the sample's input x is FP32 [1,3]; the model expects FP32 [-1,4]") {
		t.Fatalf("a sample that fits no version: %v", err)
	}
	bad := &registry.WarmupConfig{Inputs: []registry.WarmupInput{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}, Data: registry.SampleValues{"1", "many"}}}}
	if _, err := e.reg.SetModelServing(ctx, "default", "m", registry.ServingConfig{Warmup: bad}); errs.KindOf(err) != errs.InvalidArgument ||
		!strings.Contains(err.Error(), `element 1: "many" is not a FP32 value`) {
		t.Fatalf("a sample with a bad element: %v", err)
	}

	// A later version with another signature: the sample does not fit it.
	e.push(t, "default", "m", "mlp_medium")
	before, _, _ := runs.stats()
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatalf("a version the sample does not fit failed to load: %v", err)
	}
	after, _, _ := runs.stats()
	runs.mu.Lock()
	last = runs.last
	runs.mu.Unlock()
	if after-before != 2 || len(last) != 1 || last[0].Shape[1] != 64 {
		t.Fatalf("the new version warmed up %d times with %+v; want 2 zero-valued runs shaped for it", after-before, last)
	}
}

// A load reads its artifact once: the bytes are hashed as they are read
// and handed to the runtime, which reads no file itself. A corrupt artifact
// is refused as before, naming the digest.
func TestALoadReadsTheArtifactOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v := e.push(t, "default", "m", "mlp")
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	if reads, path := e.verifies.Load(), e.rt.pathLoads.Load(); reads != 1 || path != 0 || e.rt.loads.Load() != 1 {
		t.Fatalf("one load: %d artifact reads, %d loads from the file by the runtime; want 1 and 0", reads, path)
	}
	if err := e.mgr.UnloadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.blobs.Path(v.SHA256), []byte("not the model"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := e.mgr.LoadModel(ctx, "default", "m")
	if err == nil || !strings.Contains(err.Error(), "artifact sha256:"+v.SHA256+" is corrupt") {
		t.Fatalf("a corrupt artifact: %v", err)
	}
}

// A variant of a measured artifact (same size, same signature: a model per
// tenant) is charged the measured cost without being measured again — a
// measurement runs alone and walks the allocator's free lists.
func TestVariantsAreMeasuredOnce(t *testing.T) {
	meter := &countingMeter{MemoryMeter: serving.DefaultMemory()}
	e := newEnvWith(t, nil, func(o *serving.Options) { o.Memory = meter })
	ctx := context.Background()
	base, err := os.ReadFile(testutil.Model("mlp_medium"))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		info, err := e.reg.PutBlob(ctx, bytes.NewReader(mlpgen.Variant(base, i+1)), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: "default", Model: name, SHA256: info.SHA256}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.mgr.LoadModel(ctx, "default", "a"); err != nil {
		t.Fatal(err)
	}
	measured := meter.reads.Load()
	if measured < 2 {
		t.Fatalf("the first variant was not measured (%d allocator reads)", measured)
	}
	if err := e.mgr.LoadModel(ctx, "default", "b"); err != nil {
		t.Fatal(err)
	}
	if got := meter.reads.Load(); got != measured {
		t.Errorf("the second variant was measured again (%d more allocator reads)", got-measured)
	}
	a, b := versionState(t, e, "a"), versionState(t, e, "b")
	if a.MemoryBytes < 1_200_000 || b.MemoryBytes != a.MemoryBytes {
		t.Errorf("costs: a %d, b %d bytes; want b charged a's measured cost", a.MemoryBytes, b.MemoryBytes)
	}
}

// TestMeasuredCostSurvivesARestart: the cost measured at an artifact's first
// load is kept in the registry, so a later process (a new Manager over the
// same registry) charges it without measuring again — no allocator walk, the
// same figure.
func TestMeasuredCostSurvivesARestart(t *testing.T) {
	meter := &countingMeter{MemoryMeter: serving.DefaultMemory()}
	e := newEnvWith(t, nil, func(o *serving.Options) { o.Memory = meter })
	ctx := context.Background()
	e.push(t, "default", "m", "mlp_medium")
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	first := versionState(t, e, "m").MemoryBytes
	if meter.reads.Load() < 2 || first < 1_200_000 {
		t.Fatalf("the first load was not measured: %d allocator reads, cost %d", meter.reads.Load(), first)
	}
	e.mgr.Close()

	again := &countingMeter{MemoryMeter: serving.DefaultMemory()}
	e.mgr = serving.NewManager(e.reg, e.blobs, serving.Options{Runtimes: []runtime.Runtime{e.rt}, Memory: again})
	t.Cleanup(func() { e.mgr.Close() })
	if err := e.mgr.LoadModel(ctx, "default", "m"); err != nil {
		t.Fatal(err)
	}
	if n := again.reads.Load(); n != 0 {
		t.Errorf("the restarted manager measured the artifact again (%d allocator reads)", n)
	}
	if got := versionState(t, e, "m").MemoryBytes; got != first {
		t.Errorf("cost after the restart = %d, want the stored %d", got, first)
	}
}
