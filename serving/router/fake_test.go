package router

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	dto "github.com/prometheus/client_model/go"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend stands in for serving.Manager. The unit under test is the router —
// which target a request goes to, what it answers, how shadows behave — so a
// backend whose answers, delays and failures each test controls is the right
// tool here; the end-to-end tests with real ONNX models exercise the whole path.
type fakeBackend struct {
	// models maps a model name to how it answers; other names are NotFound.
	// Tests fill it before the first request and never change it afterwards.
	models   map[string]modelFunc
	notReady map[string]bool // "model@ref"

	mu    sync.Mutex
	calls map[string]int // "model@ref" as requested
}

type modelFunc func(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error)

func newFake() *fakeBackend {
	return &fakeBackend{models: map[string]modelFunc{}, notReady: map[string]bool{}, calls: map[string]int{}}
}

func (f *fakeBackend) Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
	f.mu.Lock()
	f.calls[targetName(req.Model, req.Version)]++
	f.mu.Unlock()
	fn, ok := f.models[req.Model]
	if !ok {
		return nil, errs.New(errs.NotFound, "model %s not found", req.Model).WithField("model")
	}
	return fn(ctx, req)
}

func (f *fakeBackend) ModelMetadata(_ context.Context, ns, model, version string) (*serving.ModelMetadata, error) {
	if _, ok := f.models[model]; !ok {
		return nil, errs.New(errs.NotFound, "model %s not found", model)
	}
	return &serving.ModelMetadata{
		Name: model, Versions: []string{"1", "2"}, Platform: "onnxruntime_onnx",
		Inputs: []tensor.TensorSpec{{Name: "x-" + model, DataType: tensor.FP32, Shape: []int64{-1, 2}}},
	}, nil
}

func (f *fakeBackend) ModelReady(_ context.Context, ns, model, version string) (bool, error) {
	if _, ok := f.models[model]; !ok {
		return false, errs.New(errs.NotFound, "model %s not found", model)
	}
	return !f.notReady[targetName(model, version)], nil
}

func (f *fakeBackend) count(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[target]
}

// scaled answers y = x*scale + offset. The version that answers is the requested
// version number, or latest for "" and aliases.
func scaled(latest string, scale, offset float32) modelFunc {
	return func(_ context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		version := latest
		if isDigits(req.Version) {
			version = req.Version
		}
		x := floats(req.Inputs[0])
		y := make([]float32, len(x))
		for i, v := range x {
			y[i] = v*scale + offset
		}
		return &serving.InferResponse{
			ModelName: req.Model, ModelVersion: version, ID: req.ID,
			Outputs: []*tensor.Tensor{fp32("y", req.Inputs[0].Shape, y...)},
		}, nil
	}
}

// echo answers like scaled(latest, 1, 0).
func echo(latest string) modelFunc { return scaled(latest, 1, 0) }

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func fp32(name string, shape []int64, v ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

func floats(t *tensor.Tensor) []float32 {
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

func request(model string) *serving.InferRequest {
	return &serving.InferRequest{Model: model, Inputs: []*tensor.Tensor{fp32("x", []int64{1, 2}, 1, 2)}}
}

func newRouter(t *testing.T, b Backend, opts Options) *Router {
	t.Helper()
	r := New(b, opts)
	t.Cleanup(r.Close)
	return r
}

// metricValue sums the counter values (or histogram sample counts) of the series
// of family name whose labels include want.
func metricValue(t *testing.T, m *telemetry.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			if !hasLabels(s, want) {
				continue
			}
			switch {
			case s.Counter != nil:
				sum += s.GetCounter().GetValue()
			case s.Histogram != nil:
				sum += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range s.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
