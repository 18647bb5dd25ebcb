// Package tensor holds the data type every layer of Nimbus passes around: a named,
// typed, shaped block of little-endian elements, plus model signatures. It has no
// dependencies so codecs, runtimes and the registry can all share it.
package tensor

import (
	"fmt"
	"strconv"
	"strings"
)

// DataType is an Open Inference Protocol v2 tensor data type.
type DataType uint8

// The OIP v2 data types. Invalid is the zero value so an unset type is caught.
const (
	Invalid DataType = iota
	Bool
	Uint8
	Uint16
	Uint32
	Uint64
	Int8
	Int16
	Int32
	Int64
	FP16
	FP32
	FP64
	BF16
	Bytes
)

var dtNames = [...]string{
	Invalid: "INVALID", Bool: "BOOL", Uint8: "UINT8", Uint16: "UINT16", Uint32: "UINT32", Uint64: "UINT64",
	Int8: "INT8", Int16: "INT16", Int32: "INT32", Int64: "INT64", FP16: "FP16", FP32: "FP32", FP64: "FP64",
	BF16: "BF16", Bytes: "BYTES",
}

var dtSizes = [...]int{
	Bool: 1, Uint8: 1, Uint16: 2, Uint32: 4, Uint64: 8, Int8: 1, Int16: 2, Int32: 4, Int64: 8,
	FP16: 2, FP32: 4, FP64: 8, BF16: 2, Bytes: 0,
}

// String returns the OIP name, e.g. "FP32".
func (d DataType) String() string {
	if int(d) < len(dtNames) {
		return dtNames[d]
	}
	return "DataType(" + strconv.Itoa(int(d)) + ")"
}

// Size is the byte size of one element; 0 for BYTES (variable length) and Invalid.
func (d DataType) Size() int {
	if int(d) < len(dtSizes) {
		return dtSizes[d]
	}
	return 0
}

// Valid reports whether d is one of the OIP data types.
func (d DataType) Valid() bool { return d > Invalid && d <= Bytes }

// IsFloat reports whether d is a floating point type (NaN/Infinity apply).
func (d DataType) IsFloat() bool { return d == FP16 || d == FP32 || d == FP64 || d == BF16 }

// ParseDataType parses an OIP data type name such as "FP32" (case-sensitive, as the spec).
func ParseDataType(s string) (DataType, bool) {
	for i, n := range dtNames {
		if i != int(Invalid) && n == s {
			return DataType(i), true
		}
	}
	return Invalid, false
}

// MarshalText implements encoding.TextMarshaler so DataType is "FP32" in JSON/YAML.
func (d DataType) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return []byte(""), nil
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DataType) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Invalid
		return nil
	}
	v, ok := ParseDataType(string(b))
	if !ok {
		return fmt.Errorf("unknown datatype %q", b)
	}
	*d = v
	return nil
}

// Tensor is one named input or output. Fixed-size types keep their elements packed
// little-endian in Data; BYTES keeps one []byte per element in Strings.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     []byte
	Strings  [][]byte
	// Parameters are the OIP per-tensor parameters (e.g. binary_data_size), passed through.
	Parameters map[string]any
}

// NumElements is the product of the shape's dims. It fails on negative dims or overflow.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %s", d, ShapeString(shape))
		}
		if d != 0 && n > (1<<53)/d {
			return 0, fmt.Errorf("shape %s is too large", ShapeString(shape))
		}
		n *= d
	}
	return n, nil
}

// Validate checks that the data matches the datatype and shape.
func (t *Tensor) Validate() error {
	if !t.DataType.Valid() {
		return fmt.Errorf("tensor %q: invalid datatype", t.Name)
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.DataType == Bytes {
		if int64(len(t.Strings)) != n {
			return fmt.Errorf("tensor %q: shape %s needs %d elements, got %d", t.Name, ShapeString(t.Shape), n, len(t.Strings))
		}
		return nil
	}
	want := n * int64(t.DataType.Size())
	if int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: shape %s of %s needs %d bytes, got %d", t.Name, ShapeString(t.Shape), t.DataType, want, len(t.Data))
	}
	return nil
}

// ShapeString formats a shape as "[-1,4]".
func ShapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// TensorSpec describes one input or output of a model. Dynamic dims are -1.
// Kind is "tensor" for tensors; anything else (e.g. "seq(map(int64,tensor(float)))")
// is a value OIP cannot carry: it is reported in metadata and refused if requested.
// Optional marks an input a request may leave out (an ONNX optional(tensor)
// input: the model then runs with no value for it).
type TensorSpec struct {
	Name     string   `json:"name"`
	DataType DataType `json:"datatype"`
	Shape    []int64  `json:"shape"`
	Kind     string   `json:"kind,omitempty"`
	Optional bool     `json:"optional,omitempty"`
}

// Supported reports whether the value can travel over OIP v2.
func (s TensorSpec) Supported() bool { return s.Kind == "" || s.Kind == "tensor" }

// Signature is a model's inputs and outputs.
type Signature struct {
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// Input returns the input spec by name.
func (s Signature) Input(name string) (TensorSpec, bool) {
	for _, in := range s.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return TensorSpec{}, false
}

// Output returns the output spec by name.
func (s Signature) Output(name string) (TensorSpec, bool) {
	for _, o := range s.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return TensorSpec{}, false
}

// ShapeMatches reports whether shape fits spec (same rank; -1 matches any size).
// A nil spec means the rank is unknown and matches any shape; an empty non-nil
// spec is a scalar.
func ShapeMatches(spec, shape []int64) bool {
	if spec == nil {
		return true
	}
	if len(spec) != len(shape) {
		return false
	}
	for i, d := range spec {
		if d >= 0 && d != shape[i] {
			return false
		}
	}
	return true
}
