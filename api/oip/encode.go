package oip

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// EncodeInferResponse appends the OIP body for resp to dst. req (may be nil) says
// which outputs go to the binary section: an output's binary_data parameter, else
// the request's binary_data_output parameter. It returns the body and the length
// of its JSON part for the Inference-Header-Content-Length header; headerLen is 0
// when nothing is binary and the body is plain JSON.
func EncodeInferResponse(dst []byte, resp *serving.InferResponse, req *serving.InferRequest) (body []byte, headerLen int, err error) {
	start := len(dst)
	b := append(dst, `{"model_name":`...)
	b = appendString(b, resp.ModelName)
	if resp.ModelVersion != "" {
		b = append(b, `,"model_version":`...)
		b = appendString(b, resp.ModelVersion)
	}
	if resp.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, resp.ID)
	}
	if len(resp.Parameters) > 0 {
		b = append(b, `,"parameters":`...)
		if b, err = appendParams(b, resp.Parameters, -1); err != nil {
			return dst, 0, err
		}
	}
	b = append(b, `,"outputs":[`...)
	binary := make([]bool, len(resp.Outputs))
	anyBinary := false
	for i, t := range resp.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		binary[i] = wantsBinary(req, t.Name)
		anyBinary = anyBinary || binary[i]
		if b, err = appendTensor(b, t, "output", binary[i]); err != nil {
			return dst, 0, err
		}
	}
	b = append(b, "]}"...)
	if !anyBinary {
		return b, 0, nil
	}
	headerLen = len(b) - start
	for i, t := range resp.Outputs {
		if binary[i] {
			b = appendBinary(b, t)
		}
	}
	return b, headerLen, nil
}

// EncodeInferRequest appends the OIP body for req to dst (the client side of
// DecodeInferRequest). With binaryInputs every input goes to the binary section
// and headerLen is the JSON length; otherwise headerLen is 0. Namespace, model and
// version are not part of the body: they go in the URL.
func EncodeInferRequest(dst []byte, req *serving.InferRequest, binaryInputs bool) (body []byte, headerLen int, err error) {
	start := len(dst)
	b := append(dst, '{')
	if req.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, req.ID)
		b = append(b, ',')
	}
	if len(req.Parameters) > 0 {
		b = append(b, `"parameters":`...)
		if b, err = appendParams(b, req.Parameters, -1); err != nil {
			return dst, 0, err
		}
		b = append(b, ',')
	}
	b = append(b, `"inputs":[`...)
	for i, t := range req.Inputs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendTensor(b, t, "input", binaryInputs); err != nil {
			return dst, 0, err
		}
	}
	b = append(b, ']')
	if len(req.Outputs) > 0 {
		b = append(b, `,"outputs":[`...)
		for i, o := range req.Outputs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, o.Name)
			if len(o.Parameters) > 0 {
				b = append(b, `,"parameters":`...)
				if b, err = appendParams(b, o.Parameters, -1); err != nil {
					return dst, 0, err
				}
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	if !binaryInputs {
		return b, 0, nil
	}
	headerLen = len(b) - start
	for _, t := range req.Inputs {
		b = appendBinary(b, t)
	}
	return b, headerLen, nil
}

// wantsBinary applies the binary tensor data extension's rule: an output's own
// binary_data parameter wins over the request's binary_data_output.
func wantsBinary(req *serving.InferRequest, name string) bool {
	if req == nil {
		return false
	}
	for _, o := range req.Outputs {
		if o.Name == name {
			if v, ok := o.Parameters[paramBinary].(bool); ok {
				return v
			}
			break
		}
	}
	v, _ := req.Parameters[paramBinaryOutput].(bool)
	return v
}

// binarySize is the size of t in the binary section.
func binarySize(t *tensor.Tensor) int64 {
	if t.DataType != tensor.Bytes {
		return int64(len(t.Data))
	}
	n := int64(0)
	for _, s := range t.Strings {
		n += 4 + int64(len(s))
	}
	return n
}

