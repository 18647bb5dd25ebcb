package gitops_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/gitops"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// failing is the real git cache, except that while *fail is set every
// fetch fails (a git host down).
type failing struct {
	gitops.Repos
	fail *atomic.Bool
}

func (r failing) Fetch(ctx context.Context, rem gitops.Remote, ref string) (gitops.Snapshot, error) {
	if r.fail.Load() {
		return nil, errors.New("git host unreachable")
	}
	return r.Repos.Fetch(ctx, rem, ref)
}

// everyone may write everywhere: who may sync what is the e2e tests' subject
// (with real tokens); here it is the controller's timing.
type everyone struct{}

func (everyone) Authorizer(context.Context, string) (func(string, string) error, error) {
	return func(string, string) error { return nil }, nil
}

// env is the real engine over real SQLite, a real repository and a fake clock.
type env struct {
	db    *sqlite.Store
	reg   *registry.Registry
	eng   *apply.Engine
	repo  *gittest.Repo
	clock *reconcile.FakeClock
	cache *gitrepo.Cache
	// failFetch makes every fetch fail while set.
	failFetch atomic.Bool
	// metrics, when set, records the controllers' passes.
	metrics gitops.Metrics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, blobs := testutil.Stores(t)
	log := slog.New(slog.DiscardHandler)
	reg := registry.New(db, blobs, map[string]runtime.Inspector{"onnx": testutil.FixedInspector{}}, log)
	repo := gittest.NewRepo(t)
	cache, err := gitrepo.New(gitrepo.Options{Dir: t.TempDir(), LocalRoot: filepath.Dir(repo.Dir())})
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, reg: reg, eng: apply.NewEngine(apply.Options{Registry: reg, Resources: db, Audit: db, Logger: log}),
		repo: repo, clock: reconcile.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)), cache: cache}
}

// controller starts a controller over e with applier a (the engine when nil)
// and returns it with its stop.
func (e *env) controller(t *testing.T, a gitops.Applier, change ...func(*gitops.Options)) (*gitops.Controller, func()) {
	t.Helper()
	if a == nil {
		a = e.eng
	}
	opts := gitops.Options{Resources: e.db, Applier: a, Repos: failing{gitops.CacheRepos(e.cache), &e.failFetch}, Identities: everyone{}, Clock: e.clock, Metrics: e.metrics}
	for _, f := range change {
		f(&opts)
	}
	c := gitops.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func (e *env) commitModel(t *testing.T, champion int) string {
	t.Helper()
	content := "weights"
	h := sha256.Sum256([]byte(content))
	e.repo.Write("m/a.onnx", content)
	e.repo.Write("m/model.yaml", fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: m}\nspec:\n  versions:\n    - {version: 1, source: {uri: ./a.onnx, sha256: %s}}\n    - {version: 2, source: {uri: ./a.onnx, sha256: %s}}\n  aliases: {champion: %d}\n",
		hex.EncodeToString(h[:]), hex.EncodeToString(h[:]), champion))
	return e.repo.Commit(fmt.Sprintf("champion %d", champion))
}

