package serving

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/telemetry"
)

// Registry is what the manager needs from the model registry.
type Registry interface {
	Resolve(ctx context.Context, ns, model, ref string) (registry.Version, error)
	GetModel(ctx context.Context, ns, name string) (registry.Model, error)
	ListVersions(ctx context.Context, ns, model string) ([]registry.Version, error)
	ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error)
}

// Artifacts locates and verifies artifact files.
type Artifacts interface {
	Path(sha256 string) string
	Verify(ctx context.Context, sha256 string) error
}

// Options configure a Manager.
type Options struct {
	Runtimes []runtime.Runtime
	Metrics  *telemetry.Metrics
	Logger   *slog.Logger
	// Version is reported in server metadata.
	Version string
	// FailedRetryAfter is how long a failed load is remembered before a request may
	// try again (so a broken artifact does not cause a load storm). Default 5s.
	FailedRetryAfter time.Duration
	// Now is the clock (tests may fake it).
	Now func() time.Time
	// IdleCheckEvery is how often Start looks for idle versions to unload (default 10s).
	IdleCheckEvery time.Duration
}

type modelKey struct{ ns, model string }

type versionKey struct {
	ns, model string
	version   int64
}

// Manager loads model versions on demand and runs inference on them.
type Manager struct {
	reg      Registry
	blobs    Artifacts
	runtimes map[string]runtime.Runtime
	metrics  *telemetry.Metrics
	log      *slog.Logger
	opts     Options

	mu       sync.RWMutex // guards loaded, unloaded, closed; requests take it shared
	loaded   map[versionKey]*instance
	unloaded map[modelKey]bool // explicitly unloaded through the repository API
	stats    sync.Map          // versionKey -> *versionStats; kept across unloads, as Triton does
	closed   bool

	refs refCache
	bg   sync.WaitGroup // loads (and stale closes) running in the background
}

// NewManager builds a Manager.
func NewManager(reg Registry, blobs Artifacts, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FailedRetryAfter == 0 {
		opts.FailedRetryAfter = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IdleCheckEvery <= 0 {
		opts.IdleCheckEvery = 10 * time.Second
	}
	rts := make(map[string]runtime.Runtime, len(opts.Runtimes))
	for _, r := range opts.Runtimes {
		rts[r.Format()] = r
	}
	return &Manager{
		reg: reg, blobs: blobs, runtimes: rts, metrics: opts.Metrics, log: opts.Logger.With("component", "serving"),
		opts: opts, loaded: map[versionKey]*instance{}, unloaded: map[modelKey]bool{},
		refs: refCache{m: map[modelKey]map[string]registry.Version{}},
	}
}

// instance is one loaded (or loading, or failed) model version.
type instance struct {
	key     versionKey
	version registry.Version
	ready   chan struct{} // closed when the load finished, successfully or not

	// Set before ready closes; read-only afterwards.
	model    runtime.Model
	cfg      registry.ServingConfig
	b        *batcher
	err      error
	failedAt time.Time

	run      sync.RWMutex // Run holds it shared; Close holds it exclusively
	closed   bool
	lastUsed atomic.Int64 // unix nanos
}

// resolve maps (ns, model, ref) to a version, through a cache that the registry's
// change notifications invalidate. When the registry is unreachable, cached answers
// keep the data path serving.
func (m *Manager) resolve(ctx context.Context, ns, model, ref string) (registry.Version, error) {
	mk := modelKey{ns, model}
	if v, ok := m.refs.get(mk, ref); ok {
		return v, nil
	}
	v, err := m.reg.Resolve(ctx, ns, model, ref)
	if err != nil {
		return registry.Version{}, err
	}
	m.refs.put(mk, ref, v)
	return v, nil
}

// Invalidate drops cached resolutions for a model; the registry calls it on every change.
func (m *Manager) Invalidate(ns, model string) {
	m.refs.invalidate(modelKey{ns, model})
}

// acquire returns a loaded instance for v with its run lock held shared; the
// caller must call release. Concurrent callers share one load.
func (m *Manager) acquire(ctx context.Context, v registry.Version, onDemand bool) (*instance, error) {
	key := versionKey{v.Namespace, v.Model, v.Version}
	for {
		inst, err := m.instanceFor(key, v, onDemand)
		if err != nil {
			return nil, err
		}
		select {
		case <-inst.ready:
		case <-ctx.Done():
			return nil, errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "waiting for model %s version %d to load", key.model, key.version)
		}
		if inst.err != nil {
			if m.opts.Now().Sub(inst.failedAt) >= m.opts.FailedRetryAfter {
				m.mu.Lock()
				if m.loaded[key] == inst {
					delete(m.loaded, key)
				}
				m.mu.Unlock()
				continue
			}
			return nil, inst.err
		}
		inst.run.RLock()
		if inst.closed {
			inst.run.RUnlock()
			continue // unloaded between ready and lock; load again (or get refused)
		}
		inst.lastUsed.Store(m.opts.Now().UnixNano())
		return inst, nil
	}
}

