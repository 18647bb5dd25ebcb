package router

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
)

var splits = []struct {
	name    string
	weights []int
}{
	{"90/10", []int{90, 10}},
	{"50/50", []int{50, 50}},
	{"33/33/34", []int{33, 33, 34}},
	{"0/100", []int{0, 100}},
	{"1/2/3/4", []int{1, 2, 3, 4}},
}

func targetsOf(weights []int) []Target {
	ts := make([]Target, len(weights))
	for i, w := range weights {
		ts[i] = Target{Model: fmt.Sprintf("m%d", i), Ref: strconv.Itoa(i + 1), Weight: w}
	}
	return ts
}

func fakeFor(n int) *fakeBackend {
	b := newFake()
	for i := range n {
		b.models[fmt.Sprintf("m%d", i)] = echo("1")
	}
	return b
}

// checkShares fails unless each target's share of total is within ±2 points of
// its weight's share.
func checkShares(t *testing.T, targets []Target, counts map[string]int, total int) {
	t.Helper()
	sum := 0
	for _, tg := range targets {
		sum += tg.Weight
	}
	for _, tg := range targets {
		want := 100 * float64(tg.Weight) / float64(sum)
		got := 100 * float64(counts[tg.String()]) / float64(total)
		if math.Abs(got-want) > 2 {
			t.Errorf("%s: %.2f%% of requests, want %.0f%% ±2", tg, got, want)
		}
		if tg.Weight == 0 && counts[tg.String()] != 0 {
			t.Errorf("%s has weight 0 but got %d requests", tg, counts[tg.String()])
		}
	}
}

func TestKeylessSplitMatchesWeights(t *testing.T) {
	for _, tc := range splits {
		t.Run(tc.name, func(t *testing.T) {
			targets := targetsOf(tc.weights)
			b := fakeFor(len(targets))
			r := newRouter(t, b, Options{})
			r.Set("default", "svc", Config{Targets: targets})
			const n = 10_000
			for range n {
				if _, err := r.Infer(context.Background(), request("svc")); err != nil {
					t.Fatal(err)
				}
			}
			counts := map[string]int{}
			for _, tg := range targets {
				counts[tg.String()] = b.count(tg.String())
			}
			checkShares(t, targets, counts, n)
			// The schedule repeats every 100 slots or fewer, so 10,000 is exact.
			for _, tg := range targets {
				if want := n * tg.Weight / 100; counts[tg.String()] != want && sumOf(tc.weights) == 100 {
					t.Errorf("%s: %d requests, want exactly %d", tg, counts[tg.String()], want)
				}
			}
		})
	}
}

func sumOf(ws []int) int {
	s := 0
	for _, w := range ws {
		s += w
	}
	return s
}

func TestKeylessScheduleInterleaves(t *testing.T) {
	tab := newTable(Config{Targets: targetsOf([]int{90, 10})}, nil, nil, "default", "svc")
	if len(tab.seq) != 10 {
		t.Fatalf("schedule of 90/10 has %d slots, want 10 (gcd-reduced)", len(tab.seq))
	}
	// Every window of 10 consecutive keyless requests has exactly one m1.
	var picks []string
	for range 50 {
		picks = append(picks, tab.pick("").name)
	}
	for i := 0; i+10 <= len(picks); i++ {
		n := 0
		for _, p := range picks[i : i+10] {
			if p == "m1@2" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("window %d..%d has %d requests to m1@2, want 1: %v", i, i+10, n, picks[i:i+10])
		}
	}
	// 50/50 alternates.
	tab = newTable(Config{Targets: targetsOf([]int{50, 50})}, nil, nil, "default", "svc")
	prev := ""
	for range 20 {
		p := tab.pick("").name
		if p == prev {
			t.Fatalf("50/50 sent two requests in a row to %s", p)
		}
		prev = p
	}
}

func TestScheduleScalesHugeWeights(t *testing.T) {
	tab := newTable(Config{Targets: []Target{{Model: "a", Weight: 1_000_003}, {Model: "b", Weight: 3}, {Model: "c", Weight: 2_000_000}}}, nil, nil, "default", "svc")
	if len(tab.seq) > maxSchedule+2 {
		t.Fatalf("schedule has %d slots, want at most about %d", len(tab.seq), maxSchedule)
	}
	counts := map[string]int{}
	for _, rt := range tab.seq {
		counts[rt.name]++
	}
	if counts["b"] < 1 {
		t.Error("a tiny positive weight got no slot")
	}
	if share := float64(counts["c"]) / float64(len(tab.seq)); math.Abs(share-2.0/3) > 0.001 {
		t.Errorf("c's share is %.4f, want 0.6667", share)
	}
}

