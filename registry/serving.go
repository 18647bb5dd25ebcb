package registry

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Serving setting bounds. Higher thread counts than cores only add contention; the
// caps keep a typo ("640") from taking a machine down.
const (
	MaxThreads        = 64
	MaxInterOpThreads = 64
	MaxInstances      = 64
	MaxBatchSize      = 1 << 16
	MaxQueueDelay     = 10 * time.Second
	MaxQueueSize      = 1 << 20
	MaxTimeout        = time.Hour
	MaxIdleTimeout    = 7 * 24 * time.Hour
	MinStableWindow   = time.Second
	MaxStableWindow   = time.Hour
	MaxWarmupRuns     = 100
)

// Defaults applied where a setting is zero.
const (
	DefaultInstances    = 1
	DefaultMaxQueueSize = 1024
	DefaultIdleTimeout  = 15 * time.Minute
	// DefaultTargetConcurrency is one request in flight per instance: an instance
	// runs one call at a time, so more only queues.
	DefaultTargetConcurrency = 1
	// DefaultStableWindow is the autoscaler's averaging window, as Knative's KPA;
	// its panic window is a tenth of it.
	DefaultStableWindow = time.Minute
)

// ServingConfig is a model's serving settings: the one owner of how a model runs.
// A version may override it (see Merge). Stored as JSON so later settings need no
// migration. Zero values mean "use the default".
type ServingConfig struct {
	// Threads is ONNX Runtime's intra-op thread count (default 1).
	Threads int `json:"threads,omitempty" yaml:"threads,omitempty"`
	// InterOpThreads is ONNX Runtime's inter-op thread count (default 1).
	InterOpThreads int `json:"interOpThreads,omitempty" yaml:"interOpThreads,omitempty"`
	// Batching combines concurrent requests into one runtime call. Nil: off.
	Batching *BatchingConfig `json:"batching,omitempty" yaml:"batching,omitempty"`
	// Instances are in-process execution instances: how many runtime calls of this
	// version may run at once (default 1).
	Instances *InstancesConfig `json:"instances,omitempty" yaml:"instances,omitempty"`
	// MaxQueueSize bounds the requests waiting for an instance (default 1024);
	// past it requests are shed with 429 / RESOURCE_EXHAUSTED.
	MaxQueueSize int `json:"maxQueueSize,omitempty" yaml:"maxQueueSize,omitempty"`
	// Timeout is the default request timeout, queueing included (0: none beyond the
	// client's own deadline). A request past it answers 504 / DEADLINE_EXCEEDED.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// IdleTimeout unloads a version that served nothing for this long (scale to
	// zero; default 15m). instances.min >= 1 keeps a version loaded.
	IdleTimeout Duration `json:"idleTimeout,omitempty" yaml:"idleTimeout,omitempty"`
	// Warmup runs requests built from the signature before a freshly loaded
	// version is marked ready, so the first user request is not the slow one.
	// Nil: off.
	Warmup *WarmupConfig `json:"warmup,omitempty" yaml:"warmup,omitempty"`
}

// WarmupConfig describes the warm-up requests: a stored sample request
// (Inputs), or zero-valued tensors shaped by the signature (a dynamic dim is
// 1, the batch dim BatchSize; strings are empty).
type WarmupConfig struct {
	// Runs is how many warm-up requests run (default 1).
	Runs int `json:"runs,omitempty" yaml:"runs,omitempty"`
	// BatchSize is the rows of each warm-up request (default 1); a sample
	// request has its own.
	BatchSize int `json:"batchSize,omitempty" yaml:"batchSize,omitempty"`
	// Inputs, when set, are the warm-up request: real data, so that the
	// paths a model takes only for real inputs (tree branches, a tokenizer's
	// tables) are warm too. Every input of the versions it serves, each as
	// it expects.
	Inputs []WarmupInput `json:"inputs,omitempty" yaml:"inputs,omitempty"`
}

// WarmupInput is one input of a sample request: its elements row-major, as
// text (numbers, true/false, strings for BYTES).
type WarmupInput struct {
	Name     string       `json:"name" yaml:"name"`
	Datatype string       `json:"datatype" yaml:"datatype"`
	Shape    []int64      `json:"shape" yaml:"shape"`
	Data     SampleValues `json:"data" yaml:"data"`
}

// SampleValues are a sample input's elements as text; in JSON they may be
// numbers, booleans or strings.
type SampleValues []string

