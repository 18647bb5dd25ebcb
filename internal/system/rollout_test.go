package system

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/mlpgen"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// These tests run whole servers with real models (ONNX Runtime) and real
// HTTP traffic; only the controllers' clock is a FakeClock, so a rollout's
// minute-long steps pass when the test says so, and only once each
// version's window holds the samples the analysis needs.

const rolloutNS = "default"

// rolloutRig is a running system, its fake clock, and the load on it.
type rolloutRig struct {
	t     *testing.T
	s     *System
	clock *reconcile.FakeClock
	dir   string
	stop  func()
}

func startRolloutRig(t *testing.T, dir string, clock *reconcile.FakeClock) *rolloutRig {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GRPCAddr = ""
	cfg.ShutdownTimeout = 5 * time.Second
	// Access is tested with real tokens in e2e; rollouts are about routing.
	cfg.Auth, cfg.CLIConfig = "off", "none"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := newSystem(ctx, cfg, "test", slog.New(slog.DiscardHandler), hooks{clock: clock})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r := &rolloutRig{t: t, s: s, clock: clock, dir: dir}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("the server did not stop")
			}
		})
	}
	t.Cleanup(r.stop)
	waitUntil(t, func() bool {
		resp, err := http.Get("http://" + s.HTTPAddr() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "the server to serve")
	return r
}

func modelBytes(t *testing.T, name string) []byte {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "models", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// push registers model bytes as the next version of fraud-detector.
func (r *rolloutRig) push(model []byte) int64 {
	r.t.Helper()
	ctx := context.Background()
	blob, err := r.s.Registry.PutBlob(ctx, bytes.NewReader(model), "")
	if err != nil {
		r.t.Fatal(err)
	}
	v, err := r.s.Registry.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: rolloutNS, Model: "fraud-detector", SHA256: blob.SHA256})
	if err != nil {
		r.t.Fatal(err)
	}
	return v.Version
}

func (r *rolloutRig) setChampion(v int64) {
	r.t.Helper()
	if err := r.s.Registry.SetAlias(context.Background(), rolloutNS, "fraud-detector", "champion", v); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rolloutRig) apply(yaml string) {
	r.t.Helper()
	if _, err := r.s.Resources.Apply(context.Background(), spec.Request{Files: []spec.File{{Name: "svc.yaml", Content: yaml}}}); err != nil {
		r.t.Fatal(err)
	}
}

// modelEffective is fraud-detector's status.effectiveAliases as the API
// shows the Model: the aliases a rollout holds, with the version each serves.
func (r *rolloutRig) modelEffective() map[string]int64 {
	r.t.Helper()
	obj, err := r.s.Resources.Get(context.Background(), spec.KindModel, rolloutNS, "fraud-detector")
	if err != nil {
		r.t.Fatal(err)
	}
	if st := obj.(*spec.Model).Status; st != nil {
		return st.EffectiveAliases
	}
	return nil
}

// rollout is service name's rollout status as the API shows it.
func (r *rolloutRig) rollout(name string) *spec.RolloutStatus {
	r.t.Helper()
	obj, err := r.s.Resources.Get(context.Background(), spec.KindInferenceService, rolloutNS, name)
	if err != nil {
		r.t.Fatal(err)
	}
	st := obj.(*spec.InferenceService).Status
	if st == nil || st.Rollout == nil {
		return &spec.RolloutStatus{}
	}
	return st.Rollout
}

