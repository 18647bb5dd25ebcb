package router

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// inferWithin runs r.Infer and fails the test if it has not returned within d:
// the only reason it could block here is waiting on a held shadow.
func inferWithin(t *testing.T, r *Router, ctx context.Context, req *serving.InferRequest, d time.Duration) *serving.InferResponse {
	t.Helper()
	type result struct {
		resp *serving.InferResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := r.Infer(ctx, req)
		done <- result{resp, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.resp
	case <-time.After(d):
		t.Fatalf("the primary did not answer within %s while its shadow was held", d)
		return nil
	}
}

// heldShadow is a shadow model that blocks until released. It reports each start
// on started and whether its context had been canceled when it was released.
type heldShadow struct {
	started  chan struct{}
	release  chan struct{}
	canceled atomic.Int32
}

func newHeld(n int) *heldShadow {
	return &heldShadow{started: make(chan struct{}, n), release: make(chan struct{})}
}

func (h *heldShadow) model(next modelFunc) modelFunc {
	return func(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		h.started <- struct{}{}
		<-h.release
		if ctx.Err() != nil {
			h.canceled.Add(1)
		}
		return next(ctx, req)
	}
}

func (h *heldShadow) waitStarted(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-h.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d shadows started", i, n)
		}
	}
}

func TestHeldShadowDoesNotDelayPrimary(t *testing.T) {
	held := newHeld(10)
	b := newFake()
	b.models["champ"] = echo("4")
	b.models["challenger"] = held.model(echo("5"))
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "challenger", Percent: 100}})

	ctx, cancel := context.WithCancel(context.Background())
	for range 5 {
		resp := inferWithin(t, r, ctx, request("svc"), 5*time.Second)
		if resp.Target != "champ@4" || resp.ModelName != "svc" || floats(resp.Outputs[0])[1] != 2 {
			t.Fatalf("primary answer = %+v", resp)
		}
	}
	held.waitStarted(t, 5) // all five shadows are in flight, blocked
	if st, _ := r.Stats("default", "svc"); st.Shadow.Sent != 0 {
		t.Fatalf("shadows finished while held: %+v", st.Shadow)
	}
	cancel() // the callers are gone; the shadows must not notice
	close(held.release)
	// Close would cancel them: wait until they are done on their own first.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if st, _ := r.Stats("default", "svc"); st.Shadow.Sent == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("held shadows never finished after release")
		}
	}
	r.Close()

	st, _ := r.Stats("default", "svc")
	if st.Shadow.Sent != 5 || st.Shadow.Errors != 0 || st.Shadow.Compared != 5 || st.Shadow.ExactMatch != 5 {
		t.Errorf("shadow stats = %+v, want 5 sent and matched", st.Shadow)
	}
	if n := held.canceled.Load(); n != 0 {
		t.Errorf("%d shadows saw the caller's cancellation", n)
	}
	if got := metricValue(t, m, "nimbus_shadow_requests_total", map[string]string{"target": "challenger", "result": "ok"}); got != 5 {
		t.Errorf("shadow ok = %v, want 5", got)
	}
}

