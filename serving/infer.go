package serving

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// The instance's batcher holds its version's statistics (load gave it
	// statsFor(inst.key)): no map lookup on the request path.
	st := inst.b.stats
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

func batchRows(inputs []*tensor.Tensor) int64 {
	if len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return 1
	}
	return inputs[0].Shape[0]
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
		names = append(names, r.Name)
	}
	return names, nil
}

// versionStats are Triton-style counters for one version, updated on every
// request without locks.
type versionStats struct {
	lastInference                      atomic.Int64 // unix nanos; 0: never
	inferenceCount                     atomic.Int64
	executionCount                     atomic.Int64
	success, fail, queue, computeInfer durationStat
}

type durationStat struct{ count, total atomic.Int64 }

func (d *durationStat) add(x time.Duration) {
	d.count.Add(1)
	d.total.Add(int64(x))
}

func (d *durationStat) get() Duration {
	return Duration{Count: d.count.Load(), Total: time.Duration(d.total.Load())}
}

func (s *versionStats) record(rows int64, at time.Time) {
	s.inferenceCount.Add(rows)
	s.lastInference.Store(at.UnixNano())
}

// recordExecution counts one runtime call (a batch counts once).
func (s *versionStats) recordExecution() { s.executionCount.Add(1) }

func (m *Manager) statsFor(k versionKey) *versionStats {
	if st, ok := m.stats.Load(k); ok {
		return st.(*versionStats)
	}
	st, _ := m.stats.LoadOrStore(k, &versionStats{})
	return st.(*versionStats)
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
	var keys []versionKey
	m.stats.Range(func(k, _ any) bool {
		if filter(k.(versionKey)) {
			keys = append(keys, k.(versionKey))
		}
		return true
	})
	sortKeys(keys)
	out := make([]ModelStats, 0, len(keys))
	for _, k := range keys {
		st := m.statsFor(k)
		ms := ModelStats{
			Name: k.model, Version: strconv.FormatInt(k.version, 10),
			InferenceCount: st.inferenceCount.Load(), ExecutionCount: st.executionCount.Load(),
		}
		if n := st.lastInference.Load(); n != 0 {
			ms.LastInference = time.Unix(0, n)
		}
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

// refCache caches reference resolutions per model, so a change to a model drops
// its entries with one delete. Version numbers are cached under their canonical
// spelling (canonicalRef), so a model has at most one entry per version, alias
// and the default: what the registry holds bounds it, not what callers write.
//
// A resolution reads the registry outside the cache's lock, so an invalidation
// can land between that read and the store of its answer: gen counts
// invalidations, a resolution notes it before reading (generation), and put
// stores the answer only if no invalidation happened since — otherwise the
// answer may predate the change and is returned to its caller but not cached.
type refCache struct {
	mu  sync.RWMutex
	m   map[modelKey]map[string]registry.Version // ref -> version
	gen atomic.Uint64                            // bumped by invalidate (written under mu)
}

func (c *refCache) get(mk modelKey, ref string) (registry.Version, bool) {
	c.mu.RLock()
	v, ok := c.m[mk][ref]
	c.mu.RUnlock()
	return v, ok
}

// generation is the invalidation count to pass to put for an answer read from
// the registry after this call.
func (c *refCache) generation() uint64 { return c.gen.Load() }

// put caches v unless an invalidation happened since generation gen was read.
func (c *refCache) put(mk modelKey, ref string, v registry.Version, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return // the registry changed during the read: v may be stale
	}
	refs, ok := c.m[mk]
	if !ok {
		if len(c.m) >= 100_000 {
			clear(c.m) // bound memory; entries refill on demand
		}
		refs = map[string]registry.Version{}
		c.m[mk] = refs
	}
	refs[ref] = v
}

func (c *refCache) invalidate(mk modelKey) {
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.m, mk)
	c.mu.Unlock()
}
