package serving

import (
	"testing"

	"github.com/nimbus-ai/nimbus/tensor"
)

// TestWarmupInputsScalarAndOptional: a warm-up request built from a signature gives a scalar
// input its one element and leaves an optional input out (the model runs
// without it, as a request may).
func TestWarmupInputsScalarAndOptional(t *testing.T) {
	sig := tensor.Signature{Inputs: []tensor.TensorSpec{
		{Name: "input", DataType: tensor.FP32, Shape: []int64{-1, 8}, Kind: "tensor"},
		{Name: "sr", DataType: tensor.Int64, Shape: []int64{}, Kind: "tensor"},
		{Name: "bias", DataType: tensor.FP32, Shape: []int64{3}, Kind: "tensor", Optional: true},
	}}
	got, err := warmupInputs(sig, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "input" || tensor.ShapeString(got[0].Shape) != "[2,8]" || len(got[0].Data) != 64 ||
		got[1].Name != "sr" || len(got[1].Shape) != 0 || len(got[1].Data) != 8 {
		t.Fatalf("warm-up inputs: %+v", got)
	}
}