func TestFailingShadowLeavesPrimaryAlone(t *testing.T) {
	cases := map[string]modelFunc{
		"error": func(context.Context, *serving.InferRequest) (*serving.InferResponse, error) {
			return nil, errors.New("shadow broke")
		},
		"panic": func(context.Context, *serving.InferRequest) (*serving.InferResponse, error) {
			panic("shadow exploded")
		},
		"nil answer": func(context.Context, *serving.InferRequest) (*serving.InferResponse, error) { return nil, nil },
		"timeout": func(ctx context.Context, _ *serving.InferRequest) (*serving.InferResponse, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		"mutates its request": func(_ context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
			req.Inputs[0] = nil // its own slice: the caller's is untouched
			req.Parameters["x"] = "changed"
			return nil, errors.New("no")
		},
	}
	for name, shadow := range cases {
		t.Run(name, func(t *testing.T) {
			b := newFake()
			b.models["champ"] = echo("4")
			b.models["bad"] = shadow
			m := telemetry.NewMetrics()
			r := New(b, Options{Metrics: m, ShadowTimeout: 20 * time.Millisecond})
			r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "bad", Percent: 100}})
			var reqs []*serving.InferRequest
			for range 3 {
				req := request("svc")
				req.Parameters = map[string]any{"x": "orig"}
				resp := inferWithin(t, r, context.Background(), req, 5*time.Second)
				if resp.Target != "champ@4" || floats(resp.Outputs[0])[0] != 1 {
					t.Fatalf("primary answer = %+v", resp)
				}
				reqs = append(reqs, req)
			}
			r.Close()
			for _, req := range reqs {
				if req.Inputs[0] == nil || req.Parameters["x"] != "orig" {
					t.Fatal("the shadow changed the caller's request")
				}
			}
			st, _ := r.Stats("default", "svc")
			if st.Shadow.Sent != 3 || st.Shadow.Errors != 3 || st.Shadow.Compared != 0 {
				t.Errorf("shadow stats = %+v, want 3 sent, 3 errors", st.Shadow)
			}
			if st.Targets[0].Errors != 0 || st.Targets[0].Requests != 3 {
				t.Errorf("primary stats = %+v", st.Targets[0])
			}
			if got := metricValue(t, m, "nimbus_shadow_requests_total", map[string]string{"target": "bad", "result": "error"}); got != 3 {
				t.Errorf("shadow errors metric = %v, want 3", got)
			}
		})
	}
}

func TestShadowDroppedWhenPoolIsFull(t *testing.T) {
	held := newHeld(10)
	b := newFake()
	b.models["champ"] = echo("1")
	b.models["challenger"] = held.model(echo("2"))
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m, MaxShadowInFlight: 2})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "challenger", Percent: 100}})

	inferWithin(t, r, context.Background(), request("svc"), 5*time.Second)
	inferWithin(t, r, context.Background(), request("svc"), 5*time.Second)
	held.waitStarted(t, 2) // both slots busy
	for range 3 {
		inferWithin(t, r, context.Background(), request("svc"), 5*time.Second)
	}
	st, _ := r.Stats("default", "svc")
	if st.Shadow.Dropped != 3 {
		t.Errorf("dropped = %d, want 3", st.Shadow.Dropped)
	}
	close(held.release)
	r.Close()
	st, _ = r.Stats("default", "svc")
	if st.Shadow.Sent != 2 || st.Shadow.Dropped != 3 || st.Targets[0].Requests != 5 {
		t.Errorf("stats = %+v / %+v, want 2 sent, 3 dropped, 5 answered", st.Shadow, st.Targets[0])
	}
	if got := metricValue(t, m, "nimbus_shadow_requests_total", map[string]string{"result": "dropped"}); got != 3 {
		t.Errorf("dropped metric = %v, want 3", got)
	}
	if got := b.count("challenger"); got != 2 {
		t.Errorf("challenger called %d times, want 2", got)
	}
}

func TestShadowPercentIsExact(t *testing.T) {
	for _, pct := range []int{0, 1, 25, 33, 100} {
		b := newFake()
		b.models["champ"] = echo("1")
		b.models["challenger"] = echo("2")
		r := New(b, Options{MaxShadowInFlight: 100}) // room for every copy: none is dropped
		r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "challenger", Percent: pct}})
		for range 100 {
			if _, err := r.Infer(context.Background(), request("svc")); err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		if got := b.count("challenger"); got != pct {
			t.Errorf("percent %d: %d of 100 requests mirrored", pct, got)
		}
		if st, _ := r.Stats("default", "svc"); st.Shadow == nil || st.Shadow.Percent != pct || st.Shadow.Sent != int64(pct) {
			t.Errorf("percent %d: shadow stats = %+v", pct, st.Shadow)
		}
	}
}

func TestFailedPrimaryIsNotMirrored(t *testing.T) {
	b := newFake()
	b.models["challenger"] = echo("2")
	r := newRouter(t, b, Options{})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "missing", Weight: 100}}, Shadow: &Shadow{Model: "challenger", Percent: 100}})
	if _, err := r.Infer(context.Background(), request("svc")); err == nil {
		t.Fatal("want an error")
	}
	r.Close()
	if b.count("challenger") != 0 {
		t.Error("a failed request was mirrored")
	}
}

