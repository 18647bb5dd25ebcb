// Package onnxtest builds small ONNX models byte by byte (with protowire) for
// tests, including hostile ones no exporter writes: tensors that keep their data
// in external files, hidden in every place the ONNX format allows a tensor. Its
// field numbers are written down from onnx/onnx.proto independently of the
// inspector's, so the two check each other.
package onnxtest

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX TensorProto.DataType values used by tests.
const (
	Float = 1
	Uint8 = 2
	Int64 = 7
	Bool  = 9
)

// AttributeProto.AttributeType values.
const (
	attrTensor        = 4
	attrGraph         = 5
	attrTensors       = 9
	attrGraphs        = 10
	attrSparseTensor  = 11
	attrSparseTensors = 12
)

// Bytes is a length-delimited field.
func Bytes(num protowire.Number, payload []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
}

// Str is a string field.
func Str(num protowire.Number, s string) []byte { return Bytes(num, []byte(s)) }

// Varint is a varint field.
func Varint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// Cat concatenates encoded fields into one message.
func Cat(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Model is a ModelProto (IR 8, default opset 17, ai.onnx.ml 3) around graph;
// extra fields (functions, training_info, metadata) are appended as given.
func Model(graph []byte, extra ...[]byte) []byte {
	opset := func(domain string, v uint64) []byte { return Bytes(8, Cat(Str(1, domain), Varint(2, v))) }
	return Cat(append([][]byte{Varint(1, 8), opset("", 17), opset("ai.onnx.ml", 3), Bytes(7, graph)}, extra...)...)
}

// Graph is a GraphProto.
type Graph struct {
	Name               string
	Nodes              [][]byte
	Initializers       [][]byte
	SparseInitializers [][]byte
	Inputs, Outputs    [][]byte // ValueInfo
}

// Bytes encodes the graph.
func (g Graph) Bytes() []byte {
	var parts [][]byte
	for _, n := range g.Nodes {
		parts = append(parts, Bytes(1, n))
	}
	parts = append(parts, Str(2, g.Name))
	for _, t := range g.Initializers {
		parts = append(parts, Bytes(5, t))
	}
	for _, in := range g.Inputs {
		parts = append(parts, Bytes(11, in))
	}
	for _, out := range g.Outputs {
		parts = append(parts, Bytes(12, out))
	}
	for _, s := range g.SparseInitializers {
		parts = append(parts, Bytes(15, s))
	}
	return Cat(parts...)
}

// ValueInfo is a tensor ValueInfoProto; a dim of -1 is the named dim "batch".
func ValueInfo(name string, elem uint64, dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		if d < 0 {
			shape = append(shape, Bytes(1, Str(2, "batch"))...)
		} else {
			shape = append(shape, Bytes(1, Varint(1, uint64(d)))...)
		}
	}
	return Cat(Str(1, name), Bytes(2, Bytes(1, Cat(Varint(1, elem), Bytes(2, shape)))))
}

// Node is a NodeProto.
func Node(name, op string, in, out []string, attrs ...[]byte) []byte {
	var parts [][]byte
	for _, s := range in {
		parts = append(parts, Str(1, s))
	}
	for _, s := range out {
		parts = append(parts, Str(2, s))
	}
	parts = append(parts, Str(3, name), Str(4, op))
	for _, a := range attrs {
		parts = append(parts, Bytes(5, a))
	}
	return Cat(parts...)
}

// WithDomain appends a domain to an encoded node.
func WithDomain(node []byte, domain string) []byte { return Cat(node, Str(7, domain)) }

// Tensor is a TensorProto holding raw little-endian data.
func Tensor(name string, dt uint64, dims []int64, raw []byte) []byte {
	return Cat(tensorHead(name, dt, dims), Bytes(9, raw))
}

// ExternalTensor is a TensorProto that keeps length bytes at offset of the file
// location (data_location EXTERNAL plus external_data entries), as
// onnx.save_model(..., save_as_external_data=True) writes it.
func ExternalTensor(name string, dt uint64, dims []int64, location string, offset, length int64) []byte {
	entry := func(k, v string) []byte { return Bytes(13, Cat(Str(1, k), Str(2, v))) }
	return Cat(tensorHead(name, dt, dims),
		entry("location", location),
		entry("offset", strconv.FormatInt(offset, 10)),
		entry("length", strconv.FormatInt(length, 10)),
		Varint(14, 1))
}

