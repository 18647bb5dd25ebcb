package serving

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/serving/batch"
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
	start := time.Now()
	// A request is checked against the version that will answer it. That is
	// v, unless the reference moved to v and the version that served it so
	// far still answers while v loads: a request that fits only that one is
	// not refused for not fitting v.
	outNames, verr := checkRequest(v, req)
	if verr != nil && !m.refMoved(ns, req.Model, req.Version, v) {
		m.countFailure(ns, v, start)
		return nil, verr
	}
	inst, waited, err := m.acquireServing(ctx, ns, req.Model, req.Version, v)
	if err != nil {
		m.countFailure(ns, v, start)
		return nil, err
	}
	if prev := inst.version; prev.Version != v.Version {
		// The reference moved to v while v loads: the version that served it so
		// far answers — if the request fits its signature too; else it waits for v.
		if prevOuts, err := checkRequest(prev, req); err == nil {
			v, outNames = prev, prevOuts
		} else {
			inst.release()
			if verr != nil {
				m.countFailure(ns, v, start)
				return nil, verr
			}
			if inst, waited, err = m.acquire(ctx, v, true); err != nil {
				m.countFailure(ns, v, start)
				return nil, err
			}
		}
	} else if verr != nil {
		inst.release()
		m.countFailure(ns, v, start)
		return nil, verr
	}
	// The instance holds its version's statistics (load gave it
	// statsFor(inst.key)): no map lookup on the request path.
	st := inst.stats
	version := strconv.FormatInt(v.Version, 10)
	if waited > 0 {
		m.metrics.ObserveColdWait(ns, waited)
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
		return inst.b.Submit(runCtx, req.Inputs, outNames)
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
	rows := batch.Rows(req.Inputs)
	st.computeInfer.add(ran.Sub(loaded) - queued)
	st.success.add(ran.Sub(start))
	st.record(rows, ran)
	m.metrics.ObserveRows(ns, v.Model, version, rows)
	return &InferResponse{
		ModelName:    v.Model,
		ModelVersion: version,
		ID:           req.ID,
		Outputs:      outs,
		ColdStart:    waited,
	}, nil
}

// countFailure counts a request for v that failed before it ran.
func (m *Manager) countFailure(ns string, v registry.Version, start time.Time) {
	m.statsFor(versionKey{ns, v.Model, v.Version}).fail.add(time.Since(start))
}

// refKey is a model reference as requests write it: an alias or "" (default).
type refKey struct{ ns, model, ref string }

// acquireServing acquires the instance that answers ref. When an alias or the
// default reference moves to a version that is not resident yet, the version
// that answered it so far keeps answering while the new one loads (and if it
// fails to load); traffic moves once it is ready, so a switch fails no request
// and makes none wait. A version number always gets that version.
func (m *Manager) acquireServing(ctx context.Context, ns, model, ref string, v registry.Version) (*instance, time.Duration, error) {
	if registry.IsVersionNumber(ref) {
		return m.acquire(ctx, v, true)
	}
	rk := refKey{ns, model, ref}
	p, seen := m.lastServed.Load(rk)
	if seen && p.(versionKey).version != v.Version {
		if inst := m.stayOn(p.(versionKey), v); inst != nil {
			return inst, 0, nil
		}
	}
	inst, waited, err := m.acquire(ctx, v, true)
	if err != nil {
		return nil, waited, err
	}
	if !seen || p.(versionKey) != inst.key {
		m.lastServed.Store(rk, inst.key)
	}
	return inst, waited, nil
}

// stayOn returns the instance of prev, acquired, while next — the version its
// reference moved to — is loading or failed to load; nil once next is ready or
// prev is no longer resident.
func (m *Manager) stayOn(prev versionKey, next registry.Version) *instance {
	ni, err := m.instanceFor(versionKey{next.Namespace, next.Model, next.Version}, next, false)
	if err != nil {
		return nil
	}
	select {
	case <-ni.ready:
		if ni.err == nil {
			return nil // ready: switch
		}
	default:
	}
	m.mu.RLock()
	pi, ok := m.loaded[prev]
	ok = ok && !m.unloaded[modelKey{prev.ns, prev.model}]
	m.mu.RUnlock()
	if !ok {
		return nil
	}
	select {
	case <-pi.ready:
		if pi.err != nil {
			return nil
		}
	default:
		return nil
	}
	pi.run.RLock()
	if pi.closed {
		pi.run.RUnlock()
		return nil
	}
	pi.lastUsed.Store(m.opts.Now().UnixNano())
	return pi
}

