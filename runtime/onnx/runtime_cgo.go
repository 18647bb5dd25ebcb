//go:build cgo

package onnx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

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

// ortEnv is the process-wide ONNX Runtime environment. A failure to open the
// library is remembered and returned by every later Load (reopening a broken
// library would fail the same way); a library that was not found is not, so
// installing it later works without a restart.
var ortEnv struct {
	mu      sync.Mutex
	done    bool
	err     error
	libPath string
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
	ort.SetSharedLibraryPath(lib)
	err := ort.InitializeEnvironment(ort.WithLogLevelError())
	ortEnv.done, ortEnv.libPath = true, lib
	if err != nil {
		ortEnv.err = errs.Wrap(errs.Unavailable, err,
			"cannot initialize ONNX Runtime from %s (Nimbus needs ONNX Runtime >= 1.24; run scripts/install-ort.sh or set %s)",
			lib, LibraryEnv)
		r.log.Error("ONNX Runtime unavailable", "lib", lib, "err", err)
		return ortEnv.err
	}
	r.log.Info("ONNX Runtime initialized", "version", ort.GetVersion(), "lib", lib,
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

	so, err := newSessionOptions(opts)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()

	m := &model{info: info, sig: info.sig, outIndex: map[string]int{}}
	inNames := make([]string, len(info.sig.Inputs))
	for i, in := range info.sig.Inputs {
		inNames[i] = in.Name
	}
	var outNames []string
	for i, out := range info.sig.Outputs {
		if out.Supported() {
			m.outIndex[out.Name] = len(outNames)
			m.sessOuts = append(m.sessOuts, i)
			outNames = append(outNames, out.Name)
		}
	}
	if len(outNames) == 0 {
		return nil, errs.New(errs.InvalidArgument,
			"onnx: the model has no output the Open Inference Protocol can carry (all are sequences or maps)")
	}
	m.sess, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidArgument, err, "onnx: ONNX Runtime cannot load the model")
	}
	r.log.Debug("onnx model loaded", "path", path, "inputs", len(inNames), "outputs", len(outNames),
		"took", time.Since(start).Round(time.Microsecond))
	return m, nil
}

