// Package mlpgen writes deterministic multilayer perceptrons as ONNX files
// without any ONNX tooling: the test and benchmark models Nimbus generates
// instead of committing (bench, internal/system tests, cmd/mlpgen).
package mlpgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/encoding/protowire"
)

// MLPSpec is a two-layer perceptron the serverless benchmarks generate instead of
// committing: x FP32 [batch, Inputs] → MatMul Inputs×Hidden + Add + Relu →
// MatMul Hidden×Outputs + Add → y FP32 [batch, Outputs]. Weights are uniform in
// ±1/√fan-in from a PCG seeded with Seed, so the same spec always gives the same
// bytes. The file holds 4 × (Inputs×Hidden + Hidden + Hidden×Outputs + Outputs)
// bytes of weights plus a few hundred bytes of graph.
type MLPSpec struct {
	Inputs, Hidden, Outputs int
	Seed                    uint64
	// FixedBatch, when above 0, fixes the first dimension to that size instead
	// of the dynamic "batch": a model that cannot be batched.
	FixedBatch int
	// Guarded makes a version that fails on some inputs: y is multiplied by
	// table[int(x[:, GuardColumn])] with a table of two ones, so a batch
	// holding a row whose column GuardColumn truncates to an integer outside
	// -2..1 fails in ONNX Runtime (Gather: index out of bounds) and every
	// other row answers as the unguarded model does.
	Guarded     bool
	GuardColumn int
}

// BigMLP is the cold-start benchmark's large model: 256 → 4096 → 256, 8.4 MB.
var BigMLP = MLPSpec{Inputs: 256, Hidden: 4096, Outputs: 256, Seed: 1}

// Name is how reports refer to the spec, e.g. "mlp_256x4096x256".
func (s MLPSpec) Name() string { return fmt.Sprintf("mlp_%dx%dx%d", s.Inputs, s.Hidden, s.Outputs) }

// Field numbers and enums from onnx/onnx.proto.
const (
	pbModelIRVersion    = 1
	pbModelProducerName = 2
	pbModelDocString    = 6
	pbModelGraph        = 7
	pbModelOpsetImport  = 8

	pbOpsetVersion = 2

	pbGraphNode        = 1
	pbGraphName        = 2
	pbGraphInitializer = 5
	pbGraphInput       = 11
	pbGraphOutput      = 12

	pbNodeInput     = 1
	pbNodeOutput    = 2
	pbNodeName      = 3
	pbNodeOpType    = 4
	pbNodeAttribute = 5

	pbAttrName  = 1
	pbAttrInt   = 3
	pbAttrType  = 20
	onnxAttrInt = 2
	onnxInt64   = 7

	pbTensorDims     = 1
	pbTensorDataType = 2
	pbTensorName     = 8
	pbTensorRawData  = 9

	pbValueName = 1
	pbValueType = 2

	pbTypeTensor      = 1
	pbTensorElemType  = 1
	pbTensorShape     = 2
	pbShapeDim        = 1
	pbDimValue        = 1
	pbDimParam        = 2
	onnxFloat         = 1
	generatedIR       = 8
	generatedOpset    = 17
	generatedProducer = "nimbus-bench"
)

// ONNX writes the spec as a serialized ModelProto (IR version 8, opset 17, the
// batch dimension named "batch").
func (s MLPSpec) ONNX() []byte {
	w1, b1, w2, b2 := s.Weights()

	var g []byte
	type node struct {
		op    string
		in    []string
		out   string
		attrs map[string]int64
	}
	last := "y"
	if s.Guarded {
		last = "y_unguarded"
	}
	nodes := []node{
		{"MatMul", []string{"x", "w1"}, "h1", nil},
		{"Add", []string{"h1", "b1"}, "h2", nil},
		{"Relu", []string{"h2"}, "h3", nil},
		{"MatMul", []string{"h3", "w2"}, "h4", nil},
		{"Add", []string{"h4", "b2"}, last, nil},
	}
	if s.Guarded {
		nodes = append(nodes,
			node{"Gather", []string{"x", "guard_column"}, "guard_f", map[string]int64{"axis": 1}},
			node{"Cast", []string{"guard_f"}, "guard_i", map[string]int64{"to": onnxInt64}},
			node{"Gather", []string{"guard_table", "guard_i"}, "guard_g", map[string]int64{"axis": 0}},
			node{"Unsqueeze", []string{"guard_g", "guard_axes"}, "guard", nil},
			node{"Mul", []string{last, "guard"}, "y", nil},
		)
	}
	for _, n := range nodes {
		var nb []byte
		for _, in := range n.in {
			nb = appendString(nb, pbNodeInput, in)
		}
		nb = appendString(nb, pbNodeOutput, n.out)
		nb = appendString(nb, pbNodeName, n.out+"_"+n.op)
		nb = appendString(nb, pbNodeOpType, n.op)
		for _, k := range []string{"axis", "to"} {
			if v, ok := n.attrs[k]; ok {
				var a []byte
				a = appendString(a, pbAttrName, k)
				a = protowire.AppendTag(a, pbAttrInt, protowire.VarintType)
				a = protowire.AppendVarint(a, uint64(v))
				a = protowire.AppendTag(a, pbAttrType, protowire.VarintType)
				a = protowire.AppendVarint(a, onnxAttrInt)
				nb = appendBytes(nb, pbNodeAttribute, a)
			}
		}
		g = appendBytes(g, pbGraphNode, nb)
	}
	if s.Guarded {
		g = appendBytes(g, pbGraphInitializer, int64Tensor("guard_column", nil, []int64{int64(s.GuardColumn)}))
		g = appendBytes(g, pbGraphInitializer, floatTensor("guard_table", []int64{2}, []float32{1, 1}))
		g = appendBytes(g, pbGraphInitializer, int64Tensor("guard_axes", []int64{1}, []int64{1}))
	}
	g = appendString(g, pbGraphName, s.Name())
	g = appendBytes(g, pbGraphInitializer, floatTensor("w1", []int64{int64(s.Inputs), int64(s.Hidden)}, w1))
	g = appendBytes(g, pbGraphInitializer, floatTensor("b1", []int64{int64(s.Hidden)}, b1))
	g = appendBytes(g, pbGraphInitializer, floatTensor("w2", []int64{int64(s.Hidden), int64(s.Outputs)}, w2))
	g = appendBytes(g, pbGraphInitializer, floatTensor("b2", []int64{int64(s.Outputs)}, b2))
	g = appendBytes(g, pbGraphInput, batchValueInfo("x", s.FixedBatch, s.Inputs))
	g = appendBytes(g, pbGraphOutput, batchValueInfo("y", s.FixedBatch, s.Outputs))

	var m []byte
	m = protowire.AppendTag(m, pbModelIRVersion, protowire.VarintType)
	m = protowire.AppendVarint(m, generatedIR)
	m = appendString(m, pbModelProducerName, generatedProducer)
	m = appendBytes(m, pbModelGraph, g)
	var opset []byte
	opset = protowire.AppendTag(opset, pbOpsetVersion, protowire.VarintType)
	opset = protowire.AppendVarint(opset, generatedOpset)
	m = appendBytes(m, pbModelOpsetImport, opset) // domain "" (the default) is left out
	return m
}