func (e *env) applySource(t *testing.T, interval string) {
	t.Helper()
	doc := fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: src}\nspec: {url: %q, interval: %s}\n", e.repo.Dir(), interval)
	if _, err := e.eng.Apply(context.Background(), spec.Request{Files: []spec.File{{Name: "gs.yaml", Content: doc}}, AppliedBy: "tester"}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) status(t *testing.T) spec.GitSyncStatus {
	t.Helper()
	st, err := e.db.GetStatus(context.Background(), spec.KindGitSource, "default", "src")
	if err != nil {
		return spec.GitSyncStatus{}
	}
	var out spec.GitSyncStatus
	if err := json.Unmarshal(st.Details, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPollsAtItsInterval: with no webhook and no sync call, a new commit is
// applied by the pass one interval after the last one, and not before.
func TestPollsAtItsInterval(t *testing.T) {
	e := newEnv(t)
	first := e.commitModel(t, 1)
	e.applySource(t, "30s")
	c, _ := e.controller(t, nil)
	<-c.Ready()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == first }, "first sync")

	second := e.commitModel(t, 2)
	testutil.Eventually(t, 10*time.Second, func() bool { _, ok := e.clock.NextDeadline(); return ok }, "the poll timer")
	e.clock.Step(29 * time.Second)
	// Nothing is due yet: the status still names the first commit after the
	// controller has had every chance to run (a Sync of another key drains
	// nothing; so read twice with time in between would be a sleep — instead
	// the next deadline must still be the poll's).
	if next, _ := e.clock.NextDeadline(); next.Sub(e.clock.Now()) != time.Second {
		t.Fatalf("next pass in %v, want 1s", next.Sub(e.clock.Now()))
	}
	if got := e.status(t).SyncedCommit; got != first {
		t.Fatalf("synced %s before the interval passed", got)
	}
	e.clock.Step(time.Second)
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == second }, "the polled commit")
}

// blockingApplier holds the first real (not dry-run) sync until released.
type blockingApplier struct {
	eng     *apply.Engine
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingApplier) Sync(ctx context.Context, req spec.Request, so apply.SyncOptions) (*spec.Response, error) {
	if !req.DryRun {
		first := false
		b.once.Do(func() { first = true })
		if first {
			close(b.entered)
			select {
			case <-b.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return b.eng.Sync(ctx, req, so)
}

// TestRestartMidSync: a server stopped while a sync is in progress leaves
// nothing half-applied, and the next server's first pass applies the commit.
func TestRestartMidSync(t *testing.T) {
	e := newEnv(t)
	commit := e.commitModel(t, 1)
	e.applySource(t, "1m")
	b := &blockingApplier{eng: e.eng, entered: make(chan struct{}), release: make(chan struct{})}
	_, stop := e.controller(t, b)
	<-b.entered
	stop() // the pass is cut short before its apply
	if _, err := e.db.GetResource(context.Background(), spec.KindModel, "default", "m"); err == nil {
		t.Fatal("a sync cut short left the model behind")
	}
	if st := e.status(t); st.SyncedCommit != "" {
		t.Fatalf("a sync cut short recorded %+v", st)
	}
	c2, _ := e.controller(t, nil)
	<-c2.Ready()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == commit }, "sync after restart")
}

// TestNoOpPassWritesNothing: a pass over an unchanged repository and an
// unchanged live state writes no status (and no resource).
func TestNoOpPassWritesNothing(t *testing.T) {
	e := newEnv(t)
	commit := e.commitModel(t, 1)
	e.applySource(t, "1m")
	c, _ := e.controller(t, nil)
	<-c.Ready()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == commit }, "first sync")
	// One more pass for the OnChange-less setup: Sync waits for it.
	if _, err := c.Sync(context.Background(), "default", "src"); err != nil {
		t.Fatal(err)
	}
	before, err := e.db.GetStatus(context.Background(), spec.KindGitSource, "default", "src")
	if err != nil {
		t.Fatal(err)
	}
	model, _ := e.db.GetResource(context.Background(), spec.KindModel, "default", "m")
	for range 3 {
		if _, err := c.Sync(context.Background(), "default", "src"); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := e.db.GetStatus(context.Background(), spec.KindGitSource, "default", "src")
	model2, _ := e.db.GetResource(context.Background(), spec.KindModel, "default", "m")
	if !after.UpdatedAt.Equal(before.UpdatedAt) || model2.ResourceVersion != model.ResourceVersion {
		t.Fatalf("no-op passes wrote: status %v → %v, model rv %d → %d", before.UpdatedAt, after.UpdatedAt, model.ResourceVersion, model2.ResourceVersion)
	}
}