func TestKeyedSplitMatchesWeights(t *testing.T) {
	for _, tc := range splits {
		t.Run(tc.name, func(t *testing.T) {
			targets := targetsOf(tc.weights)
			tab := newTable(Config{Targets: targets}, nil, nil, "default", "svc")
			const n = 10_000
			counts := map[string]int{}
			for i := range n {
				counts[tab.pick("user-"+strconv.Itoa(i)).name]++
			}
			checkShares(t, targets, counts, n)
		})
	}
}

func TestKeyedThroughInferIsSticky(t *testing.T) {
	targets := targetsOf([]int{50, 30, 20})
	b := fakeFor(len(targets))
	r := newRouter(t, b, Options{})
	r.Set("", "svc", Config{Targets: targets})
	for _, key := range []string{"alice", "bob", "carol", "dave", "eve"} {
		first := ""
		for i := range 10_000 {
			req := request("svc")
			req.RoutingKey = key
			resp, err := r.Infer(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = resp.Target
			} else if resp.Target != first {
				t.Fatalf("key %s went to %s, then to %s", key, first, resp.Target)
			}
		}
	}
}

// TestKeyedChoiceIsStable pins the hash: a key must land on the same target in
// every process and every release, or sticky callers would move on upgrade.
func TestKeyedChoiceIsStable(t *testing.T) {
	tab := newTable(Config{Targets: []Target{{Model: "fraud", Ref: "3", Weight: 50}, {Model: "fraud", Ref: "4", Weight: 50}}}, nil, nil, "default", "svc")
	var b strings.Builder
	for i := range 24 {
		b.WriteString(strings.TrimPrefix(tab.pick("k"+strconv.Itoa(i)).name, "fraud@"))
	}
	const golden = "343434334434344444334334"
	if b.String() != golden {
		t.Errorf("choices of k0..k23 = %s, want %s (the routing hash changed)", b.String(), golden)
	}
}

func TestSmallWeightChangeMovesFewKeys(t *testing.T) {
	before := newTable(Config{Targets: []Target{{Model: "a", Weight: 90}, {Model: "b", Weight: 10}}}, nil, nil, "default", "svc")
	after := newTable(Config{Targets: []Target{{Model: "a", Weight: 88}, {Model: "b", Weight: 12}}}, nil, nil, "default", "svc")
	const n = 10_000
	moved := 0
	for i := range n {
		key := "session-" + strconv.Itoa(i)
		x, y := before.pick(key).name, after.pick(key).name
		if x != y {
			moved++
			if x != "a" || y != "b" {
				t.Errorf("key %s moved %s -> %s; only a -> b makes room for b's extra weight", key, x, y)
			}
		}
	}
	if pct := 100 * float64(moved) / n; pct < 1 || pct > 4 {
		t.Errorf("90/10 -> 88/12 moved %.2f%% of keys, want about 2%%", pct)
	}
}

func TestAddingTargetMovesOnlyItsShare(t *testing.T) {
	before := newTable(Config{Targets: []Target{{Model: "a", Weight: 50}, {Model: "b", Weight: 50}}}, nil, nil, "default", "svc")
	after := newTable(Config{Targets: []Target{{Model: "a", Weight: 50}, {Model: "b", Weight: 50}, {Model: "c", Weight: 10}}}, nil, nil, "default", "svc")
	moved := 0
	for i := range 10_000 {
		key := strconv.Itoa(i)
		if x, y := before.pick(key).name, after.pick(key).name; x != y {
			moved++
			if y != "c" {
				t.Fatalf("key %s moved %s -> %s", key, x, y)
			}
		}
	}
	if pct := float64(moved) / 100; pct > 11 { // c takes 10/110 ≈ 9.1%
		t.Errorf("adding a 10-weight target moved %.2f%% of keys", pct)
	}
}