func (inst *instance) release() { inst.run.RUnlock() }

// instanceFor returns the instance of v, starting its load if it has none. The
// common case — resident and current — takes the manager's lock shared only.
func (m *Manager) instanceFor(key versionKey, v registry.Version, onDemand bool) (*instance, error) {
	mk := modelKey{key.ns, key.model}
	m.mu.RLock()
	inst, ok := m.loaded[key]
	if ok && !m.closed && !m.unloaded[mk] && inst.version.SHA256 == v.SHA256 {
		m.mu.RUnlock()
		return inst, nil
	}
	m.mu.RUnlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errs.New(errs.Unavailable, "server is shutting down")
	}
	if m.unloaded[mk] {
		m.mu.Unlock()
		return nil, errs.New(errs.Unavailable, "model %q is unloaded; load it with POST /v2/repository/models/%s/load", key.model, key.model)
	}
	inst, ok = m.loaded[key]
	if ok && inst.version.SHA256 == v.SHA256 {
		m.mu.Unlock()
		return inst, nil
	}
	// Not resident, or a deleted and re-created version number: never serve
	// stale bytes; close the old instance once its requests finish.
	stale := inst
	inst = &instance{key: key, version: v, ready: make(chan struct{})}
	m.loaded[key] = inst
	if onDemand {
		m.metrics.ColdStart(key.ns)
	}
	m.bg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.bg.Done()
		if stale != nil {
			m.closeInstance(stale)
		}
		m.load(inst)
	}()
	return inst, nil
}

// load verifies the artifact and loads it. It runs detached from any one request's
// context: other requests may be waiting on the same load.
func (m *Manager) load(inst *instance) {
	start := time.Now()
	ctx := context.Background()
	v := inst.version
	log := m.log.With("namespace", v.Namespace, "model", v.Model, "version", v.Version)
	err := func() error {
		rt, ok := m.runtimes[v.Format]
		if !ok {
			return errs.New(errs.FailedPrecondition, "no runtime for format %q", v.Format)
		}
		if err := m.blobs.Verify(ctx, v.SHA256); err != nil {
			return err
		}
		cfg := m.servingConfig(ctx, v)
		model, err := rt.Load(ctx, m.blobs.Path(v.SHA256), runtime.Options{IntraOpThreads: cfg.Threads, InterOpThreads: cfg.InterOpThreads})
		if err != nil {
			return err
		}
		inst.model = model
		inst.cfg = cfg
		inst.lastUsed.Store(m.opts.Now().UnixNano())
		inst.b = newBatcher(model, cfg, m.statsFor(inst.key), m.metrics.ForVersion(v.Namespace, v.Model, strconv.FormatInt(v.Version, 10)), log)
		return nil
	}()
	m.metrics.ObserveLoad(v.Namespace, v.Model, time.Since(start), err)
	if err != nil {
		// Whatever the cause (missing library, corrupt artifact, invalid model), the
		// caller's request was fine: the model is unavailable, and the message says why.
		err = errs.Wrap(errs.Unavailable, err, "model %s version %d failed to load", v.Model, v.Version)
		inst.err = err
		inst.failedAt = m.opts.Now()
		log.Error("model load failed", "err", err)
	} else {
		log.Info("model loaded", "duration", time.Since(start).Round(time.Microsecond), "sha256", v.SHA256)
	}
	close(inst.ready)
	m.updateLoadedGauge()
}

// servingConfig merges the model's settings with the version's override. If the
// registry is unreachable the defaults apply.
func (m *Manager) servingConfig(ctx context.Context, v registry.Version) registry.ServingConfig {
	var cfg registry.ServingConfig
	if mod, err := m.reg.GetModel(ctx, v.Namespace, v.Model); err == nil {
		cfg = mod.Serving
	} else {
		m.log.Warn("model settings unavailable; using defaults", "model", v.Model, "err", err)
	}
	return cfg.Merge(v.Serving)
}

