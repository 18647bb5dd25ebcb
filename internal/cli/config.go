package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// servingView is what `models config` prints.
type servingView struct {
	Model     string                  `json:"model"`
	Serving   registry.ServingConfig  `json:"serving"`
	Version   int64                   `json:"version,omitempty"`
	Override  *registry.ServingConfig `json:"override,omitempty"`
	Effective registry.ServingConfig  `json:"effective"`
}

// servingFlags are the setting flags of `models config`; only those given on the
// command line change anything.
type servingFlags struct {
	threads, interOp             int
	maxBatchSize                 int
	maxQueueDelay                durationValue
	preferred                    intListValue
	noBatching                   bool
	instances, minInstances      int
	targetConcurrency            int
	stableWindow                 durationValue
	warmupRuns, warmupBatchSize  int
	warmupSample                 string
	maxQueueSize                 int
	timeout                      durationValue
	idleTimeout                  durationValue
	fs                           *pflag.FlagSet
	batchingFlags, settingsFlags []string
}

func (sf *servingFlags) register(f *pflag.FlagSet) {
	sf.fs = f
	f.IntVar(&sf.threads, "threads", 0, "intra-op threads (0: default, 1)")
	f.IntVar(&sf.interOp, "inter-op-threads", 0, "inter-op threads (0: default, 1)")
	f.IntVar(&sf.maxBatchSize, "max-batch-size", 0, "dynamic batching: most rows per runtime call (0 or 1: off)")
	f.Var(&sf.maxQueueDelay, "max-queue-delay", "dynamic batching: most a request waits for batch-mates, e.g. 2ms")
	f.Var(&sf.preferred, "preferred-batch-sizes", `dynamic batching: increasing sizes to cut batches at, e.g. 16,32 ("" clears)`)
	f.BoolVar(&sf.noBatching, "no-batching", false, "turn dynamic batching off (removes the batching settings)")
	f.IntVar(&sf.instances, "instances", 0, "most execution instances of each version (instances.max; above --min-instances the count follows load)")
	f.IntVar(&sf.minInstances, "min-instances", 0, "fewest execution instances (instances.min; 1 or more also keeps the version loaded when idle)")
	f.IntVar(&sf.targetConcurrency, "target-concurrency", 0, "requests in flight one instance should carry (instances.targetConcurrency; 0: default, 1)")
	f.Var(&sf.stableWindow, "stable-window", "autoscaler averaging window, e.g. 30s (instances.stableWindow; 0s: default 1m); a tenth of it is the panic window")
	f.IntVar(&sf.warmupRuns, "warmup-runs", 0, "warm-up requests built from the signature before a loaded version serves (0 with no --warmup-batch-size: off)")
	f.IntVar(&sf.warmupBatchSize, "warmup-batch-size", 0, "rows of each warm-up request (default 1)")
	f.StringVar(&sf.warmupSample, "warmup-sample", "", `a sample request (an OIP v2 JSON request file) the warm-up runs instead of zero-valued inputs ("" clears)`)
	f.IntVar(&sf.maxQueueSize, "max-queue-size", 0, fmt.Sprintf("most requests waiting for an instance before shedding (0: default, %d)", registry.DefaultMaxQueueSize))
	f.Var(&sf.timeout, "timeout", "default request timeout, queueing included, e.g. 500ms or 5s (0s: none)")
	f.Var(&sf.idleTimeout, "idle-timeout", "unload the version after this long without traffic (scale to zero; 0s: default 15m; --min-instances 1 keeps it)")
	sf.batchingFlags = []string{"max-batch-size", "max-queue-delay", "preferred-batch-sizes"}
	sf.settingsFlags = []string{"threads", "inter-op-threads", "max-batch-size", "max-queue-delay", "preferred-batch-sizes",
		"no-batching", "instances", "min-instances", "target-concurrency", "stable-window", "max-queue-size", "timeout", "idle-timeout",
		"warmup-runs", "warmup-batch-size", "warmup-sample"}
}