func TestShadowComparisons(t *testing.T) {
	b := newFake()
	b.models["champ"] = scaled("1", 1, 0)
	b.models["same"] = scaled("1", 1, 0)
	b.models["close"] = scaled("1", 1, 0.25) // exactly representable
	b.models["reshaped"] = func(_ context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		return &serving.InferResponse{ModelVersion: "1", Outputs: []*tensor.Tensor{fp32("y", []int64{2}, 1, 2)}}, nil
	}
	m := telemetry.NewMetrics()
	r := newRouter(t, b, Options{Metrics: m})
	for _, shadow := range []string{"same", "close", "reshaped"} {
		r.Set("default", shadow, Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: shadow, Percent: 100}})
		for range 4 {
			if _, err := r.Infer(context.Background(), request(shadow)); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.Close()
	for _, tc := range []struct {
		service        string
		exact          int64
		diff           float64
		match, nomatch float64
	}{
		{"same", 4, 0, 4, 0},
		{"close", 0, 0.25, 0, 4},
		{"reshaped", 0, 0, 0, 4},
	} {
		st, _ := r.Stats("default", tc.service)
		if st.Shadow.Compared != 4 || st.Shadow.ExactMatch != tc.exact || st.Shadow.MaxAbsDiff != tc.diff {
			t.Errorf("%s: shadow stats = %+v, want 4 compared, %d exact, max diff %v", tc.service, st.Shadow, tc.exact, tc.diff)
		}
		l := map[string]string{"namespace": "default", "service": tc.service, "target": tc.service}
		if got := metricValue(t, m, "nimbus_shadow_comparisons_total", with(l, "match", "true")); got != tc.match {
			t.Errorf("%s: matches metric = %v, want %v", tc.service, got, tc.match)
		}
		if got := metricValue(t, m, "nimbus_shadow_comparisons_total", with(l, "match", "false")); got != tc.nomatch {
			t.Errorf("%s: mismatches metric = %v, want %v", tc.service, got, tc.nomatch)
		}
		if got := metricValue(t, m, "nimbus_shadow_max_abs_diff", l); got != 4 {
			t.Errorf("%s: max abs diff samples = %v, want 4", tc.service, got)
		}
	}
}

func with(l map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range l {
		out[a] = b
	}
	return out
}

