//go:build cgo

package onnx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/tensor"
)

// newTestRuntime uses the library installed by scripts/install-ort.sh. A missing
// library fails the test (with the install hint) rather than skipping it, so CI
// cannot pass without running ONNX Runtime.
func newTestRuntime(t testing.TB) *Runtime {
	t.Helper()
	lib, err := FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	return New(lib, nil)
}

func loadModel(t testing.TB, name string) runtime.Model {
	t.Helper()
	m, err := newTestRuntime(t).Load(context.Background(), modelPath(name), runtime.Options{})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	})
	return m
}

func TestLoadAllModels(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(modelsDir, "*.onnx"))
	if err != nil || len(files) < 6 {
		t.Fatalf("models: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m := loadModel(t, filepath.Base(f))
			want, err := InspectFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(m.Signature()) != fmt.Sprint(want) {
				t.Errorf("Signature() = %+v, Inspect = %+v", m.Signature(), want)
			}
		})
	}
}

func float32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestRunCases runs every case of cases.json and compares each answer with
// numpy's and with onnxruntime-node's (node_answers.json), both made by `make
// models`: scalars of every type, outputs whose shape only the run decides
// (FP16, BF16, BYTES), an optional input given and left out, and the usual
// MLP, multi-input and tree models.
func TestRunCases(t *testing.T) {
	all, err := onnxtest.LoadCases(modelsDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mlp", "multi_io", "tree", "scalars", "scalars_bf16", "vad_like", "dynamic_out", "dynamic_bf16", "optional_input"}
	for _, name := range want {
		if len(all[name]) == 0 {
			t.Fatalf("cases.json has no cases for %s", name)
		}
	}
	nodeChecked := 0
	for _, name := range want {
		m := loadModel(t, name+".onnx")
		for i, c := range all[name] {
			t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
				// Ask for the outputs in reverse signature order: Run must follow the request.
				var names []string
				sig := m.Signature().Outputs
				for j := len(sig) - 1; j >= 0; j-- {
					names = append(names, sig[j].Name)
				}
				for _, ortAllocates := range []bool{false, true} {
					m.(*model).noPrealloc.Store(ortAllocates)
					got := runOK(t, m, c.Inputs, names, len(names))
					for j, n := range names {
						w := c.Output(n)
						if w == nil {
							t.Fatalf("cases.json has no output %s", n)
						}
						if err := onnxtest.Compare(got[j], w); err != nil {
							t.Errorf("ortAllocates=%v: against numpy: %v", ortAllocates, err)
						}
					}
					for k, node := range c.Node {
						j := slices.Index(names, c.Outputs[k].Name)
						if err := onnxtest.CompareNode(got[j], node); err != nil {
							t.Errorf("ortAllocates=%v: against onnxruntime-node: %v", ortAllocates, err)
						}
					}
				}
				if c.Node != nil {
					nodeChecked++
				}
			})
		}
	}
	// Only the BF16 models and the optional input left out lack an answer.
	if nodeChecked < 12 {
		t.Errorf("only %d cases were checked against onnxruntime-node", nodeChecked)
	}
}

// dtypeInput makes a [3,2] tensor of dt with varied bit patterns.
func dtypeInput(name string, dt tensor.DataType) *tensor.Tensor {
	t := &tensor.Tensor{Name: name, DataType: dt, Shape: []int64{3, 2}}
	switch dt {
	case tensor.Bytes:
		t.Strings = [][]byte{[]byte(""), []byte("héllo"), []byte("a b"), []byte(strings.Repeat("x", 300)), {0xff, 0xfe}, []byte("z\x00nul")}
	case tensor.Bool:
		t.Data = []byte{1, 0, 0, 1, 1, 1}
	case tensor.FP16, tensor.BF16:
		// FP16: 1.0, -2.0, max, smallest subnormal, +Inf, NaN (other bit patterns as BF16)
		for _, h := range []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x7e00} {
			t.Data = binary.LittleEndian.AppendUint16(t.Data, h)
		}
	default:
		for i := range 6 * dt.Size() {
			t.Data = append(t.Data, byte(i*37+11))
		}
	}
	return t
}

// runOK runs m and fails the test unless it returns n outputs.
func runOK(t *testing.T, m runtime.Model, inputs []*tensor.Tensor, outputs []string, n int) []*tensor.Tensor {
	t.Helper()
	got, err := m.Run(context.Background(), inputs, outputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d outputs, want %d", len(got), n)
	}
	return got
}

