package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/registry"
)

// TestSuiteQuick runs the suite end to end with tiny counts: every in-process and
// Go-client cell must have samples and sane numbers, and the report must render
// with its targets. It asserts no timings. wrk, ghz and the Node peer are
// optional external tools, so this test runs without them (Tools is empty); the
// suite then reports them as "not installed", which the test checks.
func TestSuiteQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs ONNX Runtime")
	}
	defer goleak.VerifyNone(t)
	iters := 50
	if raceEnabled {
		iters = 10
	}
	cfg := SuiteConfig{
		Models:      []string{"mlp"},
		Concurrency: []int{1, 2},
		Load:        Load{WarmupIterations: 5, Iterations: iters},
		OpenLoad:    Load{Iterations: iters},
		Batching:    registry.BatchingConfig{MaxBatchSize: 8, MaxQueueDelay: registry.Duration(time.Millisecond)},
		RawBatches:  []int{8},
		Tools:       Tools{NodeWhy: "not installed (smoke test)"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunSuite(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Per concurrency: 6 network targets + 2 in-process closed, 6 open; raw at 1 and 8 (and maybe a reached size).
	perConc := 8 + 6
	if n := len(res.Cells); n < 2*perConc+2 {
		t.Fatalf("got %d cells, want at least %d:\n%s", n, 2*perConc+2, SuiteTable(res.Cells))
	}
	offered := map[int]float64{} // concurrency → the open loop's one rate
	for _, c := range res.Cells {
		if c.Samples <= 0 || c.P50 <= 0 || c.P99 < c.P50 || c.RowsPerSec <= 0 || c.Errors != 0 {
			t.Errorf("insane cell %+v", c)
		}
		if c.Driver == DriverOpen {
			if c.Offered <= 0 {
				t.Errorf("open-loop cell without an offered rate: %+v", c)
			}
			if r, ok := offered[c.Conc]; ok && r != c.Offered {
				t.Errorf("open-loop cells at c=%d offered %v and %v req/s, want one rate for every target", c.Conc, r, c.Offered)
			}
			offered[c.Conc] = c.Offered
		}
		// Every Nimbus cell (REST, gRPC, in-process) runs calls the batch-size
		// histogram records, batching off included (batches of 1).
		switch c.Target {
		case TargetNimbusREST, TargetNimbusGRPC, TargetManager:
			if c.MeanBatch <= 0 {
				t.Errorf("Nimbus cell without a mean batch: %+v", c)
			}
			if !c.Batching && c.MeanBatch != 1 {
				t.Errorf("batching off but mean batch %v: %+v", c.MeanBatch, c)
			}
		}
	}
	var buf bytes.Buffer
	rep := SuiteReport{Date: time.Now(), Command: "test", Machine: DescribeMachine(""), Config: cfg, Result: res}
	if err := rep.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"## Targets", "added p50 at c=1, REST, mlp", "REST rows/s at saturation, mlp",
		"wrk: not installed", "ghz: not installed", "node peer: not installed", "| mlp | open | nimbus-rest | on | 2 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestParseBatchStats(t *testing.T) {
	text := `# HELP nimbus_batch_size rows per runtime call
# TYPE nimbus_batch_size histogram
nimbus_batch_size_bucket{model="m",namespace="default",version="1",le="1"} 2
nimbus_batch_size_sum{model="m",namespace="default",version="1"} 40
nimbus_batch_size_count{model="m",namespace="default",version="1"} 5
nimbus_batch_size_sum{model="m_batched",namespace="default",version="1"} 999
nimbus_batch_size_count{model="m_batched",namespace="default",version="1"} 1
nimbus_requests_total{model="m"} 7
`
	st := batchStatsOf(promText(text), "m")
	if !st.ok || st.sum != 40 || st.count != 5 {
		t.Fatalf("got %+v", st)
	}
	if got := st.meanSince(batchStats{sum: 10, count: 2, ok: true}); got != 10 {
		t.Fatalf("mean %v", got)
	}
	if got := (batchStats{ok: true}).meanSince(batchStats{ok: true}); got != 0 {
		t.Fatalf("no samples: %v", got)
	}
	if got := st.meanSince(batchStats{}); got != 0 {
		t.Fatalf("mean since a failed scrape: %v", got)
	}
	if st := batchStatsOf(promText(text), "other"); !st.ok || st.sum != 0 || st.count != 0 {
		t.Fatalf("model without series: %+v", st)
	}
}
