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
	"github.com/nimbus-ai/nimbus/internal/run"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/serving/batch"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
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

// ArtifactReader is Artifacts that can read an artifact whole, verifying it
// as it reads (blob.FS).
type ArtifactReader interface {
	ReadVerified(ctx context.Context, sha256 string) ([]byte, error)
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
	// MemoryBudget bounds what resident versions may cost together, in bytes; 0
	// means unlimited. Past it, least recently used idle versions are evicted.
	MemoryBudget int64
	// Memory measures what loads cost and trims after unloads; default: the C
	// allocator's statistics (internal/memstat), where ONNX Runtime allocates.
	Memory MemoryMeter
	// RoomWait bounds how long a load waits for versions in use to finish so it
	// can evict them (default 30s); past it the load fails with 503 + Retry-After.
	RoomWait time.Duration
	// ScaleEvery is how often Start samples each version's load for the
	// instance autoscaler (default 500ms).
	ScaleEvery time.Duration
}

// MemoryMeter measures the memory model runtimes hold.
type MemoryMeter interface {
	// InUse is the bytes the runtimes' allocator holds now; ok is false where it
	// cannot tell (the artifact size is then the cost).
	InUse() (n int64, ok bool)
	// Trim returns freed memory to the operating system.
	Trim()
	// RSS is the process's resident set size.
	RSS() int64
}

type modelKey struct{ ns, model string }

type versionKey struct {
	ns, model string
	version   int64
}

// Manager loads model versions on demand and runs inference on them. Its
// parts live in their own files: resolution and its cache (refcache.go), the
// request path (infer.go), the memory budget (budget.go), residency history,
// idle unload and trims (residency.go), autoscaling (autoscale.go),
// statistics (stats.go), the repository extension (repository.go); each
// version's scheduling is a batch.Batcher.
//
// Locks, in the order they may nest (never take one while holding a later
// one): scaleMu (Autoscale only), then instance.run, then mu, then a leaf
// lock — a Batcher's, a record's, refCache.mu, costBook.mu — under which
// nothing else is taken. costBook.measure is held across a load's session
// creation and warm-up, never together with mu or instance.run.
type Manager struct {
	reg      Registry
	blobs    Artifacts
	runtimes map[string]runtime.Runtime
	metrics  *telemetry.Metrics
	log      *slog.Logger
	opts     Options

	// mu guards loaded, unloaded, closed and the budget fields below. Requests
	// and read-only scans take it shared; only changes take it exclusively.
	mu       sync.RWMutex
	loaded   map[versionKey]*instance
	unloaded map[modelKey]bool // explicitly unloaded through the repository API
	stats    sync.Map          // versionKey -> *versionStats; kept across unloads, as Triton does
	closed   bool

	refs refCache
	// bg runs the work no single request owns: loads (and stale closes),
	// preloads of moved references, trims. Close drains it.
	bg *run.Tracker
	// stop ends when Abort is called: loads and batch runs use it, so a shutdown
	// past its deadline cancels them instead of waiting.
	stop  context.Context
	abort context.CancelFunc

	// Memory budget (guarded by mu): used is what resident and loading versions
	// are charged (instance.cost).
	used int64
	// readyN and readyBytes count the loaded versions and their artifact bytes
	// (the nimbus_models_loaded* gauges), kept as versions load and leave.
	readyN     int
	readyBytes int64
	// costs is what artifacts cost once measured (budget.go); its locks are
	// its own.
	costs costBook

	records    sync.Map    // versionKey -> *record: residency history, kept across unloads
	lastServed sync.Map    // refKey -> versionKey that last answered an alias or default ref
	trimming   atomic.Bool // a trimmer goroutine runs
	// trimPending: an unload happened since the running trimmer's last trim.
	trimPending atomic.Bool
	scaleMu     sync.Mutex // serializes Autoscale
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
	if opts.Memory == nil {
		opts.Memory = nativeMemory{}
	}
	if opts.RoomWait <= 0 {
		opts.RoomWait = 30 * time.Second
	}
	if opts.ScaleEvery <= 0 {
		opts.ScaleEvery = 500 * time.Millisecond
	}
	rts := make(map[string]runtime.Runtime, len(opts.Runtimes))
	for _, r := range opts.Runtimes {
		rts[r.Format()] = r
	}
	m := &Manager{
		reg: reg, blobs: blobs, runtimes: rts, metrics: opts.Metrics, log: opts.Logger.With("component", "serving"),
		opts: opts, loaded: map[versionKey]*instance{}, unloaded: map[modelKey]bool{},
		refs:  refCache{m: map[modelKey]map[string]registry.Version{}},
		costs: newCostBook(), bg: run.NewTracker(),
	}
	m.stop, m.abort = context.WithCancel(context.Background())
	return m
}

