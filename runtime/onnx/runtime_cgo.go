//go:build cgo

package onnx

// #include "onnxruntime_c_api.h"
import "C"

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Runtime loads ONNX models into ONNX Runtime sessions.
//
// ONNX Runtime's environment is process-global: the first successful Load of any
// Runtime opens the library and creates it, and it lives until the process exits.
// Creating a Runtime does nothing, so a server starts fine without the library.
type Runtime struct {
	libPath string
	log     *slog.Logger
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a Runtime. libPath is the ONNX Runtime shared library; "" means
// FindLibrary at the first Load. log may be nil.
func New(libPath string, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{libPath: libPath, log: log}
}

// Format returns "onnx".
func (*Runtime) Format() string { return Format }

// Version is the ONNX Runtime library's version, "" until Init or a Load has
// set its environment up.
func (*Runtime) Version() string {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if !ortEnv.done || ortEnv.err != nil {
		return ""
	}
	return ortVersion()
}

// ortEnv is the process-wide ONNX Runtime environment. A failure to open the
// library is remembered and returned by every later Load (reopening a broken
// library would fail the same way); a library that was not found is not, so
// installing it later works without a restart.
var ortEnv struct {
	mu      sync.Mutex
	done    bool
	err     error
	libPath string
	warm    sync.Once // Init's warm-up session
	warmed  atomic.Bool
}

// Initialized reports whether the process's ONNX Runtime is set up: the
// library loaded, the environment made and Init's warm-up run done.
func Initialized() bool {
	if !ortEnv.warmed.Load() {
		return false
	}
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	return ortEnv.done && ortEnv.err == nil
}

// initModel is a tiny MLP (testdata/models/mlp.onnx) that Init loads and runs
// once, so that ONNX Runtime's lazily built process-wide state exists before the
// first real model loads.
//
//go:embed init.onnx
var initModel []byte

// Init loads the library, initializes ONNX Runtime's environment and runs a tiny
// model once per process. Load needs only the environment; the serving layer
// calls Init first so that a model's measured memory cost leaves out the
// runtime's own setup (about 1.2 MB that the first session ever made allocates
// for good).
func (r *Runtime) Init() error {
	if err := r.ensureEnv(); err != nil {
		return err
	}
	ortEnv.warm.Do(func() {
		defer ortEnv.warmed.Store(true)
		m, err := r.load(initModel, runtime.Options{})
		if err != nil {
			r.log.Warn("ONNX Runtime warm-up model did not load", "err", err)
			return
		}
		defer m.Close()
		x := &tensor.Tensor{Name: m.sig.Inputs[0].Name, DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
		if _, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil); err != nil {
			r.log.Warn("ONNX Runtime warm-up run failed", "err", err)
		}
	})
	return nil
}

// ensureEnv initializes the ONNX Runtime environment once.
func (r *Runtime) ensureEnv() error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.done {
		if ortEnv.err == nil && r.libPath != "" && r.libPath != ortEnv.libPath {
			r.log.Warn("ONNX Runtime is already initialized from another library; using it",
				"wanted", r.libPath, "using", ortEnv.libPath)
		}
		return ortEnv.err
	}
	lib := r.libPath
	if lib == "" {
		var err error
		if lib, err = FindLibrary(); err != nil {
			return err
		}
	} else if err := isFile(lib); err != nil {
		return errs.Wrap(errs.Unavailable, err, "%s (%s is not usable)", installHint, lib)
	}
	start := time.Now()
	err := ortInit(lib)
	ortEnv.done, ortEnv.libPath = true, lib
	if err != nil {
		ortEnv.err = errs.Wrap(errs.Unavailable, err,
			"cannot initialize ONNX Runtime from %s (Nimbus needs ONNX Runtime >= 1.24; run scripts/install-ort.sh or set %s)",
			lib, LibraryEnv)
		r.log.Error("ONNX Runtime unavailable", "lib", lib, "err", err)
		return ortEnv.err
	}
	r.log.Info("ONNX Runtime initialized", "version", ortVersion(), "lib", lib,
		"took", time.Since(start).Round(time.Microsecond))
	return nil
}

