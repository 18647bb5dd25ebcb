package onnx

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Inspector reads an ONNX model's signature without ONNX Runtime: it decodes just
// the parts of the ModelProto it needs with protowire, so it works in builds
// without cgo and costs no session.
type Inspector struct{}

var _ runtime.Inspector = Inspector{}

// Inspect reads the model at path and returns its signature. Inputs that are
// initializers (weights) are not part of the signature. Values OIP cannot carry
// (sequences, maps, exotic element types) are reported with DataType Invalid and
// an ONNX type string in Kind.
func (Inspector) Inspect(path string) (tensor.Signature, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tensor.Signature{}, fmt.Errorf("onnx: inspect: %w", err)
	}
	info, err := parseModel(data)
	if err != nil {
		return tensor.Signature{}, err
	}
	return info.sig, nil
}

// modelInfo is what parseModel learns: the signature, plus the symbolic name of
// each dim (dimParams[i][j] is "" for fixed or anonymous dims) so output shapes
// can be resolved from input shapes.
type modelInfo struct {
	sig          tensor.Signature
	inDimParams  [][]string
	outDimParams [][]string
	irVersion    int64
}

// Field numbers from onnx.proto (onnx/onnx.proto3).
const (
	modelIRVersion = 1
	modelGraph     = 7

	graphInitializer       = 5
	graphInput             = 11
	graphOutput            = 12
	graphSparseInitializer = 15

	tensorName       = 8 // TensorProto.name
	sparseValues     = 1 // SparseTensorProto.values
	valueInfoName    = 1
	valueInfoType    = 2
	typeTensor       = 1
	typeSequence     = 4
	typeMap          = 5
	typeOpaque       = 7
	typeSparseTensor = 8
	typeOptional     = 9
	tensorElemType   = 1 // also Sequence.elem_type, Optional.elem_type, SparseTensor.elem_type
	tensorShape      = 2
	mapKeyType       = 1
	mapValueType     = 2
	shapeDim         = 1
	dimValue         = 1
	dimParam         = 2

	maxTypeDepth = 16 // nesting of seq/map/optional types; real models use 2 or 3
)

// notModel is the error for anything that does not decode as an ONNX model.
func notModel(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, "not an ONNX model: "+format, args...)
}

// parseModel decodes the parts of a serialized ModelProto that make up its signature.
func parseModel(b []byte) (*modelInfo, error) {
	if len(b) == 0 {
		return nil, notModel("the file is empty")
	}
	var (
		graph     []byte
		haveGraph bool
		info      modelInfo
	)
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, v uint64, payload []byte) error {
		switch num {
		case modelIRVersion:
			if typ != protowire.VarintType {
				return errors.New("ir_version has the wrong wire type")
			}
			info.irVersion = int64(v)
		case modelGraph:
			if typ != protowire.BytesType {
				return errors.New("graph has the wrong wire type")
			}
			graph, haveGraph = payload, true
		}
		return nil
	})
	if err != nil {
		return nil, notModel("%v", err)
	}
	if info.irVersion <= 0 {
		return nil, notModel("no ir_version (is this an ONNX file?)")
	}
	if !haveGraph {
		return nil, notModel("the model has no graph")
	}
	if err := parseGraph(graph, &info); err != nil {
		return nil, notModel("graph: %v", err)
	}
	if len(info.sig.Outputs) == 0 {
		return nil, notModel("the graph has no outputs")
	}
	return &info, nil
}

