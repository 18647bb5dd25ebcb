package oip

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/tensor"
)

// maxRank bounds a tensor's rank; it also bounds the recursion of nested data.
const maxRank = 64

// Parameter names of the binary tensor data extension.
const (
	paramBinarySize   = "binary_data_size"
	paramBinary       = "binary_data"
	paramBinaryOutput = "binary_data_output"
)

// invalid is shorthand for an InvalidArgument error with a user-safe message.
func invalid(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, format, args...)
}

// tensorRef names a tensor in errors. It formats itself (see String) only when an
// error is actually built: a label per tensor cost several allocations per request.
type tensorRef struct {
	kind  string
	index int
	name  string
}

func (r tensorRef) String() string { return tensorLabel(r.kind, r.index, r.name) }

// tensorLabel names a tensor in errors: `input "x"`, or `input 2` before its name is known.
func tensorLabel(kind string, index int, name string) string {
	if name == "" {
		return kind + " " + strconv.Itoa(index)
	}
	return kind + " " + strconv.Quote(name)
}

// decodedTensor is a tensor read from JSON plus what the binary section must supply.
type decodedTensor struct {
	t *tensor.Tensor
	// binSize is parameters.binary_data_size, or -1 when the data was in the JSON.
	binSize int64
}

// decodeTensor reads one $request_input / $response_output object. kind is "input"
// or "output" for error messages.
func decodeTensor(s *scanner, kind string, index int) (decodedTensor, error) {
	if err := s.d.charge(tensorCost, tensorRef{kind, index, ""}); err != nil {
		return decodedTensor{}, err
	}
	t := &tensor.Tensor{}
	var (
		dtName              string
		hasShape, hasDType  bool
		shapeOK             bool
		dataAt              = -1 // offset of data still to be parsed
		hasData, parsedData bool
	)
	err := s.objectFields(func(key []byte) error {
		switch string(key) {
		case "name":
			v, err := s.readString()
			if err != nil {
				return err
			}
			t.Name = string(v)
		case "datatype":
			v, err := s.readString()
			if err != nil {
				return err
			}
			hasDType = true
			parsedData = false // data read before must be read again as this type
			var ok bool
			if t.DataType, ok = tensor.ParseDataType(unsafeString(v)); !ok {
				dtName = string(v) // for the error message
			}
		case "shape":
			shape, err := readShape(s, tensorRef{kind, index, t.Name})
			if err != nil {
				return err
			}
			parsedData = false // data read before must be read again for this shape
			hasShape, t.Shape = true, shape
			_, nerr := tensor.NumElements(shape)
			shapeOK = nerr == nil
		case "parameters":
			p, err := s.readParams()
			if err != nil {
				return err
			}
			t.Parameters = p
		case "data":
			if null, err := s.isNull(); null || err != nil {
				return err
			}
			hasData, dataAt = true, s.pos
			if t.Name != "" && t.DataType.Valid() && hasShape && shapeOK {
				// Data the model cannot take is never decoded.
				if err := s.d.checkInput(kind, index, t); err != nil {
					return err
				}
				parsedData = true
				return decodeData(s, t, tensorRef{kind, index, t.Name})
			}
			parsedData = false
			return s.skipValue(0)
		default:
			return s.skipValue(0)
		}
		return nil
	})
	if err != nil {
		return decodedTensor{}, err
	}
	label := tensorRef{kind, index, t.Name}
	switch {
	case t.Name == "":
		return decodedTensor{}, invalid("%s: name is required", label)
	case !hasDType:
		return decodedTensor{}, invalid("%s: datatype is required", label)
	case !t.DataType.Valid():
		return decodedTensor{}, invalid("%s: unknown datatype %q", label, dtName)
	case !hasShape:
		return decodedTensor{}, invalid("%s: shape is required", label)
	}
	if _, err := tensor.NumElements(t.Shape); err != nil {
		return decodedTensor{}, invalid("%s: %v", label, err)
	}
	if !parsedData { // checked before its data was decoded otherwise
		if err := s.d.checkInput(kind, index, t); err != nil {
			return decodedTensor{}, err
		}
	}
	binSize := int64(-1)
	if v, ok := t.Parameters[paramBinarySize]; ok {
		n, isInt := v.(int64)
		if !isInt || n < 0 {
			return decodedTensor{}, invalid("%s: parameters.binary_data_size must be a non-negative integer, got %v", label, v)
		}
		if hasData {
			return decodedTensor{}, invalid("%s: has both data and parameters.binary_data_size", label)
		}
		binSize = n
	} else if !hasData {
		return decodedTensor{}, invalid("%s: data is required (or parameters.binary_data_size with binary data)", label)
	}
	if hasData && !parsedData {
		sub := scanner{buf: s.buf, pos: dataAt, d: s.d}
		if err := decodeData(&sub, t, label); err != nil {
			return decodedTensor{}, err
		}
	}
	return decodedTensor{t: t, binSize: binSize}, nil
}

