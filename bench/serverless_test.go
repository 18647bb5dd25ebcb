package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestVariantsLoadWithIdenticalOutputs checks what the serverless benchmarks
// rely on: a variant (the model with a doc_string appended) is another artifact
// (other bytes), has the same signature, loads in ONNX Runtime and answers
// exactly as the model it came from; and the generated MLP computes what its
// weights say.
func TestVariantsLoadWithIdenticalOutputs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime")
	}
	root, err := FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	lib, err := onnx.FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	rt := onnx.New(lib, slog.New(slog.DiscardHandler))
	small := MLPSpec{Inputs: 8, Hidden: 32, Outputs: 5, Seed: 7}
	models := map[string][]byte{"generated small": small.ONNX(), "generated big": BigMLP.ONNX()}
	for _, name := range []string{"mlp", "mlp_medium"} {
		b, err := os.ReadFile(filepath.Join(root, "testdata", "models", name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		models[name] = b
	}
	if n := len(models["generated big"]); n < 8_000_000 || n > 10_000_000 {
		t.Errorf("BigMLP is %d bytes, want 8–10 MB", n)
	}
	ctx := context.Background()
	dir := t.TempDir()
	for name, base := range models {
		t.Run(name, func(t *testing.T) {
			v1, v2 := Variant(base, 1), Variant(base, 2)
			if bytes.Equal(v1, v2) || bytes.Equal(v1, base) {
				t.Fatal("variants do not differ")
			}
			paths := make([]string, 3)
			for i, b := range [][]byte{base, v1, v2} {
				paths[i] = filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+"-"+string(rune('a'+i))+".onnx")
				if err := os.WriteFile(paths[i], b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var want []*tensor.Tensor
			var wantSig tensor.Signature
			for i, p := range paths {
				sig, err := onnx.InspectFile(p)
				if err != nil {
					t.Fatal(err)
				}
				in := sig.Inputs[0]
				x := &tensor.Tensor{Name: in.Name, DataType: tensor.FP32, Shape: []int64{3, in.Shape[1]}, Data: testFloats(3 * int(in.Shape[1]))}
				m, err := rt.Load(ctx, p, runtime.Options{})
				if err != nil {
					t.Fatalf("load %s: %v", filepath.Base(p), err)
				}
				out, err := m.Run(ctx, []*tensor.Tensor{x}, nil)
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					want, wantSig = out, sig
					if strings.HasPrefix(name, "generated") {
						spec := map[string]MLPSpec{"generated small": small, "generated big": BigMLP}[name]
						checkMLP(t, spec, x, out)
						if got := sig.Inputs[0].Shape; !slices.Equal(got, []int64{-1, int64(spec.Inputs)}) {
							t.Errorf("input shape %v", got)
						}
					}
					continue
				}
				if err := sameOutputs(want, out); err != nil {
					t.Errorf("variant %d: %v", i, err)
				}
				if !slices.EqualFunc(sig.Inputs, wantSig.Inputs, specEqual) || !slices.EqualFunc(sig.Outputs, wantSig.Outputs, specEqual) {
					t.Errorf("variant %d signature %+v, want %+v", i, sig, wantSig)
				}
			}
		})
	}
}

func specEqual(a, b tensor.TensorSpec) bool {
	return a.Name == b.Name && a.DataType == b.DataType && slices.Equal(a.Shape, b.Shape)
}

func testFloats(n int) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(math.Cos(float64(i)*0.71))))
	}
	return b
}

