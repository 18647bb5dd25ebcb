// Package controller reconciles Triggers: for each one it resolves the
// Connections and the service it names, opens its source, sink and
// dead-letter destination with the egress rule's dialer and the secrets its
// Connections reference, and runs its loop (package trigger) until the
// Trigger changes, is suspended or deleted, or the server stops. It is
// level-triggered: every pass compares what runs with what is declared, and
// the Trigger's status says why it does not run when it does not.
package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/analysis"
	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/tensor"
	"github.com/nimbus-ai/nimbus/trigger"
	"github.com/nimbus-ai/nimbus/trigger/oipcodec"
)

// Resources is where Triggers, Connections and their statuses live.
type Resources interface {
	GetResource(ctx context.Context, kind, ns, name string) (spec.StoredResource, error)
	ListResources(ctx context.Context, kind, ns string) ([]spec.StoredResource, error)
	GetStatus(ctx context.Context, kind, ns, name string) (spec.Status, error)
	PutStatus(ctx context.Context, kind, ns, name string, st spec.Status) error
}

// Services answers for the services triggers feed (the router): the same
// path as REST and gRPC requests.
type Services interface {
	trigger.Inferer
	ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error)
}

// Secrets resolves the secret references of Connections.
type Secrets interface {
	Resolve(ref secrets.Ref) (secrets.Secret, error)
}

// Metrics is told what each trigger does (telemetry.Metrics).
type Metrics interface {
	ObserveTrigger(ns, name, outcome string, latency time.Duration)
	// TriggerBrokerError counts a failed fetch ("source") or publish
	// ("sink", "deadLetter").
	TriggerBrokerError(ns, name, endpoint string)
	ForgetTrigger(ns, name string)
}

// Options configure a Controller.
type Options struct {
	Resources Resources
	Services  Services
	Secrets   Secrets
	// Dialer makes every broker connection: one whose Control obeys the
	// egress rule.
	Dialer  *net.Dialer
	Metrics Metrics
	Clock   reconcile.Clock
	Logger  *slog.Logger
	// Resync reconciles every Trigger again this often (default 1 minute).
	Resync time.Duration
	// LagEvery is how often a running trigger asks its broker for its lag
	// (default 5s).
	LagEvery time.Duration
}

// Requeue delays of a Trigger that cannot run yet.
const (
	retryBroker  = 5 * time.Second
	retryMissing = 10 * time.Second
	retryService = 2 * time.Second
	removeWithin = 10 * time.Second
)

// Controller runs every Trigger.
type Controller struct {
	opts Options
	log  *slog.Logger
	ctrl *reconcile.Controller

	mu    sync.Mutex
	runs  map[reconcile.Key]*runner
	stats map[reconcile.Key]*stats
	// known are the Triggers reconciled so far, to enqueue those of a
	// namespace whose Connection or service changed.
	known map[reconcile.Key]bool
}

// New builds a Controller.
func New(opts Options) *Controller {
	if opts.Clock == nil {
		opts.Clock = reconcile.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Resync <= 0 {
		opts.Resync = time.Minute
	}
	if opts.LagEvery <= 0 {
		opts.LagEvery = 5 * time.Second
	}
	c := &Controller{opts: opts, log: opts.Logger.With("component", "triggers"),
		runs: map[reconcile.Key]*runner{}, stats: map[reconcile.Key]*stats{}, known: map[reconcile.Key]bool{}}
	c.ctrl = reconcile.New("triggers", c, reconcile.Options{
		List: c.list, Resync: opts.Resync, Clock: opts.Clock, Logger: opts.Logger,
		BaseDelay: time.Second, MaxDelay: time.Minute,
		// Opening a trigger's broker connections may wait for a dial
		// timeout: one unreachable broker holds up no other trigger.
		Workers: 4,
	})
	return c
}

// Key is the reconcile key of a Trigger.
func Key(ns, name string) reconcile.Key {
	return reconcile.Key{Kind: spec.KindTrigger, Namespace: ns, Name: name}
}

// Start runs the controller until ctx ends, then stops every trigger: what
// each has in flight is finished (published and acknowledged) or left
// unacknowledged for redelivery; consumers stay at their brokers.
func (c *Controller) Start(ctx context.Context) error {
	err := c.ctrl.Start(ctx)
	c.mu.Lock()
	keys := make([]reconcile.Key, 0, len(c.runs))
	for k := range c.runs {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() { c.stop(k, false) })
	}
	wg.Wait()
	return err
}

