package format

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-ai/nimbus/tensor"
)

// Expr selects from a model's answer: the whole row of output Name
// (Index < 0) or element Index of it.
type Expr struct {
	Name  string
	Index int
}

// ParseExpr reads "NAME" or "NAME[i]".
func ParseExpr(s string) (Expr, error) {
	name, rest, indexed := strings.Cut(s, "[")
	if name == "" || strings.ContainsAny(name, " ]") {
		return Expr{}, fmt.Errorf("format: %q: want an output name, or NAME[i]", s)
	}
	if !indexed {
		return Expr{Name: name, Index: -1}, nil
	}
	digits, ok := strings.CutSuffix(rest, "]")
	i, err := strconv.Atoi(digits)
	if !ok || err != nil || i < 0 || digits != strconv.Itoa(i) {
		return Expr{}, fmt.Errorf("format: %q: the index must be a number ≥ 0, as in %s[0]", s, name)
	}
	return Expr{Name: name, Index: i}, nil
}

// Field is one field of a result: its name and what fills it.
type Field struct {
	Name string
	Expr Expr
}

// Outputs builds result objects: the input's Keep fields, copied as sent,
// then each Field.
type Outputs struct {
	fields []Field
	keep   []string
}

// NewOutputs parses a result mapping (field → expression); fields are
// written in name order after the kept ones.
func NewOutputs(fields map[string]string, keep []string) (*Outputs, error) {
	if len(fields)+len(keep) > MaxFields {
		return nil, fmt.Errorf("format: at most %d result fields", MaxFields)
	}
	o := &Outputs{keep: slices.Clone(keep)}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if slices.Contains(keep, name) {
			return nil, fmt.Errorf("format: result field %q is both kept and computed", name)
		}
		e, err := ParseExpr(fields[name])
		if err != nil {
			return nil, fmt.Errorf("format: result field %q: %w", name, err)
		}
		o.fields = append(o.fields, Field{name, e})
	}
	return o, nil
}

// Result writes the result of one event: kept fields missing from the
// input are left out (the input's id, say, when it had none).
func (o *Outputs) Result(in Event, outputs []*tensor.Tensor) ([]byte, error) {
	b := []byte{'{'}
	first := true
	sep := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendQuote(b, name)
		b = append(b, ':')
	}
	for _, k := range o.keep {
		v, ok := in.Fields[k]
		if !ok {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("format: keep %q: %w", k, err)
		}
		sep(k)
		b = append(b, raw...)
	}
	for _, f := range o.fields {
		t := find(outputs, f.Expr.Name)
		if t == nil {
			return nil, fmt.Errorf("%w: the model answered no output %q (it answered %s)", ErrEvent, f.Expr.Name, names(outputs))
		}
		n, err := rowElements(t)
		if err != nil {
			return nil, err
		}
		sep(f.Name)
		if f.Expr.Index >= 0 {
			if f.Expr.Index >= n {
				return nil, fmt.Errorf("%w: %s[%d]: output %s has %d elements per row", ErrEvent, f.Expr.Name, f.Expr.Index, f.Expr.Name, n)
			}
			if b, err = appendJSONElement(b, t, f.Expr.Index); err != nil {
				return nil, err
			}
			continue
		}
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSONElement(b, t, i); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func find(ts []*tensor.Tensor, name string) *tensor.Tensor {
	for _, t := range ts {
		if t != nil && t.Name == name {
			return t
		}
	}
	return nil
}

func names(ts []*tensor.Tensor) string {
	var out []string
	for _, t := range ts {
		if t != nil {
			out = append(out, t.Name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// rowElements is how many elements one row of t holds: t answers one event,
// so its first dimension is 1 (or it has none).
func rowElements(t *tensor.Tensor) (int, error) {
	n, err := tensor.NumElements(t.Shape)
	if err != nil {
		return 0, fmt.Errorf("format: output %s: %w", t.Name, err)
	}
	if len(t.Shape) > 0 && t.Shape[0] != 1 {
		return 0, fmt.Errorf("format: output %s has shape %s: want one row per event", t.Name, tensor.ShapeString(t.Shape))
	}
	have := int64(len(t.Strings))
	if t.DataType != tensor.Bytes {
		have = int64(len(t.Data) / max(t.DataType.Size(), 1))
	}
	if have != n {
		return 0, fmt.Errorf("format: output %s: %d elements for shape %s", t.Name, have, tensor.ShapeString(t.Shape))
	}
	return int(n), nil
}

// appendJSONElement writes element i of t as JSON: a number, a boolean or
// (BYTES) a string. Non-finite floats, which JSON cannot carry, are null.
func appendJSONElement(b []byte, t *tensor.Tensor, i int) ([]byte, error) {
	le := binary.LittleEndian
	d := t.Data
	float := func(f float64, bits int) []byte {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, bits)
	}
	switch t.DataType {
	case tensor.FP32:
		return float(float64(math.Float32frombits(le.Uint32(d[4*i:]))), 32), nil
	case tensor.FP64:
		return float(math.Float64frombits(le.Uint64(d[8*i:])), 64), nil
	case tensor.FP16:
		return float(float64(tensor.HalfToFloat32(le.Uint16(d[2*i:]))), 32), nil
	case tensor.BF16:
		return float(float64(tensor.BFloat16ToFloat32(le.Uint16(d[2*i:]))), 32), nil
	case tensor.Bool:
		return strconv.AppendBool(b, d[i] != 0), nil
	case tensor.Int8:
		return strconv.AppendInt(b, int64(int8(d[i])), 10), nil
	case tensor.Uint8:
		return strconv.AppendUint(b, uint64(d[i]), 10), nil
	case tensor.Int16:
		return strconv.AppendInt(b, int64(int16(le.Uint16(d[2*i:]))), 10), nil
	case tensor.Uint16:
		return strconv.AppendUint(b, uint64(le.Uint16(d[2*i:])), 10), nil
	case tensor.Int32:
		return strconv.AppendInt(b, int64(int32(le.Uint32(d[4*i:]))), 10), nil
	case tensor.Uint32:
		return strconv.AppendUint(b, uint64(le.Uint32(d[4*i:])), 10), nil
	case tensor.Int64:
		return strconv.AppendInt(b, int64(le.Uint64(d[8*i:])), 10), nil
	case tensor.Uint64:
		return strconv.AppendUint(b, le.Uint64(d[8*i:]), 10), nil
	case tensor.Bytes:
		raw, err := json.Marshal(string(t.Strings[i]))
		return append(b, raw...), err
	}
	return nil, fmt.Errorf("format: output %s: datatype %s", t.Name, t.DataType)
}
