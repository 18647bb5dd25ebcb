package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

func applyGitSource(t testing.TB, srv *testutil.Server, name, specLine string, extra ...string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name+".yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: %s}\nspec: %s\n", name, specLine)), 0o600)
	mustCLI(t, srv, append([]string{"apply", "-f", f}, extra...)...)
}

// TestGitOpsOverSmartHTTP: a remote served by the real git http-backend is
// fetched through the server's egress rule: allowed on a loopback server by
// default, refused (and the sync fails, changing nothing) when the rule
// allows nothing private.
func TestGitOpsOverSmartHTTP(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	commit := g.repo.Commit("v1")
	url := g.repo.ServeHTTP(t, "")
	applyGitSource(t, g.srv, "remote", fmt.Sprintf("{url: %q}", url))
	if st := g.sync(t, "remote"); st.Sync != spec.SyncSynced || st.SyncedCommit != commit {
		t.Fatalf("sync over smart HTTP: %+v", st)
	}

	locked := newGitEnv(t, func(c *config.Config) { c.EgressAllow = []string{} })
	applyGitSource(t, locked.srv, "remote", fmt.Sprintf("{url: %q}", url))
	st := locked.sync(t, "remote")
	if st.Sync != spec.SyncFailed || st.Reason != "FetchFailed" || st.SyncedCommit != "" {
		t.Fatalf("egress refused loopback, yet: %+v", st)
	}
	if code := getJSON(t, locked.srv.URL+"/api/v1/namespaces/default/models/fraud-detector", nil); code != 404 {
		t.Fatalf("a refused fetch created the model: %d", code)
	}
}

// TestGitOpsOwnershipAndNamespaces: two sources may not own one resource
// (the second's sync fails naming the owner, and the owner's status shows
// the conflict); a source writes only into its own namespace and its
// targetNamespaces, and only where the identity that applied it may write.
func TestGitOpsOwnershipAndNamespaces(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Commit("v1")
	// The first source to sync owns the model (sources sync in parallel, so
	// the second is applied once the first has synced).
	applyGitSource(t, g.srv, "first", fmt.Sprintf("{url: %q}", g.repo.Dir()))
	if st := g.sync(t, "first"); st.Sync != spec.SyncSynced {
		t.Fatalf("first: %+v", st)
	}
	applyGitSource(t, g.srv, "second", fmt.Sprintf("{url: %q}", g.repo.Dir()))
	st := g.sync(t, "second")
	if st.Sync != spec.SyncFailed || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, "owned by gitsource/first") {
		t.Fatalf("second source took a resource the first owns: %+v", st)
	}
	// The second's claim wakes the owner: its status shows the conflict
	// without a sync of its own.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var gs spec.GitSource
		getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/gitsources/first", &gs)
		if r := gs.Status.Resources; len(r) == 1 && r[0].State == spec.SyncConflict && strings.Contains(r[0].Message, "gitsource/default/second") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner does not show the conflict: %+v", gs.Status.Resources)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A document in another namespace: refused unless listed, and then only
	// if the identity may write there.
	g2 := newGitEnv(t)
	g2.repo.Write("m/fraud-v1.onnx", string(g2.model))
	g2.repo.Write("m/fraud.yaml", strings.Replace(g2.modelYAML([]int{1}, 1), "metadata: {name: fraud-detector}", "metadata: {name: fraud-detector, namespace: risk}", 1))
	g2.repo.Commit("into risk")
	applyGitSource(t, g2.srv, "plain", fmt.Sprintf("{url: %q}", g2.repo.Dir()))
	st = g2.sync(t, "plain")
	if st.Sync != spec.SyncFailed || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, "targetNamespaces") {
		t.Fatalf("wrote outside its namespace: %+v", st)
	}
	dep := createToken(t, g2.srv, "--role", "deployer", "--scope", "default")
	applyGitSource(t, g2.srv, "scoped", fmt.Sprintf("{url: %q, targetNamespaces: [risk]}", g2.repo.Dir()), "--token", dep.Secret)
	st = g2.sync(t, "scoped")
	if st.Sync != spec.SyncFailed || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, "may not write") || st.AppliedBy != dep.ID {
		t.Fatalf("a deployer of default synced into risk: %+v", st)
	}
	applyGitSource(t, g2.srv, "admin", fmt.Sprintf("{url: %q, targetNamespaces: [risk]}", g2.repo.Dir()))
	st = g2.sync(t, "admin")
	if st.Sync != spec.SyncSynced {
		t.Fatalf("admin source into risk: %+v", st)
	}
	var m spec.Model
	if getJSON(t, g2.srv.URL+"/api/v1/namespaces/risk/resources/models/fraud-detector", &m); m.Metadata.ManagedBy != "gitsource/default/admin" {
		t.Fatalf("managedBy in another namespace = %q", m.Metadata.ManagedBy)
	}
	// Revoking the token that applied a source stops its syncs.
	mustCLI(t, g2.srv, "tokens", "revoke", dep.ID)
	st = g2.sync(t, "scoped")
	if st.Sync != spec.SyncFailed || st.Reason != "IdentityInvalid" {
		t.Fatalf("a revoked token's source still syncs: %+v", st)
	}
}

