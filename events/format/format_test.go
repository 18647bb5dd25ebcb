package format

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/tensor"
)

func fraudInputs(t *testing.T, cloud bool) *Inputs {
	t.Helper()
	m, err := NewInputs([]Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}}}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestFlatEventToRow: a flat object fills one row in field order; booleans
// are 0/1; fields not listed are ignored.
func TestFlatEventToRow(t *testing.T) {
	m := fraudInputs(t, false)
	ev, err := m.Decode([]byte(`{"id":"t1","hour":3,"amount":12.5,"merchant_risk":0.25,"foreign":true,"note":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := m.Tensors(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Name != "x" || tensor.ShapeString(ts[0].Shape) != "[1,4]" {
		t.Fatalf("tensors %+v", ts)
	}
	if got := f32s(ts[0].Data); got[0] != 12.5 || got[1] != 0.25 || got[2] != 1 || got[3] != 3 {
		t.Fatalf("row %v", got)
	}
}

// TestEventsThatDoNotMap: every way an event fails names the field and
// what is wrong, and matches ErrEvent (a dead letter, never a retry).
func TestEventsThatDoNotMap(t *testing.T) {
	m := fraudInputs(t, false)
	for payload, want := range map[string]string{
		`{"amount":1,"merchant_risk":2,"foreign":0}`:              `field "hour" is missing (input x needs amount, merchant_risk, foreign, hour)`,
		`{"amount":"12","merchant_risk":2,"foreign":0,"hour":1}`:  `field "amount": not a number (a string)`,
		`{"amount":null,"merchant_risk":2,"foreign":0,"hour":1}`:  `field "amount": not a number (null)`,
		`{"amount":[1],"merchant_risk":2,"foreign":0,"hour":1}`:   `field "amount": not a number (an array)`,
		`{"amount":1e400,"merchant_risk":2,"foreign":0,"hour":1}`: `field "amount": 1e400 is out of range`,
		`{"amount":1e39,"merchant_risk":2,"foreign":0,"hour":1}`:  `field "amount": 1e+39 is out of FP32 range`,
		`[1,2,3]`:    `not a JSON object`,
		`null`:       `not a JSON object: null`,
		`{"a":1} {}`: `more than one JSON value`,
		`{"a":`:      `not a JSON object`,
	} {
		ev, err := m.Decode([]byte(payload))
		if err == nil {
			_, err = m.Tensors(ev)
		}
		if err == nil || !errors.Is(err, ErrEvent) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrEvent with %q", payload, err, want)
		}
	}
}

// TestIntegerAndBoolInputs: integer inputs take integers only, within
// their range; BOOL takes booleans (or 0/1).
func TestIntegerAndBoolInputs(t *testing.T) {
	m, err := NewInputs([]Input{{Name: "n", DataType: tensor.Int64, Fields: []string{"a"}}, {Name: "b", DataType: tensor.Bool, Fields: []string{"f"}},
		{Name: "u", DataType: tensor.Uint8, Fields: []string{"c"}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := m.Decode([]byte(`{"a":-42,"f":true,"c":255}`))
	ts, err := m.Tensors(ev)
	if err != nil {
		t.Fatal(err)
	}
	if int64(binary.LittleEndian.Uint64(ts[0].Data)) != -42 || ts[1].Data[0] != 1 || ts[2].Data[0] != 255 {
		t.Fatalf("tensors %v %v %v", ts[0].Data, ts[1].Data, ts[2].Data)
	}
	for payload, want := range map[string]string{
		`{"a":1.5,"f":true,"c":1}`:  "1.5 does not fit INT64",
		`{"a":1,"f":2,"c":1}`:       "2 is not a boolean",
		`{"a":1,"f":true,"c":256}`:  "256 does not fit UINT8",
		`{"a":1e17,"f":true,"c":1}`: "does not fit INT64",
	} {
		ev, _ := m.Decode([]byte(payload))
		if _, err := m.Tensors(ev); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", payload, err, want)
		}
	}
}

// TestCloudEvent: structured mode unwraps data and keeps the envelope's id.
func TestCloudEvent(t *testing.T) {
	m := fraudInputs(t, true)
	ev, err := m.Decode([]byte(`{"specversion":"1.0","id":"evt-7","source":"/pos","type":"txn","datacontenttype":"application/json",
		"data":{"amount":1,"merchant_risk":2,"foreign":false,"hour":4}}`))
	if err != nil || ev.ID != "evt-7" {
		t.Fatalf("%+v %v", ev, err)
	}
	if _, err := m.Tensors(ev); err != nil {
		t.Fatal(err)
	}
	for payload, want := range map[string]string{
		`{"specversion":"0.3","id":"a","data":{}}`:                                                            "not a CloudEvent 1.0",
		`{"specversion":"1.0","data":{}}`:                                                                     "without an id",
		`{"specversion":"1.0","id":"a","datacontenttype":"text/csv","data":{}}`:                               "data is text/csv, not JSON",
		`{"specversion":"1.0","id":"a","data":"amount=1"}`:                                                    "data is not a JSON object",
		`{"specversion":"1.0","id":"a","datacontenttype":"application/cloudevents+json","data":{"amount":1}}`: `field "merchant_risk" is missing`,
	} {
		ev, err := m.Decode([]byte(payload))
		if err == nil {
			_, err = m.Tensors(ev)
		}
		if err == nil || !errors.Is(err, ErrEvent) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", payload, err, want)
		}
	}
}

func fp32(name string, shape []int64, v ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

// TestResult: kept fields as sent (a missing one left out), then the
// computed fields in name order: NAME is the row, NAME[i] one element.
func TestResult(t *testing.T) {
	o, err := NewOutputs(map[string]string{"score": "y[0]", "all": "probs", "label": "label[0]"}, []string{"id", "account", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	in := Event{Fields: map[string]any{"id": "t1", "account": map[string]any{"n": 7}}}
	label := &tensor.Tensor{Name: "label", DataType: tensor.Int64, Shape: []int64{1}, Data: binary.LittleEndian.AppendUint64(nil, 2)}
	got, err := o.Result(in, []*tensor.Tensor{fp32("y", []int64{1, 1}, 0.5), fp32("probs", []int64{1, 3}, 0.25, 0.5, float32(math.NaN())), label})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"t1","account":{"n":7},"all":[0.25,0.5,null],"label":2,"score":0.5}`; string(got) != want {
		t.Fatalf("result %s\nwant   %s", got, want)
	}
	for _, c := range []struct {
		outs []*tensor.Tensor
		want string
	}{
		{[]*tensor.Tensor{fp32("probs", []int64{1, 3}, 1, 2, 3), label}, `no output "y" (it answered probs, label)`},
		{[]*tensor.Tensor{fp32("y", []int64{1, 0}), fp32("probs", []int64{1, 1}, 1), label}, `y[0]: output y has 0 elements per row`},
		{[]*tensor.Tensor{fp32("y", []int64{2, 1}, 1, 2), fp32("probs", []int64{1, 1}, 1), label}, `want one row per event`},
	} {
		if _, err := o.Result(in, c.outs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v; want %q", err, c.want)
		}
	}
	for expr, want := range map[string]string{"y[": "the index must be", "y[-1]": "the index must be", "y[01]": "the index must be", "[0]": "want an output name", "y[1]x": "the index must be"} {
		if _, err := ParseExpr(expr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExpr(%q) = %v; want %q", expr, err, want)
		}
	}
	if _, err := NewOutputs(map[string]string{"id": "y"}, []string{"id"}); err == nil {
		t.Error("a field both kept and computed was accepted")
	}
}

// FuzzEvent: no payload panics the decoder or the mapping, and an error is
// always an ErrEvent (a dead letter).
func FuzzEvent(f *testing.F) {
	for _, s := range []string{`{"amount":1,"merchant_risk":2,"foreign":true,"hour":3}`, `{"specversion":"1.0","id":"a","data":{"amount":1}}`,
		`{"amount":1e400}`, `[]`, `{"a":{"b":[1,2,{"c":null}]}}`, "\x00", `{"amount":-0,"merchant_risk":1e-320,"foreign":false,"hour":9007199254740993}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	out, _ := NewOutputs(map[string]string{"score": "y[0]"}, []string{"id", "amount"})
	f.Fuzz(func(t *testing.T, payload []byte, cloud bool) {
		m, _ := NewInputs([]Input{{Name: "x", DataType: tensor.FP32, Fields: []string{"amount", "merchant_risk", "foreign", "hour"}},
			{Name: "n", DataType: tensor.Int32, Fields: []string{"hour"}}}, cloud)
		ev, err := m.Decode(payload)
		if err != nil {
			if !errors.Is(err, ErrEvent) {
				t.Fatalf("decode error not an ErrEvent: %v", err)
			}
			return
		}
		ts, err := m.Tensors(ev)
		if err != nil {
			if !errors.Is(err, ErrEvent) {
				t.Fatalf("mapping error not an ErrEvent: %v", err)
			}
			return
		}
		for _, tt := range ts {
			if err := tt.Validate(); err != nil {
				t.Fatalf("invalid tensor %+v: %v", tt, err)
			}
		}
		if _, err := out.Result(ev, []*tensor.Tensor{fp32("y", []int64{1, 1}, 1)}); err != nil {
			t.Fatalf("result: %v", err)
		}
	})
}

func FuzzCloudEventData(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"a","data":{"x":1}}`))
	f.Add([]byte(`{"specversion":1,"id":"a"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		data, id, err := CloudEventData(b)
		if err == nil && (id == "" || len(data) == 0 || data[0] != '{') {
			t.Fatalf("accepted %q: data %q id %q", b, data, id)
		}
	})
}