// Load opens the model at path in a new ONNX Runtime session.
func (r *Runtime) Load(ctx context.Context, path string, opts runtime.Options) (runtime.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errs.Wrap(errs.NotFound, err, "onnx: model file not found")
		}
		return nil, fmt.Errorf("onnx: load: %w", err)
	}
	m, err := r.load(data, opts)
	if err != nil {
		return nil, err
	}
	r.log.Debug("onnx model loaded", "path", path, "inputs", len(m.sig.Inputs), "outputs", len(m.sessOuts),
		"took", time.Since(start).Round(time.Microsecond))
	return m, nil
}

// LoadBytes opens a session on an artifact's bytes (runtime.BytesLoader):
// the serving layer reads and verifies the file once and hands them over.
func (r *Runtime) LoadBytes(ctx context.Context, data []byte, opts runtime.Options) (runtime.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := r.load(data, opts)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// load opens a session on the model's bytes (ONNX Runtime reads them from
// memory: the file is read once).
func (r *Runtime) load(data []byte, opts runtime.Options) (*model, error) {
	info, err := parseModel(data)
	if err != nil {
		return nil, err
	}
	for _, in := range info.sig.Inputs {
		if !in.Supported() {
			return nil, errs.New(errs.InvalidArgument,
				"onnx: input %s is %s, which the Open Inference Protocol cannot carry", in.Name, in.Kind)
		}
	}
	if err := r.ensureEnv(); err != nil {
		return nil, err
	}
	r.refuseConfigFromModel()

	m := &model{info: info, sig: info.sig, log: r.log, outIndex: map[string]int{}}
	for _, params := range info.inDimParams {
		for _, p := range params {
			m.hasDimParams = m.hasDimParams || p != ""
		}
	}
	inNames := make([]string, len(info.sig.Inputs))
	for i, in := range info.sig.Inputs {
		inNames[i] = in.Name
	}
	var outNames []string
	for i, out := range info.sig.Outputs {
		if out.Supported() {
			m.outIndex[out.Name] = len(outNames)
			m.allOuts = append(m.allOuts, len(outNames))
			m.sessOuts = append(m.sessOuts, i)
			outNames = append(outNames, out.Name)
		}
	}
	if len(outNames) == 0 {
		return nil, errs.New(errs.InvalidArgument,
			"onnx: the model has no output the Open Inference Protocol can carry (all are sequences or maps)")
	}
	sess, err := ortSession(data, newSessionConfig(opts))
	if err != nil {
		return nil, errs.Wrap(errs.InvalidArgument, err, "onnx: ONNX Runtime cannot load the model (its reason is in the server log)")
	}
	m.sess, m.inNames, m.outNames = sess, newCStrings(inNames), newCStrings(outNames)
	return m, nil
}

// ortConfigFromModelEnv, set to 1, makes ONNX Runtime take session options
// from a model's "ort_config" metadata, read at every session creation. One of
// them turns profiling on, which writes a file into the working directory: a
// pushed model must not choose how it runs, so Nimbus clears the variable.
const ortConfigFromModelEnv = "ORT_LOAD_CONFIG_FROM_MODEL"

// refuseConfigFromModel clears ortConfigFromModelEnv (through the C
// environment ONNX Runtime reads, which os.Unsetenv updates in cgo builds).
func (r *Runtime) refuseConfigFromModel() {
	if _, set := os.LookupEnv(ortConfigFromModelEnv); !set {
		return
	}
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if v, set := os.LookupEnv(ortConfigFromModelEnv); set {
		_ = os.Unsetenv(ortConfigFromModelEnv)
		r.log.Warn("ignoring "+ortConfigFromModelEnv+": Nimbus never lets a model set its own ONNX Runtime session options",
			"value", v)
	}
}

func newSessionConfig(opts runtime.Options) sessionConfig {
	intra, inter := opts.IntraOpThreads, opts.InterOpThreads
	if intra <= 0 {
		intra = 1 // fastest on small boxes; the ORT default (all cores) also slows the first run
	}
	if inter <= 0 {
		inter = 1
	}
	// No CPU arena either (ortSession disables it): with it a session keeps
	// its largest run's buffers until it closes (2.4 vs 1.3 MB for mlp_medium
	// after one batch of 64), and freed arena chunks fragment the heap across
	// load/unload cycles. Measured no slower (go test -bench RawRun
	// ./runtime/onnx; docs/SERVING.md).
	return sessionConfig{intra: intra, inter: inter, entries: [][2]string{
		// Spinning threads burn the cores other requests need.
		{"session.intra_op.allow_spinning", "0"},
		{"session.inter_op.allow_spinning", "0"},
		// The bytes are always an ONNX protobuf, checked by the inspector: never
		// let ONNX Runtime guess another format from them (an ORT flatbuffer the
		// inspector did not read).
		{"session.load_model_format", "ONNX"},
	}}
}

// model is a loaded ONNX Runtime session. ONNX Runtime's Run is thread-safe;
// mu only keeps Close from destroying the session under a running Run.
type model struct {
	sess     *C.OrtSession
	inNames  cStrings // the inputs' names, in signature order
	outNames cStrings // session output names: outNames[si] is info.sig.Outputs[sessOuts[si]]
	info     *modelInfo
	sig      tensor.Signature
	log      *slog.Logger
	sessOuts []int          // session output i is info.sig.Outputs[sessOuts[i]]
	outIndex map[string]int // output name -> session output index (supported outputs only)
	allOuts  []int          // 0..len(sessOuts)-1: every output, for Run(..., nil)
	// hasDimParams: some input dim is named (e.g. "batch"), so output shapes may
	// follow from input shapes.
	hasDimParams bool
	// noPrealloc is set when ONNX Runtime refused an output preallocated from the
	// model's declared shape (a model whose outputs are not what it declares):
	// from then on ONNX Runtime allocates every output.
	noPrealloc atomic.Bool

	batches sync.Pool // *batch, sized for this model
	runOpts runOptionsPool

	mu     sync.RWMutex
	closed bool
}

func (m *model) Signature() tensor.Signature { return m.sig }

func (m *model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.runOpts.close()
	releaseSession(m.sess)
	m.inNames.free()
	m.outNames.free()
	return nil
}

func (m *model) getBatch() *batch {
	if b, ok := m.batches.Get().(*batch); ok {
		return b
	}
	return newBatch(len(m.sig.Inputs), len(m.sessOuts))
}

// Run executes one batch; see runtime.Model. The returned tensors (data and
// shapes) belong to the caller: nothing here keeps or reuses them. The data of
// all outputs of one call may share one allocation; each output's Data has its
// capacity clipped to its length.
func (m *model) Run(ctx context.Context, inputs []*tensor.Tensor, outputs []string) ([]*tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := m.getBatch()
	defer func() {
		b.release()
		m.batches.Put(b)
	}()
	var err error
	if b.want, err = m.selectOutputs(outputs, b.want[:0]); err != nil {
		return nil, err
	}
	if err := m.orderInputs(inputs, b.ordered); err != nil {
		return nil, err
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errs.New(errs.Unavailable, "onnx: the model has been unloaded")
	}

	b.prepareInputs(m)
	prealloc := !m.noPrealloc.Load()
	if err := b.prepareOutputs(m, prealloc); err != nil {
		return nil, err
	}
	if err := m.runSession(ctx, b); err != nil {
		if !prealloc || ctx.Err() != nil || !b.preallocated() {
			return nil, err
		}
		// Perhaps the model's outputs do not have the shapes it declares. Run
		// again with ONNX Runtime allocating them; if that works, stop
		// preallocating for this model. A failure that is not about shapes
		// fails the same way twice (errors are rare; their cost does not matter).
		if perr := b.prepareOutputs(m, false); perr != nil {
			return nil, err
		}
		if rerr := m.runSession(ctx, b); rerr != nil {
			return nil, rerr
		}
		if m.noPrealloc.CompareAndSwap(false, true) {
			m.log.Warn("onnx: the model's outputs do not match their declared shapes; ONNX Runtime allocates them from now on",
				"err", err)
		}
	}

	res := make([]*tensor.Tensor, len(b.want))
	ts := make([]tensor.Tensor, len(b.want))
	for k, si := range b.want {
		spec := m.sig.Outputs[m.sessOuts[si]]
		if err := b.outputTensor(&ts[k], k, spec); err != nil {
			return nil, err
		}
		res[k] = &ts[k]
	}
	return res, nil
}

// runSession runs the session, stopping it if ctx ends mid-run.
func (m *model) runSession(ctx context.Context, b *batch) error {
	if ctx.Done() == nil {
		return wrapRunError(b.run(m, nil))
	}
	ro, err := m.runOpts.get()
	if err != nil {
		return fmt.Errorf("onnx: run options: %w", err)
	}
	// mu orders Terminate before release: the AfterFunc may still be running
	// when stop returns false.
	c := &runCancel{ro: ro}
	stop := context.AfterFunc(ctx, c.terminate)
	err = b.run(m, ro)
	if stop() {
		// The AfterFunc never ran: ro was not terminated and can serve another Run.
		m.runOpts.put(ro)
	} else {
		c.destroy()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("onnx: run stopped: %w", cerr)
		}
		return wrapRunError(err)
	}
	return nil
}

