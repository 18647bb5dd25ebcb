package serving

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Infer resolves the requested version, loads it if needed, validates the inputs
// against its signature and runs it.
func (m *Manager) Infer(ctx context.Context, req *InferRequest) (*InferResponse, error) {
	ns := req.Namespace
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	v, err := m.resolve(ctx, ns, req.Model, req.Version)
	if err != nil {
		return nil, err
	}
	st := m.statsFor(versionKey{ns, v.Model, v.Version})
	start := time.Now()
	if err := validateInputs(v, req.Inputs); err != nil {
		st.fail.add(time.Since(start))
		return nil, err
	}
	outNames, err := selectOutputs(v, req.Outputs)
	if err != nil {
		st.fail.add(time.Since(start))
		return nil, err
	}
	inst, err := m.acquire(ctx, v, true)
	if err != nil {
		st.fail.add(time.Since(start))
		return nil, err
	}
	runCtx := ctx
	if t := inst.cfg.Timeout.D(); t > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	loaded := time.Now()
	outs, queued, err := func() ([]*tensor.Tensor, time.Duration, error) {
		defer func() {
			inst.lastUsed.Store(m.opts.Now().UnixNano())
			inst.release() // also if the batcher panics
		}()
		return inst.b.submit(runCtx, req.Inputs, outNames)
	}()
	ran := time.Now()
	st.queue.add(loaded.Sub(start) + queued)
	if err != nil {
		st.fail.add(ran.Sub(start))
		if errs.KindOf(err) == errs.Internal {
			err = errs.Wrap(errs.Internal, err, "model %s version %d failed to run", v.Model, v.Version)
		}
		return nil, err
	}
	rows := batchRows(req.Inputs)
	st.computeInfer.add(ran.Sub(loaded) - queued)
	st.success.add(ran.Sub(start))
	st.record(rows, ran)
	m.metrics.ObserveRows(ns, v.Model, strconv.FormatInt(v.Version, 10), rows)
	return &InferResponse{
		ModelName:    v.Model,
		ModelVersion: strconv.FormatInt(v.Version, 10),
		ID:           req.ID,
		Outputs:      outs,
	}, nil
}

func batchRows(inputs []*tensor.Tensor) int64 {
	if len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return 1
	}
	return inputs[0].Shape[0]
}

// validateInputs checks names, datatypes, shapes and data sizes, with messages a
// user can act on: "input x expects shape [-1,4] FP32, got [1,3]".
func validateInputs(v registry.Version, inputs []*tensor.Tensor) error {
	sig := v.Signature
	seen := make(map[string]bool, len(inputs))
	for i, in := range inputs {
		field := fmt.Sprintf("inputs[%d]", i)
		if in == nil {
			return errs.New(errs.InvalidArgument, "%s is empty", field).WithField(field)
		}
		spec, ok := sig.Input(in.Name)
		if !ok {
			return errs.New(errs.InvalidArgument, "unknown input %q: model %s expects %s", in.Name, v.Model, describeSpecs(sig.Inputs)).WithField(field + ".name")
		}
		if seen[in.Name] {
			return errs.New(errs.InvalidArgument, "input %s is given twice", in.Name).WithField(field + ".name")
		}
		seen[in.Name] = true
		if in.DataType != spec.DataType || !tensor.ShapeMatches(spec.Shape, in.Shape) {
			return errs.New(errs.InvalidArgument, "input %s expects shape %s %s, got %s %s",
				in.Name, tensor.ShapeString(spec.Shape), spec.DataType, tensor.ShapeString(in.Shape), in.DataType).WithField(field)
		}
		if err := in.Validate(); err != nil {
			return errs.Wrap(errs.InvalidArgument, err, "input %s", in.Name).WithField(field + ".data")
		}
	}
	if len(seen) != len(sig.Inputs) {
		var missing []string
		for _, s := range sig.Inputs {
			if !seen[s.Name] {
				missing = append(missing, describeSpec(s))
			}
		}
		return errs.New(errs.InvalidArgument, "missing input %s", strings.Join(missing, ", ")).WithField("inputs")
	}
	return nil
}

func describeSpec(s tensor.TensorSpec) string {
	if !s.Supported() {
		return s.Name + " " + s.Kind
	}
	return s.Name + " " + s.DataType.String() + " " + tensor.ShapeString(s.Shape)
}

func describeSpecs(specs []tensor.TensorSpec) string {
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = describeSpec(s)
	}
	return strings.Join(parts, ", ")
}

