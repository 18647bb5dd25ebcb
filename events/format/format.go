// Package format turns event payloads into model inputs and model outputs
// into result payloads, for Triggers: a flat JSON object mapped to input rows
// by field lists, an Open Inference Protocol v2 JSON request as is (decoded
// by the caller), or either wrapped in a CloudEvents structured-mode
// envelope; and a result object built from output expressions ("score":
// "y[0]") with correlation fields kept from the input. It is pure: no I/O,
// no broker, no model.
//
// Every error names what is wrong with the event ("field \"amount\" is
// missing", "field \"merchant_risk\": not a number (a string)"), because it
// is what the dead-letter record carries.
package format

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-ai/nimbus/tensor"
)

// ErrEvent marks an event that cannot be mapped (it goes to the dead-letter
// destination, never retried).
var ErrEvent = errors.New("event does not map")

// MaxFields bounds the fields of one input and the fields of a result.
const MaxFields = 4096

// Input is how one model input is filled from a flat JSON event: the values
// of Fields, in order, as one row of DataType.
type Input struct {
	Name     string
	DataType tensor.DataType
	Fields   []string
}

// Inputs maps flat JSON events to model inputs.
type Inputs struct {
	inputs []Input
	// CloudEvents: the payload is a structured-mode CloudEvent whose data
	// is the flat object.
	CloudEvents bool
}

// NewInputs checks the mapping: at least one input, known numeric or
// boolean datatypes, at least one field each, no field listed twice in one
// input.
func NewInputs(inputs []Input, cloudEvents bool) (*Inputs, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("format: at least one input")
	}
	for _, in := range inputs {
		if in.Name == "" {
			return nil, fmt.Errorf("format: an input needs a name")
		}
		if !in.DataType.Valid() || in.DataType == tensor.Bytes {
			return nil, fmt.Errorf("format: input %s: datatype %s cannot be filled from JSON fields (numbers and booleans only)", in.Name, in.DataType)
		}
		if len(in.Fields) == 0 || len(in.Fields) > MaxFields {
			return nil, fmt.Errorf("format: input %s: 1..%d fields, got %d", in.Name, MaxFields, len(in.Fields))
		}
		seen := map[string]bool{}
		for _, f := range in.Fields {
			if f == "" || seen[f] {
				return nil, fmt.Errorf("format: input %s: field %q is empty or listed twice", in.Name, f)
			}
			seen[f] = true
		}
	}
	return &Inputs{inputs: slices.Clone(inputs), CloudEvents: cloudEvents}, nil
}

// Event is a decoded flat event: its fields (numbers kept as json.Number,
// exactly as sent) and, for a CloudEvent, its envelope's id.
type Event struct {
	Fields map[string]any
	// ID is the CloudEvent's id ("" otherwise).
	ID string
}

// Decode parses payload as a flat JSON object (or a CloudEvent wrapping
// one).
func (m *Inputs) Decode(payload []byte) (Event, error) {
	obj, err := decodeObject(payload)
	if err != nil {
		return Event{}, err
	}
	if !m.CloudEvents {
		return Event{Fields: obj}, nil
	}
	return unwrapCloudEvent(obj)
}

// Tensors builds one row per input from ev.
func (m *Inputs) Tensors(ev Event) ([]*tensor.Tensor, error) {
	out := make([]*tensor.Tensor, 0, len(m.inputs))
	for _, in := range m.inputs {
		data := make([]byte, 0, len(in.Fields)*in.DataType.Size())
		for _, f := range in.Fields {
			v, ok := ev.Fields[f]
			if !ok {
				return nil, fmt.Errorf("%w: field %q is missing (input %s needs %s)", ErrEvent, f, in.Name, strings.Join(in.Fields, ", "))
			}
			x, err := number(v)
			if err != nil {
				return nil, fmt.Errorf("%w: field %q: %v", ErrEvent, f, err)
			}
			if data, err = appendElement(data, in.DataType, x); err != nil {
				return nil, fmt.Errorf("%w: field %q: %v", ErrEvent, f, err)
			}
		}
		out = append(out, &tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: []int64{1, int64(len(in.Fields))}, Data: data})
	}
	return out, nil
}

// decodeObject parses a JSON object, keeping numbers exact.
func decodeObject(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrEvent, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("%w: not a JSON object: null", ErrEvent)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrEvent)
	}
	return obj, nil
}

// unwrapCloudEvent takes a structured-mode CloudEvent (specversion 1.0,
// JSON data) apart.
func unwrapCloudEvent(obj map[string]any) (Event, error) {
	if v, _ := obj["specversion"].(string); v != "1.0" {
		return Event{}, fmt.Errorf("%w: not a CloudEvent 1.0 (specversion %v)", ErrEvent, obj["specversion"])
	}
	id, _ := obj["id"].(string)
	if id == "" {
		return Event{}, fmt.Errorf("%w: CloudEvent without an id", ErrEvent)
	}
	if ct, ok := obj["datacontenttype"].(string); ok && ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		return Event{}, fmt.Errorf("%w: CloudEvent data is %s, not JSON", ErrEvent, ct)
	}
	data, ok := obj["data"].(map[string]any)
	if !ok {
		return Event{}, fmt.Errorf("%w: CloudEvent data is not a JSON object", ErrEvent)
	}
	return Event{Fields: data, ID: id}, nil
}