func appendBinary(b []byte, t *tensor.Tensor) []byte {
	if t.DataType != tensor.Bytes {
		return append(b, t.Data...)
	}
	for _, s := range t.Strings {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// appendTensor appends one tensor object; binary tensors carry binary_data_size
// instead of data.
func appendTensor(b []byte, t *tensor.Tensor, kind string, binary bool) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return b, errs.Wrap(errs.Internal, err, "encode %s %q", kind, t.Name)
	}
	b = append(b, `{"name":`...)
	b = appendString(b, t.Name)
	b = append(b, `,"datatype":"`...)
	b = append(b, t.DataType.String()...)
	b = append(b, `","shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	b = append(b, ']')
	binSize := int64(-1)
	if binary {
		binSize = binarySize(t)
	}
	if binSize >= 0 || hasParamsBesidesBinarySize(t.Parameters) {
		b = append(b, `,"parameters":`...)
		var err error
		if b, err = appendParams(b, t.Parameters, binSize); err != nil {
			return b, err
		}
	}
	if !binary {
		b = append(b, `,"data":`...)
		b = appendData(b, t)
	}
	return append(b, '}'), nil
}

func hasParamsBesidesBinarySize(p map[string]any) bool {
	_, has := p[paramBinarySize]
	return len(p) > 1 || (len(p) == 1 && !has)
}

// appendData appends t's elements as a flat JSON array.
func appendData(b []byte, t *tensor.Tensor) []byte {
	b = append(b, '[')
	d := t.Data
	switch t.DataType {
	case tensor.Bytes:
		for i, s := range t.Strings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStringBytes(b, s)
		}
	case tensor.Bool:
		for i, v := range d {
			if i > 0 {
				b = append(b, ',')
			}
			if v != 0 {
				b = append(b, "true"...)
			} else {
				b = append(b, "false"...)
			}
		}
	case tensor.Uint8:
		for i, v := range d {
			b = appendSep(b, i)
			b = strconv.AppendUint(b, uint64(v), 10)
		}
	case tensor.Int8:
		for i, v := range d {
			b = appendSep(b, i)
			b = strconv.AppendInt(b, int64(int8(v)), 10)
		}
	case tensor.Uint16, tensor.Int16, tensor.FP16, tensor.BF16:
		for i := 0; i+2 <= len(d); i += 2 {
			b = appendSep(b, i)
			v := binary.LittleEndian.Uint16(d[i:])
			switch t.DataType {
			case tensor.Uint16:
				b = strconv.AppendUint(b, uint64(v), 10)
			case tensor.Int16:
				b = strconv.AppendInt(b, int64(int16(v)), 10)
			case tensor.FP16:
				b = appendFloat(b, float64(tensor.HalfToFloat32(v)), 32)
			default:
				b = appendFloat(b, float64(tensor.BFloat16ToFloat32(v)), 32)
			}
		}
	case tensor.Uint32, tensor.Int32, tensor.FP32:
		for i := 0; i+4 <= len(d); i += 4 {
			b = appendSep(b, i)
			v := binary.LittleEndian.Uint32(d[i:])
			switch t.DataType {
			case tensor.Uint32:
				b = strconv.AppendUint(b, uint64(v), 10)
			case tensor.Int32:
				b = strconv.AppendInt(b, int64(int32(v)), 10)
			default:
				b = appendFloat(b, float64(math.Float32frombits(v)), 32)
			}
		}
	case tensor.Uint64, tensor.Int64, tensor.FP64:
		for i := 0; i+8 <= len(d); i += 8 {
			b = appendSep(b, i)
			v := binary.LittleEndian.Uint64(d[i:])
			switch t.DataType {
			case tensor.Uint64:
				b = strconv.AppendUint(b, v, 10)
			case tensor.Int64:
				b = strconv.AppendInt(b, int64(v), 10)
			default:
				b = appendFloat(b, math.Float64frombits(v), 64)
			}
		}
	}
	return append(b, ']')
}

func appendSep(b []byte, i int) []byte {
	if i > 0 {
		return append(b, ',')
	}
	return b
}

// appendFloat writes the shortest text that round-trips at bitSize; non-finite
// values become the strings "NaN", "Infinity" and "-Infinity".
func appendFloat(b []byte, f float64, bitSize int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bitSize)
}

// appendParams appends a $parameters object with sorted keys. binSize >= 0 sets
// binary_data_size; otherwise any binary_data_size in p is dropped, as it would
// describe a binary section that is not there.
func appendParams(b []byte, p map[string]any, binSize int64) ([]byte, error) {
	keys := make([]string, 0, len(p)+1)
	for k := range p {
		if k != paramBinarySize {
			keys = append(keys, k)
		}
	}
	if binSize >= 0 {
		keys = append(keys, paramBinarySize)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		if k == paramBinarySize {
			b = strconv.AppendInt(b, binSize, 10)
			continue
		}
		var err error
		if b, err = appendParamValue(b, k, p[k]); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func appendParamValue(b []byte, k string, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float32:
		return appendFloat(b, float64(v), 32), nil
	case float64:
		return appendFloat(b, v, 64), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return b, errs.Wrap(errs.Internal, err, "encode parameter %q", k)
	}
	return append(b, raw...), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendStringBytes is appendString for a []byte element (BYTES tensors). JSON
// cannot carry arbitrary bytes: invalid UTF-8 becomes U+FFFD, as in encoding/json;
// clients that need exact bytes ask for binary_data.
func appendStringBytes(b []byte, s []byte) []byte {
	return appendString(b, unsafeString(s))
}

// unsafeString views s as a string without copying; the callee must not keep it.
func unsafeString(s []byte) string { return unsafe.String(unsafe.SliceData(s), len(s)) }