// Ready is closed after the first pass over every Trigger.
func (c *Controller) Ready() <-chan struct{} { return c.ctrl.Ready() }

// Sync runs a pass over one Trigger now and waits for it.
func (c *Controller) Sync(ctx context.Context, ns, name string) error {
	return c.ctrl.Sync(ctx, Key(ns, name))
}

// Changed asks for a pass over what a changed resource affects: the
// Trigger itself, or every Trigger of the namespace of a changed
// Connection, InferenceService or Model.
func (c *Controller) Changed(kind, ns, name string) {
	switch kind {
	case spec.KindTrigger:
		c.ctrl.Enqueue(Key(ns, name))
	case spec.KindConnection, spec.KindInferenceService, spec.KindModel:
		c.NamespaceChanged(ns)
	}
}

// NamespaceChanged asks for a pass over every Trigger of ns.
func (c *Controller) NamespaceChanged(ns string) {
	c.mu.Lock()
	var keys []reconcile.Key
	for k := range c.known {
		if k.Namespace == ns {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	c.ctrl.Enqueue(keys...)
}

func (c *Controller) list(ctx context.Context) ([]reconcile.Key, error) {
	rs, err := c.opts.Resources.ListResources(ctx, spec.KindTrigger, "")
	if err != nil {
		return nil, err
	}
	keys := make([]reconcile.Key, len(rs))
	for i, r := range rs {
		keys[i] = Key(r.Namespace, r.Name)
	}
	return keys, nil
}

// outcome is what a pass leaves in the status.
type outcome struct {
	reason, message string
	warnings        []string
	requeue         time.Duration
}

// Reconcile is one pass over one Trigger.
func (c *Controller) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	stored, err := c.opts.Resources.GetResource(ctx, spec.KindTrigger, k.Namespace, k.Name)
	if errors.Is(err, errs.ErrNotFound) || errs.KindOf(err) == errs.NotFound {
		c.stop(k, true)
		c.forget(k)
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	c.mu.Lock()
	c.known[k] = true
	c.mu.Unlock()
	var ts spec.TriggerSpec
	if err := json.Unmarshal(stored.Spec, &ts); err != nil {
		return reconcile.Result{}, reconcile.Terminal(fmt.Errorf("decode %s: %w", k, err))
	}
	spec.DefaultTrigger(&ts)
	o, err := c.pass(ctx, k, stored, ts)
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := c.saveStatus(ctx, k, stored.Generation, o); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: o.requeue}, nil
}

// pass makes what runs match ts, and says how it stands.
func (c *Controller) pass(ctx context.Context, k reconcile.Key, stored spec.StoredResource, ts spec.TriggerSpec) (outcome, error) {
	if ts.Suspend {
		c.stop(k, false)
		return outcome{reason: spec.ReasonSuspended, message: "suspended: nothing is fetched; the consumer keeps its place at the broker"}, nil
	}
	conns, fp, blocked, err := c.connections(ctx, k.Namespace, ts)
	if err != nil {
		return outcome{}, err
	}
	if blocked != nil {
		c.stop(k, false)
		return *blocked, nil
	}
	model, ref, err := spec.ParseTarget(ts.Service)
	if err != nil {
		c.stop(k, false)
		return outcome{reason: spec.ReasonInvalid, message: "spec.service: " + errs.PublicMessage(err)}, nil
	}
	md, err := c.opts.Services.ModelMetadata(ctx, k.Namespace, model, ref)
	if err != nil {
		// Nothing is fetched while the service is missing: its events stay
		// at the broker instead of being dead-lettered.
		c.stop(k, false)
		return outcome{reason: spec.ReasonServiceMissing, requeue: retryService,
			message: fmt.Sprintf("service %s cannot be served: %s; its events wait at the source", ts.Service, errs.PublicMessage(err))}, nil
	}
	codec, err := newCodec(ts, md)
	if err != nil {
		c.stop(k, false)
		return outcome{reason: spec.ReasonInvalid, message: err.Error()}, nil
	}
	fp = fmt.Sprintf("gen %d; %s; service %s", stored.Generation, fp, signature(md))
	if r := c.running(k); r != nil && r.fp == fp {
		if msg := r.broken(); msg != "" {
			return outcome{reason: spec.ReasonBrokerUnavailable, message: msg, warnings: warnings(ts)}, nil
		}
		return running(ts), nil
	}
	c.stop(k, false)
	if err := c.start(ctx, k, ts, model, ref, conns, codec, fp); err != nil {
		if errors.Is(err, events.ErrMissing) {
			return outcome{reason: spec.ReasonSourceMissing, message: err.Error(), requeue: retryMissing}, nil
		}
		if errors.Is(err, errSecret) {
			return outcome{reason: spec.ReasonSecretUnavailable, message: strings.Replace(err.Error(), errSecret.Error()+": ", "", 1), requeue: retryMissing}, nil
		}
		return outcome{reason: spec.ReasonBrokerUnavailable, message: err.Error(), requeue: retryBroker}, nil
	}
	return running(ts), nil
}

func running(ts spec.TriggerSpec) outcome {
	return outcome{reason: spec.ReasonRunning, message: fmt.Sprintf("scoring %s events with %s", ts.Source.Bus(), ts.Service), warnings: warnings(ts)}
}

// warnings are what the trigger runs with but should not.
func warnings(ts spec.TriggerSpec) []string {
	var out []string
	if ts.Sink.CoreNATS() {
		out = append(out, "spec.sink: core NATS (durable: false): delivery is at most once; a result published while no subscriber listens is lost (capture the subject in a JetStream stream for at least once)")
	}
	if ts.DeadLetter.CoreNATS() {
		out = append(out, "spec.deadLetter: core NATS (durable: false): delivery is at most once; a dead letter published while no subscriber listens is lost")
	}
	return out
}

// connections resolves the Connections ts names; o is set when the trigger
// cannot run (one is missing or names another bus). fp fingerprints them.
func (c *Controller) connections(ctx context.Context, ns string, ts spec.TriggerSpec) (map[string]spec.ConnectionSpec, string, *outcome, error) {
	conns := map[string]spec.ConnectionSpec{}
	var missing, fps []string
	for _, ep := range []struct {
		field string
		e     spec.TriggerEndpoint
	}{{"spec.source", ts.Source}, {"spec.sink", ts.Sink}, {"spec.deadLetter", ts.DeadLetter}} {
		name := ep.e.Connection
		if slices.Contains(missing, name) {
			continue
		}
		cs, ok := conns[name]
		if !ok {
			r, err := c.opts.Resources.GetResource(ctx, spec.KindConnection, ns, name)
			if errors.Is(err, errs.ErrNotFound) || errs.KindOf(err) == errs.NotFound {
				missing = append(missing, name)
				continue
			}
			if err != nil {
				return nil, "", nil, err
			}
			if err := json.Unmarshal(r.Spec, &cs); err != nil {
				return nil, "", nil, fmt.Errorf("decode connection %s/%s: %w", ns, name, err)
			}
			conns[name] = cs
			fps = append(fps, fmt.Sprintf("%s@%d", name, r.ResourceVersion))
		}
		if cs.Bus() != ep.e.Bus() {
			return nil, "", &outcome{reason: spec.ReasonInvalid, message: fmt.Sprintf("%s: connection %s is a %s connection, not %s", ep.field, name, cs.Bus(), ep.e.Bus())}, nil
		}
	}
	if len(missing) > 0 {
		return nil, "", &outcome{reason: spec.ReasonConnectionMissing,
			message: fmt.Sprintf("no Connection %s in namespace %s: an admin declares it (kind: Connection, or connections: in the server config)", strings.Join(missing, ", "), ns)}, nil
	}
	return conns, "connections " + strings.Join(fps, ","), nil, nil
}

// signature fingerprints a service's inputs and outputs: a trigger whose
// service changes signature starts again with a codec for the new one.
func signature(md *serving.ModelMetadata) string {
	var b strings.Builder
	for _, t := range md.Inputs {
		fmt.Fprintf(&b, "in %s %s %v;", t.Name, t.DataType, t.Shape)
	}
	for _, t := range md.Outputs {
		fmt.Fprintf(&b, "out %s %s %v;", t.Name, t.DataType, t.Shape)
	}
	return b.String()
}

// newCodec builds the codec of ts for a service of metadata md: flat JSON
// fields mapped to its inputs (their datatypes from the service), or OIP v2
// JSON requests when no input format is declared.
func newCodec(ts spec.TriggerSpec, md *serving.ModelMetadata) (trigger.Codec, error) {
	f := ts.Format
	if f == nil || f.Input.JSON == nil {
		if f != nil && f.Output.JSON != nil {
			return nil, errors.New("spec.format.output.json: results are OIP v2 responses unless format.input.json maps the events' fields")
		}
		return oipcodec.Codec{CloudEvents: f != nil && f.Input.CloudEvents}, nil
	}
	names := func(ts []tensorSpec) string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return strings.Join(out, ", ")
	}
	var inputs []format.Input
	for _, in := range md.Inputs {
		fields, ok := f.Input.JSON.Fields[in.Name]
		if !ok {
			return nil, fmt.Errorf("spec.format.input.json.fields: the service's input %s is not mapped (its inputs: %s)", in.Name, names(md.Inputs))
		}
		inputs = append(inputs, format.Input{Name: in.Name, DataType: in.DataType, Fields: fields})
	}
	for name := range f.Input.JSON.Fields {
		if !slices.ContainsFunc(md.Inputs, func(t tensorSpec) bool { return t.Name == name }) {
			return nil, fmt.Errorf("spec.format.input.json.fields.%s: the service has no input %s (its inputs: %s)", name, name, names(md.Inputs))
		}
	}
	in, err := format.NewInputs(inputs, f.Input.CloudEvents)
	if err != nil {
		return nil, fmt.Errorf("spec.format.input: %s", strings.TrimPrefix(err.Error(), "format: "))
	}
	fields, keep := map[string]string{}, []string(nil)
	if res := f.Output.JSON; res != nil {
		fields, keep = res.Fields, res.Keep
	} else {
		// By default each output is a field of the result, under its name.
		for _, o := range md.Outputs {
			fields[o.Name] = o.Name
		}
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := format.ParseExpr(fields[k])
		if err != nil {
			return nil, fmt.Errorf("spec.format.output.json.fields.%s: %s", k, strings.TrimPrefix(err.Error(), "format: "))
		}
		if !slices.ContainsFunc(md.Outputs, func(t tensorSpec) bool { return t.Name == e.Name }) {
			return nil, fmt.Errorf("spec.format.output.json.fields.%s: the service has no output %s (its outputs: %s)", k, e.Name, names(md.Outputs))
		}
	}
	out, err := format.NewOutputs(fields, keep)
	if err != nil {
		return nil, fmt.Errorf("spec.format.output: %s", strings.TrimPrefix(err.Error(), "format: "))
	}
	return trigger.FlatJSON{Inputs: in, Outputs: out}, nil
}

