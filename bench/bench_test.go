package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestQuickRun runs the harness end to end with tiny counts and checks only that
// every cell measured something sane: never timings, which depend on the machine.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs ONNX Runtime")
	}
	defer goleak.VerifyNone(t)
	iters := 100
	if raceEnabled {
		iters = 20
	}
	cfg := Config{
		Models:      []string{"mlp"},
		Batches:     []int{1, 8},
		Concurrency: []int{1, 2},
		Load:        Load{WarmupIterations: 5, Iterations: iters},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(cfg.Batches) * len(cfg.Concurrency) * len(Paths); len(results) != want {
		t.Fatalf("got %d cells, want %d", len(results), want)
	}
	for _, r := range results {
		name := r.Model + "/" + r.Path
		if r.Samples != iters*r.Conc {
			t.Errorf("%s b=%d c=%d: %d samples, want %d", name, r.Batch, r.Conc, r.Samples, iters*r.Conc)
		}
		if r.P50 <= 0 || r.P99 < r.P50 || r.ReqPerSec <= 0 || r.RowsPerSec != r.ReqPerSec*float64(r.Batch) {
			t.Errorf("%s b=%d c=%d: insane cell %+v", name, r.Batch, r.Conc, r)
		}
		if r.HasAdded != (r.Path != PathORT && r.Path != PathBareHTTP && r.Path != PathBareGRPC) {
			t.Errorf("%s: HasAdded = %v", name, r.HasAdded)
		}
		if r.HasAdded && r.RawRatio <= 0 {
			t.Errorf("%s: ratio to raw %v", name, r.RawRatio)
		}
	}
	table := Table(results)
	for _, p := range Paths {
		if !strings.Contains(table, "| "+p+" |") {
			t.Errorf("table lacks %s:\n%s", p, table)
		}
	}
}

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := percentile(lat, c.p); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("one sample: got %v", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("no samples: got %v", got)
	}
}
