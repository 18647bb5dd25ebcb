package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/delivery"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/spec"
)

// ServiceKey is the reconcile key of an InferenceService.
func ServiceKey(ns, name string) reconcile.Key {
	return reconcile.Key{Namespace: ns, Kind: spec.KindInferenceService, Name: name}
}

// routeReconciler makes the router serve what is stored for one
// InferenceService, and records that in the service's status. It reads only
// the store, so it needs none of the engine's locks: an apply commits, then
// waits for a pass over each service it changed.
type routeReconciler struct {
	resources spec.ResourceStore
	routes    Routes
	rollouts  Rollouts // nil: none run
	now       func() time.Time
	// routed is what the router was told to serve: a resync reconciles
	// those keys too, so a delete the controller missed is repaired (a list
	// of the store cannot name what is no longer in it).
	mu     sync.Mutex
	routed map[reconcile.Key]bool
}

func (r *routeReconciler) setRouted(k reconcile.Key, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.routed[k] = true
	} else {
		delete(r.routed, k)
	}
}

func (r *routeReconciler) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	stored, err := r.resources.GetResource(ctx, spec.KindInferenceService, k.Namespace, k.Name)
	if errs.KindOf(err) == errs.NotFound {
		r.routes.DeleteService(k.Namespace, k.Name)
		r.setRouted(k, false)
		if r.rollouts != nil {
			return reconcile.Result{}, r.rollouts.Deleted(ctx, k.Namespace, k.Name)
		}
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	var s spec.ServiceSpec
	if err := json.Unmarshal(stored.Spec, &s); err != nil {
		// Stored specs were validated; a row that does not decode is not
		// fixed by retrying.
		return reconcile.Result{}, reconcile.Terminal(fmt.Errorf("decode %s: %w", k, err))
	}
	st, err := r.resources.GetStatus(ctx, k.Kind, k.Namespace, k.Name)
	if err != nil && errs.KindOf(err) != errs.NotFound {
		return reconcile.Result{}, err
	}
	details, err := decodeServiceDetails(st.Details)
	if err != nil {
		// A status is the controller's own record: start it again.
		details = serviceDetails{}
	}
	var ro delivery.Result
	if r.rollouts != nil {
		ro, err = r.rollouts.Reconcile(ctx, delivery.Service{Namespace: k.Namespace, Name: k.Name, Created: stored.CreatedAt,
			Spec: s, Status: details.Rollout})
		if err != nil {
			return reconcile.Result{}, err
		}
	}
	r.routes.SetService(k.Namespace, k.Name, stored.Generation, s, ro.Route)
	r.setRouted(k, true)
	if ro.AfterRoute != nil {
		ro.AfterRoute()
	}
	details.Rollout = ro.Status
	err = r.recordRouted(ctx, k, stored.Generation, st, details)
	if ro.Recorded != nil {
		ro.Recorded(err)
	}
	return reconcile.Result{RequeueAfter: ro.RequeueAfter}, err
}

// serviceDetails are an InferenceService's own stored status fields.
type serviceDetails struct {
	Rollout *spec.RolloutStatus `json:"rollout,omitempty"`
}

func decodeServiceDetails(raw json.RawMessage) (serviceDetails, error) {
	var d serviceDetails
	if len(raw) == 0 {
		return d, nil
	}
	err := json.Unmarshal(raw, &d)
	return d, err
}

// recordRouted stores that generation gen is routed, with the service's
// details, writing nothing when the status says so already (a no-op pass
// makes no write).
func (r *routeReconciler) recordRouted(ctx context.Context, k reconcile.Key, gen int64, st spec.Status, d serviceDetails) error {
	var raw json.RawMessage
	if d.Rollout != nil {
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode status of %s: %w", k, err)
		}
		raw = b
	}
	if c, ok := st.Condition(spec.ConditionReady); ok && st.ObservedGeneration == gen && c.Status == spec.ConditionTrue && c.Reason == "Routed" &&
		bytes.Equal(st.Details, raw) {
		return nil
	}
	st.ObservedGeneration, st.Details = gen, raw
	st.Conditions = spec.SetCondition(st.Conditions, spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: "Routed",
		Message: fmt.Sprintf("the router serves generation %d", gen)}, r.now())
	err := r.resources.PutStatus(ctx, k.Kind, k.Namespace, k.Name, st)
	if errs.KindOf(err) == errs.NotFound {
		return nil // deleted meanwhile: the delete queues another pass
	}
	return err
}

// list is every stored InferenceService's key and every key the router
// serves, for the controller's first pass and its resyncs.
func (r *routeReconciler) list(ctx context.Context) ([]reconcile.Key, error) {
	rs, err := r.resources.ListResources(ctx, spec.KindInferenceService, "")
	if err != nil {
		return nil, fmt.Errorf("list inferenceservices: %w", err)
	}
	seen := map[reconcile.Key]bool{}
	keys := make([]reconcile.Key, 0, len(rs))
	for _, s := range rs {
		k := ServiceKey(s.Namespace, s.Name)
		seen[k] = true
		keys = append(keys, k)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.routed {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// syncTimeout bounds how long a commit waits for the router to follow it.
// A pass is a store read and a table swap; only a stopped or wedged
// controller takes this long, and then the next resync repairs it.
const syncTimeout = 10 * time.Second

// syncService waits for the router to serve what was just committed for
// ns/name. The commit stands either way: a failure is logged, and the
// controller retries.
func (e *Engine) syncService(ctx context.Context, ns, name string) {
	if e.services == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), syncTimeout)
	defer cancel()
	if err := e.services.Sync(ctx, ServiceKey(ns, name)); err != nil {
		e.log.Warn("router has not caught up with a committed InferenceService; it will retry",
			"namespace", ns, "name", name, "err", err)
	}
}

// EnqueueService asks the InferenceService controller for a pass over
// ns/name (a rollout's registry change, a rollout command).
func (e *Engine) EnqueueService(ns, name string) {
	if e.services != nil {
		e.services.Enqueue(ServiceKey(ns, name))
	}
}

// Start runs the engine's controllers (the router's) until ctx ends.
func (e *Engine) Start(ctx context.Context) error {
	if e.services == nil {
		<-ctx.Done()
		return nil
	}
	return e.services.Start(ctx)
}

// Ready is closed once every stored InferenceService is routed (the
// controller's first pass): the server serves only after that.
func (e *Engine) Ready() <-chan struct{} {
	if e.services == nil {
		return closed
	}
	return e.services.Ready()
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