func TestCompareOutputs(t *testing.T) {
	half := func(name string, bits ...uint16) *tensor.Tensor {
		b := make([]byte, 2*len(bits))
		for i, x := range bits {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return &tensor.Tensor{Name: name, DataType: tensor.FP16, Shape: []int64{int64(len(bits))}, Data: b}
	}
	i64 := func(name string, v ...int64) *tensor.Tensor {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
		}
		return &tensor.Tensor{Name: name, DataType: tensor.Int64, Shape: []int64{int64(len(v))}, Data: b}
	}
	str := func(name string, v ...string) *tensor.Tensor {
		t := &tensor.Tensor{Name: name, DataType: tensor.Bytes, Shape: []int64{int64(len(v))}}
		for _, s := range v {
			t.Strings = append(t.Strings, []byte(s))
		}
		return t
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name            string
		primary, shadow []*tensor.Tensor
		exact           bool
		diff            float64
		within          bool // diff bounds every difference
	}{
		{"identical", []*tensor.Tensor{fp32("y", []int64{2}, 1, 2), i64("label", 3)}, []*tensor.Tensor{i64("label", 3), fp32("y", []int64{2}, 1, 2)}, true, 0, true},
		{"small diff", []*tensor.Tensor{fp32("y", []int64{2}, 1, 2)}, []*tensor.Tensor{fp32("y", []int64{2}, 1, 2.5)}, false, 0.5, true},
		{"int diff", []*tensor.Tensor{i64("label", 3, -4)}, []*tensor.Tensor{i64("label", 3, 6)}, false, 10, true},
		{"dtype differs, values equal", []*tensor.Tensor{fp32("y", []int64{1}, 2)}, []*tensor.Tensor{i64("y", 2)}, false, 0, true},
		{"shape differs", []*tensor.Tensor{fp32("y", []int64{2}, 1, 2)}, []*tensor.Tensor{fp32("y", []int64{2, 1}, 1, 9)}, false, 0, false},
		{"missing output", []*tensor.Tensor{fp32("y", []int64{1}, 1), fp32("z", []int64{1}, 1)}, []*tensor.Tensor{fp32("y", []int64{1}, 1)}, false, 0, false},
		{"extra output", []*tensor.Tensor{fp32("y", []int64{1}, 1)}, []*tensor.Tensor{fp32("y", []int64{1}, 1), fp32("z", []int64{1}, 1)}, false, 0, false},
		{"renamed output", []*tensor.Tensor{fp32("y", []int64{1}, 1)}, []*tensor.Tensor{fp32("w", []int64{1}, 1)}, false, 0, false},
		{"NaN both", []*tensor.Tensor{fp32("y", []int64{2}, nan, 1)}, []*tensor.Tensor{fp32("y", []int64{2}, nan, 1.125)}, false, 0.125, true},
		{"NaN one side", []*tensor.Tensor{fp32("y", []int64{2}, nan, 1)}, []*tensor.Tensor{fp32("y", []int64{2}, 0, 1)}, false, 0, false},
		{"fp16", []*tensor.Tensor{half("h", 0x3c00, 0x4000)}, []*tensor.Tensor{half("h", 0x3c00, 0x4200)}, false, 1, true}, // 1,2 vs 1,3
		{"fp16 subnormal", []*tensor.Tensor{half("h", 0x0001)}, []*tensor.Tensor{half("h", 0x0000)}, false, math.Ldexp(1, -24), true},
		{"bytes equal", []*tensor.Tensor{str("s", "a", "b")}, []*tensor.Tensor{str("s", "a", "b")}, true, 0, true},
		{"bytes differ", []*tensor.Tensor{str("s", "a", "b")}, []*tensor.Tensor{str("s", "a", "c")}, false, 0, false},
		{"none", nil, nil, true, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exact, diff, within := compareOutputs(tc.primary, tc.shadow)
			if exact != tc.exact || diff != tc.diff || within != tc.within {
				t.Errorf("compare = %v, %v, %v; want %v, %v, %v", exact, diff, within, tc.exact, tc.diff, tc.within)
			}
		})
	}
}

// TestCloseCancelsShadows: Close cancels copies still running, so one stuck in a
// full queue cannot hold shutdown for its timeout.
func TestCloseCancelsShadows(t *testing.T) {
	b := newFake()
	b.models["champ"] = echo("1")
	started := make(chan struct{}, 1)
	b.models["slow"] = func(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		started <- struct{}{}
		<-ctx.Done() // only cancellation ends it
		return nil, ctx.Err()
	}
	r := New(b, Options{ShadowTimeout: time.Hour})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "slow", Percent: 100}})
	inferWithin(t, r, context.Background(), request("svc"), 5*time.Second)
	<-started
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a shadow with an hour's timeout")
	}
	if st, _ := r.Stats("default", "svc"); st.Shadow.Errors != 1 {
		t.Fatalf("the cancelled shadow is not counted as an error: %+v", st.Shadow)
	}
}

func TestCloseWaitsForShadows(t *testing.T) {
	held := newHeld(4)
	var finished atomic.Int32
	b := newFake()
	b.models["champ"] = echo("1")
	b.models["challenger"] = held.model(func(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		finished.Add(1)
		return echo("2")(ctx, req)
	})
	r := New(b, Options{})
	r.Set("default", "svc", Config{Targets: []Target{{Model: "champ", Weight: 100}}, Shadow: &Shadow{Model: "challenger", Percent: 100}})
	for range 3 {
		inferWithin(t, r, context.Background(), request("svc"), 5*time.Second)
	}
	held.waitStarted(t, 3)

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while shadows were in flight")
	default:
	}
	close(held.release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the shadows finished")
	}
	if n := finished.Load(); n != 3 {
		t.Fatalf("Close returned with %d of 3 shadows finished", n)
	}

	// Closed: requests are still answered, but no longer mirrored.
	for range 5 {
		if _, err := r.Infer(context.Background(), request("svc")); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.count("challenger"); got != 3 {
		t.Errorf("challenger called %d times after Close, want 3 in all", got)
	}
	r.Close() // idempotent
}