// TestDtypesRoundTrip runs every data type through the model twice: with the
// outputs preallocated, and with ONNX Runtime allocating them (as for a model
// whose output shapes cannot be worked out). Strings may hold NUL bytes.
func TestDtypesRoundTrip(t *testing.T) {
	m := loadModel(t, "dtypes.onnx")
	var inputs []*tensor.Tensor
	for _, d := range dtypesModel {
		inputs = append(inputs, dtypeInput("in_"+d.suffix, d.dt))
	}
	for _, ortAllocates := range []bool{false, true} {
		t.Run(fmt.Sprintf("ortAllocates=%v", ortAllocates), func(t *testing.T) {
			m.(*model).noPrealloc.Store(ortAllocates)
			got := runOK(t, m, inputs, nil, len(dtypesModel))
			for i, d := range dtypesModel {
				t.Run(d.suffix, func(t *testing.T) {
					want := dtypeInput("out_"+d.suffix, d.dt)
					if got[i].Name != want.Name || got[i].DataType != d.dt || fmt.Sprint(got[i].Shape) != "[3 2]" {
						t.Fatalf("got %s %s %v", got[i].Name, got[i].DataType, got[i].Shape)
					}
					if !bytes.Equal(got[i].Data, want.Data) || fmt.Sprint(got[i].Strings) != fmt.Sprint(want.Strings) {
						t.Errorf("got %v %q, want %v %q", got[i].Data, got[i].Strings, want.Data, want.Strings)
					}
				})
			}
		})
	}
}

// TestRunBadInput: malformed tensors fail with InvalidArgument, never a panic.
func TestRunBadInput(t *testing.T) {
	m := loadModel(t, "dtypes.onnx")
	valid := func() []*tensor.Tensor {
		var inputs []*tensor.Tensor
		for _, d := range dtypesModel {
			inputs = append(inputs, dtypeInput("in_"+d.suffix, d.dt))
		}
		return inputs
	}
	input := func(inputs []*tensor.Tensor, dt tensor.DataType) *tensor.Tensor {
		for _, in := range inputs {
			if in.DataType == dt {
				return in
			}
		}
		t.Fatalf("dtypes.onnx has no %s input", dt)
		return nil
	}
	tests := []struct {
		name  string
		spoil func(inputs []*tensor.Tensor) []*tensor.Tensor
		want  string
	}{
		{"nil tensor", func(in []*tensor.Tensor) []*tensor.Tensor { return append(in, nil) }, "nil input tensor"},
		{"nil data", func(in []*tensor.Tensor) []*tensor.Tensor { input(in, tensor.FP32).Data = nil; return in }, "needs 24 bytes, got 0"},
		{"long data", func(in []*tensor.Tensor) []*tensor.Tensor {
			x := input(in, tensor.Int64)
			x.Data = append(x.Data, 0)
			return in
		}, "needs 48 bytes, got 49"},
		{"negative dim", func(in []*tensor.Tensor) []*tensor.Tensor { input(in, tensor.Uint8).Shape = []int64{-3, 2}; return in }, "negative dimension"},
		{"too few strings", func(in []*tensor.Tensor) []*tensor.Tensor {
			x := input(in, tensor.Bytes)
			x.Strings = x.Strings[:5]
			return in
		}, "needs 6 elements, got 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Run(context.Background(), tt.spoil(valid()), nil)
			if errs.KindOf(err) != errs.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (kind %v), want InvalidArgument containing %q", err, errs.KindOf(err), tt.want)
			}
		})
	}
}

func TestZipMapOutput(t *testing.T) {
	m := loadModel(t, "tree_zipmap.onnx")
	out, ok := m.Signature().Output("output_probability")
	if !ok || out.Supported() || out.Kind != "seq(map(int64,tensor(float)))" {
		t.Fatalf("output_probability spec = %+v, %v", out, ok)
	}
	in := &tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
	got, err := m.Run(context.Background(), []*tensor.Tensor{in}, nil)
	if err != nil || len(got) != 1 || got[0].Name != "label" {
		t.Fatalf("Run(all) = %v, %v; want just label", got, err)
	}
	_, err = m.Run(context.Background(), []*tensor.Tensor{in}, []string{"label", "output_probability"})
	const want = "output output_probability is seq(map(int64,tensor(float))), which the Open Inference Protocol cannot carry"
	if errs.KindOf(err) != errs.InvalidArgument || err.Error() != want {
		t.Errorf("err = %v (%v), want %q", err, errs.KindOf(err), want)
	}
}