// selectOutputs returns the output names to compute (nil: all supported outputs).
func selectOutputs(v registry.Version, reqs []OutputRequest) ([]string, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(reqs))
	for i, r := range reqs {
		spec, ok := v.Signature.Output(r.Name)
		if !ok {
			return nil, errs.New(errs.InvalidArgument, "unknown output %q: model %s has outputs %s", r.Name, v.Model, describeSpecs(v.Signature.Outputs)).WithField(fmt.Sprintf("outputs[%d].name", i))
		}
		if !spec.Supported() {
			return nil, errs.New(errs.InvalidArgument, "output %s is %s, which the Open Inference Protocol cannot carry", r.Name, spec.Kind).WithField(fmt.Sprintf("outputs[%d].name", i))
		}
		names = append(names, r.Name)
	}
	return names, nil
}

// versionStats are Triton-style counters for one version.
type versionStats struct {
	mu                                 sync.Mutex
	lastInference                      time.Time
	inferenceCount                     int64
	executionCount                     int64
	success, fail, queue, computeInfer durationStat
}

type durationStat struct {
	mu    sync.Mutex
	count int64
	total time.Duration
}

func (d *durationStat) add(x time.Duration) {
	d.mu.Lock()
	d.count++
	d.total += x
	d.mu.Unlock()
}

func (d *durationStat) get() Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Duration{Count: d.count, Total: d.total}
}

func (s *versionStats) record(rows int64, at time.Time) {
	s.mu.Lock()
	s.inferenceCount += rows
	s.lastInference = at
	s.mu.Unlock()
}

// recordExecution counts one runtime call (a batch counts once).
func (s *versionStats) recordExecution() {
	s.mu.Lock()
	s.executionCount++
	s.mu.Unlock()
}

func (m *Manager) statsFor(k versionKey) *versionStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.stats[k]
	if !ok {
		st = &versionStats{}
		m.stats[k] = st
	}
	return st
}

// Stats returns statistics for one version, every version of a model (version ""),
// or every model of the namespace (model "").
func (m *Manager) Stats(ctx context.Context, ns, model, ref string) ([]ModelStats, error) {
	var filter func(versionKey) bool
	switch {
	case model == "":
		filter = func(k versionKey) bool { return k.ns == ns }
	case ref == "":
		if _, err := m.reg.GetModel(ctx, ns, model); err != nil {
			return nil, err
		}
		filter = func(k versionKey) bool { return k.ns == ns && k.model == model }
	default:
		v, err := m.resolve(ctx, ns, model, ref)
		if err != nil {
			return nil, err
		}
		filter = func(k versionKey) bool { return k == versionKey{ns, model, v.Version} }
	}
	m.mu.Lock()
	keys := make([]versionKey, 0, len(m.stats))
	for k := range m.stats {
		if filter(k) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sortKeys(keys)
	out := make([]ModelStats, 0, len(keys))
	for _, k := range keys {
		st := m.statsFor(k)
		st.mu.Lock()
		ms := ModelStats{
			Name: k.model, Version: strconv.FormatInt(k.version, 10), LastInference: st.lastInference,
			InferenceCount: st.inferenceCount, ExecutionCount: st.executionCount,
		}
		st.mu.Unlock()
		ms.Success, ms.Fail, ms.Queue, ms.ComputeInfer = st.success.get(), st.fail.get(), st.queue.get(), st.computeInfer.get()
		out = append(out, ms)
	}
	return out, nil
}

func sortKeys(keys []versionKey) {
	slices.SortFunc(keys, func(a, b versionKey) int {
		if a.model != b.model {
			return strings.Compare(a.model, b.model)
		}
		return cmp.Compare(a.version, b.version)
	})
}

// refCache caches reference resolutions per (namespace, model, ref).
type refKey struct{ ns, model, ref string }

type refCache struct {
	mu sync.RWMutex
	m  map[refKey]registry.Version
}

func (c *refCache) get(k refKey) (registry.Version, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *refCache) put(k refKey, v registry.Version) {
	c.mu.Lock()
	if len(c.m) > 100_000 {
		clear(c.m) // bound memory; entries refill on demand
	}
	c.m[k] = v
	c.mu.Unlock()
}

func (c *refCache) invalidate(ns, model string) {
	c.mu.Lock()
	for k := range c.m {
		if k.ns == ns && k.model == model {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}
