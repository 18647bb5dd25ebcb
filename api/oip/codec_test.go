package oip

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

func le16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func le64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func f64s(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// inputJSON builds a one-input request body.
func inputJSON(dt, shape, data string) []byte {
	return []byte(`{"inputs":[{"name":"x","shape":` + shape + `,"datatype":"` + dt + `","data":` + data + `}]}`)
}

// sameTensor compares what the codec must preserve (not parameters).
func sameTensor(t *testing.T, got, want *tensor.Tensor) {
	t.Helper()
	if got.Name != want.Name || got.DataType != want.DataType || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Fatalf("tensor header = %q %s %s, want %q %s %s", got.Name, got.DataType, tensor.ShapeString(got.Shape),
			want.Name, want.DataType, tensor.ShapeString(want.Shape))
	}
	if want.DataType == tensor.Bytes {
		if len(got.Strings) != len(want.Strings) {
			t.Fatalf("strings = %q, want %q", got.Strings, want.Strings)
		}
		for i := range want.Strings {
			if !bytes.Equal(got.Strings[i], want.Strings[i]) {
				t.Fatalf("strings = %q, want %q", got.Strings, want.Strings)
			}
		}
		return
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("data = %x, want %x", got.Data, want.Data)
	}
}

func TestDecodeEveryDataType(t *testing.T) {
	tests := []struct {
		dt      tensor.DataType
		elems   []string // four elements, shape [2,2]
		want    []byte
		strings []string
	}{
		{tensor.Bool, []string{"true", "false", "false", "true"}, []byte{1, 0, 0, 1}, nil},
		{tensor.Uint8, []string{"0", "1", "254", "255"}, []byte{0, 1, 254, 255}, nil},
		{tensor.Uint16, []string{"0", "1", "65534", "65535"}, le16(0, 1, 65534, 65535), nil},
		{tensor.Uint32, []string{"0", "1", "4294967294", "4294967295"}, le32(0, 1, 4294967294, 4294967295), nil},
		{tensor.Uint64, []string{"0", "-0", "9007199254740993", "18446744073709551615"}, le64(0, 0, 9007199254740993, math.MaxUint64), nil},
		{tensor.Int8, []string{"-128", "-1", "0", "127"}, []byte{0x80, 0xff, 0, 127}, nil},
		{tensor.Int16, []string{"-32768", "-1", "0", "32767"}, le16(0x8000, 0xffff, 0, 32767), nil},
		{tensor.Int32, []string{"-2147483648", "-1", "0", "2147483647"}, le32(0x80000000, 0xffffffff, 0, 2147483647), nil},
		{tensor.Int64, []string{"-9223372036854775808", "-9007199254740993", "9007199254740993", "9223372036854775807"},
			le64(1<<63, math.MaxUint64-9007199254740993+1, 9007199254740993, math.MaxInt64), nil},
		{tensor.FP16, []string{"0.5", "-2", "65504", "6e-08"}, le16(0x3800, 0xc000, 0x7bff, 0x0001), nil},
		{tensor.BF16, []string{"1", "-2.5", "3.140625", "0.5"}, le16(0x3f80, 0xc020, 0x4049, 0x3f00), nil},
		{tensor.FP32, []string{"1.5", "-0.1", "3.4028235e38", "1E-45"}, f32s(1.5, -0.1, math.MaxFloat32, math.SmallestNonzeroFloat32), nil},
		{tensor.FP64, []string{"1.5", "-0.1", "1.7976931348623157e308", "5e-324"}, f64s(1.5, -0.1, math.MaxFloat64, math.SmallestNonzeroFloat64), nil},
		{tensor.Bytes, []string{`"a"`, `""`, `"h\u00e9llo \ud83d\ude00"`, `"q\"\\\n\u0001\/"`}, nil, []string{"a", "", "héllo 😀", "q\"\\\n\x01/"}},
	}
	for _, tt := range tests {
		t.Run(tt.dt.String(), func(t *testing.T) {
			want := &tensor.Tensor{Name: "x", DataType: tt.dt, Shape: []int64{2, 2}, Data: tt.want}
			for _, s := range tt.strings {
				want.Strings = append(want.Strings, []byte(s))
			}
			e := tt.elems
			bodies := map[string]string{
				"flat":   "[" + strings.Join(e, ",") + "]",
				"nested": "[[" + e[0] + "," + e[1] + "], [" + e[2] + " , " + e[3] + "]]",
			}
			for form, data := range bodies {
				req, err := DecodeInferRequest(inputJSON(tt.dt.String(), "[2,2]", data), 0)
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				sameTensor(t, req.Inputs[0], want)
				roundTrip(t, req)
			}
		})
	}
}