// Variant returns model (a serialized ModelProto) with a doc_string field
// appended that names variant i: distinct bytes, hence a distinct artifact, for
// the same graph. Protobuf parsers keep the last occurrence of a non-repeated
// field, so a model that already has a doc_string still parses, with this one.
func Variant(model []byte, i int) []byte {
	doc := fmt.Sprintf("nimbus-variant-%06d", i)
	out := make([]byte, 0, len(model)+len(doc)+3)
	out = append(out, model...)
	return appendString(out, pbModelDocString, doc)
}

// Weights are the spec's parameters, row-major: w1 [Inputs, Hidden], b1
// [Hidden], w2 [Hidden, Outputs], b2 [Outputs].
func (s MLPSpec) Weights() (w1, b1, w2, b2 []float32) {
	rng := rand.New(rand.NewPCG(s.Seed, 0x6e696d627573))
	w1 = randFloats(rng, s.Inputs*s.Hidden, s.Inputs)
	b1 = randFloats(rng, s.Hidden, s.Inputs)
	w2 = randFloats(rng, s.Hidden*s.Outputs, s.Hidden)
	b2 = randFloats(rng, s.Outputs, s.Hidden)
	return w1, b1, w2, b2
}

func randFloats(rng *rand.Rand, n, fanIn int) []float32 {
	scale := 1 / math.Sqrt(float64(fanIn))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((2*rng.Float64() - 1) * scale)
	}
	return out
}

func floatTensor(name string, dims []int64, data []float32) []byte {
	raw := make([]byte, 4*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return rawTensor(name, dims, onnxFloat, raw)
}

// int64Tensor is an INT64 TensorProto (dims nil: a scalar).
func int64Tensor(name string, dims []int64, data []int64) []byte {
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return rawTensor(name, dims, onnxInt64, raw)
}

// rawTensor is a TensorProto of data type dt holding raw little-endian data.
func rawTensor(name string, dims []int64, dt uint64, raw []byte) []byte {
	var t []byte
	for _, d := range dims {
		t = protowire.AppendTag(t, pbTensorDims, protowire.VarintType)
		t = protowire.AppendVarint(t, uint64(d))
	}
	t = protowire.AppendTag(t, pbTensorDataType, protowire.VarintType)
	t = protowire.AppendVarint(t, dt)
	t = appendString(t, pbTensorName, name)
	return appendBytes(t, pbTensorRawData, raw)
}

// batchValueInfo is a FP32 [batch, features] ValueInfoProto.
func batchValueInfo(name string, fixedBatch, features int) []byte {
	var batchDim, featDim []byte
	if fixedBatch > 0 {
		batchDim = protowire.AppendTag(batchDim, pbDimValue, protowire.VarintType)
		batchDim = protowire.AppendVarint(batchDim, uint64(fixedBatch))
	} else {
		batchDim = appendString(batchDim, pbDimParam, "batch")
	}
	featDim = protowire.AppendTag(featDim, pbDimValue, protowire.VarintType)
	featDim = protowire.AppendVarint(featDim, uint64(features))
	var shape []byte
	shape = appendBytes(shape, pbShapeDim, batchDim)
	shape = appendBytes(shape, pbShapeDim, featDim)
	var tt []byte
	tt = protowire.AppendTag(tt, pbTensorElemType, protowire.VarintType)
	tt = protowire.AppendVarint(tt, onnxFloat)
	tt = appendBytes(tt, pbTensorShape, shape)
	var typ []byte
	typ = appendBytes(typ, pbTypeTensor, tt)
	var vi []byte
	vi = appendString(vi, pbValueName, name)
	return appendBytes(vi, pbValueType, typ)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}