// TestGitOpsSurvivesRestart: after a restart the source's status is still
// there, the service serves before the first pass (the router's controller
// restores it), and the first pass over an unchanged repo writes nothing.
func TestGitOpsSurvivesRestart(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("s/fraud.yaml", gitServiceYAML)
	commit := g.repo.Commit("v1")
	applyGitSource(t, g.srv, "deploy", fmt.Sprintf("{url: %q}", g.repo.Dir()))
	before := g.sync(t, "deploy")
	if before.Sync != spec.SyncSynced {
		t.Fatalf("sync: %+v", before)
	}
	dataDir := g.srv.DataDir
	g.srv.Stop()
	g.srv = testutil.StartServer(t, func(c *config.Config) {
		c.DataDir = dataDir
		c.SourceDir = filepath.Dir(g.repo.Dir())
	})
	if code, body := postJSON(t, g.srv.URL+"/v2/models/fraud/infer", mlpRequest); code != 200 {
		t.Fatalf("infer after restart: %d %s", code, body)
	}
	after := g.sync(t, "deploy")
	if after.Sync != spec.SyncSynced || after.SyncedCommit != commit || after.LastSyncTime == nil || !after.LastSyncTime.Equal(*before.LastSyncTime) {
		t.Fatalf("after restart: %+v (before %+v)", after, before)
	}
}