// instance is one loaded (or loading, or failed) model version.
type instance struct {
	key     versionKey
	version registry.Version
	ready   chan struct{} // closed when the load finished, successfully or not

	// Set before ready closes; read-only afterwards.
	model    runtime.Model
	cfg      registry.ServingConfig
	b        *batch.Batcher
	stats    *versionStats             // this version's statistics (Manager.stats holds the same)
	vm       *telemetry.VersionMetrics // this version's metrics
	err      error
	failedAt time.Time

	run      sync.RWMutex // Run holds it shared; Close holds it exclusively
	closed   bool
	lastUsed atomic.Int64 // unix nanos
	loadedAt time.Time    // set before ready closes

	// Guarded by Manager.mu.
	cost     int64 // bytes charged to the memory budget
	detached bool  // removed from Manager.loaded; its cost is released
	counted  bool  // loaded and counted in Manager.readyN

	scale scaler // touched only by Autoscale
}

// acquire returns a loaded instance for v with its run lock held shared; the
// caller must call release. Concurrent callers share one load. waited is how long
// this caller waited for a load (0 when the version was resident).
func (m *Manager) acquire(ctx context.Context, v registry.Version, onDemand bool) (_ *instance, waited time.Duration, _ error) {
	key := versionKey{v.Namespace, v.Model, v.Version}
	for {
		inst, err := m.instanceFor(key, v, onDemand)
		if err != nil {
			return nil, waited, err
		}
		select {
		case <-inst.ready:
		default:
			t0 := time.Now()
			select {
			case <-inst.ready:
				waited += time.Since(t0)
			case <-ctx.Done():
				return nil, waited + time.Since(t0), errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "waiting for model %s version %d to load", key.model, key.version)
			}
		}
		if inst.err != nil {
			return nil, waited, inst.err
		}
		inst.run.RLock()
		if inst.closed {
			inst.run.RUnlock()
			continue // unloaded between ready and lock; load again (or get refused)
		}
		inst.lastUsed.Store(m.opts.Now().UnixNano())
		return inst, waited, nil
	}
}

func (inst *instance) release() { inst.run.RUnlock() }

// retryDue reports whether inst's load failed at least FailedRetryAfter ago.
func (m *Manager) retryDue(inst *instance) bool {
	select {
	case <-inst.ready:
		return inst.err != nil && m.opts.Now().Sub(inst.failedAt) >= m.opts.FailedRetryAfter
	default:
		return false
	}
}