// advance steps the fake clock one analysis tick at a time until cond
// holds: with load, a tick is taken only once both versions' windows hold
// minSamples requests and the canary has answered minSamples/4 more since
// the last tick (so a tick stands for traffic, as it would on the wall
// clock, and a step never passes for lack of waiting); without load at
// once.
func (r *rolloutRig) advance(name string, tick time.Duration, minSamples int64, loaded bool, cond func(*spec.RolloutStatus) bool, what string) *spec.RolloutStatus {
	r.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var lastCanary int64
	for {
		st := r.rollout(name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; rollout: %+v", what, st)
		}
		ready := !loaded
		if w, ok := r.s.Router.ReadWindow(rolloutNS, name); ok && loaded && st.Phase == spec.RolloutProgressing {
			s, c := w.Targets[fmt.Sprintf("fraud-detector@%d", st.Stable)], w.Targets[fmt.Sprintf("fraud-detector@%d", st.Canary)]
			if c.Requests < lastCanary {
				lastCanary = 0 // a new window
			}
			ready = s.Requests >= minSamples && c.Requests >= minSamples && c.Requests >= lastCanary+minSamples/4
			if ready {
				lastCanary = c.Requests
			}
		}
		if ready && r.clock.Pending() > 0 {
			r.clock.Step(tick)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load sends requests to service name from n clients until stop; a share
// badEvery (0: none) of them carry a third feature of 5, which only the
// broken version fails on. It counts answers by version and failures.
type load struct {
	ok         sync.Map // version -> *atomic.Int64
	failed     atomic.Int64
	lastFailed atomic.Value
	stop       chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup
}

func (r *rolloutRig) startLoad(name string, n, badEvery int) *load {
	l := &load{stop: make(chan struct{})}
	url := "http://" + r.s.HTTPAddr() + "/v2/models/" + name + "/infer"
	for i := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for k := i; ; k += n {
				select {
				case <-l.stop:
					return
				default:
				}
				third := k % 2
				if badEvery > 0 && k%badEvery == 0 {
					third = 5
				}
				body := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,%d,0]}]}`, third)
				resp, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					l.failed.Add(1)
					l.lastFailed.Store(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
					l.lastFailed.Store(string(b))
					continue
				}
				var out struct {
					ModelVersion string `json:"model_version"`
				}
				_ = json.Unmarshal(b, &out)
				c, _ := l.ok.LoadOrStore(out.ModelVersion, new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			}
		}()
	}
	return l
}

func (l *load) end() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) answered(version string) int64 {
	c, ok := l.ok.Load(version)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

func serviceWithRollout(name, metrics string, minSamples int) string {
	return fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: %s}
spec:
  traffic: [{model: fraud-detector@champion, weight: 100}]
  rollout:
    steps: [10, 50]
    interval: 1m
    analysis:
      minSamples: %d
      confidence: 0.95
      metrics: [%s]
    progressDeadline: 30m
`, name, minSamples, metrics)
}

const rolloutTick = 10 * time.Second // a sixth of the 1m interval

// rolloutEnded is true once a rollout succeeded or failed.
func rolloutEnded(s *spec.RolloutStatus) bool {
	return s.Phase == spec.RolloutFailed || s.Phase == spec.RolloutSucceeded
}

func newRolloutClock() *reconcile.FakeClock {
	return reconcile.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
}

