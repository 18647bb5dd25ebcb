package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestBrokenVersionFailsOnSomeInputs: fraud_v3_broken.onnx, the rollback
// walkthrough's version 3, answers rows whose third feature is 0 or 1 and
// fails in ONNX Runtime itself on a batch holding a row where it is 2 or
// more — a version that "fails on some inputs", not a fake.
func TestBrokenVersionFailsOnSomeInputs(t *testing.T) {
	ok := rawRun(t, "fraud_v3_broken", f32Tensor("x", []int64{2, 4}, 0.3, 12, 1, 0, 0.9, 3, 0, 1))
	if y := f32s(ok["y"].Data); len(y) != 2 {
		t.Fatalf("y = %v, want 2 scores", y)
	}
	m, err := onnx.New("", nil).Load(context.Background(), testutil.Model("fraud_v3_broken"), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Run(context.Background(), []*tensor.Tensor{f32Tensor("x", []int64{2, 4}, 0.3, 12, 1, 0, 0.3, 12, 5, 0)}, nil)
	if err == nil || !strings.Contains(err.Error(), "out of") {
		t.Fatalf("a row with feature 3 = 5: err = %v, want ONNX Runtime's index out of bounds", err)
	}
}