// roundTrip checks that every encoder/decoder pair preserves the request's inputs,
// as JSON and as binary data.
func roundTrip(t *testing.T, req *serving.InferRequest) {
	t.Helper()
	for _, bin := range []bool{false, true} {
		body, hl, err := EncodeInferRequest(nil, req, bin)
		if err != nil {
			t.Fatal(err)
		}
		if (hl > 0) != bin {
			t.Fatalf("binary=%v: headerLen %d", bin, hl)
		}
		back, err := DecodeInferRequest(body, hl)
		if err != nil {
			t.Fatalf("binary=%v: decode %s: %v", bin, body, err)
		}
		for i := range req.Inputs {
			sameTensor(t, back.Inputs[i], req.Inputs[i])
		}

		resp := &serving.InferResponse{ModelName: "m", ModelVersion: "3", ID: "id-1", Outputs: req.Inputs}
		sel := &serving.InferRequest{Parameters: map[string]any{paramBinaryOutput: bin}}
		body, hl, err = EncodeInferResponse(nil, resp, sel)
		if err != nil {
			t.Fatal(err)
		}
		gotResp, err := DecodeInferResponse(body, hl)
		if err != nil {
			t.Fatalf("binary=%v: decode response %s: %v", bin, body, err)
		}
		if gotResp.ModelName != "m" || gotResp.ModelVersion != "3" || gotResp.ID != "id-1" {
			t.Fatalf("response header = %+v", gotResp)
		}
		for i := range req.Inputs {
			sameTensor(t, gotResp.Outputs[i], req.Inputs[i])
		}
	}
}

func TestDecodeNestedRank3AndScalar(t *testing.T) {
	req, err := DecodeInferRequest(inputJSON("INT32", "[2,1,2]", "[[[1,2]],[[3,4]]]"), 0)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, req.Inputs[0], &tensor.Tensor{Name: "x", DataType: tensor.Int32, Shape: []int64{2, 1, 2}, Data: le32(1, 2, 3, 4)})
	req, err = DecodeInferRequest(inputJSON("FP64", "[]", "[2.5]"), 0)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, req.Inputs[0], &tensor.Tensor{Name: "x", DataType: tensor.FP64, Shape: []int64{}, Data: f64s(2.5)})
	req, err = DecodeInferRequest(inputJSON("FP32", "[2,0]", "[[],[]]"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Inputs[0].Data) != 0 {
		t.Fatalf("data = %x", req.Inputs[0].Data)
	}
}

func TestDecodeRequestFields(t *testing.T) {
	body := `{"id":"r1","parameters":{"b":true,"i":9007199254740993,"f":0.5,"s":"x","big":1e400000000000000000000},` +
		`"unknown":{"a":[1,{"b":null}]},` +
		`"inputs":[{"data":[1,2],"parameters":{"p":1},"datatype":"INT64","shape":[2],"name":"a"}],` +
		`"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"z"}]}`
	_, err := DecodeInferRequest([]byte(body), 0)
	if err == nil || errs.PublicMessage(err) != `parameter "big": number 1e400000000000000000000 is out of range` {
		t.Fatalf("err = %v", err)
	}
	body = strings.Replace(body, `,"big":1e400000000000000000000`, "", 1)
	req, err := DecodeInferRequest([]byte(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "r1" || req.Parameters["b"] != true || req.Parameters["i"] != int64(9007199254740993) ||
		req.Parameters["f"] != 0.5 || req.Parameters["s"] != "x" || len(req.Parameters) != 4 {
		t.Fatalf("request = %+v", req)
	}
	in := req.Inputs[0]
	if in.Name != "a" || in.Parameters["p"] != int64(1) {
		t.Fatalf("input = %+v", in)
	}
	sameTensor(t, in, &tensor.Tensor{Name: "a", DataType: tensor.Int64, Shape: []int64{2}, Data: le64(1, 2)})
	if len(req.Outputs) != 2 || req.Outputs[0].Name != "y" || req.Outputs[0].Parameters["binary_data"] != true || req.Outputs[1].Name != "z" {
		t.Fatalf("outputs = %+v", req.Outputs)
	}
}

func TestExactIntegerExtremes(t *testing.T) {
	req, err := DecodeInferRequest([]byte(`{"inputs":[`+
		`{"name":"i","shape":[2],"datatype":"INT64","data":[9007199254740993,-9223372036854775808]},`+
		`{"name":"u","shape":[1],"datatype":"UINT64","data":[18446744073709551615]}]}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(binary.LittleEndian.Uint64(req.Inputs[0].Data)); got != 9007199254740993 {
		t.Fatalf("INT64 = %d", got)
	}
	if got := binary.LittleEndian.Uint64(req.Inputs[1].Data); got != math.MaxUint64 {
		t.Fatalf("UINT64 = %d", got)
	}
	body, _, err := EncodeInferResponse(nil, &serving.InferResponse{ModelName: "m", Outputs: req.Inputs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"data":[9007199254740993,-9223372036854775808]`, `"data":[18446744073709551615]`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("%s does not contain %s", body, want)
		}
	}
}

func TestNonFiniteFloats(t *testing.T) {
	for _, dt := range []string{"FP16", "BF16", "FP32", "FP64"} {
		t.Run(dt, func(t *testing.T) {
			req, err := DecodeInferRequest(inputJSON(dt, "[4]", `["NaN","Infinity","-Infinity",1.5]`), 0)
			if err != nil {
				t.Fatal(err)
			}
			body, hl, err := EncodeInferResponse(nil, &serving.InferResponse{ModelName: "m", Outputs: req.Inputs}, nil)
			if err != nil || hl != 0 {
				t.Fatal(err, hl)
			}
			want := `{"model_name":"m","outputs":[{"name":"x","datatype":"` + dt + `","shape":[4],"data":["NaN","Infinity","-Infinity",1.5]}]}`
			if string(body) != want {
				t.Fatalf("body = %s\nwant   %s", body, want)
			}
		})
	}
}
