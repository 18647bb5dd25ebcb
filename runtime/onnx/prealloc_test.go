//go:build cgo

package onnx

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// loadIdentityModel writes and loads a one-node model, y = Identity(x), whose
// input and output declare the given tensor types: the output's may differ
// from what the model really produces.
func loadIdentityModel(t *testing.T, in, out []byte) *model {
	t.Helper()
	const (
		modelOpset = 8
		graphNode  = 1
		nodeInput  = 1
		nodeOutput = 2
		nodeOpType = 4
		opsetVer   = 2
	)
	node := cat(msgField(nodeInput, []byte("x")), msgField(nodeOutput, []byte("y")), msgField(nodeOpType, []byte("Identity")))
	data := cat(varint(modelIRVersion, 8), msgField(modelOpset, varint(opsetVer, 13)),
		msgField(modelGraph, cat(msgField(graphNode, node),
			msgField(graphInput, valueInfo("x", in)),
			msgField(graphOutput, valueInfo("y", out)))))
	path := filepath.Join(t.TempDir(), "identity.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := newTestRuntime(t).Load(context.Background(), path, runtime.Options{})
	if err != nil {
		// ORT 1.24 (the pinned version) loads these models; if a future version
		// refuses them, the paths they exercise need another way to be tested.
		t.Fatalf("ONNX Runtime refuses the model at load: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m.(*model)
}

func batchDims(dt uint64, second ...[]byte) []byte {
	return tensorType(dt, append([][]byte{msgField(dimParam, []byte("batch"))}, second...)...)
}

// TestMisdeclaredOutputShape: a model whose output is not the shape it declares
// (here Identity of x [batch,2] declared as y [batch,3]) still runs: Run finds
// that ONNX Runtime refuses the preallocated output, runs again with ONNX Runtime
// allocating it, and stops preallocating for that model.
func TestMisdeclaredOutputShape(t *testing.T) {
	m := loadIdentityModel(t, batchDims(onnxFloat, varint(dimValue, 2)), batchDims(onnxFloat, varint(dimValue, 3)))
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
	if !m.noPrealloc.Load() {
		t.Error("preallocation is still on for a model whose output shape is wrong")
	}
}

// TestHugeResolvedOutput: an empty input may name a huge dim ([2^40, 0] holds no
// data), and an output declared from it must not be preallocated from that
// shape: that would take terabytes and crash the process.
func TestHugeResolvedOutput(t *testing.T) {
	const huge = 1 << 40
	seq := msgField(dimParam, []byte("seq"))
	t.Run("numeric", func(t *testing.T) {
		// y is really [batch,seq] (empty) but declared [batch,3].
		m := loadIdentityModel(t, batchDims(onnxFloat, seq), batchDims(onnxFloat, varint(dimValue, 3)))
		x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{huge, 0}}
		got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
		if err != nil || len(got) != 1 || tensor.ShapeString(got[0].Shape) != "[1099511627776,0]" || len(got[0].Data) != 0 {
			t.Fatalf("Run = %+v, %v", got, err)
		}
	})
	t.Run("fp16", func(t *testing.T) {
		m := loadIdentityModel(t, batchDims(onnxFloat16, seq), batchDims(onnxFloat16, varint(dimValue, 3)))
		x := &tensor.Tensor{Name: "x", DataType: tensor.FP16, Shape: []int64{huge, 0}}
		got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
		if err != nil || len(got) != 1 || tensor.ShapeString(got[0].Shape) != "[1099511627776,0]" || len(got[0].Data) != 0 {
			t.Fatalf("Run = %+v, %v", got, err)
		}
	})
}

// TestScalarsRun: rank-0 tensors cross into ONNX Runtime and back, for an
// output preallocated from its declared (empty) shape and for one ONNX
// Runtime allocates.
func TestScalarsRun(t *testing.T) {
	scalar := tensorType(onnxFloat, [][]byte{}...) // a shape with no dims
	m := loadIdentityModel(t, scalar, scalar)
	x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{}, Data: []byte{0, 0, 0x80, 0x3f}} // 1.0
	for _, ortAllocates := range []bool{false, true} {
		m.noPrealloc.Store(ortAllocates)
		got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
		if err != nil || len(got) != 1 || len(got[0].Shape) != 0 || !bytes.Equal(got[0].Data, x.Data) {
			t.Fatalf("ortAllocates=%v: Run = %+v, %v", ortAllocates, got, err)
		}
	}
	// A scalar is one element: a request whose shape is [1] does not match.
	_, err := m.Run(context.Background(), []*tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: []int64{1}, Data: x.Data}}, nil)
	if errs.KindOf(err) != errs.InvalidArgument || !strings.Contains(err.Error(), "does not match []") {
		t.Fatalf("a [1] tensor for a scalar input: %v", err)
	}
}

// TestHighRankOutputOfUnknownShape: an output ONNX Runtime allocates reports
// its shape in the run's one C call up to maxInlineRank dims; a higher rank
// takes a second call, and the shape must still come back whole.
func TestHighRankOutputOfUnknownShape(t *testing.T) {
	var dims [][]byte
	shape := make([]int64, maxInlineRank+3)
	for i := range shape {
		shape[i] = int64(1 + i%2)
		dims = append(dims, varint(dimValue, uint64(shape[i])))
	}
	m := loadIdentityModel(t, tensorType(onnxFloat, dims...), tensorType(onnxFloat)) // output: unknown rank
	n, _ := tensor.NumElements(shape)
	x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: shape, Data: make([]byte, 4*n)}
	for i := range x.Data {
		x.Data[i] = byte(i)
	}
	got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("Run = %v, %v", got, err)
	}
	if tensor.ShapeString(got[0].Shape) != tensor.ShapeString(shape) || !bytes.Equal(got[0].Data, x.Data) {
		t.Fatalf("got shape %s (%d bytes), want %s", tensor.ShapeString(got[0].Shape), len(got[0].Data), tensor.ShapeString(shape))
	}
}

// TestEmptyStrings: a string output whose elements are all empty (no bytes at
// all) comes back as that many empty strings.
func TestEmptyStrings(t *testing.T) {
	m := loadIdentityModel(t, batchDims(onnxString), batchDims(onnxString))
	x := &tensor.Tensor{Name: "x", DataType: tensor.Bytes, Shape: []int64{3}, Strings: [][]byte{{}, {}, {}}}
	got, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
	if err != nil || len(got) != 1 || len(got[0].Strings) != 3 || len(got[0].Strings[0])+len(got[0].Strings[1])+len(got[0].Strings[2]) != 0 {
		t.Fatalf("Run = %+v, %v", got, err)
	}
}