// TestRolloutPromotesUnderGoodTraffic: moving champion to version 2 leaves
// version 1 serving, walks 10% then 50% as each step's analysis passes,
// then promotes: the alias's effective version moves and every request is
// answered throughout (none fails, stable or canary).
func TestRolloutPromotesUnderGoodTraffic(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v2 := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	// A generous latency bound: both versions are the same small MLP, but on
	// a shared 2-core machine the canary's tenth of the traffic batches
	// less and its p99 can be twice the stable one's.
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}, {name: latencyP99, maxRatioToStable: 5}", 400))
	l := r.startLoad("fraud", 4, 0)
	defer l.end()

	r.setChampion(v2)
	m, err := r.s.Registry.GetModel(context.Background(), rolloutNS, "fraud-detector")
	if err != nil {
		t.Fatal(err)
	}
	if m.Aliases["champion"] != v2 || m.Effective["champion"] != v1 {
		t.Fatalf("after alias set: declared %d, effective %v; want 2 declared, 1 effective (held by the rollout)", m.Aliases["champion"], m.Effective)
	}
	if eff := r.modelEffective(); eff["champion"] != v1 {
		t.Fatalf("the Model's status shows effective aliases %v while the rollout holds champion; want champion: 1", eff)
	}
	st := r.advance("fraud", rolloutTick, 400, true, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutProgressing }, "the rollout to start")
	if st.Stable != v1 || st.Canary != v2 || st.Step != 1 || st.CanaryWeight != 10 {
		t.Fatalf("started: %+v; want stable 1, canary 2 at step 1 (10%%)", st)
	}
	st = r.advance("fraud", rolloutTick, 400, true, func(s *spec.RolloutStatus) bool { return s.Phase != spec.RolloutProgressing || s.Step == 2 }, "step 2")
	if st.Phase != spec.RolloutProgressing || st.CanaryWeight != 50 {
		t.Fatalf("after step 1: %+v; want step 2 at 50%%", st)
	}
	st = r.advance("fraud", rolloutTick, 400, true, func(s *spec.RolloutStatus) bool { return s.Phase != spec.RolloutProgressing }, "the rollout to end")
	if st.Phase != spec.RolloutSucceeded || st.Stable != v2 {
		t.Fatalf("end: %+v; want Succeeded with version 2 stable", st)
	}
	if len(st.History) != 2 || st.History[0].Outcome != "passed" || st.History[1].Outcome != "promoted" {
		t.Fatalf("history %+v; want step 1 passed, step 2 promoted", st.History)
	}
	for _, c := range st.History[1].Analysis {
		if c.Verdict != "pass" || c.Samples < 400 {
			t.Errorf("step 2's %s: %+v; want pass on at least 400 samples", c.Metric, c)
		}
	}
	m, _ = r.s.Registry.GetModel(context.Background(), rolloutNS, "fraud-detector")
	if len(m.Effective) != 0 || m.Aliases["champion"] != v2 {
		t.Fatalf("after promotion: declared %v, effective %v; want champion at 2, no hold", m.Aliases, m.Effective)
	}
	if eff := r.modelEffective(); len(eff) != 0 {
		t.Fatalf("the Model's status shows effective aliases %v after the promotion; want none", eff)
	}
	// Requests now all go to version 2.
	before := l.answered("2")
	waitUntil(t, func() bool { return l.answered("2") > before+50 }, "version 2 to answer after the promotion")
	l.end()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed during the rollout (last: %v)", n, l.lastFailed.Load())
	}
	if l.answered("1") == 0 || l.answered("2") == 0 {
		t.Fatalf("answers: v1 %d, v2 %d; want both", l.answered("1"), l.answered("2"))
	}
	evs, err := r.s.Store.(audit.Log).ListEvents(context.Background(), audit.Query{Namespace: rolloutNS, Kind: spec.KindInferenceService, Name: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	var summaries []string
	for _, e := range evs {
		if e.Source == "rollout" {
			summaries = append(summaries, e.Summary)
		}
	}
	if len(summaries) < 3 || !strings.Contains(summaries[0], "started") || !strings.Contains(summaries[len(summaries)-1], "succeeded") {
		t.Fatalf("audit log of the rollout: %q", summaries)
	}
	r.expectMetrics(`nimbus_rollouts_total{event="started",namespace="default",service="fraud"} 1`,
		`nimbus_rollouts_total{event="step",namespace="default",service="fraud"} 1`,
		`nimbus_rollouts_total{event="succeeded",namespace="default",service="fraud"} 1`,
		`nimbus_rollout_canary_weight{namespace="default",service="fraud"} 0`,
		`nimbus_rollout_version{namespace="default",role="stable",service="fraud"} 2`)
}

// expectMetrics fails unless /metrics shows every line of want.
func (r *rolloutRig) expectMetrics(want ...string) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.s.HTTPAddr() + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if !strings.Contains(string(b), w) {
			var got []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "nimbus_rollout") {
					got = append(got, l)
				}
			}
			r.t.Fatalf("/metrics lacks %s; rollout series:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// TestRolloutRollsBackOnErrors: version 3 fails on one request in five (a
// real ONNX Runtime error on some inputs). The analysis fails on the
// errorRate interval, all traffic goes back to version 1 at once, the alias
// stays effectively on 1 while 3 stays declared, the failure is recorded
// with its interval, and the rollout is not retried — not by a pass, not by
// declaring 3 again. Every request version 1 got was answered.
func TestRolloutRollsBackOnErrors(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v3 := r.push(modelBytes(t, "fraud_v3_broken.onnx")) // version 2 here
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.01}", 200))
	l := r.startLoad("fraud", 4, 5)
	defer l.end()

	r.setChampion(v3)
	st := r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutFailed }, "the rollback")
	if st.Stable != v1 || st.FailedVersion != v3 || st.CanaryWeight != 0 {
		t.Fatalf("failed: %+v; want stable 1, failed version 3, canary at 0%%", st)
	}
	if !strings.Contains(st.Message, "errorRate") || !strings.Contains(st.Message, "rolled back to version 1") {
		t.Fatalf("message %q: want the metric and the rollback", st.Message)
	}
	last := st.History[len(st.History)-1]
	if last.Outcome != "failed" || last.Analysis[0].Verdict != "fail" || last.Analysis[0].Lower == nil || *last.Analysis[0].Lower <= 0.01 {
		t.Fatalf("last step %+v; want a failed errorRate whose interval lies above 1%%", last)
	}
	m, err := r.s.Registry.GetModel(context.Background(), rolloutNS, "fraud-detector")
	if err != nil {
		t.Fatal(err)
	}
	if m.Aliases["champion"] != v3 || m.Effective["champion"] != v1 {
		t.Fatalf("after the rollback: declared %v effective %v; want 3 declared, 1 effective", m.Aliases, m.Effective)
	}
	// From now on only version 1 answers, and answers everything.
	failedAtRollback := l.failed.Load()
	v1Before := l.answered("1")
	waitUntil(t, func() bool { return l.answered("1") > v1Before+300 }, "version 1 to keep answering")
	r.clock.Step(time.Hour) // any pass there is: nothing is retried
	if err := r.s.Registry.SetAlias(context.Background(), rolloutNS, "fraud-detector", "champion", v3); err != nil {
		t.Fatal(err)
	}
	v1Before = l.answered("1")
	waitUntil(t, func() bool { return l.answered("1") > v1Before+300 }, "version 1 to keep answering")
	l.end()
	if n := l.failed.Load() - failedAtRollback; n != 0 {
		t.Fatalf("%d requests failed after the rollback (last: %v)", n, l.lastFailed.Load())
	}
	if st := r.rollout("fraud"); st.Phase != spec.RolloutFailed || st.FailedVersion != v3 {
		t.Fatalf("after declaring 3 again: %+v; want it still Failed (not retried)", st)
	}
	if n := l.answered(strconv.FormatInt(v3, 10)); n == 0 {
		l.ok.Range(func(k, v any) bool { t.Logf("answered %v: %d", k, v.(*atomic.Int64).Load()); return true })
		t.Fatalf("version 3 never answered: the canary took no traffic; failed %d, last %v; %+v", l.failed.Load(), l.lastFailed.Load(), r.rollout("fraud"))
	}
	r.expectMetrics(`nimbus_rollouts_total{event="failed",namespace="default",service="fraud"} 1`,
		`nimbus_rollout_version{namespace="default",role="stable",service="fraud"} 1`)
	stats, _ := r.s.Router.Stats(rolloutNS, "fraud")
	for _, tg := range stats.Targets {
		if tg.Target == "fraud-detector@1" && tg.Errors != 0 {
			t.Fatalf("version 1 failed %d requests during the rollout", tg.Errors)
		}
	}
}

