package onnxtest

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/nimbus-ai/nimbus/tensor"
)

func fp32(vals ...float32) *tensor.Tensor {
	t := &tensor.Tensor{Name: "y", DataType: tensor.FP32, Shape: []int64{int64(len(vals))}}
	for _, v := range vals {
		t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(v))
	}
	return t
}

// TestCompare: the comparison the runtime and end-to-end tests rely on tells
// close floats from far ones, NaN from numbers and infinities from finite
// values, and strings exactly (up to a NUL against onnxruntime-node).
func TestCompare(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		name      string
		got, want *tensor.Tensor
		same      bool
	}{
		{"close", fp32(1, 2.000001), fp32(1, 2), true},
		{"far", fp32(1, 2.1), fp32(1, 2), false},
		{"NaN both", fp32(nan), fp32(nan), true},
		{"NaN got", fp32(nan), fp32(1), false},
		{"NaN want", fp32(1), fp32(nan), false},
		{"Inf both", fp32(inf), fp32(inf), true},
		{"Inf got", fp32(inf), fp32(1e30), false},
		{"Inf want", fp32(1e30), fp32(inf), false},
		{"shape", fp32(1, 2), fp32(1), false},
	} {
		if err := Compare(c.got, c.want); (err == nil) != c.same {
			t.Errorf("%s: Compare = %v, want same=%v", c.name, err, c.same)
		}
	}
	s := func(v ...string) *tensor.Tensor {
		t := &tensor.Tensor{Name: "w", DataType: tensor.Bytes, Shape: []int64{int64(len(v))}}
		for _, x := range v {
			t.Strings = append(t.Strings, []byte(x))
		}
		return t
	}
	if err := Compare(s("a\x00b"), s("a")); err == nil {
		t.Error("Compare ignores what follows a NUL")
	}
	if err := CompareNode(s("a\x00b"), s("a")); err != nil {
		t.Errorf("CompareNode: %v", err)
	}
	if err := CompareNode(s("ab"), s("a")); err == nil {
		t.Error("CompareNode accepts a different string")
	}
}