func TestStickyByRequestID(t *testing.T) {
	targets := targetsOf([]int{50, 50})
	b := fakeFor(2)
	r := newRouter(t, b, Options{})
	r.Set("default", "svc", Config{Targets: targets, StickyByRequestID: true})
	infer := func(id, key string) string {
		req := request("svc")
		req.ID, req.RoutingKey = id, key
		resp, err := r.Infer(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Target
	}
	for i := range 200 {
		id := "req-" + strconv.Itoa(i)
		want := infer(id, "")
		for j := range 5 { // the ID wins over varying routing keys
			if got := infer(id, "key-"+strconv.Itoa(j)); got != want {
				t.Fatalf("request ID %s went to %s, then to %s", id, want, got)
			}
		}
	}
	// Without an ID the routing key decides.
	for i := range 200 {
		key := "key-" + strconv.Itoa(i)
		if a, c := infer("", key), infer("", key); a != c {
			t.Fatalf("routing key %s went to %s, then to %s", key, a, c)
		}
	}
	// Without the option the ID is ignored: one ID alternates 50/50.
	r.Set("default", "svc", Config{Targets: targets})
	seen := map[string]bool{}
	for range 4 {
		seen[infer("same-id", "")] = true
	}
	if len(seen) != 2 {
		t.Errorf("without StickyByRequestID one ID reached %v, want both targets", seen)
	}
}

func TestServiceAnswer(t *testing.T) {
	b := newFake()
	b.models["fraud"] = echo("7")
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	r.Set("default", "fraud-svc", Config{Targets: []Target{{Model: "fraud", Weight: 100}}, Generation: 3})

	req := request("fraud-svc")
	req.ID = "abc"
	resp, err := r.Infer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "fraud-svc" || resp.ModelVersion != "7" || resp.Target != "fraud@7" || resp.ID != "abc" {
		t.Errorf("answer = %q %q %q %q, want fraud-svc 7 fraud@7 abc", resp.ModelName, resp.ModelVersion, resp.Target, resp.ID)
	}
	if req.Model != "fraud-svc" || req.Version != "" {
		t.Errorf("the caller's request was changed: %q %q", req.Model, req.Version)
	}
	if b.count("fraud") != 1 {
		t.Errorf("backend calls %v, want one to fraud (default reference)", b.calls)
	}

	// A version or an unknown name goes straight to the backend.
	req = request("fraud")
	req.Version = "2"
	if resp, err = r.Infer(context.Background(), req); err != nil || resp.Target != "" || resp.ModelVersion != "2" {
		t.Errorf("direct request: %+v, %v", resp, err)
	}
	req = request("fraud-svc")
	req.Version = "1"
	if _, err = r.Infer(context.Background(), req); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("a service with a version is a model name: got %v, want not found from the backend", err)
	}
	if b.count("fraud-svc@1") != 1 {
		t.Errorf("backend calls %v", b.calls)
	}
	// Namespaces are separate.
	req = request("fraud-svc")
	req.Namespace = "other"
	if _, err = r.Infer(context.Background(), req); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("service in another namespace answered: %v", err)
	}

	st, ok := r.Stats("", "fraud-svc")
	if !ok || st.Generation != 3 || len(st.Targets) != 1 || st.Targets[0].Target != "fraud" || st.Targets[0].Requests != 1 || st.Targets[0].Errors != 0 {
		t.Errorf("stats = %+v", st)
	}
	if got := metricValue(t, m, "nimbus_service_requests_total", map[string]string{
		"namespace": "default", "service": "fraud-svc", "target": "fraud", "version": "7", "code": "200",
	}); got != 1 {
		t.Errorf("nimbus_service_requests_total = %v, want 1", got)
	}
	if got := metricValue(t, m, "nimbus_service_request_duration_seconds", map[string]string{"service": "fraud-svc", "target": "fraud"}); got != 1 {
		t.Errorf("duration samples = %v, want 1", got)
	}
}