// UnmarshalJSON implements json.Unmarshaler.
func (v *SampleValues) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("data: a list of numbers, booleans or strings: %w", err)
	}
	out := make(SampleValues, len(raw))
	for i, r := range raw {
		var s string
		if len(r) > 0 && r[0] == '"' {
			if err := json.Unmarshal(r, &s); err != nil {
				return err
			}
		} else if t := string(r); t == "true" || t == "false" || (len(t) > 0 && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))) {
			s = t
		} else {
			return fmt.Errorf("data[%d]: %s is not a number, a boolean or a string", i, t)
		}
		out[i] = s
	}
	*v = out
	return nil
}

// MarshalJSON writes numbers and booleans as such, other elements as strings.
func (v SampleValues) MarshalJSON() ([]byte, error) {
	b := []byte{'['}
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil && json.Valid([]byte(s)) || s == "true" || s == "false" {
			b = append(b, s...)
			continue
		}
		q, _ := json.Marshal(s)
		b = append(b, q...)
	}
	return append(b, ']'), nil
}

// MaxWarmupElements bounds a stored sample request.
const MaxWarmupElements = 1 << 16

// Tensors builds the sample request.
func (w *WarmupConfig) Tensors() ([]*tensor.Tensor, error) {
	out := make([]*tensor.Tensor, 0, len(w.Inputs))
	for _, in := range w.Inputs {
		dt, ok := tensor.ParseDataType(in.Datatype)
		if !ok {
			return nil, fmt.Errorf("input %s: unknown datatype %q", in.Name, in.Datatype)
		}
		t, err := tensor.FromText(in.Name, dt, in.Shape, in.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// CheckWarmupFits reports why a sample request does not fit a signature:
// every input of it, by name, datatype and shape, and no other.
func CheckWarmupFits(w *WarmupConfig, sig tensor.Signature) error {
	if w == nil || len(w.Inputs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, in := range w.Inputs {
		i := slices.IndexFunc(sig.Inputs, func(s tensor.TensorSpec) bool { return s.Name == in.Name })
		if i < 0 {
			return fmt.Errorf("the sample's input %s is not an input of the model", in.Name)
		}
		spec := sig.Inputs[i]
		if spec.DataType.String() != in.Datatype || !tensor.ShapeMatches(spec.Shape, in.Shape) {
			return fmt.Errorf("the sample's input %s is %s %s; the model expects %s %s", in.Name,
				in.Datatype, tensor.ShapeString(in.Shape), spec.DataType, tensor.ShapeString(spec.Shape))
		}
		seen[in.Name] = true
	}
	for _, s := range sig.Inputs {
		if !seen[s.Name] {
			return fmt.Errorf("the sample lacks input %s", s.Name)
		}
	}
	return nil
}

// BatchingConfig is dynamic batching: requests are concatenated along dim 0.
type BatchingConfig struct {
	// MaxBatchSize is the most rows in one runtime call; 0 or 1 turns batching off.
	MaxBatchSize int `json:"maxBatchSize" yaml:"maxBatchSize"`
	// MaxQueueDelay is the most a request waits for batch-mates while the model is
	// busy. An idle instance never waits.
	MaxQueueDelay Duration `json:"maxQueueDelay,omitempty" yaml:"maxQueueDelay,omitempty"`
	// PreferredBatchSizes are sizes the batcher cuts at when more rows are queued.
	PreferredBatchSizes []int `json:"preferredBatchSizes,omitempty" yaml:"preferredBatchSizes,omitempty"`
}

// InstancesConfig sizes the execution instances. A resident version runs between
// max(1, Min) and Max instances; where Max is larger, the count follows the
// requests in flight against TargetConcurrency per instance (see docs/SERVING.md).
type InstancesConfig struct {
	// Min >= 1 also keeps the version loaded when idle (no scale to zero).
	Min int `json:"min,omitempty" yaml:"min,omitempty"`
	// Max is the most instances (default max(1, Min)).
	Max int `json:"max,omitempty" yaml:"max,omitempty"`
	// TargetConcurrency is the requests in flight (running or queued) one
	// instance should carry (default 1).
	TargetConcurrency int `json:"targetConcurrency,omitempty" yaml:"targetConcurrency,omitempty"`
	// StableWindow is the autoscaler's averaging window (default 1m): instances
	// go down only after load stayed low this long. Its tenth is the panic window
	// that scales up within seconds of a burst.
	StableWindow Duration `json:"stableWindow,omitempty" yaml:"stableWindow,omitempty"`
}

// Merge returns c with every set field of o applied on top (a version override).
func (c ServingConfig) Merge(o *ServingConfig) ServingConfig {
	if o == nil {
		return c
	}
	if o.Threads != 0 {
		c.Threads = o.Threads
	}
	if o.InterOpThreads != 0 {
		c.InterOpThreads = o.InterOpThreads
	}
	if o.Batching != nil {
		c.Batching = o.Batching
	}
	if o.Instances != nil {
		c.Instances = o.Instances
	}
	if o.MaxQueueSize != 0 {
		c.MaxQueueSize = o.MaxQueueSize
	}
	if o.Timeout != 0 {
		c.Timeout = o.Timeout
	}
	if o.IdleTimeout != 0 {
		c.IdleTimeout = o.IdleTimeout
	}
	if o.Warmup != nil {
		c.Warmup = o.Warmup
	}
	return c
}

// IdleAfter is how long a version may sit unused before it is unloaded; 0 means
// never (instances.min >= 1 keeps it loaded).
func (c ServingConfig) IdleAfter() time.Duration {
	if c.minInstances() >= 1 {
		return 0
	}
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout.D()
}

// InstanceBounds are the fewest and most execution instances of a resident
// version: lo = max(1, min), hi = max (at least lo). lo < hi turns on autoscaling.
func (c ServingConfig) InstanceBounds() (lo, hi int) {
	lo = max(DefaultInstances, c.minInstances())
	hi = lo
	if c.Instances != nil && c.Instances.Max > lo {
		hi = c.Instances.Max
	}
	return lo, hi
}

// TargetConcurrency is the requests in flight one instance should carry.
func (c ServingConfig) TargetConcurrency() int {
	if c.Instances == nil || c.Instances.TargetConcurrency <= 0 {
		return DefaultTargetConcurrency
	}
	return c.Instances.TargetConcurrency
}

// StableWindow is the autoscaler's averaging window.
func (c ServingConfig) StableWindow() time.Duration {
	if c.Instances == nil || c.Instances.StableWindow <= 0 {
		return DefaultStableWindow
	}
	return c.Instances.StableWindow.D()
}

// WarmupRuns is the number of warm-up requests and their rows (0, 0: off).
func (c ServingConfig) WarmupRuns() (runs, rows int) {
	if c.Warmup == nil {
		return 0, 0
	}
	return max(1, c.Warmup.Runs), max(1, c.Warmup.BatchSize)
}

func (c ServingConfig) minInstances() int {
	if c.Instances == nil {
		return 0
	}
	return c.Instances.Min
}

// QueueSize is the bound on waiting requests.
func (c ServingConfig) QueueSize() int {
	if c.MaxQueueSize <= 0 {
		return DefaultMaxQueueSize
	}
	return c.MaxQueueSize
}

// BatchSize is the most rows per runtime call (1 when batching is off).
func (c ServingConfig) BatchSize() int {
	if c.Batching == nil || c.Batching.MaxBatchSize <= 1 {
		return 1
	}
	return c.Batching.MaxBatchSize
}

func bad(field, format string, args ...any) error {
	return errs.New(errs.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...)).WithField(field)
}

// Validate checks bounds; messages name the field, e.g. "serving.threads: must be
// between 0 and 64, got 640".
func (c ServingConfig) Validate() error {
	if c.Threads < 0 || c.Threads > MaxThreads {
		return bad("serving.threads", "must be between 0 and %d, got %d", MaxThreads, c.Threads)
	}
	if c.InterOpThreads < 0 || c.InterOpThreads > MaxInterOpThreads {
		return bad("serving.interOpThreads", "must be between 0 and %d, got %d", MaxInterOpThreads, c.InterOpThreads)
	}
	if b := c.Batching; b != nil {
		if b.MaxBatchSize < 0 || b.MaxBatchSize > MaxBatchSize {
			return bad("serving.batching.maxBatchSize", "must be between 0 and %d, got %d", MaxBatchSize, b.MaxBatchSize)
		}
		if b.MaxQueueDelay < 0 || b.MaxQueueDelay.D() > MaxQueueDelay {
			return bad("serving.batching.maxQueueDelay", "must be between 0 and %s, got %s", MaxQueueDelay, b.MaxQueueDelay)
		}
		for i, p := range b.PreferredBatchSizes {
			field := fmt.Sprintf("serving.batching.preferredBatchSizes[%d]", i)
			if p < 1 || p > max(b.MaxBatchSize, 1) {
				return bad(field, "must be between 1 and maxBatchSize (%d), got %d", b.MaxBatchSize, p)
			}
			if i > 0 && p <= b.PreferredBatchSizes[i-1] {
				return bad(field, "sizes must increase, got %d after %d", p, b.PreferredBatchSizes[i-1])
			}
		}
	}
	if in := c.Instances; in != nil {
		if in.Min < 0 || in.Min > MaxInstances {
			return bad("serving.instances.min", "must be between 0 and %d, got %d", MaxInstances, in.Min)
		}
		if in.Max < 0 || in.Max > MaxInstances {
			return bad("serving.instances.max", "must be between 0 and %d, got %d", MaxInstances, in.Max)
		}
		if in.Max > 0 && in.Min > in.Max {
			return bad("serving.instances.min", "must not exceed max (%d), got %d", in.Max, in.Min)
		}
		if in.TargetConcurrency < 0 || in.TargetConcurrency > MaxQueueSize {
			return bad("serving.instances.targetConcurrency", "must be between 0 and %d, got %d", MaxQueueSize, in.TargetConcurrency)
		}
		if w := in.StableWindow; w != 0 && (w.D() < MinStableWindow || w.D() > MaxStableWindow) {
			return bad("serving.instances.stableWindow", "must be between %s and %s, got %s", MinStableWindow, MaxStableWindow, w)
		}
	}
	if w := c.Warmup; w != nil {
		if w.Runs < 0 || w.Runs > MaxWarmupRuns {
			return bad("serving.warmup.runs", "must be between 0 and %d, got %d", MaxWarmupRuns, w.Runs)
		}
		if w.BatchSize < 0 || w.BatchSize > MaxBatchSize {
			return bad("serving.warmup.batchSize", "must be between 0 and %d, got %d", MaxBatchSize, w.BatchSize)
		}
		elements := 0
		for i, in := range w.Inputs {
			if in.Name == "" {
				return bad(fmt.Sprintf("serving.warmup.inputs[%d].name", i), "required")
			}
			if elements += len(in.Data); elements > MaxWarmupElements {
				return bad("serving.warmup.inputs", "at most %d elements in all", MaxWarmupElements)
			}
		}
		if _, err := w.Tensors(); err != nil {
			return bad("serving.warmup.inputs", "%v", err)
		}
	}
	if c.MaxQueueSize < 0 || c.MaxQueueSize > MaxQueueSize {
		return bad("serving.maxQueueSize", "must be between 0 and %d, got %d", MaxQueueSize, c.MaxQueueSize)
	}
	if c.Timeout < 0 || c.Timeout.D() > MaxTimeout {
		return bad("serving.timeout", "must be between 0 and %s, got %s", MaxTimeout, c.Timeout)
	}
	if c.IdleTimeout < 0 || c.IdleTimeout.D() > MaxIdleTimeout {
		return bad("serving.idleTimeout", "must be between 0 and %s, got %s", MaxIdleTimeout, c.IdleTimeout)
	}
	return nil
}

// CheckBatchable reports why a signature cannot batch: every input and output must
// be a tensor whose first dim is dynamic (-1), so requests can be concatenated and
// results split along dim 0.
func CheckBatchable(sig tensor.Signature) error {
	check := func(kind string, specs []tensor.TensorSpec) error {
		for _, s := range specs {
			if !s.Supported() {
				if kind == "output" {
					continue // never computed when batching: OIP cannot return it anyway
				}
				return fmt.Errorf("%s %s is %s", kind, s.Name, s.Kind)
			}
			if len(s.Shape) == 0 || s.Shape[0] != -1 {
				return fmt.Errorf("%s %s has shape %s without a dynamic first (batch) dimension", kind, s.Name, tensor.ShapeString(s.Shape))
			}
			if s.Optional {
				// Requests that give it and requests that leave it out cannot share a run.
				return fmt.Errorf("%s %s is optional", kind, s.Name)
			}
		}
		return nil
	}
	if err := check("input", sig.Inputs); err != nil {
		return err
	}
	return check("output", sig.Outputs)
}

// Duration is a time.Duration written as text ("2ms", "5m") in JSON and YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads Go duration syntax ("250us", "2ms", "1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a number with a unit, e.g. 2ms or 5m", b)
	}
	*d = Duration(v)
	return nil
}