func TestRunErrors(t *testing.T) {
	m := loadModel(t, "multi_io.onnx")
	f32 := func(name string, shape ...int64) *tensor.Tensor {
		return &tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: make([]byte, 4*shape[0]*shape[1])}
	}
	b := &tensor.Tensor{Name: "b", DataType: tensor.Int64, Shape: []int64{2, 3}, Data: make([]byte, 48)}
	mask := &tensor.Tensor{Name: "mask", DataType: tensor.Bool, Shape: []int64{2, 3}, Data: make([]byte, 6)}
	ok := []*tensor.Tensor{f32("a", 2, 3), b, mask}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		inputs  []*tensor.Tensor
		outputs []string
		kind    errs.Kind
		want    string
	}{
		{"missing input", nil, []*tensor.Tensor{f32("a", 2, 3), b}, nil, errs.InvalidArgument, `missing input "mask"`},
		{"unknown input", nil, append([]*tensor.Tensor{f32("c", 2, 3)}, ok...), nil, errs.InvalidArgument, `unknown input "c"`},
		{"input twice", nil, append([]*tensor.Tensor{f32("a", 2, 3)}, ok...), nil, errs.InvalidArgument, `input "a" given twice`},
		{"wrong datatype", nil, []*tensor.Tensor{f32("a", 2, 3), f32("b", 2, 3), mask}, nil, errs.InvalidArgument, "input b: datatype FP32, want INT64"},
		{"wrong shape", nil, []*tensor.Tensor{f32("a", 2, 4), b, mask}, nil, errs.InvalidArgument, "input a: shape [2,4] does not match [-1,3]"},
		{"short data", nil, []*tensor.Tensor{{Name: "a", DataType: tensor.FP32, Shape: []int64{2, 3}, Data: make([]byte, 5)}, b, mask},
			nil, errs.InvalidArgument, "needs 24 bytes, got 5"},
		{"unknown output", nil, ok, []string{"sum", "nope"}, errs.InvalidArgument, `unknown output "nope"`},
		{"output twice", nil, ok, []string{"sum", "sum", "sum", "sum"}, errs.InvalidArgument, "output sum is requested twice"},
		{"canceled", canceled, ok, nil, errs.Canceled, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, err := m.Run(ctx, tt.inputs, tt.outputs)
			if err == nil || errs.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (kind %v), want %v containing %q", err, errs.KindOf(err), tt.kind, tt.want)
			}
		})
	}

	// Inputs that are sub-slices at odd offsets still work (they are copied to aligned memory).
	buf := make([]byte, 1+24)
	binary.LittleEndian.PutUint32(buf[1:], math.Float32bits(1.5))
	odd := &tensor.Tensor{Name: "a", DataType: tensor.FP32, Shape: []int64{2, 3}, Data: buf[1:]}
	got, err := m.Run(context.Background(), []*tensor.Tensor{mask, b, odd}, []string{"sum"})
	if err != nil || float32s(got[0].Data)[0] != 1.5 {
		t.Fatalf("unaligned input: %v, %v", got, err)
	}
	// An empty batch runs and returns empty outputs.
	empty := []*tensor.Tensor{f32("a", 0, 3),
		{Name: "b", DataType: tensor.Int64, Shape: []int64{0, 3}}, {Name: "mask", DataType: tensor.Bool, Shape: []int64{0, 3}}}
	got, err = m.Run(context.Background(), empty, []string{"count"})
	if err != nil || fmt.Sprint(got[0].Shape) != "[0]" || len(got[0].Data) != 0 {
		t.Fatalf("empty batch: %+v, %v", got, err)
	}
}