// TestRolloutWaitsWithoutTrafficThenFails: with no requests every metric
// waits ("0 of 200 requests" in status) until the progress deadline, then
// the rollout fails and the stable version keeps serving.
func TestRolloutWaitsWithoutTrafficThenFails(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v2 := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.01}", 200))
	r.setChampion(v2)
	st := r.advance("fraud", rolloutTick, 0, false, func(s *spec.RolloutStatus) bool {
		return s.Phase == spec.RolloutProgressing && s.Started != nil && r.clock.Now().Sub(*s.Started) >= 5*time.Minute
	}, "five minutes of rollout")
	if st.Step != 1 || !strings.Contains(st.Message, "waiting") || !strings.Contains(st.Message, "0 of 200 requests") {
		t.Fatalf("without traffic: %+v; want step 1 waiting for 0 of 200 requests", st)
	}
	st = r.advance("fraud", rolloutTick, 0, false, func(s *spec.RolloutStatus) bool { return s.Phase != spec.RolloutProgressing }, "the deadline")
	if st.Phase != spec.RolloutFailed || !strings.Contains(st.Message, "progress deadline 30m0s passed at step 1") {
		t.Fatalf("at the deadline: %+v", st)
	}
	if got := r.clock.Now().Sub(*st.Started); got < 30*time.Minute || got > 31*time.Minute {
		t.Fatalf("failed %v after the start; want at the 30m deadline", got)
	}
	m, _ := r.s.Registry.GetModel(context.Background(), rolloutNS, "fraud-detector")
	if m.Effective["champion"] != v1 {
		t.Fatalf("effective %v; want version 1 to stay", m.Effective)
	}
}