type tensorSpec = tensor.TensorSpec

// runner is one running trigger loop.
type runner struct {
	fp     string
	keep   bool // spec.keepConsumer: the consumer stays when the Trigger goes
	cancel context.CancelFunc
	wg     sync.WaitGroup
	src    events.Source
	b      *buses
	// down is the source's last fetch error while it fails, nil otherwise;
	// sinkDown the same of the sink and the dead-letter destination.
	down     atomic.Pointer[string]
	sinkDown [2]atomic.Pointer[string]
}

// broken is what the runner reports failing now ("" when nothing does).
func (r *runner) broken() string {
	var parts []string
	if d := r.down.Load(); d != nil {
		parts = append(parts, "the source cannot be read: "+*d)
	}
	for i, which := range []string{"spec.sink", "spec.deadLetter"} {
		if d := r.sinkDown[i].Load(); d != nil {
			parts = append(parts, which+" cannot be published to: "+*d+" (the batch is held)")
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + "; retrying with backoff"
}

func (c *Controller) running(k reconcile.Key) *runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[k]
}

// start opens the trigger's endpoints and runs its loop.
func (c *Controller) start(ctx context.Context, k reconcile.Key, ts spec.TriggerSpec, model, ref string,
	conns map[string]spec.ConnectionSpec, codec trigger.Codec, fp string) error {
	b := newBuses(c, k.Namespace, k.Name, conns)
	src, err := b.source(ctx, ts.Source)
	if err != nil {
		b.close()
		return fmt.Errorf("spec.source: %w", err)
	}
	fail := func(field string, err error) error {
		src.Close()
		b.close()
		return fmt.Errorf("%s: %w", field, err)
	}
	sink, err := b.sink(ctx, ts.Sink, "sink")
	if err != nil {
		return fail("spec.sink", err)
	}
	dl, err := b.sink(ctx, ts.DeadLetter, "deadletter")
	if err != nil {
		return fail("spec.deadLetter", err)
	}
	st := c.statsOf(k)
	rctx, cancel := context.WithCancel(context.Background())
	r := &runner{fp: fp, keep: ts.KeepConsumer, cancel: cancel, src: src, b: b}
	cfg := trigger.Config{
		Namespace: k.Namespace, Name: k.Name, Service: model, Version: ref, Inferer: c.opts.Services,
		Source: src, Sink: sink, DeadLetter: dl, Codec: codec,
		FetchMax: ts.Fetch.Max, FetchWait: ts.Fetch.MaxWait.D(), Concurrency: ts.Concurrency, Logger: c.opts.Logger,
		Fetched:    func(n int) { st.consumed.Add(int64(n)) },
		Observe:    func(o trigger.Outcome) { st.observe(o, c.opts.Metrics, k) },
		SourceDown: func(err error) { c.brokerState(k, &r.down, "source", err) },
		SinkDown: func(which string, err error) {
			i := 0
			if which == "deadLetter" {
				i = 1
			}
			c.brokerState(k, &r.sinkDown[i], which, err)
		},
	}
	r.wg.Go(func() {
		if err := trigger.Run(rctx, cfg); err != nil {
			c.log.Error("trigger stopped", "trigger", k.Namespace+"/"+k.Name, "err", err)
		}
	})
	if lg, ok := src.(events.Lagger); ok {
		r.wg.Go(func() { c.pollLag(rctx, lg, st) })
	} else {
		st.lag.Store(-1)
	}
	c.mu.Lock()
	c.runs[k] = r
	c.mu.Unlock()
	c.log.Info("trigger started", "trigger", k.Namespace+"/"+k.Name, "service", ts.Service, "source", ts.Source.Bus())
	return nil
}

// brokerState records that an endpoint fails (err) or works again (nil);
// a change of state is a change of status: it enqueues a pass.
func (c *Controller) brokerState(k reconcile.Key, state *atomic.Pointer[string], endpoint string, err error) {
	if err == nil {
		if state.Swap(nil) != nil {
			c.ctrl.Enqueue(k)
		}
		return
	}
	if c.opts.Metrics != nil {
		c.opts.Metrics.TriggerBrokerError(k.Namespace, k.Name, endpoint)
	}
	msg := err.Error()
	if state.Swap(&msg) == nil {
		c.ctrl.Enqueue(k)
	}
}

// pollLag asks the broker for the trigger's lag every LagEvery.
func (c *Controller) pollLag(ctx context.Context, lg events.Lagger, st *stats) {
	for {
		qctx, cancel := context.WithTimeout(ctx, c.opts.LagEvery)
		n, err := lg.Lag(qctx)
		cancel()
		if err != nil {
			n = -1
		}
		st.lag.Store(n)
		t := c.opts.Clock.NewTimer(c.opts.LagEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// stop ends the trigger's loop (what it has in flight is finished or left
// for redelivery), closes its endpoints and, when the Trigger was deleted
// and keepConsumer is not set, removes its consumer from the broker.
func (c *Controller) stop(k reconcile.Key, deleted bool) {
	c.mu.Lock()
	r := c.runs[k]
	delete(c.runs, k)
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	if err := r.src.Close(); err != nil {
		c.log.Debug("closing a source", "trigger", k.Namespace+"/"+k.Name, "err", err)
	}
	if rm, ok := r.src.(events.Remover); ok && deleted && !r.keep {
		ctx, cancel := context.WithTimeout(context.Background(), removeWithin)
		if err := rm.Remove(ctx); err != nil {
			c.log.Warn("cannot remove a deleted trigger's consumer from its broker; remove it by hand", "trigger", k.Namespace+"/"+k.Name, "err", err)
		}
		cancel()
	}
	r.b.close()
	c.log.Info("trigger stopped", "trigger", k.Namespace+"/"+k.Name, "deleted", deleted)
}

// forget drops a deleted Trigger's counters.
func (c *Controller) forget(k reconcile.Key) {
	c.mu.Lock()
	_, had := c.stats[k]
	delete(c.stats, k)
	delete(c.known, k)
	c.mu.Unlock()
	if had && c.opts.Metrics != nil {
		c.opts.Metrics.ForgetTrigger(k.Namespace, k.Name)
	}
}

// saveStatus writes the Ready condition and warnings, only when they
// changed.
func (c *Controller) saveStatus(ctx context.Context, k reconcile.Key, gen int64, o outcome) error {
	prev, err := c.opts.Resources.GetStatus(ctx, spec.KindTrigger, k.Namespace, k.Name)
	if err != nil && !errors.Is(err, errs.ErrNotFound) && errs.KindOf(err) != errs.NotFound {
		return err
	}
	ready := spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionFalse, Reason: o.reason, Message: o.message}
	if o.reason == spec.ReasonRunning {
		ready.Status = spec.ConditionTrue
	}
	conds := spec.SetCondition(slices.Clone(prev.Conditions), ready, c.opts.Clock.Now())
	details, err := json.Marshal(struct {
		Warnings []string `json:"warnings,omitempty"`
	}{o.warnings})
	if err != nil {
		return err
	}
	if prev.ObservedGeneration == gen && reflect.DeepEqual(prev.Conditions, conds) && bytes.Equal(prev.Details, details) {
		return nil
	}
	err = c.opts.Resources.PutStatus(ctx, spec.KindTrigger, k.Namespace, k.Name, spec.Status{ObservedGeneration: gen, Conditions: conds, Details: details})
	if errors.Is(err, errs.ErrNotFound) || errs.KindOf(err) == errs.NotFound {
		return nil // deleted meanwhile
	}
	return err
}

// stats are one Trigger's counters since the server started; they outlive
// restarts of its loop and go with the Trigger.
type stats struct {
	consumed, produced, dead, redelivered, settled atomic.Int64
	lag                                            atomic.Int64
	latency                                        *analysis.Histogram // milliseconds
}

func (c *Controller) statsOf(k reconcile.Key) *stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats[k]
	if s == nil {
		s = &stats{latency: analysis.NewHistogram(0.01, 600_000)}
		s.lag.Store(-1)
		c.stats[k] = s
	}
	return s
}

func (s *stats) observe(o trigger.Outcome, m Metrics, k reconcile.Key) {
	s.settled.Add(1)
	if o.Redelivered {
		s.redelivered.Add(1)
	}
	label := ""
	switch {
	case o.Result:
		s.produced.Add(1)
		label = "result"
	case o.DeadLetter:
		s.dead.Add(1)
		label = "dead_letter"
	case o.Retried:
		label = "retried"
	case o.Abandoned:
		label = "abandoned"
	}
	if o.Result || o.DeadLetter {
		s.latency.Record(float64(o.Latency) / float64(time.Millisecond))
	}
	if m != nil {
		m.ObserveTrigger(k.Namespace, k.Name, label, o.Latency)
	}
}

// TriggerCounts reports a Trigger's counters (apply.TriggerObserver).
func (c *Controller) TriggerCounts(ns, name string) (spec.TriggerCounts, bool) {
	c.mu.Lock()
	s := c.stats[Key(ns, name)]
	c.mu.Unlock()
	if s == nil {
		return spec.TriggerCounts{}, false
	}
	out := spec.TriggerCounts{
		Consumed: s.consumed.Load(), Produced: s.produced.Load(), DeadLettered: s.dead.Load(),
		Redelivered: s.redelivered.Load(), Lag: s.lag.Load(),
	}
	out.InFlight = max(0, out.Consumed-s.settled.Load())
	snap := s.latency.Snapshot()
	if n := snap.Count(); n > 0 {
		rank := func(q float64) int64 { return max(1, int64(math.Ceil(q*float64(n)))) }
		out.LatencyP50Ms = round(snap.ValueAtRank(rank(0.5)))
		out.LatencyP99Ms = round(snap.ValueAtRank(rank(0.99)))
	}
	return out, true
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

// Levels reports every running Trigger's counters, for gauges read at
// scrape time.
func (c *Controller) Levels(yield func(ns, name string, counts spec.TriggerCounts)) {
	c.mu.Lock()
	keys := make([]reconcile.Key, 0, len(c.runs))
	for k := range c.runs {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	for _, k := range keys {
		if counts, ok := c.TriggerCounts(k.Namespace, k.Name); ok {
			yield(k.Namespace, k.Name, counts)
		}
	}
}
