package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

// rolloutServiceYAML is README walkthrough 4's service: champion rolled out
// in two steps of at least 2 s, each needing 100 requests per version.
const rolloutServiceYAML = `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic:
    - {model: fraud-detector@champion}
  rollout:
    steps: [20, 50]
    interval: 2s
    analysis:
      minSamples: 100
      metrics:
        - {name: errorRate, max: 0.05}
        - {name: latencyP99, maxRatioToStable: 5}
    progressDeadline: 2m
`

// fraudModelYAML declares fraud-detector's versions (./fraud_vN.onnx
// beside it, with their real sha256) and the champion.
func fraudModelYAML(t *testing.T, files []string, champion int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: fraud-detector}\nspec:\n  versions:\n")
	for i, f := range files {
		data, err := os.ReadFile(testutil.Model(f))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "    - {version: %d, source: {uri: ./%s.onnx, sha256: %s}}\n", i+1, f, hex.EncodeToString(sum[:]))
	}
	fmt.Fprintf(&b, "  aliases: {champion: %d}\n", champion)
	return b.String()
}

// fraudLoad sends fraud transactions to the service until stopped; one in
// five has a third feature of 5, which only the broken version 3 fails on.
type fraudLoad struct {
	stop             chan struct{}
	wg               sync.WaitGroup
	byVersion        sync.Map // version -> *atomic.Int64
	failed           atomic.Int64
	failedNotCanary3 atomic.Int64
	last             atomic.Value
}