func parseGraph(b []byte, info *modelInfo) error {
	initializers := map[string]bool{}
	var inputs, outputs [][]byte
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, _ uint64, payload []byte) error {
		switch num {
		case graphInitializer, graphSparseInitializer, graphInput, graphOutput:
		default:
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("field %d has the wrong wire type", num)
		}
		switch num {
		case graphInitializer:
			name, err := stringField(payload, tensorName)
			if err != nil {
				return fmt.Errorf("initializer: %w", err)
			}
			initializers[name] = true
		case graphSparseInitializer:
			values, err := bytesField(payload, sparseValues)
			if err != nil {
				return fmt.Errorf("sparse initializer: %w", err)
			}
			name, err := stringField(values, tensorName)
			if err != nil {
				return fmt.Errorf("sparse initializer: %w", err)
			}
			initializers[name] = true
		case graphInput:
			inputs = append(inputs, payload)
		case graphOutput:
			outputs = append(outputs, payload)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, in := range inputs {
		spec, params, err := parseValueInfo(in)
		if err != nil {
			return fmt.Errorf("input: %w", err)
		}
		// Before IR 4 every initializer was also listed as an input; such inputs
		// have defaults and are not part of the serving signature.
		if initializers[spec.Name] {
			continue
		}
		info.sig.Inputs = append(info.sig.Inputs, spec)
		info.inDimParams = append(info.inDimParams, params)
	}
	for _, out := range outputs {
		spec, params, err := parseValueInfo(out)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		info.sig.Outputs = append(info.sig.Outputs, spec)
		info.outDimParams = append(info.outDimParams, params)
	}
	return nil
}

// parseValueInfo decodes a ValueInfoProto into a TensorSpec and its dim names.
func parseValueInfo(b []byte) (tensor.TensorSpec, []string, error) {
	var (
		spec    tensor.TensorSpec
		typ     []byte
		hasType bool
	)
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, _ uint64, payload []byte) error {
		if num != valueInfoName && num != valueInfoType {
			return nil
		}
		if wt != protowire.BytesType {
			return fmt.Errorf("field %d has the wrong wire type", num)
		}
		if num == valueInfoName {
			spec.Name = string(payload)
		} else {
			typ, hasType = payload, true
		}
		return nil
	})
	if err != nil {
		return spec, nil, err
	}
	if spec.Name == "" {
		return spec, nil, errors.New("a value has no name")
	}
	if !hasType {
		return spec, nil, fmt.Errorf("%s has no type", spec.Name)
	}
	t, err := parseType(typ, 0)
	if err != nil {
		return spec, nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	spec.Kind = t.kind
	if t.isTensor {
		spec.Shape = t.shape
		if dt, ok := elemTypes[t.elem]; ok {
			spec.DataType = dt
			spec.Kind = "tensor"
		}
	}
	return spec, t.params, nil
}

// onnxType is a decoded TypeProto.
type onnxType struct {
	kind     string // ONNX type string, e.g. "tensor(float)", "seq(map(int64,tensor(float)))"
	isTensor bool
	elem     int32
	shape    []int64  // nil when the rank is unknown
	params   []string // dim_param per dim
}

// parseType decodes a TypeProto; depth bounds recursion on hostile input.
func parseType(b []byte, depth int) (onnxType, error) {
	if depth > maxTypeDepth {
		return onnxType{}, errors.New("type nesting too deep")
	}
	var (
		t     onnxType
		found bool
	)
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, _ uint64, payload []byte) error {
		switch num {
		case typeTensor, typeSequence, typeMap, typeOptional, typeSparseTensor, typeOpaque:
		default:
			return nil
		}
		if wt != protowire.BytesType {
			return fmt.Errorf("type field %d has the wrong wire type", num)
		}
		found = true
		var err error
		switch num {
		case typeTensor, typeSparseTensor:
			t, err = parseTensorType(payload)
			prefix := "tensor"
			if num == typeSparseTensor {
				prefix = "sparse_tensor"
				t.isTensor = false
			}
			t.kind = prefix + "(" + elemName(t.elem) + ")"
		case typeSequence, typeOptional:
			var inner onnxType
			if elem, ok, ferr := optBytesField(payload, tensorElemType); ferr != nil {
				err = ferr
			} else if ok {
				inner, err = parseType(elem, depth+1)
			} else {
				inner.kind = "undefined"
			}
			name := "seq"
			if num == typeOptional {
				name = "optional"
			}
			t = onnxType{kind: name + "(" + inner.kind + ")"}
		case typeMap:
			t, err = parseMapType(payload, depth)
		case typeOpaque:
			t = onnxType{kind: "opaque"}
		}
		return err
	})
	if err != nil {
		return onnxType{}, err
	}
	if !found {
		return onnxType{}, errors.New("empty type")
	}
	return t, nil
}

func parseMapType(b []byte, depth int) (onnxType, error) {
	var (
		key   int32
		value = onnxType{kind: "undefined"}
	)
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, v uint64, payload []byte) error {
		switch {
		case num == mapKeyType && wt == protowire.VarintType:
			key = int32(v)
		case num == mapValueType && wt == protowire.BytesType:
			var err error
			value, err = parseType(payload, depth+1)
			return err
		case num == mapKeyType || num == mapValueType:
			return errors.New("map type field has the wrong wire type")
		}
		return nil
	})
	if err != nil {
		return onnxType{}, err
	}
	return onnxType{kind: "map(" + elemName(key) + "," + value.kind + ")"}, nil
}

