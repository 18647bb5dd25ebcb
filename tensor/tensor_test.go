package tensor

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

func TestDataTypes(t *testing.T) {
	for dt := Bool; dt <= Bytes; dt++ {
		got, ok := ParseDataType(dt.String())
		if !ok || got != dt {
			t.Errorf("ParseDataType(%q) = %v, %v", dt.String(), got, ok)
		}
		b, _ := dt.MarshalText()
		var back DataType
		if err := back.UnmarshalText(b); err != nil || back != dt {
			t.Errorf("text round trip of %v: %v %v", dt, back, err)
		}
	}
	if _, ok := ParseDataType("fp32"); ok {
		t.Error("datatype names are case-sensitive in OIP")
	}
	if FP16.Size() != 2 || Int64.Size() != 8 || Bytes.Size() != 0 {
		t.Error("sizes")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		t    Tensor
		ok   bool
	}{
		{"ok", Tensor{Name: "x", DataType: FP32, Shape: []int64{2, 2}, Data: make([]byte, 16)}, true},
		{"short", Tensor{Name: "x", DataType: FP32, Shape: []int64{2, 2}, Data: make([]byte, 12)}, false},
		{"negative dim", Tensor{Name: "x", DataType: FP32, Shape: []int64{-1, 2}}, false},
		{"overflow", Tensor{Name: "x", DataType: FP32, Shape: []int64{1 << 40, 1 << 40}}, false},
		{"bytes", Tensor{Name: "s", DataType: Bytes, Shape: []int64{2}, Strings: [][]byte{nil, []byte("a")}}, true},
		{"bytes count", Tensor{Name: "s", DataType: Bytes, Shape: []int64{3}, Strings: [][]byte{nil}}, false},
		{"invalid type", Tensor{Name: "x", Shape: []int64{1}}, false},
		{"scalar", Tensor{Name: "x", DataType: Int8, Shape: []int64{}, Data: []byte{1}}, true},
	}
	for _, c := range cases {
		if err := c.t.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

func TestShapeMatches(t *testing.T) {
	cases := []struct {
		spec, shape []int64
		want        bool
	}{
		{[]int64{-1, 4}, []int64{7, 4}, true},
		{[]int64{-1, 4}, []int64{7, 3}, false},
		{[]int64{-1, 4}, []int64{4}, false},
		{nil, []int64{1, 2, 3}, true},
		{[]int64{}, []int64{}, true},
		{[]int64{}, []int64{1}, false},
	}
	for _, c := range cases {
		if got := ShapeMatches(c.spec, c.shape); got != c.want {
			t.Errorf("ShapeMatches(%v, %v) = %v", c.spec, c.shape, got)
		}
	}
}

func TestFromText(t *testing.T) {
	x, err := FromText("x", FP32, []int64{1, 3}, []string{"0.5", "-2", "1e3"})
	if err != nil || x.Validate() != nil || math.Float32frombits(binary.LittleEndian.Uint32(x.Data[4:])) != -2 {
		t.Fatalf("FP32: %+v %v", x, err)
	}
	b, err := FromText("b", Bool, []int64{2}, []string{"true", "0"})
	if err != nil || string(b.Data) != "\x01\x00" {
		t.Fatalf("BOOL: %+v %v", b, err)
	}
	i, err := FromText("i", Int16, []int64{1}, []string{"-2"})
	if err != nil || binary.LittleEndian.Uint16(i.Data) != 0xfffe {
		t.Fatalf("INT16: %+v %v", i, err)
	}
	s, err := FromText("s", Bytes, []int64{2}, []string{"a", ""})
	if err != nil || len(s.Strings) != 2 || s.Validate() != nil {
		t.Fatalf("BYTES: %+v %v", s, err)
	}
	for _, bad := range []struct {
		dt     DataType
		shape  []int64
		values []string
		want   string
	}{
		{FP32, []int64{2}, []string{"1"}, "shape [2] needs 2 elements, got 1"},
		{Uint8, []int64{1}, []string{"256"}, `element 0: "256" is not a UINT8 value`},
		{Int8, []int64{1}, []string{"x"}, `"x" is not a INT8 value`},
		{Bool, []int64{1}, []string{"yes"}, "not a BOOL value"},
		{FP32, []int64{-1}, []string{"1"}, "input x:"},
	} {
		if _, err := FromText("x", bad.dt, bad.shape, bad.values); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v %v %v: %v (want %q)", bad.dt, bad.shape, bad.values, err, bad.want)
		}
	}
}