// TestRolloutRollsBackOnSlowCanary: a version whose p99 latency is far
// above the stable version's fails latencyP99 (the canary's p99 interval
// lies above maxRatioToStable × the stable one's) and rolls back.
func TestRolloutRollsBackOnSlowCanary(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	slow := r.push(mlpgen.MLPSpec{Inputs: 4, Hidden: 1 << 20, Outputs: 1, Seed: 9}.ONNX()) // 16 MB of weights: a few ms a row
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: latencyP99, maxRatioToStable: 1.5}", 400))
	l := r.startLoad("fraud", 4, 0)
	defer l.end()
	r.setChampion(slow)
	st := r.advance("fraud", rolloutTick, 400, true, rolloutEnded, "the end of the rollout")
	if st.Phase != spec.RolloutFailed || st.FailedVersion != slow || !strings.Contains(st.Message, "latencyP99") {
		t.Fatalf("slow canary: %+v; want Failed on latencyP99", st)
	}
	c := st.History[len(st.History)-1].Analysis[0]
	if c.Verdict != "fail" || c.Lower == nil || c.Stable == nil || c.Stable.Upper == nil || *c.Lower <= 1.5**c.Stable.Upper {
		t.Fatalf("latency check %+v (stable %+v): want the canary's lower bound above 1.5 × the stable upper bound", c, c.Stable)
	}
	l.end()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed (last %v)", n, l.lastFailed.Load())
	}
}

// TestRolloutShadowMismatch: shadowMismatchRate mirrors the stable
// version's requests to the canary and compares answers. A new artifact of
// the same weights (other bytes, same answers) promotes; version 2, whose
// answers differ, fails on mismatches.
func TestRolloutShadowMismatch(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1bytes := modelBytes(t, "fraud_v1.onnx")
	v1 := r.push(v1bytes)
	same := r.push(mlpgen.Variant(v1bytes, 1))
	differs := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}, {name: shadowMismatchRate, max: 0.02}", 200))
	l := r.startLoad("fraud", 4, 0)
	defer l.end()

	r.setChampion(same)
	st := r.advance("fraud", rolloutTick, 200, true, rolloutEnded, "the first rollout to end")
	if st.Phase != spec.RolloutSucceeded {
		t.Fatalf("same answers: %+v; want Succeeded", st)
	}
	for _, c := range st.History[len(st.History)-1].Analysis {
		if c.Metric == "shadowMismatchRate" && (c.Verdict != "pass" || c.Samples < 200 || c.Value != 0) {
			t.Fatalf("shadow check %+v; want pass on ≥ 200 comparisons, none mismatched", c)
		}
	}
	r.setChampion(differs)
	st = r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool {
		return s.Phase == spec.RolloutFailed || s.Phase == spec.RolloutSucceeded && s.Canary == differs
	}, "the second rollout to end")
	if st.Phase != spec.RolloutFailed || !strings.Contains(st.Message, "shadowMismatchRate") || st.Stable != same {
		t.Fatalf("different answers: %+v; want Failed on shadowMismatchRate, back to version %d", st, same)
	}
}