func parseTensorType(b []byte) (onnxType, error) {
	t := onnxType{isTensor: true}
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, v uint64, payload []byte) error {
		switch {
		case num == tensorElemType && wt == protowire.VarintType:
			t.elem = int32(v)
		case num == tensorShape && wt == protowire.BytesType:
			t.shape, t.params = []int64{}, []string{}
			return forEachField(payload, func(num protowire.Number, wt protowire.Type, _ uint64, dim []byte) error {
				if num != shapeDim {
					return nil
				}
				if wt != protowire.BytesType {
					return errors.New("shape dim has the wrong wire type")
				}
				d, p, err := parseDim(dim)
				if err != nil {
					return err
				}
				t.shape = append(t.shape, d)
				t.params = append(t.params, p)
				return nil
			})
		case num == tensorElemType || num == tensorShape:
			return errors.New("tensor type field has the wrong wire type")
		}
		return nil
	})
	return t, err
}

// parseDim returns a dimension: its value, or -1 with its symbolic name (if any)
// when it is dynamic.
func parseDim(b []byte) (int64, string, error) {
	d, param := int64(-1), ""
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, v uint64, payload []byte) error {
		switch {
		case num == dimValue && wt == protowire.VarintType:
			if int64(v) >= 0 {
				d, param = int64(v), ""
			}
		case num == dimParam && wt == protowire.BytesType:
			d, param = -1, string(payload)
		case num == dimValue || num == dimParam:
			return errors.New("dimension field has the wrong wire type")
		}
		return nil
	})
	return d, param, err
}

// forEachField walks the fields of one message. For varints v holds the value;
// for length-delimited fields payload holds the bytes. Other wire types are skipped.
func forEachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, payload []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad protobuf tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v       uint64
			payload []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			payload, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("bad protobuf field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, payload); err != nil {
			return err
		}
	}
	return nil
}

// optBytesField returns the last length-delimited field num of message b.
func optBytesField(b []byte, want protowire.Number) ([]byte, bool, error) {
	var (
		out   []byte
		found bool
	)
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, _ uint64, payload []byte) error {
		if num != want {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("field %d has the wrong wire type", num)
		}
		out, found = payload, true
		return nil
	})
	return out, found, err
}

func bytesField(b []byte, num protowire.Number) ([]byte, error) {
	out, _, err := optBytesField(b, num)
	return out, err
}

func stringField(b []byte, num protowire.Number) (string, error) {
	out, err := bytesField(b, num)
	return string(out), err
}

// ONNX TensorProto.DataType values.
const (
	onnxFloat    = 1
	onnxUint8    = 2
	onnxInt8     = 3
	onnxUint16   = 4
	onnxInt16    = 5
	onnxInt32    = 6
	onnxInt64    = 7
	onnxString   = 8
	onnxBool     = 9
	onnxFloat16  = 10
	onnxDouble   = 11
	onnxUint32   = 12
	onnxUint64   = 13
	onnxBFloat16 = 16
)

// elemTypes maps the ONNX element types OIP can carry.
var elemTypes = map[int32]tensor.DataType{
	onnxFloat: tensor.FP32, onnxUint8: tensor.Uint8, onnxInt8: tensor.Int8, onnxUint16: tensor.Uint16,
	onnxInt16: tensor.Int16, onnxInt32: tensor.Int32, onnxInt64: tensor.Int64, onnxString: tensor.Bytes,
	onnxBool: tensor.Bool, onnxFloat16: tensor.FP16, onnxDouble: tensor.FP64, onnxUint32: tensor.Uint32,
	onnxUint64: tensor.Uint64, onnxBFloat16: tensor.BF16,
}

// onnxElemTypes inverts elemTypes; Run looks it up for every tensor it wraps.
var onnxElemTypes = func() (inv [tensor.Bytes + 1]int32) {
	for k, v := range elemTypes {
		inv[v] = k
	}
	return inv
}()

// onnxElemType is the ONNX element type of an OIP data type (0 if none).
func onnxElemType(dt tensor.DataType) int32 {
	if int(dt) < len(onnxElemTypes) {
		return onnxElemTypes[dt]
	}
	return 0
}

var elemNames = [...]string{
	"undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool",
	"float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16",
	"float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1",
}

// elemName is the ONNX type-string name of an element type, as ONNX Runtime prints it.
func elemName(t int32) string {
	if t >= 0 && int(t) < len(elemNames) {
		return elemNames[t]
	}
	return "elem_type_" + strconv.Itoa(int(t))
}