// instanceFor returns the instance of v, starting its load if it has none — or
// if its last load failed more than FailedRetryAfter ago (until then the failure
// is the answer: a broken artifact causes no load storm). The common case —
// resident and current — takes the manager's lock shared only.
func (m *Manager) instanceFor(key versionKey, v registry.Version, onDemand bool) (*instance, error) {
	mk := modelKey{key.ns, key.model}
	m.mu.RLock()
	inst, ok := m.loaded[key]
	if ok && !m.closed && !m.unloaded[mk] && inst.version.SHA256 == v.SHA256 && !m.retryDue(inst) {
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
	if ok && inst.version.SHA256 == v.SHA256 && !m.retryDue(inst) {
		m.mu.Unlock()
		return inst, nil
	}
	// Not resident, failed long enough ago, or a deleted and re-created version
	// number (never serve stale bytes): replace it, closing the old instance once
	// its requests finish.
	stale := inst
	if stale != nil {
		m.dropLocked(stale)
	}
	inst = &instance{key: key, version: v, ready: make(chan struct{})}
	m.loaded[key] = inst
	if onDemand {
		m.metrics.ColdStart(key.ns)
		m.record(key).update(func(r *recordData) { r.coldStarts++ })
	}
	// m.closed was checked under m.mu, and Close sets it under m.mu before
	// it drains bg: this Go cannot be refused.
	m.bg.Go(func(context.Context) {
		if stale != nil {
			m.closeInstance(stale)
		}
		m.load(inst)
	})
	m.mu.Unlock()
	return inst, nil
}

// load verifies the artifact, makes room for it under the memory budget, loads it,
// runs its warm-up and measures what it costs. It runs detached from any one
// request's context: other requests may be waiting on the same load.
func (m *Manager) load(inst *instance) {
	start := time.Now()
	ctx := m.stop // detached from requests, but not from an aborted shutdown
	v := inst.version
	log := m.log.With("namespace", v.Namespace, "model", v.Model, "version", v.Version)
	err := func() error {
		rt, ok := m.runtimes[v.Format]
		if !ok {
			return errs.New(errs.FailedPrecondition, "no runtime for format %q", v.Format)
		}
		// The cheap refusal first: a version too big for the whole budget must
		// not re-hash its artifact (or ask the registry) on every retry.
		cost, measured := m.costOf(v)
		if !measured {
			// Measured by an earlier process: no measurement (and its
			// allocator walk) in this one.
			if c, ok := m.storedCost(ctx, rt, v); ok {
				cost, measured = c, true
			}
		}
		if err := m.fits(v, cost, measured); err != nil {
			return err
		}
		data, err := m.readVerified(ctx, rt, v)
		if err != nil {
			return err
		}
		cfg := m.servingConfig(ctx, v)
		if err := m.reserve(inst, cost); err != nil {
			return err
		}
		model, cost, fresh, err := m.loadMeasured(ctx, rt, v, data, cfg, cost, measured)
		if err != nil {
			return err
		}
		if fresh {
			m.rememberCost(ctx, rt, v, cost)
		}
		if err := m.fits(v, cost, true); err != nil {
			model.Close()
			return err
		}
		m.settleCost(inst, cost)
		lo, _ := cfg.InstanceBounds()
		inst.model = model
		inst.cfg = cfg
		inst.lastUsed.Store(m.opts.Now().UnixNano())
		// Infer reads the statistics through inst.stats: no map lookup per request.
		inst.stats = m.statsFor(inst.key)
		inst.vm = m.metrics.ForVersion(v.Namespace, v.Model, strconv.FormatInt(v.Version, 10))
		inst.b = batch.New(m.stop, model, batchConfig(cfg, model.Signature(), lo, log), versionObserver{inst.vm, inst.stats}, log)
		inst.loadedAt = m.opts.Now()
		return nil
	}()
	took := time.Since(start)
	m.metrics.ObserveLoad(v.Namespace, v.Model, took, err)
	if err != nil {
		// Whatever the cause (missing library, corrupt artifact, invalid model), the
		// caller's request was fine: the model is unavailable, and the message says why.
		err = errs.Wrap(errs.Unavailable, err, "model %s version %d failed to load", v.Model, v.Version)
		inst.err = err
		inst.failedAt = m.opts.Now()
		m.mu.Lock()
		m.used -= inst.cost
		inst.cost = 0
		if errs.RetryAfterOf(err) > 0 && m.loaded[inst.key] == inst {
			m.dropLocked(inst) // no room for now: the next request tries again at once
		}
		m.mu.Unlock()
		m.record(inst.key).update(func(r *recordData) { r.state, r.reason = residency.Failed, errs.PublicMessage(err) })
		log.Error("model load failed", "err", err)
	} else {
		m.mu.Lock()
		cost := inst.cost
		if !inst.detached {
			inst.counted = true
			m.readyN++
			m.readyBytes += v.Size
		}
		m.mu.Unlock()
		m.record(inst.key).update(func(r *recordData) { r.loads++; r.loadDuration = took; r.state, r.reason = "", "" })
		log.Info("model loaded", "duration", took.Round(time.Microsecond), "memory", cost, "sha256", v.SHA256)
	}
	close(inst.ready)
	m.updateLoadedGauge()
}

// batchConfig is how the batcher of a version with signature sig schedules:
// batching only where the signature allows it (said once, at load).
func batchConfig(cfg registry.ServingConfig, sig tensor.Signature, instances int, log *slog.Logger) batch.Config {
	c := batch.Config{MaxBatchSize: cfg.BatchSize(), MaxQueueSize: cfg.QueueSize(), Instances: instances}
	if c.MaxBatchSize > 1 {
		if err := registry.CheckBatchable(sig); err != nil {
			log.Warn("batching disabled for this version", "reason", err.Error())
			c.MaxBatchSize = 1
		} else {
			c.MaxQueueDelay = cfg.Batching.MaxQueueDelay.D()
			c.PreferredBatchSizes = cfg.Batching.PreferredBatchSizes
		}
	}
	return c
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

// updateLoadedGauge publishes the resident-set gauges from the counts kept as
// versions load and leave.
func (m *Manager) updateLoadedGauge() {
	m.mu.RLock()
	n, bytes, used := m.readyN, m.readyBytes, m.used
	m.mu.RUnlock()
	m.metrics.SetLoaded(n, bytes)
	m.metrics.SetMemory(m.opts.MemoryBudget, used)
}

// closeInstance waits for in-flight runs, then frees the model. The instance has
// been detached already.
func (m *Manager) closeInstance(inst *instance) {
	<-inst.ready
	inst.run.Lock()
	defer inst.run.Unlock()
	m.closeLocked(inst)
}

// closeLocked frees a detached instance whose run lock the caller holds
// exclusively, and has the allocator return what the session held.
func (m *Manager) closeLocked(inst *instance) {
	if inst.closed {
		return
	}
	inst.closed = true
	if inst.b != nil {
		inst.b.Close() // in-flight requests hold inst.run, so the queue is empty here
		inst.vm.Delete()
	}
	if inst.model != nil {
		if err := inst.model.Close(); err != nil {
			m.log.Warn("closing model", "model", inst.key.model, "version", inst.key.version, "err", err)
		}
		m.record(inst.key).update(func(r *recordData) { r.lastUsed = time.Unix(0, inst.lastUsed.Load()) })
		m.trimSoon()
	}
}

// ServerReady reports whether the server accepts inference.
func (m *Manager) ServerReady(ctx context.Context) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
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
	m.mu.RLock()
	defer m.mu.RUnlock()
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

// Start runs the background work until ctx ends: every IdleCheckEvery it unloads
// idle versions (scale to zero); every ScaleEvery it samples load and resizes
// instances (Autoscale).
func (m *Manager) Start(ctx context.Context) error {
	// The runtimes' one-time setup (the ONNX Runtime library, its
	// environment, a warm-up run) happens now, in the background, so that
	// the first request after a start pays only its own model's load. A
	// runtime that cannot start yet (no library) is logged; every load tries
	// again, so installing it later works without a restart.
	inited := make(chan struct{})
	go func() {
		defer close(inited)
		m.initRuntimes()
	}()
	defer func() { <-inited }()
	t := time.NewTicker(m.opts.IdleCheckEvery)
	defer t.Stop()
	s := time.NewTicker(m.opts.ScaleEvery)
	defer s.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.C:
			m.Autoscale()
		case <-t.C:
			m.UnloadIdle()
		}
	}
}

