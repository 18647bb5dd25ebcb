package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Inspector reads an ONNX model's signature without ONNX Runtime: it decodes just
// the parts of the ModelProto it needs with protowire, in place (see wire.go),
// so it works in builds without cgo, costs no session, and reads a few KiB of
// even a huge model. It also refuses models that are not self-contained (see
// selfcontained.go): the registry never records a version ONNX Runtime would
// make read other files.
type Inspector struct{}

var _ runtime.Inspector = Inspector{}

// Inspect reads the model of size bytes from r and returns its signature.
// Inputs that are initializers (weights) are not part of the signature. Values
// OIP cannot carry (sequences, maps, exotic element types) are reported with
// DataType Invalid and an ONNX type string in Kind.
func (Inspector) Inspect(r io.ReaderAt, size int64) (tensor.Signature, error) {
	info, err := inspect(newFileSource(r, size, defaultWindow), size)
	if err != nil {
		return tensor.Signature{}, err
	}
	return info.sig, nil
}

// InspectFile is Inspect on the file at path.
func InspectFile(path string) (tensor.Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return tensor.Signature{}, fmt.Errorf("onnx: inspect: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return tensor.Signature{}, fmt.Errorf("onnx: inspect: %w", err)
	}
	return Inspector{}.Inspect(f, fi.Size())
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

	// specCost and dimCost are what one kept value and one kept dim count
	// against maxKept besides their strings.
	specCost = 64
	dimCost  = 24
)

// notModel is the error for anything that does not decode as an ONNX model.
func notModel(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, "not an ONNX model: "+format, args...)
}

// decodeError classifies an error of the walk: the model's fault (InvalidArgument,
// saying what is wrong) unless reading the file failed.
func decodeError(err error, prefix string) error {
	var re *readError
	if errors.As(err, &re) {
		return fmt.Errorf("onnx: inspect: %w", re.err)
	}
	return notModel("%s%v", prefix, err)
}

// parseModel inspects a serialized ModelProto held in memory.
func parseModel(b []byte) (*modelInfo, error) {
	return inspect(memSource(b), int64(len(b)))
}

// inspect decodes the parts of a serialized ModelProto that make up its
// signature, after checking that it is self-contained.
func inspect(src source, size int64) (*modelInfo, error) {
	if size == 0 {
		return nil, notModel("the file is empty")
	}
	var (
		w         = &walker{src: src}
		model     = span{0, size}
		haveGraph bool
		info      modelInfo
	)
	err := w.each(model, func(f field) error {
		switch f.num {
		case modelIRVersion:
			if f.typ != protowire.VarintType {
				return errors.New("ir_version has the wrong wire type")
			}
			info.irVersion = int64(f.v)
		case modelGraph:
			if f.typ != protowire.BytesType {
				return errors.New("graph has the wrong wire type")
			}
			haveGraph = true
		}
		return nil
	})
	if err != nil {
		return nil, decodeError(err, "")
	}
	if info.irVersion <= 0 {
		return nil, notModel("no ir_version (is this an ONNX file?)")
	}
	if !haveGraph {
		return nil, notModel("the model has no graph")
	}
	if err := w.checkSelfContained(model); err != nil {
		var r *refusal
		if errors.As(err, &r) {
			return nil, errs.New(errs.InvalidArgument, "%s", r.Error())
		}
		return nil, decodeError(err, "")
	}
	if err := w.signature(model, &info); err != nil {
		return nil, decodeError(err, "graph: ")
	}
	if len(info.sig.Outputs) == 0 {
		return nil, notModel("the graph has no outputs")
	}
	return &info, nil
}