func (m *Manager) updateLoadedGauge() {
	m.mu.Lock()
	n, bytes := 0, int64(0)
	for _, inst := range m.loaded {
		select {
		case <-inst.ready:
			if inst.err == nil {
				n++
				bytes += inst.version.Size
			}
		default:
		}
	}
	m.mu.Unlock()
	m.metrics.SetLoaded(n, bytes)
}

// closeInstance waits for in-flight runs, then frees the model.
func (m *Manager) closeInstance(inst *instance) {
	<-inst.ready
	inst.run.Lock()
	defer inst.run.Unlock()
	if inst.closed {
		return
	}
	inst.closed = true
	if inst.b != nil {
		inst.b.close() // in-flight requests hold inst.run, so the queue is empty here
	}
	if inst.model != nil {
		if err := inst.model.Close(); err != nil {
			m.log.Warn("closing model", "model", inst.key.model, "version", inst.key.version, "err", err)
		}
	}
}

// ServerReady reports whether the server accepts inference.
func (m *Manager) ServerReady(ctx context.Context) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.closed
}

// ServerMetadata describes this server.
func (m *Manager) ServerMetadata() ServerMetadata {
	return ServerMetadata{
		Name:       "nimbus",
		Version:    m.opts.Version,
		Extensions: []string{"binary_tensor_data", "model_repository", "statistics"},
	}
}

// ModelMetadata returns a version's signature and the model's versions.
func (m *Manager) ModelMetadata(ctx context.Context, ns, model, ref string) (*ModelMetadata, error) {
	v, err := m.resolve(ctx, ns, model, ref)
	if err != nil {
		return nil, err
	}
	md := &ModelMetadata{Name: model, Platform: platform(v.Format), Inputs: v.Signature.Inputs, Outputs: v.Signature.Outputs}
	if vs, err := m.reg.ListVersions(ctx, ns, model); err == nil {
		for _, x := range vs {
			md.Versions = append(md.Versions, strconv.FormatInt(x.Version, 10))
		}
	} else {
		md.Versions = []string{strconv.FormatInt(v.Version, 10)}
	}
	return md, nil
}

func platform(format string) string {
	if format == "onnx" {
		return "onnxruntime_onnx"
	}
	return format
}

// ModelReady reports whether a version can serve: it exists, is not explicitly
// unloaded, and has not failed to load. A cold version is ready: it loads on demand.
func (m *Manager) ModelReady(ctx context.Context, ns, model, ref string) (bool, error) {
	v, err := m.resolve(ctx, ns, model, ref)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.unloaded[modelKey{ns, model}] {
		return false, nil
	}
	if inst, ok := m.loaded[versionKey{ns, model, v.Version}]; ok {
		select {
		case <-inst.ready:
			return inst.err == nil, nil
		default:
			return false, nil
		}
	}
	return true, nil
}

// RepositoryIndex lists every version in a namespace with its state.
func (m *Manager) RepositoryIndex(ctx context.Context, ns string, readyOnly bool) ([]RepositoryEntry, error) {
	var out []RepositoryEntry
	opt := registry.ListOptions{Limit: registry.MaxPageSize}
	for {
		page, err := m.reg.ListModels(ctx, ns, opt)
		if err != nil {
			return nil, err
		}
		for _, mod := range page.Items {
			vs, err := m.reg.ListVersions(ctx, ns, mod.Name)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				e := m.entryState(ns, mod.Name, v.Version)
				if readyOnly && e.State != StateReady {
					continue
				}
				out = append(out, e)
			}
		}
		if page.Next == "" {
			return out, nil
		}
		opt.After = page.Next
	}
}

func (m *Manager) entryState(ns, model string, version int64) RepositoryEntry {
	e := RepositoryEntry{Name: model, Version: strconv.FormatInt(version, 10)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unloaded[modelKey{ns, model}] {
		e.State, e.Reason = StateUnavailable, "unloaded"
		return e
	}
	inst, ok := m.loaded[versionKey{ns, model, version}]
	if !ok {
		e.State, e.Reason = StateReady, "not resident; loads on first request"
		return e
	}
	select {
	case <-inst.ready:
		if inst.err != nil {
			e.State, e.Reason = StateUnavailable, errs.PublicMessage(inst.err)
		} else {
			e.State = StateReady
		}
	default:
		e.State = StateLoading
	}
	return e
}

// LoadModel makes a model available again and loads its default version now.
func (m *Manager) LoadModel(ctx context.Context, ns, model string) error {
	v, err := m.resolve(ctx, ns, model, "")
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.unloaded, modelKey{ns, model})
	if inst, ok := m.loaded[versionKey{ns, model, v.Version}]; ok && inst.err != nil {
		delete(m.loaded, versionKey{ns, model, v.Version}) // an explicit load retries at once
	}
	m.mu.Unlock()
	inst, err := m.acquire(ctx, v, false)
	if err != nil {
		return err
	}
	inst.release()
	return nil
}