func TestTargetErrors(t *testing.T) {
	unavailable := errs.New(errs.Unavailable, "model a is loading")
	b := newFake()
	b.models["busy"] = func(context.Context, *serving.InferRequest) (*serving.InferResponse, error) { return nil, unavailable }
	b.models["slow"] = func(ctx context.Context, _ *serving.InferRequest) (*serving.InferResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	r.Set("default", "gone", Config{Targets: []Target{{Model: "missing", Ref: "champion", Weight: 100}}})
	r.Set("default", "busy", Config{Targets: []Target{{Model: "busy", Weight: 100}}})
	r.Set("default", "slow", Config{Targets: []Target{{Model: "slow", Weight: 100}}, Timeout: 20 * time.Millisecond})
	r.Set("default", "idle", Config{Targets: []Target{{Model: "busy", Weight: 0}}})

	_, err := r.Infer(context.Background(), request("gone"))
	if errs.KindOf(err) != errs.NotFound || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "missing@champion") {
		t.Errorf("missing target: %v (kind %v), want not found naming the service and target", err, errs.KindOf(err))
	}
	if errs.FieldOf(err) != "model" {
		t.Errorf("field = %q, want the backend's", errs.FieldOf(err))
	}
	if _, err = r.Infer(context.Background(), request("busy")); err != unavailable {
		t.Errorf("error = %v, want the backend's unchanged", err)
	}
	if _, err = r.Infer(context.Background(), request("slow")); errs.KindOf(err) != errs.DeadlineExceeded {
		t.Errorf("timeout: %v, want deadline exceeded", err)
	}
	if _, err = r.Infer(context.Background(), request("idle")); errs.KindOf(err) != errs.Unavailable {
		t.Errorf("every weight 0: %v, want unavailable", err)
	}
	for target, code := range map[string]string{"missing@champion": "404", "busy": "503", "slow": "504"} {
		if got := metricValue(t, m, "nimbus_service_requests_total", map[string]string{"target": target, "code": code, "version": ""}); got != 1 {
			t.Errorf("requests_total{target=%s,code=%s} = %v, want 1", target, code, got)
		}
	}
	if st, _ := r.Stats("default", "busy"); st.Targets[0].Errors != 1 || st.Targets[0].Requests != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMetadataAndReadiness(t *testing.T) {
	b := newFake()
	b.models["a"] = echo("1")
	b.models["b"] = echo("1")
	r := newRouter(t, b, Options{})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "a", Ref: "1", Weight: 30}, {Model: "b", Ref: "2", Weight: 70}, {Model: "c", Weight: 0}}})

	md, err := r.ModelMetadata(context.Background(), "", "svc", "")
	if err != nil {
		t.Fatal(err)
	}
	if md.Name != "svc" || md.Versions != nil || md.Inputs[0].Name != "x-b" {
		t.Errorf("metadata = %+v, want b's under the service name, no versions", md)
	}
	if md, err = r.ModelMetadata(context.Background(), "default", "a", ""); err != nil || md.Name != "a" || len(md.Versions) != 2 {
		t.Errorf("model metadata = %+v, %v", md, err)
	}

	ready := func() bool {
		ok, err := r.ModelReady(context.Background(), "default", "svc", "")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !ready() {
		t.Error("service not ready; c has weight 0 and does not count")
	}
	b.notReady["b@2"] = true
	if ready() {
		t.Error("service ready while b@2 is not")
	}
	r.Set("default", "svc", Config{Targets: []Target{{Model: "a", Ref: "1", Weight: 30}, {Model: "c", Weight: 70}}})
	if ready() {
		t.Error("service ready with a missing target")
	}
	if _, err := r.ModelReady(context.Background(), "default", "c", ""); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("model c readiness: %v, want not found from the backend", err)
	}
	if _, err := r.ModelMetadata(context.Background(), "default", "svc", ""); errs.KindOf(err) != errs.NotFound || !strings.Contains(err.Error(), "target c") {
		t.Errorf("metadata of a missing heaviest target: %v", err)
	}
}

func TestSetLookupDelete(t *testing.T) {
	b := fakeFor(3)
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	cfg := Config{Targets: targetsOf([]int{60, 40}), Shadow: &Shadow{Model: "m2", Percent: 10}, Timeout: time.Second, Generation: 1}
	r.Set("", "svc", cfg)
	got, ok := r.lookup("default", "svc")
	if !ok || len(got.Targets) != 2 || got.Shadow.Model != "m2" || got.Generation != 1 {
		t.Fatalf("lookup = %+v, %v", got, ok)
	}
	got.Targets[0].Weight = 1 // a copy: the router's table is not shared
	got.Shadow.Percent = 99
	cfg.Targets[1].Weight = 1
	if again, _ := r.lookup("default", "svc"); again.Targets[0].Weight != 60 || again.Targets[1].Weight != 40 || again.Shadow.Percent != 10 {
		t.Fatalf("the table aliases a caller's config: %+v", again)
	}

	for range 10 {
		if _, err := r.Infer(context.Background(), request("svc")); err != nil {
			t.Fatal(err)
		}
	}
	// Counters of targets that stay carry over a Set; new ones start at 0.
	r.Set("default", "svc", Config{Targets: []Target{{Model: "m0", Ref: "1", Weight: 10}, {Model: "m2", Ref: "3", Weight: 90}}, Generation: 2})
	st, _ := r.Stats("default", "svc")
	if st.Generation != 2 || st.Targets[0].Requests != 6 || st.Targets[1].Requests != 0 || st.Targets[0].Weight != 10 {
		t.Errorf("stats after Set = %+v", st)
	}
	if st.Shadow != nil {
		t.Errorf("shadow stats without a shadow: %+v", st.Shadow)
	}

	r.Delete("default", "svc")
	r.Delete("default", "svc") // no-op
	if _, ok := r.lookup("default", "svc"); ok {
		t.Error("service still there after Delete")
	}
	if _, ok := r.Stats("default", "svc"); ok {
		t.Error("stats still there after Delete")
	}
	if got := metricValue(t, m, "nimbus_service_requests_total", map[string]string{"service": "svc"}); got != 0 {
		t.Errorf("series of a deleted service remain: %v", got)
	}
	if _, err := r.Infer(context.Background(), request("svc")); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("deleted service: %v, want the backend's not found", err)
	}
}