func newSessionOptions(opts runtime.Options) (*ort.SessionOptions, error) {
	intra, inter := opts.IntraOpThreads, opts.InterOpThreads
	if intra <= 0 {
		intra = 1 // fastest on small boxes; the ORT default (all cores) also slows the first run
	}
	if inter <= 0 {
		inter = 1
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	steps := []func() error{
		func() error { return so.SetIntraOpNumThreads(intra) },
		func() error { return so.SetInterOpNumThreads(inter) },
		// Spinning threads burn the cores other requests need.
		func() error { return so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0") },
		func() error { return so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("onnx: session options: %w", err)
		}
	}
	return so, nil
}

// model is a loaded ONNX Runtime session. ONNX Runtime's Run is thread-safe;
// mu only keeps Close from destroying the session under a running Run.
type model struct {
	sess     *ort.DynamicAdvancedSession
	info     *modelInfo
	sig      tensor.Signature
	sessOuts []int          // session output i is info.sig.Outputs[sessOuts[i]]
	outIndex map[string]int // output name -> session output index (supported outputs only)

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
	if err := m.sess.Destroy(); err != nil {
		return fmt.Errorf("onnx: close: %w", err)
	}
	return nil
}

// Run executes one batch; see runtime.Model.
func (m *model) Run(ctx context.Context, inputs []*tensor.Tensor, outputs []string) ([]*tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want, err := m.selectOutputs(outputs)
	if err != nil {
		return nil, err
	}
	ordered, err := m.orderInputs(inputs)
	if err != nil {
		return nil, err
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errs.New(errs.Unavailable, "onnx: the model has been unloaded")
	}

	b := newBatch(len(ordered), len(m.sessOuts))
	defer b.release()
	for i, t := range ordered {
		if b.in[i], err = b.inputValue(t); err != nil {
			return nil, err
		}
	}
	if err := b.preallocOutputs(m, ordered); err != nil {
		return nil, err
	}
	if err := m.runSession(ctx, b); err != nil {
		return nil, err
	}

	res := make([]*tensor.Tensor, len(want))
	for i, si := range want {
		spec := m.sig.Outputs[m.sessOuts[si]]
		if res[i], err = b.outputTensor(si, spec); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// runSession runs the session, stopping it if ctx ends mid-run.
func (m *model) runSession(ctx context.Context, b *batch) error {
	if ctx.Done() == nil {
		if err := m.sess.Run(b.in, b.out); err != nil {
			return fmt.Errorf("onnx: run: %w", err)
		}
		return nil
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("onnx: run options: %w", err)
	}
	// mu orders Terminate before Destroy: the AfterFunc may still be running when
	// stop returns false.
	var (
		mu        sync.Mutex
		destroyed bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !destroyed {
			_ = ro.Terminate()
		}
	})
	err = m.sess.RunWithOptions(b.in, b.out, ro)
	stop()
	mu.Lock()
	destroyed = true
	_ = ro.Destroy()
	mu.Unlock()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("onnx: run stopped: %w", cerr)
		}
		return fmt.Errorf("onnx: run: %w", err)
	}
	return nil
}

// selectOutputs maps requested output names to session output indexes.
func (m *model) selectOutputs(names []string) ([]int, error) {
	if names == nil {
		all := make([]int, len(m.sessOuts))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	idx := make([]int, len(names))
	for i, name := range names {
		si, ok := m.outIndex[name]
		if !ok {
			if spec, found := m.sig.Output(name); found {
				return nil, errs.New(errs.InvalidArgument,
					"output %s is %s, which the Open Inference Protocol cannot carry", name, spec.Kind).WithField(name)
			}
			return nil, errs.New(errs.InvalidArgument, "unknown output %q", name).WithField(name)
		}
		idx[i] = si
	}
	return idx, nil
}

// orderInputs matches inputs to the model's by name and checks type and shape.
func (m *model) orderInputs(inputs []*tensor.Tensor) ([]*tensor.Tensor, error) {
	ordered := make([]*tensor.Tensor, len(m.sig.Inputs))
	for _, t := range inputs {
		if t == nil {
			return nil, errs.New(errs.InvalidArgument, "nil input tensor")
		}
		i := m.inputIndex(t.Name)
		if i < 0 {
			return nil, errs.New(errs.InvalidArgument, "unknown input %q", t.Name).WithField(t.Name)
		}
		if ordered[i] != nil {
			return nil, errs.New(errs.InvalidArgument, "input %q given twice", t.Name).WithField(t.Name)
		}
		spec := m.sig.Inputs[i]
		if t.DataType != spec.DataType {
			return nil, errs.New(errs.InvalidArgument, "input %s: datatype %s, want %s", t.Name, t.DataType, spec.DataType).WithField(t.Name)
		}
		if spec.Shape != nil && !tensor.ShapeMatches(spec.Shape, t.Shape) {
			return nil, errs.New(errs.InvalidArgument, "input %s: shape %s does not match %s",
				t.Name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape)).WithField(t.Name)
		}
		if err := t.Validate(); err != nil {
			return nil, errs.Wrap(errs.InvalidArgument, err, "input %s", t.Name).WithField(t.Name)
		}
		ordered[i] = t
	}
	for i, t := range ordered {
		if t == nil {
			name := m.sig.Inputs[i].Name
			return nil, errs.New(errs.InvalidArgument, "missing input %q", name).WithField(name)
		}
	}
	return ordered, nil
}

func (m *model) inputIndex(name string) int {
	for i, in := range m.sig.Inputs {
		if in.Name == name {
			return i
		}
	}
	return -1
}
