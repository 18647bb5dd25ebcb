package registry_test

import (
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestCheckBatchable: requests stack along a dynamic first dim, so a scalar,
// a fixed first dim or an optional input (requests that give it and requests
// that leave it out cannot share a run) keep batching off, saying why.
func TestCheckBatchable(t *testing.T) {
	x := tensor.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}, Kind: "tensor"}
	y := tensor.TensorSpec{Name: "y", DataType: tensor.FP32, Shape: []int64{-1, 1}, Kind: "tensor"}
	for _, tt := range []struct {
		name string
		in   tensor.TensorSpec
		want string // "" batchable
	}{
		{"batched", x, ""},
		{"scalar", tensor.TensorSpec{Name: "sr", DataType: tensor.Int64, Shape: []int64{}, Kind: "tensor"}, "input sr has shape [] without a dynamic first (batch) dimension"},
		{"fixed first dim", tensor.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 4}, Kind: "tensor"}, "without a dynamic first"},
		{"optional", tensor.TensorSpec{Name: "bias", DataType: tensor.FP32, Shape: []int64{-1, 3}, Kind: "tensor", Optional: true}, "input bias is optional"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.CheckBatchable(tensor.Signature{Inputs: []tensor.TensorSpec{tt.in}, Outputs: []tensor.TensorSpec{y}})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckBatchable = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckBatchable = %v, want %q", err, tt.want)
			}
		})
	}
}