// checkMLP computes the spec's forward pass in float64 and compares.
func checkMLP(t *testing.T, s MLPSpec, x *tensor.Tensor, out []*tensor.Tensor) {
	t.Helper()
	w1, b1, w2, b2 := s.Weights()
	if len(out) != 1 || out[0].Name != "y" || !slices.Equal(out[0].Shape, []int64{x.Shape[0], int64(s.Outputs)}) {
		t.Fatalf("outputs %+v", out)
	}
	f32 := func(b []byte, i int) float64 {
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	h := make([]float64, s.Hidden)
	for r := range int(x.Shape[0]) {
		for j := range s.Hidden {
			v := float64(b1[j])
			for i := range s.Inputs {
				v += f32(x.Data, r*s.Inputs+i) * float64(w1[i*s.Hidden+j])
			}
			h[j] = max(v, 0)
		}
		for k := range s.Outputs {
			v := float64(b2[k])
			for j := range s.Hidden {
				v += h[j] * float64(w2[j*s.Outputs+k])
			}
			if got := f32(out[0].Data, r*s.Outputs+k); math.Abs(got-v) > 1e-4*max(1, math.Abs(v)) {
				t.Fatalf("row %d output %d: ONNX Runtime %v, reference %v", r, k, got, v)
			}
		}
	}
}

// TestServerlessQuick runs each serverless benchmark at smoke size against a
// freshly built nimbus binary (or $NIMBUS_BIN). It asserts correctness only,
// never timings: every answer matched the model's outputs (RunServerless fails
// otherwise), no request failed, the density run had cold starts and
// evictions, the cold-start header marks exactly the cold requests, and the
// report renders.
func TestServerlessQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts nimbus servers, runs ONNX Runtime")
	}
	defer goleak.VerifyNone(t)
	root, err := FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := nimbusBinary(t, root)
	run := func(t *testing.T, which string) ServerlessResult {
		cfg := DefaultServerlessConfig(true)
		cfg.Binary, cfg.RepoRoot, cfg.Benchmarks, cfg.WorkDir = bin, root, []string{which}, t.TempDir()
		if raceEnabled {
			cfg.Cold.Samples = 5
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		res, err := RunServerless(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Notes) > 0 {
			t.Errorf("notes: %q", res.Notes)
		}
		var buf bytes.Buffer
		if err := (ServerlessReport{Date: time.Now(), Command: "test", Machine: DescribeMachine(root), Config: cfg, Result: res}).WriteMarkdown(&buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "## Goals") {
			t.Errorf("report lacks its goals:\n%s", buf.String())
		}
		t.Log("\n" + buf.String())
		return res
	}

	t.Run(BenchDensity, func(t *testing.T) {
		res := run(t, BenchDensity)
		d := res.Density
		if d.Errors != 0 {
			t.Errorf("%d requests failed: %v", d.Errors, d.ErrorLog)
		}
		if d.Requests == 0 || d.Cost <= 0 || d.Budget < d.Cost {
			t.Errorf("requests %d, cost %d, budget %d", d.Requests, d.Cost, d.Budget)
		}
		if d.ColdHeader == 0 || d.Cold.N != d.ColdHeader {
			t.Errorf("%d answers carried %s (%d cold latencies): a budget for %d of %d models must cause cold starts",
				d.ColdHeader, HeaderColdStart, d.Cold.N, d.Config.Resident, d.Config.Models)
		}
		if !d.MetricsFound || d.MetricColdStarts <= 0 || d.MetricEvictions <= 0 {
			t.Errorf("metrics: found %v, cold starts %v, evictions %v", d.MetricsFound, d.MetricColdStarts, d.MetricEvictions)
		}
		if d.MetricColdStarts > float64(d.ColdHeader) {
			t.Errorf("nimbus_cold_starts_total grew by %v but only %d answers were cold", d.MetricColdStarts, d.ColdHeader)
		}
		if d.PeakRSS <= 0 || d.EndRSS <= 0 || d.EndStatusErr != "" {
			t.Errorf("memory: peak %d, end %d, status %q", d.PeakRSS, d.EndRSS, d.EndStatusErr)
		}
		if d.EndMemory.BudgetBytes != d.Budget {
			t.Errorf("status reports budget %d, the server was given %d", d.EndMemory.BudgetBytes, d.Budget)
		}
	})
	t.Run(BenchCold, func(t *testing.T) {
		res := run(t, BenchCold)
		if len(res.Cold) != 2 {
			t.Fatalf("%d cold-start models, want 2", len(res.Cold))
		}
		for _, c := range res.Cold {
			n := c.Samples
			if c.Cold.N != n || c.Warm.N != n || c.Raw.N != n || c.RawLoad.N != n {
				t.Errorf("%s: samples cold %d warm %d raw %d/%d, want %d", c.Model, c.Cold.N, c.Warm.N, c.RawLoad.N, c.Raw.N, n)
			}
			if c.HeaderOnWarm != 0 {
				t.Errorf("%s: %d warm requests carried %s", c.Model, c.HeaderOnWarm, HeaderColdStart)
			}
			if c.HeaderOnCold != n || c.ServerWait.N != n {
				t.Errorf("%s: %d of %d cold requests carried %s (%d server waits)", c.Model, c.HeaderOnCold, n, HeaderColdStart, c.ServerWait.N)
			}
		}
	})
	t.Run(BenchMemory, func(t *testing.T) {
		res := run(t, BenchMemory)
		m := res.Memory
		for _, s := range []MemSeries{m.Server, m.InProcess} {
			if len(s.Points) < 2 || s.First().Cycle != 1 || s.Last().Cycle != m.Cycles || s.First().RSS <= 0 || s.Cycle.N != m.Cycles {
				t.Errorf("%s: %+v", s.What, s)
			}
		}
	})
}