// readShape reads a shape array of integers.
func readShape(s *scanner, label tensorRef) ([]int64, error) {
	shape := make([]int64, 0, 4)
	err := s.arrayElems(func(i int) error {
		at := s.pos
		lit, integer, err := s.readNumber()
		if err != nil {
			return err
		}
		v, perr := strconv.ParseInt(string(lit), 10, 64)
		if !integer || perr != nil {
			return invalid("%s: shape dimension %d at offset %d must be an integer, got %s", label, i, at, lit)
		}
		if len(shape) == maxRank {
			return invalid("%s: shape has more than %d dimensions", label, maxRank)
		}
		shape = append(shape, v)
		return nil
	})
	return shape, err
}

// dataDecoder appends the elements of one tensor's JSON data.
type dataDecoder struct {
	s     *scanner
	t     *tensor.Tensor
	label tensorRef
	n     int64 // elements the shape needs
	count int64 // elements read so far
	// BYTES elements alias the body; those with escapes are unescaped into
	// arena. Slices taken from arena stay valid when it grows: the old array
	// keeps their bytes.
	arena []byte
}

// decodeData parses the data array at s.pos into t (whose datatype and shape are valid).
func decodeData(s *scanner, t *tensor.Tensor, label tensorRef) error {
	n, _ := tensor.NumElements(t.Shape)
	d := dataDecoder{s: s, t: t, label: label, n: n}
	if s.peek() != '[' {
		return invalid("%s: data at offset %d must be an array", label, s.pos)
	}
	// A JSON element takes at least two bytes (three for a string), so this
	// never over-allocates for a shape that the body cannot possibly fill; and
	// it is charged before it is allocated.
	left := int64(len(s.buf) - s.pos)
	if t.DataType == tensor.Bytes {
		capN := min(n, (left+1)/3)
		if err := s.d.charge(capN*bytesElemCost, label); err != nil {
			return err
		}
		t.Strings = make([][]byte, 0, capN)
	} else {
		capN := min(n, left/2+1)
		if err := s.d.charge(capN*int64(t.DataType.Size()), label); err != nil {
			return err
		}
		t.Data = make([]byte, 0, capN*int64(t.DataType.Size()))
	}
	// Nested data starts with '[' right after the outer '['.
	save := s.pos
	s.pos++
	nested := s.peek() == '['
	s.pos = save
	if nested && len(t.Shape) < 2 {
		return invalid("%s: data is nested deeper than shape %s allows", label, tensor.ShapeString(t.Shape))
	}
	if err := d.array(0, nested); err != nil {
		return err
	}
	if d.count != n {
		return invalid("%s: shape %s needs %d elements, data has %d", label, tensor.ShapeString(t.Shape), n, d.count)
	}
	// Unescaped strings are no longer than their escaped form in the body.
	return s.d.charge(int64(cap(d.arena)), label)
}

// array reads one array level. In nested mode every level's length must match the
// shape and only the innermost level holds scalars; in flat mode the one level
// holds every element.
func (d *dataDecoder) array(level int, nested bool) error {
	s := d.s
	s.pos++ // '['
	inner := nested && level < len(d.t.Shape)-1
	n := int64(0)
	if s.peek() == ']' {
		s.pos++
	} else {
		for {
			c := s.peek()
			switch {
			case inner && c != '[':
				return invalid("%s: data is nested less deeply than shape %s (rank %d)", d.label, tensor.ShapeString(d.t.Shape), len(d.t.Shape))
			case inner:
				if err := d.array(level+1, true); err != nil {
					return err
				}
			case c == '[':
				return invalid("%s: data is nested deeper than shape %s allows", d.label, tensor.ShapeString(d.t.Shape))
			case d.count >= d.n:
				// More elements than the shape needs: the count check fails
				// after the array; keep nothing past what was charged.
				if err := s.skipValue(0); err != nil {
					return err
				}
				d.count++
			default:
				if err := d.scalar(c); err != nil {
					return err
				}
				d.count++
			}
			n++
			c = s.peek()
			if c == ',' {
				s.pos++
				continue
			}
			if c == ']' {
				s.pos++
				break
			}
			return s.unexpected("',' or ']' after array element")
		}
	}
	if nested && n != d.t.Shape[level] {
		return invalid("%s: data dimension %d has %d elements, shape %s needs %d", d.label, level, n, tensor.ShapeString(d.t.Shape), d.t.Shape[level])
	}
	return nil
}

