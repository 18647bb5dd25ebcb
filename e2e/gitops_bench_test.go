package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/spec"
)

// BenchmarkGitOps measures GitSource syncs on a local repository (results in
// docs/BENCHMARKS.md):
//
//	go test -run '^$' -bench GitOps -benchtime 20x ./e2e/
//
// commit-to-serving/sync: from a commit that moves an alias to the server
// serving it, with the sync endpoint called right after the commit (as a git
// host's webhook would); commit-to-serving/poll: the same with no call, the
// source polling every second; sync-1000/first: the first sync of 1,000
// resources; sync-1000/noop: a pass over the same unchanged repository.
func BenchmarkGitOps(b *testing.B) {
	b.Run("commit-to-serving/sync", func(b *testing.B) { benchCommitToServing(b, false) })
	b.Run("commit-to-serving/poll", func(b *testing.B) { benchCommitToServing(b, true) })
	b.Run("sync-1000/first", func(b *testing.B) { benchSync1000(b, false) })
	b.Run("sync-1000/noop", func(b *testing.B) { benchSync1000(b, true) })
}

func benchCommitToServing(b *testing.B, poll bool) {
	g := newGitEnv(b)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud-v2.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, 1))
	g.repo.Commit("v1")
	interval := "1m"
	if poll {
		interval = "1s"
	}
	applyGitSource(b, g.srv, "bench", fmt.Sprintf("{url: %q, interval: %s}", g.repo.Dir(), interval))
	g.sync(b, "bench")
	var lat []time.Duration
	champion := 1
	for b.Loop() {
		champion = 3 - champion
		g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1, 2}, champion))
		g.repo.Commit(fmt.Sprintf("champion %d", champion))
		start := time.Now()
		if !poll {
			g.sync(b, "bench")
		}
		for g.alias(b, "champion") != int64(champion) {
			time.Sleep(5 * time.Millisecond)
			if time.Since(start) > 10*time.Second {
				b.Fatal("not served within 10s")
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func benchSync1000(b *testing.B, noop bool) {
	g := newGitEnv(b)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	var svc strings.Builder
	for i := range 999 {
		fmt.Fprintf(&svc, "---\napiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc-%04d}\nspec:\n  traffic:\n    - {model: fraud-detector@champion}\n", i)
	}
	g.repo.Write("s/services.yaml", svc.String())
	g.repo.Commit("1,000 resources")
	if noop {
		applyGitSource(b, g.srv, "big", fmt.Sprintf("{url: %q}", g.repo.Dir()))
		if st := g.sync(b, "big"); st.Sync != spec.SyncSynced || len(st.Resources) != 1000 {
			b.Fatalf("first sync: %s %s", st.Sync, st.Message)
		}
		for b.Loop() {
			if st := g.sync(b, "big"); st.Sync != spec.SyncSynced {
				b.Fatalf("no-op sync: %s", st.Message)
			}
		}
		return
	}
	n := 0
	for b.Loop() {
		// A new source (and namespace) each time: the first sync creates all.
		n++
		ns := fmt.Sprintf("n%d", n)
		b.StopTimer()
		applyGitSource(b, g.srv, "big", fmt.Sprintf("{url: %q}", g.repo.Dir()), "-n", ns)
		b.StartTimer()
		st := g.syncNS(b, ns, "big")
		if st.Sync != spec.SyncSynced || len(st.Resources) != 1000 {
			b.Fatalf("first sync: %s %s", st.Sync, st.Message)
		}
	}
}
