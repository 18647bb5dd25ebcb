//go:build cgo

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// newORTDirect opens one ONNX Runtime AdvancedSession per worker with input and
// output tensors bound once, so a call is ORT's Run and nothing else: below
// raw-run, which converts tensors through Nimbus's adapter on every call. It
// needs FP32
// outputs whose dims past the first are fixed.
//
// It is the binding's own path into ONNX Runtime, beside Nimbus's cgo layer
// (runtime/onnx): the binding opens the same library, and ONNX Runtime's
// environment is one per process, shared by both.
func newORTDirect(path string, sig tensor.Signature, x *tensor.Tensor, conc int) (op, func(), error) {
	if !ort.IsInitialized() {
		lib, err := onnx.FindLibrary()
		if err != nil {
			return nil, nil, err
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			return nil, nil, fmt.Errorf("ort-direct: %w", err)
		}
	}
	batch := x.Shape[0]
	floats := make([]float32, len(x.Data)/4)
	for i := range floats {
		floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(x.Data[4*i:]))
	}
	var outNames []string
	var outShapes []ort.Shape
	for _, o := range sig.Outputs {
		if !o.Supported() {
			continue
		}
		if o.DataType != tensor.FP32 || len(o.Shape) == 0 {
			return nil, nil, fmt.Errorf("ort-direct: output %s is %s %v; only FP32 with a batch dim is handled", o.Name, o.DataType, o.Shape)
		}
		shape := ort.Shape{batch}
		for _, d := range o.Shape[1:] {
			if d < 0 {
				return nil, nil, fmt.Errorf("ort-direct: output %s has a dynamic inner dim", o.Name)
			}
			shape = append(shape, d)
		}
		outNames = append(outNames, o.Name)
		outShapes = append(outShapes, shape)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	for _, step := range []func() error{
		func() error { return so.SetIntraOpNumThreads(1) },
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0") },
		func() error { return so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0") },
	} {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}

	var destroy []interface{ Destroy() error }
	cleanup := func() {
		for i := len(destroy) - 1; i >= 0; i-- {
			destroy[i].Destroy()
		}
	}
	sessions := make([]*ort.AdvancedSession, conc)
	for w := range conc {
		in, err := ort.NewTensor(ort.Shape(x.Shape), floats)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		destroy = append(destroy, in)
		outs := make([]ort.Value, len(outShapes))
		for i, s := range outShapes {
			t, err := ort.NewEmptyTensor[float32](s)
			if err != nil {
				cleanup()
				return nil, nil, err
			}
			destroy = append(destroy, t)
			outs[i] = t
		}
		s, err := ort.NewAdvancedSession(path, []string{sig.Inputs[0].Name}, outNames, []ort.Value{in}, outs, so)
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("ort-direct: %w", err)
		}
		destroy = append(destroy, s)
		sessions[w] = s
	}
	return func(_ context.Context, w int) error { return sessions[w].Run() }, cleanup, nil
}