func TestRunAfterClose(t *testing.T) {
	m, err := newTestRuntime(t).Load(context.Background(), modelPath("mlp.onnx"), runtime.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	in := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
	if _, err := m.Run(context.Background(), []*tensor.Tensor{in}, nil); errs.KindOf(err) != errs.Unavailable {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestConcurrentRun(t *testing.T) {
	m := loadModel(t, "mlp.onnx")
	const workers, runs = 32, 20
	input := func(w int) *tensor.Tensor {
		x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{2, 4}}
		for i := range 8 {
			x.Data = binary.LittleEndian.AppendUint32(x.Data, math.Float32bits(float32(w)*0.1-float32(i)*0.3))
		}
		return x
	}
	want := make([][]*tensor.Tensor, workers)
	for w := range workers {
		var err error
		if want[w], err = m.Run(context.Background(), []*tensor.Tensor{input(w)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background()) // exercises RunOptions
			defer cancel()
			for range runs {
				got, err := m.Run(ctx, []*tensor.Tensor{input(w)}, []string{"probs", "y"})
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got[0].Data, want[w][1].Data) || !bytes.Equal(got[1].Data, want[w][0].Data) {
					t.Errorf("worker %d: results differ from the sequential run", w)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Parses as a model, but ONNX Runtime rejects it: output y is produced by no node.
	dangling := cat(varint(modelIRVersion, 8),
		msgField(modelGraph, msgField(graphOutput, valueInfo("y", tensorType(onnxFloat, varint(dimValue, 1))))))
	mlp, err := os.ReadFile(modelPath("mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		path string
		kind errs.Kind
		want string
	}{
		{"garbage", nil, write("garbage.onnx", []byte("GIF89a not a model at all")), errs.InvalidArgument, "not an ONNX model"},
		{"empty", nil, write("empty.onnx", nil), errs.InvalidArgument, "not an ONNX model: the file is empty"},
		{"truncated", nil, write("trunc.onnx", mlp[:len(mlp)-7]), errs.InvalidArgument, "not an ONNX model"},
		{"rejected by ORT", nil, write("dangling.onnx", dangling), errs.InvalidArgument, "ONNX Runtime cannot load the model"},
		{"missing file", nil, filepath.Join(dir, "missing.onnx"), errs.NotFound, "model file not found"},
		{"canceled", canceled, modelPath("mlp.onnx"), errs.Canceled, "context canceled"},
	}
	rt := newTestRuntime(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			m, err := rt.Load(ctx, tt.path, runtime.Options{})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			if errs.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (kind %v), want %v containing %q", err, errs.KindOf(err), tt.kind, tt.want)
			}
		})
	}
}

// childEnv marks the process TestLoadWithoutLibrary starts. ONNX Runtime's
// environment is process-global, so a failed initialization must happen in a
// process of its own.
const childEnv = "NIMBUS_ONNX_TEST_CHILD"

func TestLoadWithoutLibrary(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLoadWithoutLibrary$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child process failed: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("--- PASS: TestLoadWithoutLibrary")) {
			t.Fatalf("child did not run the test:\n%s", out)
		}
		return
	}
	notALib := filepath.Join(t.TempDir(), libName)
	if err := os.WriteFile(notALib, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	goodLib, findErr := FindLibrary()
	tests := []struct {
		name string
		lib  string
		env  string
		want string
	}{
		{"missing path", "/nonexistent/" + libName, "", installHint},
		{"env points nowhere", "", "/nonexistent/" + libName, installHint + " (NIMBUS_ORT_LIB=/nonexistent/"},
		{"not a library", notALib, "", "cannot initialize ONNX Runtime from " + notALib},
		{"failure is reported on every load", notALib, "", "cannot initialize ONNX Runtime"},
		// The failed initialization sticks for the life of the process, even for a good library.
		{"good library after a failure", goodLib, "", "cannot initialize ONNX Runtime from " + notALib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lib == "" && tt.env == "" {
				t.Fatal(findErr)
			}
			if tt.env != "" {
				t.Setenv(LibraryEnv, tt.env)
			}
			_, err := New(tt.lib, nil).Load(context.Background(), modelPath("mlp.onnx"), runtime.Options{})
			if !errors.Is(err, errs.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want Unavailable containing %q", err, tt.want)
			}
		})
	}
}

func BenchmarkRawRun(b *testing.B) {
	benches := []struct {
		model string
		batch int64
		feats int64
	}{
		{"mlp", 1, 4},
		{"mlp", 64, 4},
		{"mlp_medium", 64, 64},
	}
	for _, bb := range benches {
		b.Run(fmt.Sprintf("%s/batch=%d", bb.model, bb.batch), func(b *testing.B) {
			m := loadModel(b, bb.model+".onnx")
			x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{bb.batch, bb.feats}}
			for i := range bb.batch * bb.feats {
				x.Data = binary.LittleEndian.AppendUint32(x.Data, math.Float32bits(float32(i%7)*0.25-0.5))
			}
			in := []*tensor.Tensor{x}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Run(ctx, in, []string{"y"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(int64(b.N)*bb.batch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkInstances answers how execution instances should run: two goroutines
// calling Run concurrently on one shared session, or each on its own session.
// `go test -run '^$' -bench Instances -benchtime 3s ./runtime/onnx`
func BenchmarkInstances(b *testing.B) {
	for _, batch := range []int64{1, 64} {
		for _, shared := range []bool{true, false} {
			b.Run(fmt.Sprintf("mlp_medium/batch=%d/shared=%v", batch, shared), func(b *testing.B) {
				const workers = 2
				models := make([]runtime.Model, workers)
				models[0] = loadModel(b, "mlp_medium.onnx")
				for i := 1; i < workers; i++ {
					if shared {
						models[i] = models[0]
					} else {
						models[i] = loadModel(b, "mlp_medium.onnx")
					}
				}
				x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{batch, 64}, Data: make([]byte, batch*64*4)}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if _, err := models[w].Run(context.Background(), []*tensor.Tensor{x}, nil); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(int64(b.N)*batch)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
