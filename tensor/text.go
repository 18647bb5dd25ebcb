package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// FromText builds a tensor from its elements written as text, row-major:
// numbers as Go parses them ("0.5", "-3", "1e-3"), booleans as "true" or
// "false" (or 1 and 0), BYTES elements as they are. It is how declared
// sample requests (a version's warm-up) become tensors.
func FromText(name string, dt DataType, shape []int64, values []string) (*Tensor, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("input %s: invalid datatype", name)
	}
	n, err := NumElements(shape)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", name, err)
	}
	if int64(len(values)) != n {
		return nil, fmt.Errorf("input %s: shape %s needs %d elements, got %d", name, ShapeString(shape), n, len(values))
	}
	t := &Tensor{Name: name, DataType: dt, Shape: append([]int64(nil), shape...)}
	if dt == Bytes {
		t.Strings = make([][]byte, len(values))
		for i, v := range values {
			t.Strings[i] = []byte(v)
		}
		return t, nil
	}
	size := dt.Size()
	t.Data = make([]byte, 0, len(values)*size)
	for i, v := range values {
		b, err := appendText(t.Data, dt, v)
		if err != nil {
			return nil, fmt.Errorf("input %s: element %d: %q is not a %s value", name, i, v, dt)
		}
		t.Data = b
	}
	return t, nil
}

func appendText(b []byte, dt DataType, v string) ([]byte, error) {
	le := binary.LittleEndian
	switch dt {
	case Bool:
		switch v {
		case "true", "1":
			return append(b, 1), nil
		case "false", "0":
			return append(b, 0), nil
		}
		return nil, strconv.ErrSyntax
	case Uint8, Uint16, Uint32, Uint64:
		u, err := strconv.ParseUint(v, 10, dt.Size()*8)
		if err != nil {
			return nil, err
		}
		return appendSized(b, u, dt.Size()), nil
	case Int8, Int16, Int32, Int64:
		i, err := strconv.ParseInt(v, 10, dt.Size()*8)
		if err != nil {
			return nil, err
		}
		return appendSized(b, uint64(i), dt.Size()), nil
	case FP16, BF16, FP32:
		f, err := strconv.ParseFloat(v, 32)
		if err != nil {
			return nil, err
		}
		switch dt {
		case FP16:
			return le.AppendUint16(b, Float64ToHalf(f)), nil
		case BF16:
			return le.AppendUint16(b, Float64ToBFloat16(f)), nil
		}
		return le.AppendUint32(b, math.Float32bits(float32(f))), nil
	case FP64:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, err
		}
		return le.AppendUint64(b, math.Float64bits(f)), nil
	}
	return nil, strconv.ErrSyntax
}

// appendSized appends the low size bytes of u, little-endian.
func appendSized(b []byte, u uint64, size int) []byte {
	for i := range size {
		b = append(b, byte(u>>(8*i)))
	}
	return b
}