// scalar reads one element whose first byte is c and appends it.
func (d *dataDecoder) scalar(c byte) error {
	s, t := d.s, d.t
	switch dt := t.DataType; dt {
	case tensor.Bool:
		if c != 't' && c != 'f' {
			return d.wrongType(c, "true or false")
		}
		v, err := s.readBool()
		if err != nil {
			return err
		}
		b := byte(0)
		if v {
			b = 1
		}
		t.Data = append(t.Data, b)
	case tensor.Bytes:
		if c != '"' {
			return d.wrongType(c, "a string")
		}
		v, err := s.readString()
		if err != nil {
			return err
		}
		if s.escaped {
			start := len(d.arena)
			d.arena = append(d.arena, v...)
			v = d.arena[start:]
		}
		t.Strings = append(t.Strings, v[:len(v):len(v)])
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		lit, err := d.integer(c)
		if err != nil {
			return err
		}
		bits := dt.Size() * 8
		v, err := strconv.ParseInt(string(lit), 10, bits)
		if err != nil {
			return d.outOfRange(lit)
		}
		t.Data = appendUint(t.Data, uint64(v), dt.Size())
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		lit, err := d.integer(c)
		if err != nil {
			return err
		}
		if string(lit) == "-0" {
			lit = lit[1:]
		}
		v, err := strconv.ParseUint(string(lit), 10, dt.Size()*8)
		if err != nil {
			return d.outOfRange(lit)
		}
		t.Data = appendUint(t.Data, v, dt.Size())
	default: // floating point
		f, err := d.float(c)
		if err != nil {
			return err
		}
		switch dt {
		case tensor.FP32:
			t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(float32(f)))
		case tensor.FP64:
			t.Data = binary.LittleEndian.AppendUint64(t.Data, math.Float64bits(f))
		case tensor.FP16:
			t.Data = binary.LittleEndian.AppendUint16(t.Data, tensor.Float64ToHalf(f))
		case tensor.BF16:
			t.Data = binary.LittleEndian.AppendUint16(t.Data, tensor.Float64ToBFloat16(f))
		}
	}
	return nil
}

func appendUint(b []byte, v uint64, size int) []byte {
	switch size {
	case 1:
		return append(b, byte(v))
	case 2:
		return binary.LittleEndian.AppendUint16(b, uint16(v))
	case 4:
		return binary.LittleEndian.AppendUint32(b, uint32(v))
	default:
		return binary.LittleEndian.AppendUint64(b, v)
	}
}

// integer reads an integer literal.
func (d *dataDecoder) integer(c byte) ([]byte, error) {
	if c != '-' && (c < '0' || c > '9') {
		return nil, d.wrongType(c, "an integer")
	}
	lit, integer, err := d.s.readNumber()
	if err != nil {
		return nil, err
	}
	if !integer {
		return nil, invalid("%s: element %d: %s is not an integer", d.label, d.count, lit)
	}
	return lit, nil
}