func wrapRunError(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("onnx: run: %w", err)
}

// runCancel terminates one Run's options when its context ends.
type runCancel struct {
	mu        sync.Mutex
	ro        *C.OrtRunOptions
	destroyed bool
}

func (c *runCancel) terminate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.destroyed {
		terminateRun(c.ro)
	}
}

func (c *runCancel) destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.destroyed = true
	releaseRunOptions(c.ro)
}

// runOptionsPool recycles OrtRunOptions (one cgo create and release per Run
// otherwise). Only options that were never terminated come back. It is bounded;
// close releases what it holds.
type runOptionsPool struct {
	mu     sync.Mutex
	free   []*C.OrtRunOptions
	closed bool
}

const maxPooledRunOptions = 64

func (p *runOptionsPool) get() (*C.OrtRunOptions, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		ro := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return ro, nil
	}
	p.mu.Unlock()
	return newRunOptions()
}

func (p *runOptionsPool) put(ro *C.OrtRunOptions) {
	p.mu.Lock()
	if !p.closed && len(p.free) < maxPooledRunOptions {
		p.free = append(p.free, ro)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	releaseRunOptions(ro)
}

func (p *runOptionsPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, ro := range p.free {
		releaseRunOptions(ro)
	}
	p.free = nil
}

// selectOutputs appends the session output indexes of the requested names to idx.
func (m *model) selectOutputs(names []string, idx []int) ([]int, error) {
	if names == nil {
		return append(idx, m.allOuts...), nil
	}
	for _, name := range names {
		si, ok := m.outIndex[name]
		if !ok {
			if spec, found := m.sig.Output(name); found {
				return nil, errs.New(errs.InvalidArgument,
					"output %s is %s, which the Open Inference Protocol cannot carry", name, spec.Kind).WithField(name)
			}
			return nil, errs.New(errs.InvalidArgument, "unknown output %q", name).WithField(name)
		}
		if slices.Contains(idx, si) {
			// One value per output: nimbus_run binds each requested output once.
			return nil, errs.New(errs.InvalidArgument, "output %s is requested twice", name).WithField(name)
		}
		idx = append(idx, si)
	}
	return idx, nil
}

// orderInputs matches inputs to the model's by name, checks type and shape, and
// puts them in ordered (len(m.sig.Inputs), all nil) in session order.
func (m *model) orderInputs(inputs []*tensor.Tensor, ordered []*tensor.Tensor) error {
	for _, t := range inputs {
		if t == nil {
			return errs.New(errs.InvalidArgument, "nil input tensor")
		}
		i := m.inputIndex(t.Name)
		if i < 0 {
			return errs.New(errs.InvalidArgument, "unknown input %q", t.Name).WithField(t.Name)
		}
		if ordered[i] != nil {
			return errs.New(errs.InvalidArgument, "input %q given twice", t.Name).WithField(t.Name)
		}
		spec := m.sig.Inputs[i]
		if t.DataType != spec.DataType {
			return errs.New(errs.InvalidArgument, "input %s: datatype %s, want %s", t.Name, t.DataType, spec.DataType).WithField(t.Name)
		}
		if spec.Shape != nil && !tensor.ShapeMatches(spec.Shape, t.Shape) {
			return errs.New(errs.InvalidArgument, "input %s: shape %s does not match %s",
				t.Name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape)).WithField(t.Name)
		}
		if err := t.Validate(); err != nil {
			return errs.New(errs.InvalidArgument, "input %s: %v", t.Name, err).WithField(t.Name)
		}
		ordered[i] = t
	}
	for i, t := range ordered {
		if t == nil && !m.sig.Inputs[i].Optional {
			name := m.sig.Inputs[i].Name
			return errs.New(errs.InvalidArgument, "missing input %q", name).WithField(name)
		}
	}
	return nil
}

func (m *model) inputIndex(name string) int {
	for i, in := range m.sig.Inputs {
		if in.Name == name {
			return i
		}
	}
	return -1
}