// given lists the flags among names that were set on the command line.
func (sf *servingFlags) given(names []string) []string {
	var out []string
	for _, n := range names {
		if sf.fs.Changed(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

// check refuses flag combinations that make no sense before anything is sent.
func (sf *servingFlags) check() error {
	if b := sf.given(sf.batchingFlags); sf.noBatching && len(b) > 0 {
		return usageErrorf("--no-batching cannot be combined with %s", strings.Join(b, ", "))
	}
	return nil
}

// apply changes s by the given flags. inherited is the model's settings when s
// is a version override (nil for the model itself): since a version's batching
// or instances replace the model's whole block, changing one field of them
// starts from the model's block.
func (sf *servingFlags) apply(s *registry.ServingConfig, inherited *registry.ServingConfig) error {
	f := sf.fs
	if f.Changed("threads") {
		s.Threads = sf.threads
	}
	if f.Changed("inter-op-threads") {
		s.InterOpThreads = sf.interOp
	}
	switch {
	case sf.noBatching && inherited == nil:
		s.Batching = nil
	case sf.noBatching:
		// An override without batching inherits the model's; an explicit
		// maxBatchSize 0 turns it off for this version.
		s.Batching = &registry.BatchingConfig{}
	case len(sf.given(sf.batchingFlags)) > 0:
		b := cloneBatching(s.Batching)
		if b == nil && inherited != nil {
			b = cloneBatching(inherited.Batching)
		}
		if b == nil && !f.Changed("max-batch-size") {
			return usageErrorf("batching is off: give --max-batch-size too")
		}
		if b == nil {
			b = &registry.BatchingConfig{}
		}
		if f.Changed("max-batch-size") {
			b.MaxBatchSize = sf.maxBatchSize
		}
		if f.Changed("max-queue-delay") {
			b.MaxQueueDelay = sf.maxQueueDelay.d
		}
		if f.Changed("preferred-batch-sizes") {
			b.PreferredBatchSizes = sf.preferred.v
		}
		s.Batching = b
	}
	if f.Changed("instances") || f.Changed("min-instances") || f.Changed("target-concurrency") || f.Changed("stable-window") {
		in := cloneInstances(s.Instances)
		if in == nil && inherited != nil {
			in = cloneInstances(inherited.Instances)
		}
		if in == nil {
			in = &registry.InstancesConfig{}
		}
		if f.Changed("instances") {
			in.Max = sf.instances
		}
		if f.Changed("min-instances") {
			in.Min = sf.minInstances
		}
		if f.Changed("target-concurrency") {
			in.TargetConcurrency = sf.targetConcurrency
		}
		if f.Changed("stable-window") {
			in.StableWindow = sf.stableWindow.d
		}
		if *in == (registry.InstancesConfig{}) && inherited == nil {
			in = nil // all defaults
		}
		s.Instances = in
	}
	if f.Changed("max-queue-size") {
		s.MaxQueueSize = sf.maxQueueSize
	}
	if f.Changed("timeout") {
		s.Timeout = sf.timeout.d
	}
	if f.Changed("idle-timeout") {
		s.IdleTimeout = sf.idleTimeout.d
	}
	if f.Changed("warmup-runs") || f.Changed("warmup-batch-size") || f.Changed("warmup-sample") {
		w := &registry.WarmupConfig{}
		if s.Warmup != nil {
			*w = *s.Warmup
		}
		if f.Changed("warmup-runs") {
			w.Runs = sf.warmupRuns
		}
		if f.Changed("warmup-batch-size") {
			w.BatchSize = sf.warmupBatchSize
		}
		if f.Changed("warmup-sample") {
			w.Inputs = nil
			if sf.warmupSample != "" {
				inputs, err := readSample(sf.warmupSample)
				if err != nil {
					return fmt.Errorf("--warmup-sample: %w", err)
				}
				w.Inputs = inputs
			}
		}
		if w.Runs == 0 && w.BatchSize == 0 && len(w.Inputs) == 0 {
			w = nil // --warmup-runs 0: off
		}
		s.Warmup = w
	}
	return nil
}

// readSample reads an OIP v2 JSON request file as a warm-up sample: each
// input's data, nested or flat, row-major as text.
func readSample(path string) ([]registry.WarmupInput, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var req struct {
		Inputs []struct {
			Name     string  `json:"name"`
			Datatype string  `json:"datatype"`
			Shape    []int64 `json:"shape"`
			Data     any     `json:"data"`
		} `json:"inputs"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%s: not an OIP v2 JSON request: %w", path, err)
	}
	if len(req.Inputs) == 0 {
		return nil, fmt.Errorf("%s: the request has no inputs", path)
	}
	out := make([]registry.WarmupInput, len(req.Inputs))
	for i, in := range req.Inputs {
		var vals registry.SampleValues
		var flatten func(v any) error
		flatten = func(v any) error {
			switch x := v.(type) {
			case []any:
				for _, e := range x {
					if err := flatten(e); err != nil {
						return err
					}
				}
			case json.Number:
				vals = append(vals, x.String())
			case bool:
				vals = append(vals, strconv.FormatBool(x))
			case string:
				vals = append(vals, x)
			default:
				return fmt.Errorf("%s: input %s: data holds %v, not numbers, booleans or strings", path, in.Name, v)
			}
			return nil
		}
		if err := flatten(in.Data); err != nil {
			return nil, err
		}
		out[i] = registry.WarmupInput{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape, Data: vals}
	}
	return out, nil
}

func cloneBatching(b *registry.BatchingConfig) *registry.BatchingConfig {
	if b == nil {
		return nil
	}
	c := *b
	c.PreferredBatchSizes = slices.Clone(b.PreferredBatchSizes)
	return &c
}

func cloneInstances(in *registry.InstancesConfig) *registry.InstancesConfig {
	if in == nil {
		return nil
	}
	c := *in
	return &c
}

func (a *app) configCommand() *cobra.Command {
	var version int64
	var clear bool
	var sf servingFlags
	cmd := &cobra.Command{
		Use:   "config NAME",
		Short: "Show or change how a model runs (threads, batching, instances, queue, timeout)",
		Long: `Show or change a model's serving settings. Without setting flags the current
settings are shown. Only the flags given change anything; every other setting
keeps its value.

With --version the change is a per-version override that wins over the model's
settings; --clear removes that override. A version's batching and instances
settings replace the model's as a whole: changing one of their fields on a
version starts from the model's values, and --no-batching turns batching off
for that version even where the model batches.

0 means the default: 1 thread, batching off, 1 instance, a queue of 1024
requests, no timeout beyond the client's deadline. Durations take a unit:
250us, 2ms, 5s, 1m.`,
		Example: `  nimbus models config churn
  nimbus models config churn --threads 4 --instances 2
  nimbus models config churn --max-batch-size 64 --max-queue-delay 2ms --preferred-batch-sizes 16,32
  nimbus models config churn --no-batching
  nimbus models config churn --max-queue-size 256 --timeout 5s
  nimbus models config churn --version 3 --inter-op-threads 2
  nimbus models config churn --version 3 --no-batching
  nimbus models config churn --version 3 --clear
  nimbus models config churn --version 3 -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx, c, name := cmd.Context(), a.client(), argv[0]
			if err := sf.check(); err != nil {
				return err
			}
			changed := len(sf.given(sf.settingsFlags)) > 0
			if clear && (changed || version == 0) {
				return usageErrorf("--clear needs --version and no setting flags")
			}
			if version < 0 {
				return usageErrorf("--version %d is not a positive number", version)
			}
			if version == 0 && changed {
				s, err := c.GetServing(ctx, a.namespace, name)
				if err != nil {
					return fmt.Errorf("get serving settings: %w", err)
				}
				if err := sf.apply(&s, nil); err != nil {
					return err
				}
				if _, err := c.SetServing(ctx, a.namespace, name, s); err != nil {
					return fmt.Errorf("set serving settings: %w", err)
				}
			}
			if version != 0 && (changed || clear) {
				var o *registry.ServingConfig
				if !clear {
					model, err := c.GetServing(ctx, a.namespace, name)
					if err != nil {
						return fmt.Errorf("get serving settings: %w", err)
					}
					v, err := c.GetVersion(ctx, a.namespace, name, strconv.FormatInt(version, 10))
					if err != nil {
						return fmt.Errorf("get version: %w", err)
					}
					o = &registry.ServingConfig{}
					if v.Serving != nil {
						*o = *v.Serving
					}
					if err := sf.apply(o, &model); err != nil {
						return err
					}
				}
				if _, err := c.SetVersionServing(ctx, a.namespace, name, version, o); err != nil {
					return fmt.Errorf("set version serving settings: %w", err)
				}
			}
			view, err := a.servingView(cmd, name, version)
			if err != nil {
				return err
			}
			return a.print(view, view.render)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&version, "version", 0, "change or show this version's override instead of the model's settings")
	sf.register(f)
	f.BoolVar(&clear, "clear", false, "remove the version's override (with --version)")
	f.SortFlags = false
	return cmd
}

func (a *app) servingView(cmd *cobra.Command, name string, version int64) (servingView, error) {
	c := a.client()
	m, err := c.GetModel(cmd.Context(), a.namespace, name)
	if err != nil {
		return servingView{}, fmt.Errorf("get model: %w", err)
	}
	view := servingView{Model: name, Serving: m.Serving, Version: version}
	if version != 0 {
		v, err := c.GetVersion(cmd.Context(), a.namespace, name, strconv.FormatInt(version, 10))
		if err != nil {
			return servingView{}, fmt.Errorf("get version: %w", err)
		}
		view.Override = v.Serving
	}
	view.Effective = registry.ServingConfig{Threads: 1, InterOpThreads: 1}.Merge(&view.Serving).Merge(view.Override)
	return view, nil
}

// servingRows are the settings of the config table, in order. show renders a
// setting resolved, with the default it stands for when unset, or as a version
// override ("-" when unset: inherited).
var servingRows = []struct {
	name string
	show func(s registry.ServingConfig, override bool) string
}{
	{"threads", func(s registry.ServingConfig, o bool) string { return showInt(s.Threads, 1, o) }},
	{"interOpThreads", func(s registry.ServingConfig, o bool) string { return showInt(s.InterOpThreads, 1, o) }},
	{"batching", func(s registry.ServingConfig, o bool) string {
		if o && s.Batching == nil {
			return "-"
		}
		return formatBatching(s.Batching)
	}},
	{"instances", func(s registry.ServingConfig, o bool) string {
		if o && s.Instances == nil {
			return "-"
		}
		return formatInstances(s.Instances)
	}},
	{"maxQueueSize", func(s registry.ServingConfig, o bool) string {
		return showInt(s.MaxQueueSize, registry.DefaultMaxQueueSize, o)
	}},
	{"timeout", func(s registry.ServingConfig, o bool) string { return showDuration(s.Timeout, "none", o) }},
	{"idleTimeout", func(s registry.ServingConfig, o bool) string {
		return showDuration(s.IdleTimeout, registry.DefaultIdleTimeout.String()+" (default)", o)
	}},
	{"warmup", func(s registry.ServingConfig, o bool) string {
		if s.Warmup == nil {
			if o {
				return "-"
			}
			return "off"
		}
		runs, rows := s.WarmupRuns()
		if len(s.Warmup.Inputs) > 0 {
			var in []string
			for _, x := range s.Warmup.Inputs {
				in = append(in, x.Name+tensor.ShapeString(x.Shape))
			}
			return fmt.Sprintf("runs=%d sample=%s", runs, strings.Join(in, ","))
		}
		return fmt.Sprintf("runs=%d batchSize=%d", runs, rows)
	}},
}

// showDuration renders a duration setting: its value, "-" for an unset override,
// or what applies when it is unset.
func showDuration(d registry.Duration, unset string, override bool) string {
	switch {
	case d != 0:
		return d.String()
	case override:
		return "-"
	}
	return unset
}

// render writes the table: one row per setting; for a version the model's
// setting, the override and the effective value side by side.
func (v servingView) render(t *table) {
	if v.Version == 0 {
		t.row("MODEL  " + v.Model)
		for _, r := range servingRows {
			t.row(r.name, r.show(v.Serving, false))
		}
		return
	}
	o := registry.ServingConfig{}
	if v.Override != nil {
		o = *v.Override
	}
	// Effective as resolved here (not v.Effective, which has the thread
	// defaults filled in) so unset settings show as defaults.
	eff := v.Serving.Merge(v.Override)
	ver := "VERSION " + strconv.FormatInt(v.Version, 10)
	t.row("MODEL  " + v.Model)
	t.row("SETTING", "MODEL", ver, "EFFECTIVE")
	for _, r := range servingRows {
		t.row(r.name, r.show(v.Serving, false), r.show(o, true), r.show(eff, false))
	}
}

// showInt shows a number setting; when zero, the default it stands for, or "-"
// for an override (inherited).
func showInt(n, def int, override bool) string {
	switch {
	case n != 0:
		return strconv.Itoa(n)
	case override:
		return "-"
	}
	return strconv.Itoa(def) + " (default)"
}

// formatBatching renders "maxBatchSize=64 maxQueueDelay=2ms preferredBatchSizes=[16,32]",
// or "off".
func formatBatching(b *registry.BatchingConfig) string {
	if b == nil || (b.MaxBatchSize <= 1 && b.MaxQueueDelay == 0 && len(b.PreferredBatchSizes) == 0) {
		return "off"
	}
	parts := []string{"maxBatchSize=" + strconv.Itoa(b.MaxBatchSize)}
	if b.MaxBatchSize <= 1 {
		parts[0] = "off (maxBatchSize=" + strconv.Itoa(b.MaxBatchSize) + ")"
	}
	if b.MaxQueueDelay != 0 {
		parts = append(parts, "maxQueueDelay="+b.MaxQueueDelay.String())
	}
	if len(b.PreferredBatchSizes) > 0 {
		parts = append(parts, "preferredBatchSizes="+formatInts(b.PreferredBatchSizes))
	}
	return strings.Join(parts, " ")
}

// formatInstances renders "min=1 max=4 targetConcurrency=8", leaving out unset
// fields, or "max=1 (default)".
func formatInstances(in *registry.InstancesConfig) string {
	if in == nil || *in == (registry.InstancesConfig{}) {
		return "max=" + strconv.Itoa(registry.DefaultInstances) + " (default)"
	}
	var parts []string
	if in.Min != 0 {
		parts = append(parts, "min="+strconv.Itoa(in.Min))
	}
	if in.Max != 0 {
		parts = append(parts, "max="+strconv.Itoa(in.Max))
	}
	if in.TargetConcurrency != 0 {
		parts = append(parts, "targetConcurrency="+strconv.Itoa(in.TargetConcurrency))
	}
	if in.StableWindow != 0 {
		parts = append(parts, "stableWindow="+in.StableWindow.String())
	}
	return strings.Join(parts, " ")
}

func formatInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// durationValue is a flag holding a duration with a unit ("2ms", "5s").
type durationValue struct{ d registry.Duration }

func (v *durationValue) String() string {
	if v.d == 0 {
		return ""
	}
	return v.d.String()
}

func (v *durationValue) Set(s string) error {
	var d registry.Duration
	if err := d.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	v.d = d
	return nil
}

func (v *durationValue) Type() string { return "duration" }

// intListValue is a flag holding comma-separated integers ("16,32"); an empty
// value clears the list.
type intListValue struct{ v []int }

func (l *intListValue) String() string {
	if len(l.v) == 0 {
		return ""
	}
	return strings.Trim(formatInts(l.v), "[]")
}

func (l *intListValue) Set(s string) error {
	l.v = nil
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a comma-separated list of numbers, e.g. 16,32", s)
		}
		l.v = append(l.v, n)
	}
	return nil
}

func (l *intListValue) Type() string { return "ints" }