// nimbusBinary is $NIMBUS_BIN, or cmd/nimbus built into a temp dir.
func nimbusBinary(t *testing.T, root string) string {
	if p := os.Getenv("NIMBUS_BIN"); p != "" {
		return p
	}
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if !isFile(gobin) {
		if gobin, _ = exec.LookPath("go"); gobin == "" {
			t.Skip("no go command to build cmd/nimbus with; set NIMBUS_BIN")
		}
	}
	bin := filepath.Join(t.TempDir(), "nimbus")
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/nimbus")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cmd/nimbus: %v\n%s", err, out)
	}
	return bin
}

func TestPromTextSum(t *testing.T) {
	text := promText(`# HELP nimbus_cold_starts_total loads started by a request
# TYPE nimbus_cold_starts_total counter
nimbus_cold_starts_total{namespace="default"} 7
nimbus_cold_starts_total{namespace="other"} 2
nimbus_cold_starts_total_extra{namespace="default"} 100
nimbus_idle_unloads_total 3
nimbus_model_load_duration_seconds_sum{namespace="default",format="onnx"} 0.5
nimbus_model_load_duration_seconds_count{namespace="default",format="onnx"} 4
`)
	for _, c := range []struct {
		name  string
		match []string
		want  float64
		ok    bool
	}{
		{"nimbus_cold_starts_total", []string{`namespace="default"`}, 7, true},
		{"nimbus_cold_starts_total", nil, 9, true},
		{"nimbus_idle_unloads_total", nil, 3, true},
		{"nimbus_model_load_duration_seconds_sum", []string{`namespace="default"`}, 0.5, true},
		{"nimbus_model_load_duration_seconds", nil, 0, false},
		{"nimbus_evictions_total", nil, 0, false},
	} {
		if got, ok := text.sum(c.name, c.match...); got != c.want || ok != c.ok {
			t.Errorf("sum(%s, %v) = %v, %v; want %v, %v", c.name, c.match, got, ok, c.want, c.ok)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	m, err := parseProcStatus("Name:\tnimbus\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n")
	if err != nil || m.RSS != 100<<20 || m.HWM != 200<<20 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := parseProcStatus("Name:\tx\n"); err == nil {
		t.Fatal("no error without VmRSS")
	}
	if m, err := ReadProcMem("self"); err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Fatalf("self: %+v, %v", m, err)
	}
}

func TestZipfTopShare(t *testing.T) {
	if got := zipfTopShare(1.1, 1, 100, 100); math.Abs(got-1) > 1e-12 {
		t.Errorf("all ranks: %v", got)
	}
	a, b := zipfTopShare(1.1, 1, 10_000, 500), zipfTopShare(1.1, 1, 10_000, 1000)
	if !(a > 0.5 && a < b && b < 1) {
		t.Errorf("top 500: %v, top 1000: %v", a, b)
	}
}

func TestCheckpoints(t *testing.T) {
	var got []int
	for c := 1; c <= 25; c++ {
		if checkpoint(c, 25) {
			got = append(got, c)
		}
	}
	if want := []int{1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25}; !slices.Equal(got, want) {
		t.Errorf("checkpoints %v, want %v", got, want)
	}
}