// TestGitOpsLockImperative: with lockImperative on, changes to what the
// source owns made through the API or CLI are refused naming the source;
// the source itself still syncs, and what it does not own stays free.
func TestGitOpsLockImperative(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("s/fraud.yaml", gitServiceYAML)
	g.repo.Commit("v1")
	applyGitSource(t, g.srv, "locked", fmt.Sprintf("{url: %q, lockImperative: true}", g.repo.Dir()))
	if st := g.sync(t, "locked"); st.Sync != spec.SyncSynced {
		t.Fatalf("sync: %+v", st)
	}
	for _, args := range [][]string{
		{"models", "alias", "set", "fraud-detector", "canary", "1"},
		{"delete", "isvc", "fraud"},
		{"models", "delete", "fraud-detector", "--force"},
	} {
		_, errOut, code := runCLI(t, g.srv, args...)
		if code == 0 || !strings.Contains(errOut, "gitsource default/locked") || !strings.Contains(errOut, "lockImperative") {
			t.Fatalf("nimbus %s: exit %d, %s", strings.Join(args, " "), code, errOut)
		}
	}
	f := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(f, []byte(strings.Replace(g.modelYAML([]int{1}, 1), "champion: 1", "champion: 1, extra: 1", 1)), 0o600)
	if _, errOut, code := runCLI(t, g.srv, "apply", "-f", f); code == 0 || !strings.Contains(errOut, "lockImperative") {
		t.Fatalf("apply of a locked model: exit %d, %s", code, errOut)
	}
	// The source still syncs a new commit.
	g.repo.Write("m/fraud-v2.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, 2))
	g.repo.Commit("v2")
	if st := g.sync(t, "locked"); st.Sync != spec.SyncSynced || g.alias(t, "champion") != 2 {
		t.Fatalf("the locking source could not sync: %+v", st)
	}
	// What it does not own is not locked.
	g.srv.Push(t, "handmade", "mlp")
	mustCLI(t, g.srv, "models", "alias", "set", "handmade", "champion", "1")
}

// TestGitOpsFollowsForcePushAndBranches: a force-push that rewrites history
// (the old commits pruned from the remote) and a ref moved to another branch
// are followed; a ref that does not exist fails the sync, naming it.
func TestGitOpsFollowsForcePushAndBranches(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	base := g.repo.Commit("v1")
	g.repo.Write("m/fraud-v2.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, 2))
	g.repo.Commit("v2")
	applyGitSource(t, g.srv, "deploy", fmt.Sprintf("{url: %q, ref: main}", g.repo.Dir()))
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced || g.alias(t, "champion") != 2 {
		t.Fatalf("first sync: %+v", st)
	}
	// Rewrite: back to v1, a different second commit, old objects gone.
	g.repo.ResetHard(base)
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, 1))
	rewritten := g.repo.Commit("v2 again, champion stays 1")
	g.repo.Prune()
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced || st.SyncedCommit != rewritten || g.alias(t, "champion") != 1 {
		t.Fatalf("after a force-push: %+v (champion %d)", st, g.alias(t, "champion"))
	}
	// Another branch.
	g.repo.Branch("release")
	g.repo.Checkout("release")
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, 2))
	release := g.repo.Commit("release: champion 2")
	g.repo.Checkout("main")
	applyGitSource(t, g.srv, "deploy", fmt.Sprintf("{url: %q, ref: release}", g.repo.Dir()))
	if st := g.sync(t, "deploy"); st.SyncedCommit != release || g.alias(t, "champion") != 2 {
		t.Fatalf("ref moved to release: %+v", st)
	}
	applyGitSource(t, g.srv, "deploy", fmt.Sprintf("{url: %q, ref: nope}", g.repo.Dir()))
	st := g.sync(t, "deploy")
	if st.Sync != spec.SyncFailed || st.Reason != "FetchFailed" || !strings.Contains(st.Message, `"nope"`) || st.SyncedCommit != release {
		t.Fatalf("missing ref: %+v", st)
	}
}

