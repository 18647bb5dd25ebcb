package grpcapi

import (
	"encoding/binary"
	"fmt"
	"math"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// RequestFromProto converts a ModelInferRequest into a protocol-neutral request. It
// validates everything the wire format alone can get wrong (datatypes, shapes,
// element counts, raw sizes, mixing raw and typed contents) and returns
// errs.InvalidArgument errors whose message names the offending input. It never
// allocates more than the message already holds, whatever the shapes claim.
//
// Raw input bytes are aliased, not copied: the result shares memory with req.
// Namespace is left empty; the caller fills it in.
func RequestFromProto(req *pb.ModelInferRequest) (*serving.InferRequest, error) {
	return requestFromProto(req, nil)
}

// requestFromProto is RequestFromProto; check, if set, vets each input's name,
// datatype and shape before its data is converted.
func requestFromProto(req *pb.ModelInferRequest, check func(i int, t *tensor.Tensor) error) (*serving.InferRequest, error) {
	if req.GetModelName() == "" {
		return nil, errs.New(errs.InvalidArgument, "model_name is required")
	}
	params, err := paramsFromProto("", req.GetParameters())
	if err != nil {
		return nil, err
	}
	ins := req.GetInputs()
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(ins) {
		return nil, errs.New(errs.InvalidArgument,
			"raw_input_contents has %d entries for %d inputs; it needs one per input", len(raw), len(ins))
	}
	out := &serving.InferRequest{
		Model:      req.GetModelName(),
		Version:    req.GetModelVersion(),
		ID:         req.GetId(),
		Parameters: params,
		Inputs:     make([]*tensor.Tensor, 0, len(ins)),
	}
	if name, dup := duplicateName(ins); dup {
		return nil, errs.New(errs.InvalidArgument, "input %q appears more than once", name)
	}
	for i, in := range ins {
		t, err := inputFromProto(i, in, raw, check)
		if err != nil {
			return nil, err
		}
		out.Inputs = append(out.Inputs, t)
	}
	if reqOuts := req.GetOutputs(); len(reqOuts) > 0 {
		out.Outputs = make([]serving.OutputRequest, 0, len(reqOuts))
		for _, o := range reqOuts {
			var p map[string]any
			if op := o.GetParameters(); len(op) > 0 { // the error prefix costs an allocation
				if p, err = paramsFromProto(fmt.Sprintf("output %q: ", o.GetName()), op); err != nil {
					return nil, err
				}
			}
			out.Outputs = append(out.Outputs, serving.OutputRequest{Name: o.GetName(), Parameters: p})
		}
	}
	return out, nil
}

// duplicateName reports the first input name that repeats. Requests usually carry a
// handful of inputs, which a pairwise scan checks without allocating; a map keeps
// a message with many inputs from costing quadratic time.
func duplicateName(ins []*pb.ModelInferRequest_InferInputTensor) (string, bool) {
	const scanMax = 8
	if len(ins) <= scanMax {
		for i := 1; i < len(ins); i++ {
			for _, prev := range ins[:i] {
				if prev.GetName() == ins[i].GetName() {
					return ins[i].GetName(), true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, len(ins))
	for _, in := range ins {
		if _, dup := seen[in.GetName()]; dup {
			return in.GetName(), true
		}
		seen[in.GetName()] = struct{}{}
	}
	return "", false
}

func inputFromProto(i int, in *pb.ModelInferRequest_InferInputTensor, raw [][]byte, check func(int, *tensor.Tensor) error) (*tensor.Tensor, error) {
	name := in.GetName()
	dt, ok := tensor.ParseDataType(in.GetDatatype())
	if !ok {
		return nil, errs.New(errs.InvalidArgument, "input %q: unknown datatype %q", name, in.GetDatatype())
	}
	n, err := tensor.NumElements(in.GetShape())
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "input %q: %v", name, err)
	}
	var params map[string]any
	if p := in.GetParameters(); len(p) > 0 { // the error prefix costs an allocation
		if params, err = paramsFromProto(fmt.Sprintf("input %q: ", name), p); err != nil {
			return nil, err
		}
	}
	t := &tensor.Tensor{Name: name, DataType: dt, Shape: in.GetShape(), Parameters: params}
	if check != nil {
		if err := check(i, t); err != nil {
			return nil, err
		}
	}
	if len(raw) > 0 {
		if contentsLen(in.GetContents()) > 0 {
			return nil, errs.New(errs.InvalidArgument,
				"input %q: contents must not be set when raw_input_contents is used", name)
		}
		if err := decodeRaw(t, n, i, raw[i]); err != nil {
			return nil, err
		}
		return t, nil
	}
	if err := decodeTyped(t, n, in.GetContents()); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeRaw fills t from one raw_input_contents entry. Fixed-size data is aliased.
func decodeRaw(t *tensor.Tensor, n int64, i int, b []byte) error {
	if t.DataType == tensor.Bytes {
		strs, err := splitBytes(b, n)
		if err != nil {
			return errs.New(errs.InvalidArgument, "raw_input_contents[%d] for input %q: %v", i, t.Name, err)
		}
		t.Strings = strs
		return nil
	}
	want := n * int64(t.DataType.Size())
	if int64(len(b)) != want {
		return errs.New(errs.InvalidArgument, "raw_input_contents[%d] for input %q has %d bytes, shape %s of %s needs %d",
			i, t.Name, len(b), tensor.ShapeString(t.Shape), t.DataType, want)
	}
	t.Data = b
	return nil
}

// splitBytes parses n BYTES elements, each a 4-byte little-endian length and that
// many bytes, which must use b exactly. Elements alias b.
func splitBytes(b []byte, n int64) ([][]byte, error) {
	// Each element takes at least 4 bytes, which bounds the allocation by len(b).
	if n > int64(len(b)/4) {
		return nil, fmt.Errorf("has %d bytes, too few for %d length-prefixed elements", len(b), n)
	}
	out := make([][]byte, 0, n)
	off := 0
	for k := int64(0); k < n; k++ {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("element %d: length prefix truncated at byte %d", k, off)
		}
		l := uint64(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if l > uint64(len(b)-off) {
			return nil, fmt.Errorf("element %d: length %d runs past the end (%d bytes left)", k, l, len(b)-off)
		}
		out = append(out, b[off:off+int(l):off+int(l)])
		off += int(l)
	}
	if off != len(b) {
		return nil, fmt.Errorf("has %d trailing bytes after %d elements", len(b)-off, n)
	}
	return out, nil
}

// typedField names the InferTensorContents field that carries dt; "" for FP16/BF16,
// which the spec allows only as raw bytes.
func typedField(dt tensor.DataType) string {
	switch dt {
	case tensor.Bool:
		return "bool_contents"
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return "int_contents"
	case tensor.Int64:
		return "int64_contents"
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return "uint_contents"
	case tensor.Uint64:
		return "uint64_contents"
	case tensor.FP32:
		return "fp32_contents"
	case tensor.FP64:
		return "fp64_contents"
	case tensor.Bytes:
		return "bytes_contents"
	}
	return ""
}

// contentsFields lists the typed fields of c with their element counts, in field order.
func contentsFields(c *pb.InferTensorContents) [8]struct {
	name string
	n    int
} {
	return [8]struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.GetBoolContents())},
		{"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())},
		{"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())},
		{"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())},
		{"bytes_contents", len(c.GetBytesContents())},
	}
}

func contentsLen(c *pb.InferTensorContents) int {
	total := 0
	for _, f := range contentsFields(c) {
		total += f.n
	}
	return total
}

// decodeTyped fills t from typed contents, checking the field, the element count and
// the range of narrow integer types.
func decodeTyped(t *tensor.Tensor, n int64, c *pb.InferTensorContents) error {
	want := typedField(t.DataType)
	got := 0
	for _, f := range contentsFields(c) {
		switch {
		case f.n == 0:
		case f.name == want:
			got = f.n
		case want == "":
			return errs.New(errs.InvalidArgument, "input %q: %s data must be sent in raw_input_contents, got %s",
				t.Name, t.DataType, f.name)
		default:
			return errs.New(errs.InvalidArgument, "input %q: %s data belongs in %s, got %s", t.Name, t.DataType, want, f.name)
		}
	}
	if want == "" && n > 0 {
		return errs.New(errs.InvalidArgument, "input %q: %s data must be sent in raw_input_contents", t.Name, t.DataType)
	}
	if int64(got) != n {
		return errs.New(errs.InvalidArgument, "input %q: shape %s needs %d elements, got %d",
			t.Name, tensor.ShapeString(t.Shape), n, got)
	}
	if t.DataType == tensor.Bytes {
		t.Strings = c.GetBytesContents()
		if t.Strings == nil {
			t.Strings = [][]byte{}
		}
		return nil
	}
	if d := aliasTyped(t.DataType, c); d != nil {
		t.Data = d
		return nil
	}
	size := t.DataType.Size()
	d := make([]byte, got*size)
	le := binary.LittleEndian
	switch t.DataType {
	case tensor.Bool:
		for i, v := range c.GetBoolContents() {
			if v {
				d[i] = 1
			}
		}
	case tensor.Int32:
		putLE(d, c.GetIntContents(), func(b []byte, v int32) { le.PutUint32(b, uint32(v)) })
	case tensor.Int8, tensor.Int16:
		lo, hi := int32(-1)<<(8*size-1), int32(1)<<(8*size-1)-1
		if i := putNarrow(d, size, c.GetIntContents(), lo, hi); i >= 0 {
			return errs.New(errs.InvalidArgument, "input %q: int_contents[%d] = %d is out of range for %s",
				t.Name, i, c.GetIntContents()[i], t.DataType)
		}
	case tensor.Int64:
		putLE(d, c.GetInt64Contents(), func(b []byte, v int64) { le.PutUint64(b, uint64(v)) })
	case tensor.Uint32:
		putLE(d, c.GetUintContents(), le.PutUint32)
	case tensor.Uint8, tensor.Uint16:
		if i := putNarrow(d, size, c.GetUintContents(), 0, uint32(1)<<(8*size)-1); i >= 0 {
			return errs.New(errs.InvalidArgument, "input %q: uint_contents[%d] = %d is out of range for %s",
				t.Name, i, c.GetUintContents()[i], t.DataType)
		}
	case tensor.Uint64:
		putLE(d, c.GetUint64Contents(), le.PutUint64)
	case tensor.FP32:
		putLE(d, c.GetFp32Contents(), func(b []byte, v float32) { le.PutUint32(b, math.Float32bits(v)) })
	case tensor.FP64:
		putLE(d, c.GetFp64Contents(), func(b []byte, v float64) { le.PutUint64(b, math.Float64bits(v)) })
	}
	t.Data = d
	return nil
}

// aliasTyped returns the typed contents of 4- and 8-byte datatypes as the
// tensor's data without copying them, on little-endian hosts where their memory
// is already the tensor's layout (decoded requests alias their message, as raw
// contents do); nil where a copy is needed.
func aliasTyped(dt tensor.DataType, c *pb.InferTensorContents) []byte {
	if !hostLittleEndian {
		return nil
	}
	switch dt {
	case tensor.Int32:
		return asBytes(c.GetIntContents())
	case tensor.Int64:
		return asBytes(c.GetInt64Contents())
	case tensor.Uint32:
		return asBytes(c.GetUintContents())
	case tensor.Uint64:
		return asBytes(c.GetUint64Contents())
	case tensor.FP32:
		return asBytes(c.GetFp32Contents())
	case tensor.FP64:
		return asBytes(c.GetFp64Contents())
	}
	return nil
}

// putNarrow packs 8- or 16-bit integers carried in a 32-bit typed field into d as
// size-byte little-endian values. It returns the index of the first value outside
// [lo, hi], or -1.
func putNarrow[T int32 | uint32](d []byte, size int, vals []T, lo, hi T) int {
	for i, v := range vals {
		if v < lo || v > hi {
			return i
		}
		if size == 1 {
			d[i] = byte(v)
		} else {
			binary.LittleEndian.PutUint16(d[2*i:], uint16(v))
		}
	}
	return -1
}

// ResponseToProto converts a response into a ModelInferResponse. With raw set, or
// when any output is FP16 or BF16 (which have no typed field, and the spec forbids
// mixing raw and typed outputs), every output travels in raw_output_contents; else
// each output carries typed contents. Malformed outputs (data not matching shape and
// datatype) are errs.Internal: the server must not send them.
//
// Raw fixed-size output data is aliased, not copied.
func ResponseToProto(resp *serving.InferResponse, raw bool) (*pb.ModelInferResponse, error) {
	if resp == nil {
		return nil, errs.New(errs.Internal, "backend returned no response")
	}
	params, err := paramsToProto("", resp.Parameters)
	if err != nil {
		return nil, err
	}
	out := &pb.ModelInferResponse{
		ModelName:    resp.ModelName,
		ModelVersion: resp.ModelVersion,
		Id:           resp.ID,
		Parameters:   params,
		Outputs:      make([]*pb.ModelInferResponse_InferOutputTensor, 0, len(resp.Outputs)),
	}
	for _, t := range resp.Outputs {
		if t == nil {
			return nil, errs.New(errs.Internal, "backend returned a nil output")
		}
		if err := t.Validate(); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "output %q is malformed", t.Name)
		}
		if typedField(t.DataType) == "" {
			raw = true
		}
	}
	if raw {
		out.RawOutputContents = make([][]byte, 0, len(resp.Outputs))
	}
	for _, t := range resp.Outputs {
		var p map[string]*pb.InferParameter
		if len(t.Parameters) > 0 { // the error prefix costs an allocation
			if p, err = paramsToProto(fmt.Sprintf("output %q: ", t.Name), t.Parameters); err != nil {
				return nil, err
			}
		}
		o := &pb.ModelInferResponse_InferOutputTensor{
			Name:       t.Name,
			Datatype:   t.DataType.String(),
			Shape:      t.Shape,
			Parameters: p,
		}
		if raw {
			b, err := encodeRaw(t)
			if err != nil {
				return nil, err
			}
			out.RawOutputContents = append(out.RawOutputContents, b)
		} else {
			o.Contents = encodeTyped(t)
		}
		out.Outputs = append(out.Outputs, o)
	}
	return out, nil
}

// encodeRaw returns t's raw bytes; BYTES elements get 4-byte little-endian lengths.
func encodeRaw(t *tensor.Tensor) ([]byte, error) {
	if t.DataType != tensor.Bytes {
		if t.Data == nil {
			return []byte{}, nil
		}
		return t.Data, nil
	}
	total := 0
	for _, s := range t.Strings {
		if uint64(len(s)) > math.MaxUint32 {
			return nil, errs.New(errs.Internal, "output %q: element of %d bytes exceeds the 4 GiB BYTES limit", t.Name, len(s))
		}
		total += 4 + len(s)
	}
	b := make([]byte, 0, total)
	for _, s := range t.Strings {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// encodeTyped converts a validated tensor of a type with a typed field.
func encodeTyped(t *tensor.Tensor) *pb.InferTensorContents {
	c := &pb.InferTensorContents{}
	d := t.Data
	le := binary.LittleEndian
	size := t.DataType.Size()
	n := 0
	if size > 0 {
		n = len(d) / size
	}
	switch t.DataType {
	case tensor.Bool:
		c.BoolContents = make([]bool, n)
		for i := range n {
			c.BoolContents[i] = d[i] != 0
		}
	case tensor.Int8:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(int8(d[i]))
		}
	case tensor.Int16:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(int16(le.Uint16(d[2*i:])))
		}
	case tensor.Int32:
		c.IntContents = make([]int32, n)
		getLE(c.IntContents, d, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case tensor.Int64:
		c.Int64Contents = make([]int64, n)
		getLE(c.Int64Contents, d, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case tensor.Uint8:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(d[i])
		}
	case tensor.Uint16:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(le.Uint16(d[2*i:]))
		}
	case tensor.Uint32:
		c.UintContents = make([]uint32, n)
		getLE(c.UintContents, d, le.Uint32)
	case tensor.Uint64:
		c.Uint64Contents = make([]uint64, n)
		getLE(c.Uint64Contents, d, le.Uint64)
	case tensor.FP32:
		c.Fp32Contents = make([]float32, n)
		getLE(c.Fp32Contents, d, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case tensor.FP64:
		c.Fp64Contents = make([]float64, n)
		getLE(c.Fp64Contents, d, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	case tensor.Bytes:
		c.BytesContents = t.Strings
	}
	return c
}