func startFraudLoad(url string, clients int) *fraudLoad {
	l := &fraudLoad{stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for k := c; ; k += clients {
				select {
				case <-l.stop:
					return
				default:
				}
				third := k % 2
				if k%5 == 0 {
					third = 5
				}
				body := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,%d,0]}]}`, third)
				resp, err := testutil.Client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					l.failed.Add(1)
					l.failedNotCanary3.Add(1)
					l.last.Store(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
					if !strings.Contains(string(b), "version 3") {
						l.failedNotCanary3.Add(1)
					}
					l.last.Store(fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				var out struct {
					ModelVersion string `json:"model_version"`
				}
				_ = json.Unmarshal(b, &out)
				n, _ := l.byVersion.LoadOrStore(out.ModelVersion, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	return l
}

func (l *fraudLoad) answered(v string) int64 {
	n, ok := l.byVersion.Load(v)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

func (l *fraudLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// rolloutStatus is `nimbus rollout status fraud -o json`, with its exit code.
func rolloutStatus(t *testing.T, srv *testutil.Server) (*spec.RolloutStatus, int) {
	t.Helper()
	out, errOut, code := runCLI(t, srv, "rollout", "status", "fraud", "-o", "json")
	var s spec.InferenceService
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("rollout status -o json: exit %d: %v\n%s%s", code, err, out, errOut)
	}
	if s.Status == nil || s.Status.Rollout == nil {
		return &spec.RolloutStatus{}, code
	}
	return s.Status.Rollout, code
}

func waitRollout(t *testing.T, srv *testutil.Server, within time.Duration, cond func(*spec.RolloutStatus) bool, what string) *spec.RolloutStatus {
	t.Helper()
	var st *spec.RolloutStatus
	testutil.Eventually(t, within, func() bool {
		st, _ = rolloutStatus(t, srv)
		return cond(st)
	}, what)
	return st
}

// TestGitOpsRolloutWalkthrough is README walkthrough 4's rollout, under
// load, with a real git repository synced by a GitSource with selfHeal on:
// a commit moving champion to version 2 is rolled out step by step and
// promoted; a commit moving it to the broken version 3 rolls back by
// itself and stays rolled back — GitOps neither retries it nor counts it as
// drift — and `nimbus rollout status` tells the story. No request version 1
// or 2 received failed.
func TestGitOpsRolloutWalkthrough(t *testing.T) {
	g := newGitEnv(t)
	for _, f := range []string{"fraud_v1", "fraud_v2", "fraud_v3_broken"} {
		b, err := os.ReadFile(testutil.Model(f))
		if err != nil {
			t.Fatal(err)
		}
		g.repo.Write("models/"+f+".onnx", string(b))
	}
	g.repo.Write("models/fraud.yaml", fraudModelYAML(t, []string{"fraud_v1"}, 1))
	g.repo.Write("services/fraud.yaml", rolloutServiceYAML)
	g.repo.Commit("fraud v1 with a rollout")
	gs := filepath.Join(t.TempDir(), "gs.yaml")
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: deploy}\nspec: {url: %q, ref: main, interval: 1s, selfHeal: true}\n", "file://"+g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("first sync: %+v", st)
	}
	if st := waitRollout(t, g.srv, 10*time.Second, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutIdle }, "the rollout to be idle"); st.Stable != 1 {
		t.Fatalf("idle rollout: %+v", st)
	}
	l := startFraudLoad(g.srv.URL+"/v2/models/fraud/infer", 4)
	defer l.end()
	testutil.Eventually(t, 10*time.Second, func() bool { return l.answered("1") > 100 }, "version 1 to answer")

	// A commit moves champion to 2: rolled out step by step, promoted.
	g.repo.Write("models/fraud.yaml", fraudModelYAML(t, []string{"fraud_v1", "fraud_v2"}, 2))
	g.repo.Commit("fraud v2 is champion")
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("sync of v2: %+v", st)
	}
	out := mustCLI(t, g.srv, "models", "get", "fraud-detector")
	if !strings.Contains(out, "champion=2 (serving 1)") {
		t.Fatalf("models get during the rollout:\n%s", out)
	}
	st := waitRollout(t, g.srv, 90*time.Second, func(s *spec.RolloutStatus) bool { return s.Phase == spec.RolloutSucceeded }, "version 2 to be promoted")
	if st.Stable != 2 || len(st.History) != 2 || st.History[0].CanaryWeight != 20 || st.History[1].Outcome != "promoted" {
		t.Fatalf("after the promotion: %+v", st)
	}
	for _, h := range st.History {
		if h.Requests[0] < 100 || h.Requests[1] < 100 {
			t.Fatalf("step %d decided on %v requests; want ≥ 100 per version", h.Step, h.Requests)
		}
	}
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed while version 2 rolled out (last: %v)", n, l.last.Load())
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return l.answered("2") > l.answered("1") }, "version 2 to take the traffic")
	table := mustCLI(t, g.srv, "rollout", "status", "fraud")
	for _, want := range []string{"Succeeded", "Stable version:", "promoted", "errorRate=pass"} {
		if !strings.Contains(table, want) {
			t.Fatalf("rollout status lacks %q:\n%s", want, table)
		}
	}

	// A commit moves champion to the broken version 3: rolled back by
	// itself, and stays so.
	g.repo.Write("models/fraud.yaml", fraudModelYAML(t, []string{"fraud_v1", "fraud_v2", "fraud_v3_broken"}, 3))
	g.repo.Commit("fraud v3 is champion")
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("sync of v3: %+v", st)
	}
	// --watch follows it (a line per change on stderr) and exits 1 when it
	// fails.
	out, watchLog, code := runCLI(t, g.srv, "rollout", "status", "fraud", "--watch", "--interval", "200ms", "-o", "json")
	if code != 1 || !strings.Contains(watchLog, "Failed rolled back to version 2") {
		t.Fatalf("rollout status --watch: exit %d\n%s", code, watchLog)
	}
	var watched spec.InferenceService
	if err := json.Unmarshal([]byte(out), &watched); err != nil || watched.Status.Rollout.Phase != spec.RolloutFailed {
		t.Fatalf("rollout status --watch -o json: %v\n%s", err, out)
	}
	st = watched.Status.Rollout
	if st.Stable != 2 || st.FailedVersion != 3 || !strings.Contains(st.Message, "errorRate") {
		t.Fatalf("after the rollback: %+v", st)
	}
	failedAtRollback, v2AtRollback := l.failed.Load(), l.answered("2")
	// Several GitSource polls and passes later: still Synced (a held alias
	// is no drift), still rolled back, version 2 answers everything.
	for range 3 {
		if gst := g.sync(t, "deploy"); gst.Sync != spec.SyncSynced {
			t.Fatalf("GitOps after the rollback: %+v", gst)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return l.answered("2") > v2AtRollback+300 }, "version 2 to keep answering")
	st, code = rolloutStatus(t, g.srv)
	if st.Phase != spec.RolloutFailed || st.FailedVersion != 3 || code != 1 {
		t.Fatalf("later: %+v (exit %d); want still Failed for version 3, exit 1", st, code)
	}
	if a := g.alias(t, "champion"); a != 3 {
		t.Fatalf("declared champion = %d; want 3, as git says", a)
	}
	if out := mustCLI(t, g.srv, "models", "get", "fraud-detector"); !strings.Contains(out, "champion=3 (serving 2)") {
		t.Fatalf("models get after the rollback:\n%s", out)
	}
	l.end()
	if n := l.failed.Load() - failedAtRollback; n != 0 {
		t.Fatalf("%d requests failed after the rollback (last: %v)", n, l.last.Load())
	}
	if n := l.failedNotCanary3.Load(); n != 0 {
		t.Fatalf("%d failed requests were not version 3's (last: %v)", n, l.last.Load())
	}
	table, _, code = runCLI(t, g.srv, "rollout", "status", "fraud")
	for _, want := range []string{"Failed", "Failed version:", "errorRate", "fail"} {
		if !strings.Contains(table, want) || code != 1 {
			t.Fatalf("rollout status (exit %d) lacks %q:\n%s", code, want, table)
		}
	}
	if out := mustCLI(t, g.srv, "get", "isvc", "-o", "wide"); !strings.Contains(out, "Failed:v3") {
		t.Fatalf("get isvc -o wide does not show the failed rollout:\n%s", out)
	}
	if out := mustCLI(t, g.srv, "events", "--kind", "isvc"); !strings.Contains(out, "rolled back to version 2") {
		t.Fatalf("the rollback is not in the audit log:\n%s", out)
	}
}
