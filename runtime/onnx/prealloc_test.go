//go:build cgo

package onnx

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestMisdeclaredOutputShape: a model whose output is not the shape it declares
// (here Identity of x [batch,2] declared as y [batch,3]) still runs: Run finds
// that ONNX Runtime refuses the preallocated output, runs again with ONNX Runtime
// allocating it, and stops preallocating for that model.
func TestMisdeclaredOutputShape(t *testing.T) {
	const (
		modelOpset = 8
		graphNode  = 1
		nodeInput  = 1
		nodeOutput = 2
		nodeOpType = 4
		opsetVer   = 2
		batchParam = "batch"
	)
	dims := func(second uint64) []byte {
		return tensorType(onnxFloat, field(dimParam, []byte(batchParam)), varint(dimValue, second))
	}
	node := cat(field(nodeInput, []byte("x")), field(nodeOutput, []byte("y")), field(nodeOpType, []byte("Identity")))
	data := cat(varint(modelIRVersion, 8), field(modelOpset, varint(opsetVer, 13)),
		field(modelGraph, cat(field(graphNode, node),
			field(graphInput, valueInfo("x", dims(2))),
			field(graphOutput, valueInfo("y", dims(3))))))
	path := filepath.Join(t.TempDir(), "liar.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := newTestRuntime(t).Load(context.Background(), path, runtime.Options{})
	if err != nil {
		// ORT 1.24 (the pinned version) loads this model; if a future version
		// refuses it, the fallback needs another way to be exercised.
		t.Fatalf("ONNX Runtime refuses the model at load, so the fallback goes untested: %v", err)
	}
	defer m.Close()
	x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{2, 2}, Data: make([]byte, 16)}
	x.Data[0] = 1
	for i := range 3 {
		got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if len(got) != 1 || tensor.ShapeString(got[0].Shape) != "[2,2]" || string(got[0].Data) != string(x.Data) {
			t.Fatalf("run %d: got %+v", i, got[0])
		}
	}
	if !m.(*model).noPrealloc.Load() {
		t.Error("preallocation is still on for a model whose output shape is wrong")
	}
}