// TestRolloutResumesAfterRestart: a server stopped in step 2 comes back
// in step 2 with the step's start time kept, measures again, and promotes.
func TestRolloutResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newRolloutClock()
	r := startRolloutRig(t, dir, clock)
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v2 := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}", 200))
	l := r.startLoad("fraud", 4, 0)
	r.setChampion(v2)
	before := r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Step == 2 }, "step 2")
	l.end()
	r.stop()

	clock2 := newRolloutClock()
	clock2.Step(clock.Now().Sub(clock2.Now()) + time.Second)
	r = startRolloutRig(t, dir, clock2)
	after := r.rollout("fraud")
	if after.Phase != spec.RolloutProgressing || after.Step != 2 || !after.StepStarted.Equal(*before.StepStarted) || !after.Started.Equal(*before.Started) {
		t.Fatalf("after the restart: %+v; want step 2 with its start times kept (%v, %v)", after, before.Started, before.StepStarted)
	}
	if m, _ := r.s.Registry.GetModel(context.Background(), rolloutNS, "fraud-detector"); m.Effective["champion"] != v1 {
		t.Fatalf("after the restart effective %v; want 1 still", m.Effective)
	}
	l = r.startLoad("fraud", 4, 0)
	defer l.end()
	st := r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Phase != spec.RolloutProgressing }, "the end")
	if st.Phase != spec.RolloutSucceeded || st.Stable != v2 {
		t.Fatalf("end: %+v; want Succeeded", st)
	}
	l.end()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed after the restart (last %v)", n, l.lastFailed.Load())
	}
}

// TestRolloutTwoServicesOneAlias: the older service owns the alias's
// rollout; the other follows the effective version (its status says whose
// rollout it follows) and moves when the owner promotes.
func TestRolloutTwoServicesOneAlias(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v2 := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}", 200))
	r.clock.Step(time.Second) // the second service is younger
	r.apply(serviceWithRollout("fraud-mirror", "{name: errorRate, max: 0.05}", 200))
	l := r.startLoad("fraud", 4, 0)
	defer l.end()
	r.setChampion(v2)
	r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutProgressing }, "the owner's rollout")
	waitUntil(t, func() bool { return r.rollout("fraud-mirror").Phase == spec.RolloutFollowing }, "the other service to follow")
	f := r.rollout("fraud-mirror")
	if f.Owner != "fraud" || f.Stable != v1 {
		t.Fatalf("follower: %+v; want owner fraud, serving version 1", f)
	}
	if code, version := inferOnce(t, r, "fraud-mirror"); code != 200 || version != "1" {
		t.Fatalf("follower answered %d from version %q; want version 1 while the owner rolls out", code, version)
	}
	r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutSucceeded }, "the promotion")
	waitUntil(t, func() bool { return r.rollout("fraud-mirror").Stable == v2 }, "the follower to move to version 2")
	if code, version := inferOnce(t, r, "fraud-mirror"); code != 200 || version != "2" {
		t.Fatalf("follower answered %d from version %q; want version 2 after the promotion", code, version)
	}
}

