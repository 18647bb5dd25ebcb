package serving

import (
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestScalerFollowsKPA drives the decision with synthetic samples every 500ms
// (stable window 60s, panic window 6s, target 1, bounds 1..8).
func TestScalerFollowsKPA(t *testing.T) {
	var s scaler
	now := time.Unix(1000, 0)
	const window = time.Minute
	cur := 1
	step := func(load float64) decision {
		now = now.Add(500 * time.Millisecond)
		s.observe(now, load, window)
		d := s.decide(now, cur, 1, 8, 1, window)
		cur = d.want
		return d
	}
	for range 120 {
		if d := step(1); d.want != 1 || d.panicking {
			t.Fatalf("steady load 1: %+v", d)
		}
	}
	// A burst to 6 in flight: the panic window (6s) sees it within a sample or two.
	d := step(6)
	if !d.panicking || d.want < 2 {
		t.Fatalf("first burst sample: %+v", d)
	}
	for range 12 {
		d = step(6)
	}
	if d.want != 6 {
		t.Fatalf("after 6s of burst: %+v, want 6", d)
	}
	// The burst ends: panic mode never scales down...
	for range 20 {
		if d = step(0); d.want != 6 {
			t.Fatalf("scaled down while panicking: %+v", d)
		}
	}
	// ...and once it expires the stable average brings the count down to min.
	for range 200 {
		d = step(0)
	}
	if d.want != 1 || d.panicking {
		t.Fatalf("after a quiet minute: %+v", d)
	}
	// Bounds hold whatever the load.
	for range 20 {
		d = step(100)
	}
	if d.want != 8 {
		t.Fatalf("load 100 with max 8: %+v", d)
	}
}

// TestScalerTargetConcurrency: instances = ceil(in flight / target), and the
// sample history stays bounded by the window.
func TestScalerTargetConcurrency(t *testing.T) {
	var s scaler
	now := time.Unix(1000, 0)
	var d decision
	for range 200 {
		now = now.Add(500 * time.Millisecond)
		s.observe(now, 10, time.Minute)
		d = s.decide(now, 3, 1, 16, 4, time.Minute) // 10 in flight at 4 per instance
	}
	if d.want != 3 {
		t.Fatalf("10 in flight, target 4: %+v, want 3", d)
	}
	if len(s.samples) > 121 {
		t.Fatalf("%d samples kept for a 60s window at 2/s", len(s.samples))
	}
}

func TestWarmupInputs(t *testing.T) {
	sig := tensor.Signature{Inputs: []tensor.TensorSpec{
		{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}},
		{Name: "ids", DataType: tensor.Int64, Shape: []int64{-1, -1}},
		{Name: "s", DataType: tensor.Bytes, Shape: []int64{2}},
	}}
	in, err := warmupInputs(sig, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := in[0]; got.Shape[0] != 3 || got.Shape[1] != 4 || len(got.Data) != 48 {
		t.Errorf("x: %v %d bytes", got.Shape, len(got.Data))
	}
	if got := in[1]; got.Shape[0] != 3 || got.Shape[1] != 1 || len(got.Data) != 24 {
		t.Errorf("ids: %v %d bytes", got.Shape, len(got.Data))
	}
	if got := in[2]; len(got.Strings) != 2 || got.Data != nil {
		t.Errorf("s: %+v", got)
	}
	if _, err := warmupInputs(tensor.Signature{Inputs: []tensor.TensorSpec{{Name: "any", DataType: tensor.FP32}}}, 1); err == nil {
		t.Error("an input without a shape was accepted")
	}
	for _, shape := range [][]int64{{-1, 1 << 40}, {1 << 20, 1 << 20, 1 << 20, 1 << 20}, {-1, 70 << 20}} {
		_, err := warmupInputs(tensor.Signature{Inputs: []tensor.TensorSpec{{Name: "huge", DataType: tensor.FP32, Shape: shape}}}, 1)
		if err == nil || !strings.Contains(err.Error(), "would exceed 256 MiB") {
			t.Errorf("shape %v: %v", shape, err)
		}
	}
	runs, rows := registry.ServingConfig{Warmup: &registry.WarmupConfig{}}.WarmupRuns()
	if runs != 1 || rows != 1 {
		t.Errorf("default warm-up: %d runs of %d rows", runs, rows)
	}
}