// signature reads the graph's inputs and outputs. The graph field may repeat:
// protobuf merges the occurrences, so their inputs and outputs add up.
func (w *walker) signature(model span, info *modelInfo) error {
	eachGraphField := func(fn func(f field) error) error {
		return w.each(model, func(g field) error {
			if g.num != modelGraph {
				return nil
			}
			return w.each(g.val, fn)
		})
	}
	var inputs, outputs []valueSpec
	err := eachGraphField(func(f field) error {
		if f.num != graphInput && f.num != graphOutput {
			return nil
		}
		if err := bytesOf(f); err != nil {
			return err
		}
		v, err := w.valueInfo(f.val)
		what := "output"
		if f.num == graphInput {
			what = "input"
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if f.num == graphInput {
			inputs = append(inputs, v)
		} else {
			outputs = append(outputs, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Before IR 4 every initializer was also listed as an input; such inputs
	// have defaults and are not part of the serving signature.
	isInit := map[string]bool{}
	if len(inputs) > 0 {
		for _, in := range inputs {
			isInit[in.spec.Name] = false
		}
		err = eachGraphField(func(f field) error {
			var t span
			switch f.num {
			case graphInitializer:
				if err := bytesOf(f); err != nil {
					return err
				}
				t = f.val
			case graphSparseInitializer:
				if err := bytesOf(f); err != nil {
					return err
				}
				var ok bool
				if t, ok = w.lastBytes(f.val, sparseValues); !ok {
					return nil
				}
			default:
				return nil
			}
			name, ok := w.lastBytes(t, tensorName)
			if !ok || name.len() > maxNameLen {
				return nil // no input has such a name
			}
			b, err := w.src.at(name.off, int(name.len()))
			if err != nil {
				return err
			}
			if _, listed := isInit[string(b)]; listed {
				isInit[string(b)] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, in := range inputs {
		if isInit[in.spec.Name] {
			continue
		}
		if in.optional != nil {
			// optional(tensor(T)): a tensor input a request may leave out.
			in.spec.Kind, in.spec.DataType, in.spec.Shape, in.spec.Optional = "tensor", in.optional.dt, in.optional.shape, true
			in.params = in.optional.params
		}
		info.sig.Inputs = append(info.sig.Inputs, in.spec)
		info.inDimParams = append(info.inDimParams, in.params)
	}
	for _, out := range outputs {
		info.sig.Outputs = append(info.sig.Outputs, out.spec)
		info.outDimParams = append(info.outDimParams, out.params)
	}
	return nil
}

// valueSpec is a decoded ValueInfoProto and its dim names.
type valueSpec struct {
	spec   tensor.TensorSpec
	params []string
	// optional is the tensor inside an optional(tensor(T)) type: as an input it
	// is a tensor a request may leave out.
	optional *optionalTensor
}

type optionalTensor struct {
	dt     tensor.DataType
	shape  []int64
	params []string
}

// valueInfo decodes a ValueInfoProto into a TensorSpec and its dim names.
func (w *walker) valueInfo(m span) (valueSpec, error) {
	var (
		spec    tensor.TensorSpec
		typ     span
		hasType bool
	)
	if err := w.keep(specCost); err != nil {
		return valueSpec{}, err
	}
	err := w.each(m, func(f field) error {
		if f.num != valueInfoName && f.num != valueInfoType {
			return nil
		}
		if err := bytesOf(f); err != nil {
			return err
		}
		if f.num == valueInfoName {
			var err error
			spec.Name, err = w.str(f.val)
			return err
		}
		typ, hasType = f.val, true
		return nil
	})
	if err != nil {
		return valueSpec{}, err
	}
	if spec.Name == "" {
		return valueSpec{}, errors.New("a value has no name")
	}
	if !hasType {
		return valueSpec{}, fmt.Errorf("%s has no type", spec.Name)
	}
	t, err := w.parseType(typ, 0)
	if err != nil {
		return valueSpec{}, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if err := w.keep(int64(len(t.kind))); err != nil {
		return valueSpec{}, err
	}
	spec.Kind = t.kind
	if t.isTensor {
		spec.Shape = t.shape
		if dt, ok := elemTypes[t.elem]; ok {
			spec.DataType = dt
			spec.Kind = "tensor"
		}
	}
	v := valueSpec{spec: spec, params: t.params}
	if in := t.optionalOf; in != nil && in.isTensor {
		if dt, ok := elemTypes[in.elem]; ok {
			v.optional = &optionalTensor{dt: dt, shape: in.shape, params: in.params}
		}
	}
	return v, nil
}

// onnxType is a decoded TypeProto.
type onnxType struct {
	kind     string // ONNX type string, e.g. "tensor(float)", "seq(map(int64,tensor(float)))"
	isTensor bool
	elem     int32
	shape    []int64  // nil when the rank is unknown
	params   []string // dim_param per dim
	// optionalOf is the contained type of an optional(...) type.
	optionalOf *onnxType
}

// parseType decodes a TypeProto; depth bounds recursion on hostile input.
func (w *walker) parseType(m span, depth int) (onnxType, error) {
	if depth > maxTypeDepth {
		return onnxType{}, errors.New("type nesting too deep")
	}
	var (
		t     onnxType
		found bool
	)
	err := w.each(m, func(f field) error {
		switch f.num {
		case typeTensor, typeSequence, typeMap, typeOptional, typeSparseTensor, typeOpaque:
		default:
			return nil
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("type field %d has the wrong wire type", f.num)
		}
		found = true
		var err error
		switch f.num {
		case typeTensor, typeSparseTensor:
			t, err = w.parseTensorType(f.val)
			prefix := "tensor"
			if f.num == typeSparseTensor {
				prefix = "sparse_tensor"
				t.isTensor = false
			}
			t.kind = prefix + "(" + elemName(t.elem) + ")"
		case typeSequence, typeOptional:
			inner := onnxType{kind: "undefined"}
			if elem, ok, ferr := w.optBytes(f.val, tensorElemType); ferr != nil {
				err = ferr
			} else if ok {
				inner, err = w.parseType(elem, depth+1)
			}
			name := "seq"
			if f.num == typeOptional {
				name = "optional"
			}
			t = onnxType{kind: name + "(" + inner.kind + ")"}
			if f.num == typeOptional && err == nil {
				t.optionalOf = &inner
			}
		case typeMap:
			t, err = w.parseMapType(f.val, depth)
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

func (w *walker) parseMapType(m span, depth int) (onnxType, error) {
	var (
		key   int32
		value = onnxType{kind: "undefined"}
	)
	err := w.each(m, func(f field) error {
		switch {
		case f.num == mapKeyType && f.typ == protowire.VarintType:
			key = int32(f.v)
		case f.num == mapValueType && f.typ == protowire.BytesType:
			var err error
			value, err = w.parseType(f.val, depth+1)
			return err
		case f.num == mapKeyType || f.num == mapValueType:
			return errors.New("map type field has the wrong wire type")
		}
		return nil
	})
	if err != nil {
		return onnxType{}, err
	}
	return onnxType{kind: "map(" + elemName(key) + "," + value.kind + ")"}, nil
}

func (w *walker) parseTensorType(m span) (onnxType, error) {
	t := onnxType{isTensor: true}
	err := w.each(m, func(f field) error {
		switch {
		case f.num == tensorElemType && f.typ == protowire.VarintType:
			t.elem = int32(f.v)
		case f.num == tensorShape && f.typ == protowire.BytesType:
			t.shape, t.params = []int64{}, []string{}
			return w.each(f.val, func(dim field) error {
				if dim.num != shapeDim {
					return nil
				}
				if dim.typ != protowire.BytesType {
					return errors.New("shape dim has the wrong wire type")
				}
				if err := w.keep(dimCost); err != nil {
					return err
				}
				d, p, err := w.parseDim(dim.val)
				if err != nil {
					return err
				}
				t.shape = append(t.shape, d)
				t.params = append(t.params, p)
				return nil
			})
		case f.num == tensorElemType || f.num == tensorShape:
			return errors.New("tensor type field has the wrong wire type")
		}
		return nil
	})
	return t, err
}

// parseDim returns a dimension: its value, or -1 with its symbolic name (if any)
// when it is dynamic.
func (w *walker) parseDim(m span) (int64, string, error) {
	d, param := int64(-1), ""
	err := w.each(m, func(f field) error {
		switch {
		case f.num == dimValue && f.typ == protowire.VarintType:
			if int64(f.v) >= 0 {
				d, param = int64(f.v), ""
			}
		case f.num == dimParam && f.typ == protowire.BytesType:
			p, err := w.str(f.val)
			if err != nil {
				return err
			}
			d, param = -1, p
		case f.num == dimValue || f.num == dimParam:
			return errors.New("dimension field has the wrong wire type")
		}
		return nil
	})
	return d, param, err
}

// optBytes returns the last length-delimited field num of message m, refusing
// one of another wire type.
func (w *walker) optBytes(m span, want protowire.Number) (span, bool, error) {
	var (
		out   span
		found bool
	)
	err := w.each(m, func(f field) error {
		if f.num != want {
			return nil
		}
		if f.typ != protowire.BytesType {
			return fmt.Errorf("field %d has the wrong wire type", f.num)
		}
		out, found = f.val, true
		return nil
	})
	return out, found, err
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