// TestSetDuringInfer swaps tables while requests run: none may fail or be lost.
// Run with -race.
func TestSetDuringInfer(t *testing.T) {
	b := fakeFor(3)
	r := newRouter(t, b, Options{})
	configs := []Config{
		{Targets: targetsOf([]int{50, 50})},
		{Targets: targetsOf([]int{0, 100, 0}), Shadow: &Shadow{Model: "m0", Percent: 50}},
		{Targets: targetsOf([]int{10, 0, 90}), StickyByRequestID: true},
	}
	r.Set("default", "svc", configs[0])

	const workers, perWorker = 8, 1000
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	stop := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				req := request("svc")
				if i%2 == 0 {
					req.RoutingKey = fmt.Sprintf("w%d-%d", w, i)
				}
				if _, err := r.Infer(context.Background(), req); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	setterDone := make(chan struct{})
	go func() {
		defer close(setterDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.Set("default", "svc", configs[i%len(configs)])
			_, _ = r.Stats("default", "svc")
		}
	}()
	wg.Wait()
	close(stop)
	<-setterDone
	close(errc)
	for err := range errc {
		t.Fatalf("request failed during Set: %v", err)
	}
	total := 0
	for i := range 3 {
		total += b.count(fmt.Sprintf("m%d@%d", i, i+1))
	}
	if total != workers*perWorker {
		t.Errorf("targets answered %d requests, want %d", total, workers*perWorker)
	}
}

// TestMetricsFollowTheTable: a target or shadow dropped by Set loses its series,
// kept ones keep counting, and a request that finishes after its service was
// deleted does not bring the service's series back.
func TestMetricsFollowTheTable(t *testing.T) {
	held := newHeld(1)
	b := fakeFor(3)
	b.models["slow"] = held.model(echo("7"))
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	r.Set("default", "svc", Config{Targets: targetsOf([]int{50, 50}), Shadow: &Shadow{Model: "m2", Percent: 100}})
	for range 4 {
		if _, err := r.Infer(context.Background(), request("svc")); err != nil {
			t.Fatal(err)
		}
	}
	count := func(name string, labels map[string]string) float64 {
		t.Helper()
		return metricValue(t, m, name, labels)
	}
	if count("nimbus_service_requests_total", map[string]string{"target": "m0@1"}) != 2 ||
		count("nimbus_service_requests_total", map[string]string{"target": "m1@2"}) != 2 {
		t.Fatal("requests not counted per target")
	}
	r.Set("default", "svc", Config{Targets: []Target{{Model: "m0", Ref: "1", Weight: 100}}})
	if got := count("nimbus_service_requests_total", map[string]string{"target": "m1@2"}); got != 0 {
		t.Errorf("a dropped target keeps its series: %v", got)
	}
	if got := count("nimbus_service_request_duration_seconds", map[string]string{"target": "m1@2"}); got != 0 {
		t.Errorf("a dropped target keeps its latency series: %v", got)
	}
	if got := count("nimbus_service_requests_total", map[string]string{"target": "m0@1"}); got != 2 {
		t.Errorf("a kept target lost its count: %v", got)
	}
	for _, name := range []string{"nimbus_shadow_requests_total", "nimbus_shadow_comparisons_total", "nimbus_shadow_max_abs_diff"} {
		if got := count(name, map[string]string{"service": "svc"}); got != 0 {
			t.Errorf("%s of a removed shadow remains: %v", name, got)
		}
	}

	r.Set("default", "svc", Config{Targets: []Target{{Model: "slow", Weight: 100}}})
	done := make(chan error, 1)
	go func() {
		_, err := r.Infer(context.Background(), request("svc"))
		done <- err
	}()
	held.waitStarted(t, 1)
	r.Delete("default", "svc")
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nimbus_service_requests_total", "nimbus_service_request_duration_seconds"} {
		if got := count(name, map[string]string{"service": "svc"}); got != 0 {
			t.Errorf("%s of a deleted service came back: %v", name, got)
		}
	}
}