// Start unloads idle versions every IdleCheckEvery until ctx ends (scale to zero).
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.opts.IdleCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.UnloadIdle()
		}
	}
}

// UnloadIdle unloads every resident version unused for its idleTimeout and
// returns how many it unloaded. A version with requests in flight or queued is
// never unloaded: it is taken only if its run lock is free at that moment.
func (m *Manager) UnloadIdle() int {
	now := m.opts.Now()
	m.mu.Lock()
	var idle []*instance
	for _, inst := range m.loaded {
		select {
		case <-inst.ready:
		default:
			continue // loading
		}
		if inst.err != nil || inst.model == nil {
			continue
		}
		after := inst.cfg.IdleAfter()
		if after > 0 && now.Sub(time.Unix(0, inst.lastUsed.Load())) >= after {
			idle = append(idle, inst)
		}
	}
	m.mu.Unlock()
	n := 0
	for _, inst := range idle {
		if !inst.run.TryLock() {
			continue // in use right now: not idle after all
		}
		m.mu.Lock()
		if m.loaded[inst.key] == inst {
			delete(m.loaded, inst.key)
		}
		m.mu.Unlock()
		// Requests that found inst before it left the map wait on its run lock,
		// then see it closed and load afresh.
		inst.closed = true
		inst.b.close()
		if err := inst.model.Close(); err != nil {
			m.log.Warn("closing idle model", "model", inst.key.model, "version", inst.key.version, "err", err)
		}
		inst.run.Unlock()
		n++
		m.metrics.IdleUnload(inst.key.ns)
		m.log.Info("unloaded idle version", "namespace", inst.key.ns, "model", inst.key.model, "version", inst.key.version,
			"idle", now.Sub(time.Unix(0, inst.lastUsed.Load())).Round(time.Second))
	}
	if n > 0 {
		m.updateLoadedGauge()
	}
	return n
}

// UnloadModel frees every loaded version of a model and refuses requests until
// LoadModel. In-flight requests finish first.
func (m *Manager) UnloadModel(ctx context.Context, ns, model string) error {
	if _, err := m.reg.GetModel(ctx, ns, model); err != nil {
		return err
	}
	m.mu.Lock()
	m.unloaded[modelKey{ns, model}] = true
	victims := m.detachLocked(func(k versionKey) bool { return k.ns == ns && k.model == model })
	m.mu.Unlock()
	m.closeAll(victims)
	return nil
}

// detachLocked removes matching instances from the loaded set and returns them
// for closing outside the lock. m.mu must be held.
func (m *Manager) detachLocked(match func(versionKey) bool) []*instance {
	var victims []*instance
	for k, inst := range m.loaded {
		if match(k) {
			victims = append(victims, inst)
			delete(m.loaded, k)
		}
	}
	return victims
}

// closeAll closes detached instances (waiting for their in-flight runs) and
// updates the resident gauges.
func (m *Manager) closeAll(victims []*instance) {
	for _, inst := range victims {
		m.closeInstance(inst)
	}
	m.updateLoadedGauge()
}

// Forget drops a version (every version when version is 0) from memory and from
// the resolution cache; the next request loads it again if it still exists.
// deleted also forgets an explicit unload (the model is gone).
func (m *Manager) Forget(ns, model string, version int64, deleted bool) {
	m.Invalidate(ns, model)
	m.mu.Lock()
	victims := m.detachLocked(func(k versionKey) bool {
		return k.ns == ns && k.model == model && (version == 0 || k.version == version)
	})
	if deleted {
		delete(m.unloaded, modelKey{ns, model})
	}
	m.mu.Unlock()
	m.closeAll(victims)
}

// Close stops accepting requests, waits for in-flight runs and frees every model.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	victims := m.detachLocked(func(versionKey) bool { return true })
	m.mu.Unlock()
	m.closeAll(victims)
	m.bg.Wait()
	return nil
}

// Loaded lists the resident versions, for status pages and tests.
func (m *Manager) Loaded() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k, inst := range m.loaded {
		select {
		case <-inst.ready:
			if inst.err == nil {
				out = append(out, fmt.Sprintf("%s/%s:%d", k.ns, k.model, k.version))
			}
		default:
		}
	}
	sort.Strings(out)
	return out
}