// ExternalOnlyLocation is a TensorProto marked EXTERNAL (data_location) with no
// external_data entries, or with entries but no EXTERNAL mark: each alone must
// be refused.
func ExternalOnlyLocation(name string, dims []int64) []byte {
	return Cat(tensorHead(name, Uint8, dims), Varint(14, 1))
}

// ExternalOnlyEntries is a TensorProto with an external_data entry but no
// data_location EXTERNAL.
func ExternalOnlyEntries(name string, dims []int64, location string) []byte {
	return Cat(tensorHead(name, Uint8, dims), Bytes(13, Cat(Str(1, "location"), Str(2, location))))
}

func tensorHead(name string, dt uint64, dims []int64) []byte {
	var parts [][]byte
	for _, d := range dims {
		parts = append(parts, Varint(1, uint64(d)))
	}
	parts = append(parts, Varint(2, dt), Str(8, name))
	return Cat(parts...)
}

// Sparse is a SparseTensorProto.
func Sparse(values, indices []byte, dims ...int64) []byte {
	parts := [][]byte{Bytes(1, values), Bytes(2, indices)}
	for _, d := range dims {
		parts = append(parts, Varint(3, uint64(d)))
	}
	return Cat(parts...)
}

// TensorAttr is a TENSOR attribute (Constant's "value").
func TensorAttr(name string, t []byte) []byte {
	return Cat(Str(1, name), Varint(20, attrTensor), Bytes(5, t))
}

// TensorsAttr is a TENSORS attribute.
func TensorsAttr(name string, ts ...[]byte) []byte { return listAttr(name, attrTensors, 10, ts) }

// SparseTensorAttr is a SPARSE_TENSOR attribute (Constant's "sparse_value").
func SparseTensorAttr(name string, s []byte) []byte {
	return Cat(Str(1, name), Varint(20, attrSparseTensor), Bytes(22, s))
}

// SparseTensorsAttr is a SPARSE_TENSORS attribute.
func SparseTensorsAttr(name string, ss ...[]byte) []byte {
	return listAttr(name, attrSparseTensors, 23, ss)
}

// GraphAttr is a GRAPH attribute (If's branches, Loop's and Scan's body).
func GraphAttr(name string, g []byte) []byte {
	return Cat(Str(1, name), Varint(20, attrGraph), Bytes(6, g))
}

// GraphsAttr is a GRAPHS attribute.
func GraphsAttr(name string, gs ...[]byte) []byte { return listAttr(name, attrGraphs, 11, gs) }

// listAttr is an attribute of type typ holding items in repeated field num.
func listAttr(name string, typ uint64, num protowire.Number, items [][]byte) []byte {
	parts := [][]byte{Str(1, name), Varint(20, typ)}
	for _, it := range items {
		parts = append(parts, Bytes(num, it))
	}
	return Cat(parts...)
}

// Function is a ModelProto.functions entry (a model-local function); attrDefaults
// are its attribute_proto defaults.
func Function(name, domain string, nodes [][]byte, attrDefaults ...[]byte) []byte {
	parts := [][]byte{Str(1, name)}
	for _, n := range nodes {
		parts = append(parts, Bytes(7, n))
	}
	parts = append(parts, Str(10, domain))
	for _, a := range attrDefaults {
		parts = append(parts, Bytes(11, a))
	}
	return Bytes(25, Cat(parts...))
}

// TrainingInfo is a ModelProto.training_info entry with an initialization graph.
func TrainingInfo(initialization []byte) []byte {
	return Bytes(20, Bytes(1, initialization))
}

// Metadata is a ModelProto.metadata_props entry.
func Metadata(key, value string) []byte {
	return Bytes(14, Cat(Str(1, key), Str(2, value)))
}

// ExfiltrationModel is the model of the security report: its output y is an
// initializer of n bytes kept at location, so a runtime that follows the
// location returns the file's first n bytes. Its one input x (FP32 [batch,1])
// is unused.
func ExfiltrationModel(location string, n int64) []byte {
	return Model(Graph{
		Name:         "exfiltrate",
		Nodes:        [][]byte{Node("read", "Identity", []string{"w"}, []string{"y"})},
		Initializers: [][]byte{ExternalTensor("w", Uint8, []int64{n}, location, 0, n)},
		Inputs:       [][]byte{ValueInfo("x", Float, -1, 1)},
		Outputs:      [][]byte{ValueInfo("y", Uint8, n)},
	}.Bytes())
}