// TestGitOpsServerFlagsAndVersionsByHand: --git-url declares GitSource
// default/server, which syncs as the server; a version pushed by hand to a
// model it owns is not drift (versions are append-only), and the sync
// metrics are served.
func TestGitOpsServerFlagsAndVersionsByHand(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("deploy/fraud-v1.onnx", string(g.model))
	g.repo.Write("deploy/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("elsewhere/ignored.yaml", "not: [a resource")
	commit := g.repo.Commit("v1")
	g.srv.Stop()
	g.srv = testutil.StartServer(t, func(c *config.Config) {
		c.SourceDir = filepath.Dir(g.repo.Dir())
		c.GitURL, c.GitRef, c.GitPath = "file://"+g.repo.Dir(), "main", "deploy"
	})
	st := g.sync(t, "server")
	if st.Sync != spec.SyncSynced || st.SyncedCommit != commit || st.AppliedBy != "server" {
		t.Fatalf("--git-url: %+v", st)
	}
	g.srv.Push(t, "fraud-detector", "mlp") // version 2, by hand
	if st := g.sync(t, "server"); st.Sync != spec.SyncSynced {
		t.Fatalf("a version pushed by hand counted as drift: %+v", st)
	}
	_, _, body := do(t, "GET", g.srv.URL+"/metrics", "", nil)
	for _, want := range []string{`nimbus_gitsource_syncs_total{gitsource="server",namespace="default",result="synced"}`,
		`nimbus_gitsource_last_sync_age_seconds{gitsource="server",namespace="default"}`, `nimbus_gitsource_sync_duration_seconds_bucket`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestGitOpsPruneNeedsWriteAccess: prune deletes only where the identity the
// source syncs as may write. A deployer of default who applies again a
// source that an admin pointed into risk cannot make it delete what it owns
// there: the sync fails naming the namespace, and the model in risk stays.
func TestGitOpsPruneNeedsWriteAccess(t *testing.T) {
	g := newGitEnv(t)
	risky := strings.Replace(g.modelYAML([]int{1}, 1), "metadata: {name: fraud-detector}", "metadata: {name: fraud-detector, namespace: risk}", 1)
	local := strings.Replace(g.modelYAML([]int{1}, 1), "metadata: {name: fraud-detector}", "metadata: {name: local}", 1)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/risk.yaml", risky)
	g.repo.Write("m/local.yaml", local)
	g.repo.Commit("risk and default")
	spec1 := fmt.Sprintf("{url: %q, targetNamespaces: [risk]}", g.repo.Dir())
	applyGitSource(t, g.srv, "shared", spec1)
	if st := g.sync(t, "shared"); st.Sync != spec.SyncSynced {
		t.Fatalf("admin's sync: %+v", st)
	}
	dep := createToken(t, g.srv, "--role", "deployer", "--scope", "default")
	applyGitSource(t, g.srv, "shared", spec1, "--token", dep.Secret)
	g.repo.Remove("m/risk.yaml")
	g.repo.Commit("drop risk")
	st := g.sync(t, "shared")
	if st.Sync != spec.SyncFailed || st.AppliedBy != dep.ID || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, "may not write") {
		t.Fatalf("a deployer of default pruned in risk: %+v", st)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/risk/models/fraud-detector", nil); code != 200 {
		t.Fatalf("the model in risk was pruned by a source syncing as a deployer of default: %d", code)
	}
}

// TestGitOpsSlowRemoteDoesNotHoldStart: a server restarted while a git host
// does not answer serves at once (what was synced before is in the
// registry); the source's pass waits for the host in the background.
func TestGitOpsSlowRemoteDoesNotHoldStart(t *testing.T) {
	g := newGitEnv(t)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hung.Close() })
	applyGitSource(t, g.srv, "slow", fmt.Sprintf("{url: %q}", hung.URL+"/repo.git"))
	dataDir := g.srv.DataDir
	g.srv.Stop()
	start := time.Now()
	g.srv = testutil.StartServer(t, func(c *config.Config) {
		c.DataDir = dataDir
		c.SourceDir = filepath.Dir(g.repo.Dir())
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the server took %v to serve while a git host hung", took)
	}
}

// TestGitOpsClaimNeedsWriteAccess: a source that declares a resource in a
// namespace it may not write into is refused there, and marks nothing in
// the status of the source that owns it (no "Conflict" planted from outside).
func TestGitOpsClaimNeedsWriteAccess(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("intruder/fraud-v1.onnx", string(g.model))
	g.repo.Write("intruder/fraud.yaml", strings.Replace(g.modelYAML([]int{1}, 1), "metadata: {name: fraud-detector}", "metadata: {name: fraud-detector, namespace: default}", 1))
	g.repo.Commit("owner and intruder")
	applyGitSource(t, g.srv, "owner", fmt.Sprintf("{url: %q, path: m}", g.repo.Dir()))
	if st := g.sync(t, "owner"); st.Sync != spec.SyncSynced {
		t.Fatalf("owner: %+v", st)
	}
	dep := createToken(t, g.srv, "--role", "deployer", "--scope", "team")
	applyGitSource(t, g.srv, "intruder", fmt.Sprintf("{url: %q, path: intruder, targetNamespaces: [default]}", g.repo.Dir()), "--token", dep.Secret, "-n", "team")
	if st := g.syncNS(t, "team", "intruder"); st.Sync != spec.SyncFailed {
		t.Fatalf("a deployer of team synced into default: %+v", st)
	}
	st := g.sync(t, "owner")
	if len(st.Resources) != 1 || st.Resources[0].State != spec.SyncSynced {
		t.Fatalf("a source that may not write in default marked the owner's resources: %+v", st.Resources)
	}
}

// TestGitOpsDriftOnDeleteByHand: deleting an owned service by hand starts
// the owner's pass at once (drift shows without waiting for the poll).
func TestGitOpsDriftOnDeleteByHand(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("s/fraud.yaml", gitServiceYAML)
	g.repo.Commit("v1")
	applyGitSource(t, g.srv, "deploy", fmt.Sprintf("{url: %q, interval: 1h}", g.repo.Dir()))
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("sync: %+v", st)
	}
	mustCLI(t, g.srv, "delete", "isvc", "fraud")
	testutil.Eventually(t, 5*time.Second, func() bool {
		var gs spec.GitSource
		getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/gitsources/deploy", &gs)
		return gs.Status != nil && gs.Status.Sync == spec.SyncOutOfSync
	}, "a service deleted by hand did not show as drift before the next poll")
}

// TestGitOpsChildSourceStaysInside: a GitSource declared in a source's
// repository syncs as the identity of the source that wrote it, so it may
// target only namespaces that source may write into: a source an admin
// kept to default cannot reach risk through a GitSource of its own.
func TestGitOpsChildSourceStaysInside(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("p/child.yaml", fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: child}\nspec: {url: %q, path: c, targetNamespaces: [risk]}\n", g.repo.Dir()))
	g.repo.Write("c/fraud-v1.onnx", string(g.model))
	g.repo.Write("c/fraud.yaml", strings.Replace(g.modelYAML([]int{1}, 1), "metadata: {name: fraud-detector}", "metadata: {name: fraud-detector, namespace: risk}", 1))
	g.repo.Commit("a child source into risk")
	applyGitSource(t, g.srv, "parent", fmt.Sprintf("{url: %q, path: p}", g.repo.Dir()))
	st := g.sync(t, "parent")
	if st.Sync != spec.SyncFailed || len(st.Errors) == 0 || st.Errors[0].Field != "spec.targetNamespaces[0]" {
		t.Fatalf("a source kept to default declared a GitSource targeting risk: %+v", st)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/gitsources/child", nil); code != 404 {
		t.Fatalf("the child source was created: %d", code)
	}
}

// TestGitOpsAdoptsWhatADeletedSourceLeft: what a deleted GitSource deployed
// is owned by no live source, so another source declaring it adopts it (a
// source renamed or replaced) instead of failing on a conflict forever.
func TestGitOpsAdoptsWhatADeletedSourceLeft(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Commit("v1")
	applyGitSource(t, g.srv, "old", fmt.Sprintf("{url: %q}", g.repo.Dir()))
	if st := g.sync(t, "old"); st.Sync != spec.SyncSynced {
		t.Fatalf("old: %+v", st)
	}
	mustCLI(t, g.srv, "delete", "gs", "old")
	applyGitSource(t, g.srv, "new", fmt.Sprintf("{url: %q}", g.repo.Dir()))
	if st := g.sync(t, "new"); st.Sync != spec.SyncSynced {
		t.Fatalf("the replacing source could not adopt what the deleted one left: %+v", st)
	}
	var m spec.Model
	if getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/models/fraud-detector", &m); m.Metadata.ManagedBy != "gitsource/new" {
		t.Fatalf("managedBy = %q", m.Metadata.ManagedBy)
	}
}