// checkRequest checks req's inputs and requested outputs against v and
// returns the names of the outputs to compute.
func checkRequest(v registry.Version, req *InferRequest) ([]string, error) {
	if err := validateInputs(v, req.Inputs); err != nil {
		return nil, err
	}
	return selectOutputs(v, req.Outputs)
}

// refMoved reports whether ref (an alias, or the default reference) of
// model last answered with a version other than v: it moved to v, and the
// version it left may still answer while v loads.
func (m *Manager) refMoved(ns, model, ref string, v registry.Version) bool {
	if registry.IsVersionNumber(ref) {
		return false
	}
	p, ok := m.lastServed.Load(refKey{ns, model, ref})
	return ok && p.(versionKey).version != v.Version
}

// validateInputs checks names, datatypes, shapes and data sizes, with messages a
// user can act on: "input x expects shape [-1,4] FP32, got [1,3]".
//
// It allocates nothing unless it fails: this runs on every request.
func validateInputs(v registry.Version, inputs []*tensor.Tensor) error {
	sig := v.Signature
	field := func(i int, suffix string) string { return fmt.Sprintf("inputs[%d]%s", i, suffix) }
	var seenSmall [64]bool // index into sig.Inputs; the common case
	seen := seenSmall[:0]
	if len(sig.Inputs) <= len(seenSmall) {
		seen = seenSmall[:len(sig.Inputs)]
	} else {
		seen = make([]bool, len(sig.Inputs))
	}
	for i, in := range inputs {
		if in == nil {
			return errs.New(errs.InvalidArgument, "%s is empty", field(i, "")).WithField(field(i, ""))
		}
		j, err := matchInput(v.Model, sig.Inputs, i, in)
		if err != nil {
			return err
		}
		if seen[j] {
			return errs.New(errs.InvalidArgument, "input %s is given twice", in.Name).WithField(field(i, ".name"))
		}
		seen[j] = true
		if err := in.Validate(); err != nil {
			return errs.New(errs.InvalidArgument, "input %s: %v", in.Name, err).WithField(field(i, ".data"))
		}
	}
	if len(inputs) != len(sig.Inputs) { // no duplicates, so some are missing
		var missing []string
		for j, s := range sig.Inputs {
			if !seen[j] && !s.Optional {
				missing = append(missing, describeSpec(s))
			}
		}
		if len(missing) > 0 {
			return errs.New(errs.InvalidArgument, "missing input %s", strings.Join(missing, ", ")).WithField("inputs")
		}
	}
	return nil
}

// CheckInput checks the name, datatype and shape of inputs[i] of a request —
// not its data — against the inputs model expects, as Infer will: a decoder
// calls it before it decodes the tensor's data, so a request the model cannot
// take costs no decoding.
func CheckInput(model string, expected []tensor.TensorSpec, i int, in *tensor.Tensor) error {
	_, err := matchInput(model, expected, i, in)
	return err
}

// matchInput finds in's spec among expected (its index) and checks its
// datatype and shape. It allocates nothing unless it fails.
func matchInput(model string, expected []tensor.TensorSpec, i int, in *tensor.Tensor) (int, error) {
	j := slices.IndexFunc(expected, func(s tensor.TensorSpec) bool { return s.Name == in.Name })
	if j < 0 {
		f := fmt.Sprintf("inputs[%d].name", i)
		return -1, errs.New(errs.InvalidArgument, "unknown input %q: model %s expects %s", in.Name, model, describeSpecs(expected)).WithField(f)
	}
	spec := expected[j]
	if in.DataType != spec.DataType || !tensor.ShapeMatches(spec.Shape, in.Shape) {
		return j, errs.New(errs.InvalidArgument, "input %s expects shape %s %s, got %s %s",
			in.Name, tensor.ShapeString(spec.Shape), spec.DataType, tensor.ShapeString(in.Shape), in.DataType).WithField(fmt.Sprintf("inputs[%d]", i))
	}
	return j, nil
}

func describeSpec(s tensor.TensorSpec) string {
	if !s.Supported() {
		return s.Name + " " + s.Kind
	}
	d := s.Name + " " + s.DataType.String() + " " + tensor.ShapeString(s.Shape)
	if s.Optional {
		d += " (optional)"
	}
	return d
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
		if slices.Contains(names, r.Name) {
			return nil, errs.New(errs.InvalidArgument, "output %s is requested twice", r.Name).WithField(fmt.Sprintf("outputs[%d].name", i))
		}
		names = append(names, r.Name)
	}
	return names, nil
}