// TestFailedFetchDoesNotRevertDrift: with selfHeal off, a change made by
// hand stays after the git host was unreachable for a pass: the pass after
// the outage compares (OutOfSync) instead of applying the commit again.
func TestFailedFetchDoesNotRevertDrift(t *testing.T) {
	e := newEnv(t)
	commit := e.commitModel(t, 1)
	e.applySource(t, "1m")
	c, _ := e.controller(t, nil)
	<-c.Ready()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == commit }, "first sync")
	ctx := context.Background()
	if err := e.reg.SetAlias(ctx, "default", "m", "champion", 2); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Sync(ctx, "default", "src"); err != nil || st.Sync != spec.SyncOutOfSync {
		t.Fatalf("after a change by hand: %+v, %v", st, err)
	}
	e.failFetch.Store(true)
	if st, err := c.Sync(ctx, "default", "src"); err != nil || st.Reason != "FetchFailed" {
		t.Fatalf("git host down: %+v, %v", st, err)
	}
	e.failFetch.Store(false)
	st, err := c.Sync(ctx, "default", "src")
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.reg.GetModel(ctx, "default", "m")
	if err != nil {
		t.Fatal(err)
	}
	if st.Sync != spec.SyncOutOfSync || m.Aliases["champion"] != 2 {
		t.Fatalf("selfHeal is off, yet the pass after a failed fetch reverted the change by hand: sync %s, champion %d", st.Sync, m.Aliases["champion"])
	}
}

// lastGood records the time of the last good sync the controller reports.
type lastGood struct {
	mu sync.Mutex
	at time.Time
}

func (*lastGood) GitSync(string, string, string, time.Duration) {}
func (l *lastGood) GitSynced(_, _ string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = at
}
func (*lastGood) GitForget(string, string) {}

func (l *lastGood) get() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at
}

// TestQuietRepoSyncAgeStaysLow: a pass that finds the live state in sync
// with an unchanged commit is a good sync: the age of the last good sync
// (alerted on past a few intervals) does not grow while nothing is
// committed.
func TestQuietRepoSyncAgeStaysLow(t *testing.T) {
	e := newEnv(t)
	lg := &lastGood{}
	e.metrics = lg
	commit := e.commitModel(t, 1)
	e.applySource(t, "1m")
	c, _ := e.controller(t, nil)
	<-c.Ready()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.status(t).SyncedCommit == commit }, "first sync")
	e.clock.Step(time.Hour)
	if st, err := c.Sync(context.Background(), "default", "src"); err != nil || st.Sync != spec.SyncSynced {
		t.Fatalf("pass an hour later: %+v, %v", st, err)
	}
	if age := e.clock.Now().Sub(lg.get()); age != 0 {
		t.Fatalf("last good sync %v ago after a pass that found everything in sync", age)
	}
}

// flakyIdentities answers like everyone, except that the token store is
// down (Unavailable) while down is set.
type flakyIdentities struct{ down *atomic.Bool }

func (f flakyIdentities) Authorizer(ctx context.Context, by string) (func(string, string) error, error) {
	if f.down.Load() {
		return nil, errs.New(errs.Unavailable, "tokens cannot be checked right now")
	}
	return everyone{}.Authorizer(ctx, by)
}

// TestTokenStoreDownIsNotAnInvalidIdentity: a store that cannot answer fails
// the pass as IdentityUnavailable (not "apply it again with a valid token"),
// and the next pass syncs.
func TestTokenStoreDownIsNotAnInvalidIdentity(t *testing.T) {
	e := newEnv(t)
	commit := e.commitModel(t, 1)
	e.applySource(t, "1m")
	var down atomic.Bool
	down.Store(true)
	c, _ := e.controller(t, nil, func(o *gitops.Options) { o.Identities = flakyIdentities{&down} })
	st, err := c.Sync(context.Background(), "default", "src")
	if err != nil || st.Reason != "IdentityUnavailable" {
		t.Fatalf("store down: %+v %v", st, err)
	}
	down.Store(false)
	if st, err := c.Sync(context.Background(), "default", "src"); err != nil || st.SyncedCommit != commit {
		t.Fatalf("store back: %+v %v", st, err)
	}
}