// readVerified verifies v's artifact. For a runtime that loads from bytes
// it returns them, hashed as they were read (one read of the file per
// load); otherwise nil, and the runtime reads the verified file itself.
func (m *Manager) readVerified(ctx context.Context, rt runtime.Runtime, v registry.Version) ([]byte, error) {
	rb, readable := m.blobs.(ArtifactReader)
	if _, fromBytes := rt.(runtime.BytesLoader); readable && fromBytes {
		return rb.ReadVerified(ctx, v.SHA256)
	}
	return nil, m.blobs.Verify(ctx, v.SHA256)
}

// initRuntimes runs the one-time setup of every runtime that has one.
func (m *Manager) initRuntimes() {
	for format, rt := range m.runtimes {
		in, ok := rt.(interface{ Init() error })
		if !ok {
			continue
		}
		start := time.Now()
		if err := in.Init(); err != nil {
			m.log.Warn("model runtime not ready; its models cannot load until it is", "format", format, "err", err)
			continue
		}
		m.log.Debug("model runtime ready", "format", format, "took", time.Since(start).Round(time.Microsecond))
	}
}

// UnloadIdle unloads every resident version unused for its idleTimeout and
// returns how many it unloaded. A version with requests in flight or queued is
// never unloaded: it is taken only if its run lock is free at that moment, and
// only if it is still idle then (a request may have come and gone since the scan).
func (m *Manager) UnloadIdle() int {
	now := m.opts.Now()
	return m.unloadIdle(now, m.idleCandidates(now))
}

// idleCandidates lists the resident versions unused for their idleTimeout at now.
func (m *Manager) idleCandidates(now time.Time) []*instance {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var idle []*instance
	for _, inst := range m.residentLocked() {
		if inst.idleAt(now) {
			idle = append(idle, inst)
		}
	}
	return idle
}

// idleAt reports whether inst, resident, has been unused for its idleTimeout at now.
func (inst *instance) idleAt(now time.Time) bool {
	after := inst.cfg.IdleAfter()
	return after > 0 && now.Sub(time.Unix(0, inst.lastUsed.Load())) >= after
}

