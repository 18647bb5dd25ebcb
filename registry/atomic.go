package registry

import "context"

// txScope is what one Atomic call of a Registry owes once its transaction
// commits: the change notifications and the blobs to collect. A failed
// transaction drops them, since nothing changed.
type txScope struct {
	r       *Registry
	changes []Change
	blobs   []string // sha256 of versions deleted: collect if unreferenced
}

type scopeKey struct{}

// scopeOf returns the open transaction scope of r that ctx carries, or nil.
func (r *Registry) scopeOf(ctx context.Context) *txScope {
	if sc, ok := ctx.Value(scopeKey{}).(*txScope); ok && sc.r == r {
		return sc
	}
	return nil
}

// Atomic runs fn in one store transaction (see Store.Atomic): every Registry
// call made with the ctx fn receives — and every call of a store sharing the
// registry's database (resources, audit log) — commits with the others or not at
// all. Change notifications and blob collection wait until the transaction
// commits, and are dropped if it does not. Blob deletion waits for it too, so
// a version created inside never points at a blob GC removed meanwhile.
// A nested Atomic joins the outer transaction: what it did is undone when it
// fails, and the outer caller decides the rest. Code that mixes registry calls
// with other writes to the store opens the transaction here, not with
// Store.Atomic, so that notifications wait for the commit.
func (r *Registry) Atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	if r.scopeOf(ctx) == nil {
		sc, err := r.inTxHoldingBlobs(ctx, fn)
		if err != nil {
			return err
		}
		r.committed(ctx, sc)
		return nil
	}
	return r.atomic(ctx, fn)
}

// atomic runs fn in a transaction of its own, or inside the one ctx carries;
// a top-level transaction announces its changes and collects blobs once it
// commits. Callers that hold blobMu must not queue blobs to collect.
func (r *Registry) atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	parent := r.scopeOf(ctx)
	sc, err := r.inTx(ctx, fn)
	if err != nil {
		return err
	}
	if parent != nil {
		parent.changes = append(parent.changes, sc.changes...)
		parent.blobs = append(parent.blobs, sc.blobs...)
		return nil
	}
	r.committed(ctx, sc)
	return nil
}

// inTxHoldingBlobs is inTx holding blobMu shared: versions created inside
// point at blobs that must not be collected before the versions are committed
// (see blobMu). The lock is released however fn ends, a panic included: one
// left held would block every later blob deletion (GC, deletes) for good.
func (r *Registry) inTxHoldingBlobs(ctx context.Context, fn func(ctx context.Context) error) (*txScope, error) {
	r.blobMu.RLock()
	defer r.blobMu.RUnlock()
	return r.inTx(ctx, fn)
}

func (r *Registry) inTx(ctx context.Context, fn func(ctx context.Context) error) (*txScope, error) {
	sc := &txScope{r: r}
	err := r.store.Atomic(ctx, func(ctx context.Context) error {
		return fn(context.WithValue(ctx, scopeKey{}, sc))
	})
	return sc, err
}

// committed tells observers what changed and collects blobs left unreferenced.
func (r *Registry) committed(ctx context.Context, sc *txScope) {
	for _, c := range sc.changes {
		r.notify(c)
	}
	if len(sc.blobs) > 0 {
		r.collect(context.WithoutCancel(ctx), sc.blobs...)
	}
}

// changed records c for announcement when the transaction in ctx commits.
func (r *Registry) changed(ctx context.Context, c Change) {
	if sc := r.scopeOf(ctx); sc != nil {
		sc.changes = append(sc.changes, c)
		return
	}
	r.notify(c)
}

// collectLater queues blobs of deleted versions for collection after commit.
func (r *Registry) collectLater(ctx context.Context, shas ...string) {
	if sc := r.scopeOf(ctx); sc != nil {
		sc.blobs = append(sc.blobs, shas...)
		return
	}
	r.collect(ctx, shas...)
}