// float reads a number or one of the strings "NaN", "Infinity", "-Infinity", and
// checks that a finite value fits the tensor's type.
func (d *dataDecoder) float(c byte) (float64, error) {
	s := d.s
	if c == '"' {
		v, err := s.readString()
		if err != nil {
			return 0, err
		}
		switch string(v) {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		return 0, invalid("%s: element %d: string %q is not a number (only \"NaN\", \"Infinity\" and \"-Infinity\" are)", d.label, d.count, v)
	}
	if c != '-' && (c < '0' || c > '9') {
		return 0, d.wrongType(c, "a number")
	}
	lit, _, err := s.readNumber()
	if err != nil {
		return 0, err
	}
	bits := 64
	if d.t.DataType == tensor.FP32 {
		bits = 32
	}
	f, ok := parseFloatFast(lit, bits)
	if !ok {
		var err error
		// strconv keeps no reference to its argument (errors hold a copy).
		f, err = strconv.ParseFloat(unsafeString(lit), bits)
		if err != nil && errors.Is(err, strconv.ErrRange) && !math.IsInf(f, 0) {
			err = nil // underflow rounds to zero
		}
		if err != nil {
			return 0, d.outOfRange(lit)
		}
	}
	switch d.t.DataType {
	case tensor.FP16:
		if math.IsInf(float64(tensor.HalfToFloat32(tensor.Float64ToHalf(f))), 0) {
			return 0, d.outOfRange(lit)
		}
	case tensor.BF16:
		if math.IsInf(float64(tensor.BFloat16ToFloat32(tensor.Float64ToBFloat16(f))), 0) {
			return 0, d.outOfRange(lit)
		}
	}
	return f, nil
}

func (d *dataDecoder) outOfRange(lit []byte) error {
	return invalid("%s: element %d: value %s is out of range for %s", d.label, d.count, lit, d.t.DataType)
}

func (d *dataDecoder) wrongType(c byte, want string) error {
	var got string
	switch {
	case c == '"':
		got = "a string"
	case c == 't' || c == 'f':
		got = "a boolean"
	case c == 'n':
		got = "null"
	case c == '{':
		got = "an object"
	case c == '-' || (c >= '0' && c <= '9'):
		got = "a number"
	case c == 0:
		return d.s.unexpected("a value")
	default:
		return d.s.unexpected("a value")
	}
	return invalid("%s: element %d: expected %s for %s, got %s", d.label, d.count, want, d.t.DataType, got)
}

// assignBinary gives each tensor that declared binary_data_size its bytes from the
// binary section, in order. The tensors alias bin.
func assignBinary(d *decodeState, ts []decodedTensor, kind string, bin []byte, hasBin bool) error {
	off := 0
	for i, dt := range ts {
		if dt.binSize < 0 {
			continue
		}
		t := dt.t
		label := tensorRef{kind, i, t.Name}
		if !hasBin {
			return invalid("%s: parameters.binary_data_size is set but the request has no binary data (no Inference-Header-Content-Length header)", label)
		}
		left := len(bin) - off
		if dt.binSize > int64(left) {
			return invalid("%s: binary_data_size %d exceeds the %d bytes of binary data left", label, dt.binSize, left)
		}
		size := int(dt.binSize)
		part := bin[off : off+size : off+size]
		off += size
		n, _ := tensor.NumElements(t.Shape)
		if t.DataType != tensor.Bytes {
			if want := n * int64(t.DataType.Size()); want != dt.binSize {
				return invalid("%s: binary_data_size %d does not match shape %s of %s (%d bytes)", label, dt.binSize, tensor.ShapeString(t.Shape), t.DataType, want)
			}
			t.Data = part
			continue
		}
		strs, err := splitBinaryBytes(d, part, n, label, t.Shape)
		if err != nil {
			return err
		}
		t.Strings = strs
	}
	if off != len(bin) {
		return invalid("binary data has %d bytes left over after the last %s", len(bin)-off, kind)
	}
	return nil
}

// splitBinaryBytes splits BYTES binary data: a 4-byte little-endian length, then
// the bytes, per element.
func splitBinaryBytes(d *decodeState, part []byte, n int64, label tensorRef, shape []int64) ([][]byte, error) {
	capN := min(n, int64(len(part)/4))
	if err := d.charge(capN*bytesElemCost, label); err != nil {
		return nil, err
	}
	strs := make([][]byte, 0, capN)
	for off := 0; off < len(part); {
		if int64(len(strs)) == n {
			return nil, invalid("%s: binary data holds more than the %d BYTES elements of shape %s", label, n, tensor.ShapeString(shape))
		}
		if len(part)-off < 4 {
			return nil, invalid("%s: BYTES element %d: %d bytes left, too few for its 4-byte length", label, len(strs), len(part)-off)
		}
		l := binary.LittleEndian.Uint32(part[off:])
		off += 4
		if uint64(l) > uint64(len(part)-off) {
			return nil, invalid("%s: BYTES element %d: length %d exceeds the %d bytes left", label, len(strs), l, len(part)-off)
		}
		end := off + int(l)
		strs = append(strs, part[off:end:end])
		off = end
	}
	if int64(len(strs)) != n {
		return nil, invalid("%s: binary data holds %d BYTES elements, shape %s needs %d", label, len(strs), tensor.ShapeString(shape), n)
	}
	return strs, nil
}