// unloadIdle unloads the candidates that are unused and still idle at now.
func (m *Manager) unloadIdle(now time.Time, idle []*instance) int {
	n := 0
	for _, inst := range idle {
		idleFor := now.Sub(time.Unix(0, inst.lastUsed.Load())).Round(time.Second)
		still := func() bool { return inst.idleAt(now) }
		if !m.unloadIfUnused(inst, still, residency.Idle, fmt.Sprintf("unloaded after %s without requests (idleTimeout)", idleFor)) {
			continue // in use right now, or used since the scan: not idle after all
		}
		n++
		m.metrics.IdleUnload(inst.key.ns)
		m.record(inst.key).update(func(r *recordData) { r.idleUnloads++ })
		m.log.Info("unloaded idle version", "namespace", inst.key.ns, "model", inst.key.model, "version", inst.key.version, "idle", idleFor)
	}
	if n > 0 {
		m.updateLoadedGauge()
	}
	return n
}

// residentLocked lists the loaded, healthy instances. m.mu is held (shared is enough).
func (m *Manager) residentLocked() []*instance {
	var out []*instance
	for _, inst := range m.loaded {
		select {
		case <-inst.ready:
		default:
			continue // loading
		}
		if inst.err == nil && inst.model != nil {
			out = append(out, inst)
		}
	}
	return out
}

// unloadIfUnused unloads inst if nothing runs or waits on it right now and, when
// still is set, it still holds (checked with the run lock held exclusively, so
// no request can use inst meanwhile: lastUsed is written only under the run
// lock); it records why (state, reason). Requests that found inst before it left
// the map wait on its run lock, then see it closed and load afresh: none fails.
func (m *Manager) unloadIfUnused(inst *instance, still func() bool, state, reason string) bool {
	if !inst.run.TryLock() {
		return false
	}
	defer inst.run.Unlock()
	if still != nil && !still() {
		return false
	}
	m.mu.Lock()
	if inst.detached {
		m.mu.Unlock()
		return false
	}
	m.dropLocked(inst)
	m.mu.Unlock()
	m.closeLocked(inst)
	m.record(inst.key).update(func(r *recordData) { r.state, r.reason = state, reason })
	return true
}

// detachLocked removes matching instances from the loaded set and returns them
// for closing outside the lock. m.mu must be held.
func (m *Manager) detachLocked(match func(versionKey) bool) []*instance {
	var victims []*instance
	for k, inst := range m.loaded {
		if match(k) {
			victims = append(victims, inst)
			m.dropLocked(inst)
		}
	}
	return victims
}

// dropLocked removes inst from the loaded set and releases its memory charge.
// m.mu is held.
func (m *Manager) dropLocked(inst *instance) {
	if m.loaded[inst.key] == inst {
		delete(m.loaded, inst.key)
	}
	if !inst.detached {
		inst.detached = true
		m.used -= inst.cost
		inst.cost = 0
	}
	if inst.counted {
		inst.counted = false
		m.readyN--
		m.readyBytes -= inst.version.Size
	}
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
// deleted also forgets an explicit unload and the residency history (the model
// is gone).
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
	if !deleted {
		for _, inst := range victims {
			m.record(inst.key).update(func(r *recordData) {
				r.state, r.reason = residency.Idle, "released after a registry change; loads with the current settings on next request"
			})
		}
		return
	}
	// The model is gone: so is its history, or records would grow with model
	// churn (a model re-created under the name starts afresh).
	m.lastServed.Range(func(k, _ any) bool {
		if rk := k.(refKey); rk.ns == ns && rk.model == model {
			m.lastServed.Delete(k)
		}
		return true
	})
	m.records.Range(func(k, _ any) bool {
		if vk := k.(versionKey); vk.ns == ns && vk.model == model && (version == 0 || vk.version == version) {
			m.records.Delete(k)
		}
		return true
	})
}

// Abort cancels the work that belongs to no single request: running and queued
// batches end with Unavailable ("server is shutting down") instead of running,
// and loads in progress fail. Requests running on their own (alone on a free
// instance) end when their own contexts do. The server calls it once the
// shutdown's drain deadline has passed; Close then has little left to wait for.
// Abort does not stop new requests: Close does.
func (m *Manager) Abort() { m.abort() }

// Close stops accepting requests, waits for in-flight runs and frees every model.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	victims := m.detachLocked(func(versionKey) bool { return true })
	m.mu.Unlock()
	m.closeAll(victims)
	m.bg.Close() // loads finish (they run on the manager's own context, which Abort cancels); trims and preloads stop
	m.abort()    // releases the context; nothing is left to cancel
	return nil
}

// Loaded lists the resident versions, for status pages and tests.
func (m *Manager) Loaded() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
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
