package serving

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// warmUp runs the version's warm-up requests (serving.warmup) before it is
// marked ready, so the first user request does not pay for first-run setup.
func warmUp(ctx context.Context, model runtime.Model, cfg registry.ServingConfig, log *slog.Logger) error {
	runs, rows := cfg.WarmupRuns()
	if runs == 0 {
		return nil
	}
	inputs, err := warmupInputs(model.Signature(), rows)
	if err != nil {
		return err
	}
	if w := cfg.Warmup; len(w.Inputs) > 0 {
		// The stored sample request, when it fits this version; else the
		// zero-valued one (a sample never makes a version unservable).
		sample, err := w.Tensors()
		if err == nil {
			err = registry.CheckWarmupFits(w, model.Signature())
		}
		if err == nil {
			inputs = sample
		} else if log != nil {
			log.Warn("the warm-up sample does not fit this version; warming up with zero-valued inputs", "err", err)
		}
	}
	for i := range runs {
		if _, err := model.Run(ctx, inputs, nil); err != nil {
			return errs.Wrap(errs.Unavailable, err, "warm-up request %d of %d failed", i+1, runs)
		}
	}
	return nil
}

// maxWarmupBytes bounds one warm-up request: shapes come from the model file, and
// a declared [1, 1e12] must fail the load with a message, not exhaust memory.
const maxWarmupBytes = 256 << 20

// warmupInputs builds zero-valued inputs from a signature: the first dynamic dim
// is rows, other dynamic dims 1; strings are empty; optional inputs are left out.
func warmupInputs(sig tensor.Signature, rows int) ([]*tensor.Tensor, error) {
	inputs := make([]*tensor.Tensor, 0, len(sig.Inputs))
	for _, spec := range sig.Inputs {
		if spec.Optional {
			continue
		}
		if spec.Shape == nil {
			return nil, fmt.Errorf("warm-up: input %s declares no shape to build a request from", spec.Name)
		}
		shape := make([]int64, len(spec.Shape))
		n := int64(1)
		for i, d := range spec.Shape {
			switch {
			case d >= 0:
				shape[i] = d
			case i == 0:
				shape[i] = int64(rows)
			default:
				shape[i] = 1
			}
			if shape[i] > 0 && n > maxWarmupBytes/shape[i] {
				return nil, fmt.Errorf("warm-up: input %s of shape %s would exceed %d MiB; lower warmup.batchSize or turn warm-up off",
					spec.Name, tensor.ShapeString(shape), maxWarmupBytes>>20)
			}
			n *= shape[i]
		}
		if n*int64(max(1, spec.DataType.Size())) > maxWarmupBytes {
			return nil, fmt.Errorf("warm-up: input %s of shape %s would exceed %d MiB; lower warmup.batchSize or turn warm-up off",
				spec.Name, tensor.ShapeString(shape), maxWarmupBytes>>20)
		}
		t := &tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape}
		if spec.DataType == tensor.Bytes {
			t.Strings = make([][]byte, n)
			for i := range t.Strings {
				t.Strings[i] = []byte{}
			}
		} else {
			t.Data = make([]byte, n*int64(spec.DataType.Size()))
		}
		inputs = append(inputs, t)
	}
	return inputs, nil
}