func inferOnce(t *testing.T, r *rolloutRig, service string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+r.s.HTTPAddr()+"/v2/models/"+service+"/infer", "application/json",
		strings.NewReader(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,1,0]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ModelVersion string `json:"model_version"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.ModelVersion
}

// TestRolloutCommands: abort rolls back at once, retry starts the failed
// version over, promote ends it; each over the management API, and a
// command that does not apply is 412 with the reason.
func TestRolloutCommands(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	v1 := r.push(modelBytes(t, "fraud_v1.onnx"))
	v2 := r.push(modelBytes(t, "fraud_v2.onnx"))
	r.setChampion(v1)
	r.apply(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}", 200))
	command := func(cmd string) (int, string) {
		resp, err := http.Post("http://"+r.s.HTTPAddr()+"/api/v1/namespaces/default/resources/inferenceservices/fraud/rollout/"+cmd, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := command("promote"); code != http.StatusPreconditionFailed || !strings.Contains(body, "not in progress") {
		t.Fatalf("promote with nothing to roll out: %d %s", code, body)
	}
	r.setChampion(v2)
	waitUntil(t, func() bool { return r.rollout("fraud").Phase == spec.RolloutProgressing }, "the rollout")
	if code, body := command("abort"); code != 200 {
		t.Fatalf("abort: %d %s", code, body)
	}
	st := r.rollout("fraud")
	if st.Phase != spec.RolloutFailed || st.History[len(st.History)-1].Outcome != "aborted" || !strings.Contains(st.Message, "aborted by hand") {
		t.Fatalf("after abort: %+v", st)
	}
	if code, body := command("retry"); code != 200 {
		t.Fatalf("retry: %d %s", code, body)
	}
	if st := r.rollout("fraud"); st.Phase != spec.RolloutProgressing || st.Step != 1 {
		t.Fatalf("after retry: %+v; want step 1 again", st)
	}
	if code, body := command("retry"); code != http.StatusPreconditionFailed || !strings.Contains(body, "in progress") {
		t.Fatalf("retry while in progress: %d %s", code, body)
	}
	if code, body := command("promote"); code != 200 {
		t.Fatalf("promote: %d %s", code, body)
	}
	if st := r.rollout("fraud"); st.Phase != spec.RolloutSucceeded || st.Stable != v2 {
		t.Fatalf("after promote: %+v", st)
	}
	if code, body := command("jump"); code != http.StatusBadRequest || !strings.Contains(body, "promote, abort or retry") {
		t.Fatalf("unknown command: %d %s", code, body)
	}
}

// TestRolloutOfARefChange: editing the service's target from @1 to @2 is
// rolled out like an alias move: version 1 keeps serving, 2 takes the
// steps, then serves alone; editing it to the broken version is rolled
// back and the service stays on version 2 although its spec says @3.
func TestRolloutOfARefChange(t *testing.T) {
	r := startRolloutRig(t, t.TempDir(), newRolloutClock())
	r.push(modelBytes(t, "fraud_v1.onnx"))
	r.push(modelBytes(t, "fraud_v2.onnx"))
	r.push(modelBytes(t, "fraud_v3_broken.onnx"))
	svc := func(ref int) string {
		return strings.Replace(serviceWithRollout("fraud", "{name: errorRate, max: 0.05}", 200),
			"fraud-detector@champion", fmt.Sprintf("fraud-detector@%d", ref), 1)
	}
	r.apply(svc(1))
	l := r.startLoad("fraud", 4, 5)
	defer l.end()
	if st := r.rollout("fraud"); st.Phase != spec.RolloutIdle || st.Stable != 1 {
		t.Fatalf("first apply: %+v; want idle on version 1", st)
	}
	r.apply(svc(2))
	st := r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool {
		return s.Phase != spec.RolloutProgressing && s.Stable != 1 || s.Phase == spec.RolloutFailed
	}, "version 2 to be promoted")
	if st.Phase != spec.RolloutSucceeded || st.Stable != 2 || st.History[0].Requests[0] < 200 {
		t.Fatalf("ref 1 → 2: %+v; want Succeeded after steps that version 1 shared", st)
	}
	r.apply(svc(3))
	st = r.advance("fraud", rolloutTick, 200, true, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutFailed }, "version 3 to roll back")
	if st.Stable != 2 || st.FailedVersion != 3 {
		t.Fatalf("ref 2 → 3: %+v; want rolled back to 2", st)
	}
	before := l.answered("2")
	failed := l.failed.Load()
	waitUntil(t, func() bool { return l.answered("2") > before+200 }, "version 2 to serve after the rollback")
	l.end()
	if n := l.failed.Load() - failed; n != 0 {
		t.Fatalf("%d requests failed after the rollback (last %v)", n, l.lastFailed.Load())
	}
	if code, v := inferOnce(t, r, "fraud"); code != 200 || v != "2" {
		t.Fatalf("after the rollback the service answered %d from version %q; want version 2 (its spec says @3)", code, v)
	}
}