// CloudEventData takes the data of a structured-mode CloudEvent (specversion
// 1.0, JSON data) out of payload, as sent, with the envelope's id: what a
// codec of another format (OIP v2 requests) then decodes.
func CloudEventData(payload []byte) (data []byte, id string, err error) {
	var env struct {
		SpecVersion     any             `json:"specversion"`
		ID              string          `json:"id"`
		DataContentType *string         `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return nil, "", fmt.Errorf("%w: not a JSON object: %v", ErrEvent, err)
	}
	if v, _ := env.SpecVersion.(string); v != "1.0" {
		return nil, "", fmt.Errorf("%w: not a CloudEvent 1.0 (specversion %v)", ErrEvent, env.SpecVersion)
	}
	if env.ID == "" {
		return nil, "", fmt.Errorf("%w: CloudEvent without an id", ErrEvent)
	}
	if ct := env.DataContentType; ct != nil && *ct != "application/json" && !strings.HasSuffix(*ct, "+json") {
		return nil, "", fmt.Errorf("%w: CloudEvent data is %s, not JSON", ErrEvent, *ct)
	}
	if len(env.Data) == 0 || env.Data[0] != '{' {
		return nil, "", fmt.Errorf("%w: CloudEvent data is not a JSON object", ErrEvent)
	}
	return env.Data, env.ID, nil
}

// number reads a JSON number or boolean.
func number(v any) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%s is out of range", x)
		}
		return f, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case nil:
		return 0, fmt.Errorf("not a number (null)")
	case string:
		return 0, fmt.Errorf("not a number (a string)")
	case []any:
		return 0, fmt.Errorf("not a number (an array)")
	case map[string]any:
		return 0, fmt.Errorf("not a number (an object)")
	}
	return 0, fmt.Errorf("not a number (%T)", v)
}

// appendElement encodes x as one little-endian element of dt, refusing
// what dt cannot hold.
func appendElement(b []byte, dt tensor.DataType, x float64) ([]byte, error) {
	le := binary.LittleEndian
	integral := func(lo, hi float64) error {
		if x != math.Trunc(x) || x < lo || x > hi {
			return fmt.Errorf("%v does not fit %s (an integer in its range)", x, dt)
		}
		return nil
	}
	switch dt {
	case tensor.FP32:
		if math.Abs(x) > math.MaxFloat32 {
			return nil, fmt.Errorf("%v is out of FP32 range", x)
		}
		return le.AppendUint32(b, math.Float32bits(float32(x))), nil
	case tensor.FP64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	case tensor.FP16:
		return le.AppendUint16(b, tensor.Float64ToHalf(x)), nil
	case tensor.BF16:
		return le.AppendUint16(b, tensor.Float64ToBFloat16(x)), nil
	case tensor.Bool:
		if x != 0 && x != 1 {
			return nil, fmt.Errorf("%v is not a boolean", x)
		}
		return append(b, byte(x)), nil
	case tensor.Int8:
		if err := integral(math.MinInt8, math.MaxInt8); err != nil {
			return nil, err
		}
		return append(b, byte(int8(x))), nil
	case tensor.Uint8:
		if err := integral(0, math.MaxUint8); err != nil {
			return nil, err
		}
		return append(b, byte(x)), nil
	case tensor.Int16:
		if err := integral(math.MinInt16, math.MaxInt16); err != nil {
			return nil, err
		}
		return le.AppendUint16(b, uint16(int16(x))), nil
	case tensor.Uint16:
		if err := integral(0, math.MaxUint16); err != nil {
			return nil, err
		}
		return le.AppendUint16(b, uint16(x)), nil
	case tensor.Int32:
		if err := integral(math.MinInt32, math.MaxInt32); err != nil {
			return nil, err
		}
		return le.AppendUint32(b, uint32(int32(x))), nil
	case tensor.Uint32:
		if err := integral(0, math.MaxUint32); err != nil {
			return nil, err
		}
		return le.AppendUint32(b, uint32(x)), nil
	case tensor.Int64:
		// Integers beyond ±2^53 are not exact in a float64: refused.
		if err := integral(-(1 << 53), 1<<53); err != nil {
			return nil, err
		}
		return le.AppendUint64(b, uint64(int64(x))), nil
	case tensor.Uint64:
		if err := integral(0, 1<<53); err != nil {
			return nil, err
		}
		return le.AppendUint64(b, uint64(x)), nil
	}
	return nil, fmt.Errorf("datatype %s cannot be filled from JSON", dt)
}
