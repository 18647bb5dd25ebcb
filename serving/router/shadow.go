package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// mirror sends a copy of req to the shadow of tab in the background, once the
// primary has answered with primary. It never blocks: when MaxShadowInFlight
// copies are running the copy is dropped and counted. After Close it does nothing.
func (r *Router) mirror(ctx context.Context, ns, service string, tab *table, req *serving.InferRequest, primary []*tensor.Tensor) {
	sh := tab.shadow
	r.shadowMu.RLock()
	defer r.shadowMu.RUnlock()
	if r.closed {
		return
	}
	select {
	case r.shadowSlot <- struct{}{}:
	default:
		sh.stats.dropped.Add(1)
		sh.series.Result(telemetry.ShadowDropped)
		return
	}
	// The shadow shares the input tensors and the primary's outputs, read-only;
	// the slices and maps around them are its own, so the backend may not reorder
	// what the caller still holds.
	sreq := &serving.InferRequest{
		Namespace: ns, Model: sh.model, Version: sh.ref, ID: req.ID,
		Parameters: maps.Clone(req.Parameters),
		Inputs:     slices.Clone(req.Inputs),
		Outputs:    slices.Clone(req.Outputs),
	}
	timeout := tab.cfg.Timeout
	if timeout <= 0 {
		timeout = r.shadowTimeout
	}
	r.shadows.Add(1)
	// Detached from the caller's cancellation: the primary has answered and its
	// caller may be gone; the shadow's own timeout bounds it.
	go r.runShadow(context.WithoutCancel(ctx), timeout, ns, service, sh, sreq, slices.Clone(primary))
}

func (r *Router) runShadow(ctx context.Context, timeout time.Duration, ns, service string, sh *shadowRoute, req *serving.InferRequest, primary []*tensor.Tensor) {
	defer r.shadows.Done()
	defer func() { <-r.shadowSlot }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer context.AfterFunc(r.stop, cancel)()
	resp, err := r.callShadow(ctx, req)
	sh.stats.sent.Add(1)
	if err != nil {
		sh.stats.errors.Add(1)
		// A rollout's shadow is the canary: an error is an answer that
		// does not match.
		if w := sh.stats.window.Load(); w != nil {
			w.compared.Add(1)
			w.mismatches.Add(1)
		}
		sh.series.Result(telemetry.ShadowError)
		r.log.Debug("shadow request failed", "namespace", ns, "service", service, "shadow", sh.name, "err", err)
		return
	}
	sh.series.Result(telemetry.ShadowOK)
	exact, diff, within := compareOutputs(primary, resp.Outputs)
	sh.stats.recordComparison(exact, diff, exact || within && diff <= sh.tolerance)
	sh.series.Compared(exact, diff)
}

// callShadow runs the shadow request; a panic in the backend becomes an error so
// a broken shadow model cannot take the server down.
func (r *Router) callShadow(ctx context.Context, req *serving.InferRequest) (resp *serving.InferResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("shadow request panicked", "namespace", req.Namespace, "model", req.Model, "version", req.Version, "panic", p)
			resp, err = nil, errs.New(errs.Internal, "shadow %s panicked: %v", targetName(req.Model, req.Version), p)
		}
	}()
	resp, err = r.backend.Infer(ctx, req)
	if err == nil && resp == nil {
		err = fmt.Errorf("shadow %s returned no response", targetName(req.Model, req.Version))
	}
	return resp, err
}

// compareOutputs compares a shadow's outputs with the primary's. exact: the same
// output names, datatypes, shapes and bytes. maxDiff: the largest absolute
// difference between elements of numeric outputs present in both with equal
// shapes (datatypes may differ); outputs that cannot be compared make the answer
// inexact without adding to maxDiff, and so do non-finite differences (NaN
// against a number, Inf against a finite value). within: every output was
// compared element by element (so maxDiff bounds every difference), or the
// answers are exact.
func compareOutputs(primary, shadow []*tensor.Tensor) (exact bool, maxDiff float64, within bool) {
	exact = len(primary) == len(shadow)
	within = exact
	for _, p := range primary {
		if p == nil {
			exact, within = false, false
			continue
		}
		i := slices.IndexFunc(shadow, func(t *tensor.Tensor) bool { return t != nil && t.Name == p.Name })
		if i < 0 {
			exact, within = false, false
			continue
		}
		s := shadow[i]
		if !slices.Equal(p.Shape, s.Shape) {
			exact, within = false, false
			continue
		}
		same := p.DataType == s.DataType && bytes.Equal(p.Data, s.Data) && slices.EqualFunc(p.Strings, s.Strings, bytes.Equal)
		if !same {
			exact = false
			if !numeric(p.DataType) || !numeric(s.DataType) {
				within = false // BYTES that differ have no distance
			}
		}
		d, ok := maxAbsDiff(p, s)
		if !ok {
			exact, within = false, false
		}
		maxDiff = max(maxDiff, d)
	}
	return exact, maxDiff, within || exact
}

// maxAbsDiff is the largest finite |p[i]-s[i]|; ok is false when the tensors
// are not numeric, do not hold the same number of elements, or differ by a
// non-finite amount somewhere.
func maxAbsDiff(p, s *tensor.Tensor) (diff float64, ok bool) {
	if !numeric(p.DataType) || !numeric(s.DataType) {
		return 0, p.DataType == s.DataType // BYTES: compared by bytes above
	}
	n := len(p.Data) / p.DataType.Size()
	if len(p.Data)%p.DataType.Size() != 0 || len(s.Data) != n*s.DataType.Size() {
		return 0, false
	}
	ok = true
	for i := range n {
		x, y := element(p.DataType, p.Data, i), element(s.DataType, s.Data, i)
		if x == y || math.IsNaN(x) && math.IsNaN(y) {
			continue
		}
		d := math.Abs(x - y)
		if math.IsNaN(d) || math.IsInf(d, 0) {
			ok = false
			continue
		}
		diff = max(diff, d)
	}
	return diff, ok
}

func numeric(dt tensor.DataType) bool { return dt.Valid() && dt != tensor.Bytes }

// element decodes element i of little-endian data of type dt as a float64.
func element(dt tensor.DataType, data []byte, i int) float64 {
	le := binary.LittleEndian
	switch dt {
	case tensor.Bool, tensor.Uint8:
		return float64(data[i])
	case tensor.Int8:
		return float64(int8(data[i]))
	case tensor.Uint16:
		return float64(le.Uint16(data[2*i:]))
	case tensor.Int16:
		return float64(int16(le.Uint16(data[2*i:])))
	case tensor.Uint32:
		return float64(le.Uint32(data[4*i:]))
	case tensor.Int32:
		return float64(int32(le.Uint32(data[4*i:])))
	case tensor.Uint64:
		return float64(le.Uint64(data[8*i:]))
	case tensor.Int64:
		return float64(int64(le.Uint64(data[8*i:])))
	case tensor.FP16:
		return float64(tensor.HalfToFloat32(le.Uint16(data[2*i:])))
	case tensor.BF16:
		return float64(tensor.BFloat16ToFloat32(le.Uint16(data[2*i:])))
	case tensor.FP32:
		return float64(math.Float32frombits(le.Uint32(data[4*i:])))
	case tensor.FP64:
		return math.Float64frombits(le.Uint64(data[8*i:]))
	}
	return 0
}
