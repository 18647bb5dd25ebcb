package gitrepo_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
)

// generations lists the mirror generation directories under a cache's dir.
func generations(t *testing.T, dir string) []string {
	t.Helper()
	gens, err := filepath.Glob(filepath.Join(dir, "*", "g-*"))
	if err != nil {
		t.Fatal(err)
	}
	return gens
}

// damagePacks cuts the mirrors' pack files short, in place (so also under
// descriptors already open), leaving their indexes: the mirror still claims
// objects it can no longer read.
func damagePacks(t *testing.T, dir string) {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, "*", "g-*", "objects", "pack", "*.pack"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs to damage under %s: %v", dir, err)
	}
	for _, p := range packs {
		if err := os.Truncate(p, 12); err != nil {
			t.Fatal(err)
		}
	}
}

func fullFetches(logs string) int { return strings.Count(logs, `"msg":"mirror fetched in full"`) }

func TestIncrementalFetchKeepsTheMirror(t *testing.T) {
	e := newEnv(t, "http")
	e.repo.Write("a", "1")
	e.repo.Commit("one")
	e.fetch(t, "main")
	gens := generations(t, e.dir)
	for i := range 3 {
		e.repo.Write("a", fmt.Sprint(i))
		e.repo.Commit("more")
		e.fetch(t, "main")
	}
	e.repo.ResetHard("HEAD~2")
	e.repo.Write("b", "rewritten")
	e.repo.Commit("rewritten")
	e.repo.Prune()
	e.fetch(t, "main")
	if got := generations(t, e.dir); len(got) != 1 || got[0] != gens[0] {
		t.Errorf("generations %v, want still %v", got, gens)
	}
	if n := fullFetches(e.logs.String()); n != 1 {
		t.Errorf("%d full fetches, want 1 (the first)", n)
	}
}

func TestDamagedMirrorIsReplaced(t *testing.T) {
	for _, tr := range []string{"path", "http"} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			e.repo.Write("a.yaml", "a: 1\n")
			e.repo.Write("big.bin", strings.Repeat("0123456789abcdef", 1<<17)) // 2 MiB: streamed
			c := e.repo.Commit("one")
			s1 := e.fetch(t, "main")
			stream, _, err := s1.Open("big.bin")
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if _, err := io.ReadFull(stream, make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			old := generations(t, e.dir)

			// The pack is cut short; the snapshot says the mirror is unreadable
			// rather than inventing content.
			damagePacks(t, e.dir)
			_, err = s1.ReadFile("a.yaml", 100)
			wantErr(t, err, gitrepo.ErrUnavailable, "open a.yaml in "+e.remote.URL+"@"+c[:12]+": the mirror could not be read")

			// The next Fetch, though nothing changed upstream, fetches
			// afresh into a new generation and swaps it in.
			s2 := e.fetch(t, "main")
			if s2.Commit != c {
				t.Errorf("after the re-fetch: %s, want %s", s2.Commit, c)
			}
			if b, err := s2.ReadFile("a.yaml", 100); err != nil || string(b) != "a: 1\n" {
				t.Errorf("a.yaml = %q, %v", b, err)
			}
			if n := fullFetches(e.logs.String()); n != 2 {
				t.Errorf("%d full fetches, want 2", n)
			}
			if gens := generations(t, e.dir); len(gens) != 1 || gens[0] == old[0] {
				t.Errorf("generations %v after replacing %v", gens, old)
			}

			// The old snapshot, and a stream opened from it, now say so.
			gone := "snapshot " + c[:12] + " of " + e.remote.URL + " is gone: the mirror was fetched afresh since (history rewritten upstream, or the mirror was damaged); fetch again"
			_, err = s1.ReadFile("a.yaml", 100)
			wantErr(t, err, gitrepo.ErrSnapshotGone, gone)
			err = s1.Walk("", func(string, int64) error { return nil })
			wantErr(t, err, gitrepo.ErrSnapshotGone, gone)
			_, err = stream.Read(make([]byte, 100))
			wantErr(t, err, gitrepo.ErrSnapshotGone, gone)
		})
	}
}

func TestRestart(t *testing.T) {
	repo := gittest.NewRepo(t)
	repo.Write("a", "1")
	c := repo.Commit("one")
	dir := t.TempDir()
	root := filepath.Dir(repo.Dir())
	start := func() (*gitrepo.Cache, *syncBuffer) {
		logs := &syncBuffer{}
		return newCache(t, gitrepo.Options{Dir: dir, LocalRoot: root, Logger: slog.New(slog.NewJSONHandler(logs, nil))}), logs
	}
	rem := gitrepo.Remote{URL: repo.Dir()}
	c1, _ := start()
	if _, err := c1.Fetch(context.Background(), rem, "main"); err != nil {
		t.Fatal(err)
	}
	gens := generations(t, dir)
	// What a crash half-way through a full fetch leaves.
	if err := os.Mkdir(filepath.Join(filepath.Dir(gens[0]), "g-leftover"), 0o700); err != nil {
		t.Fatal(err)
	}

	// A new process reuses the mirror and clears the leftover.
	c2, logs := start()
	s, err := c2.Fetch(context.Background(), rem, "main")
	if err != nil || s.Commit != c {
		t.Fatalf("after a restart: %v, %v", s, err)
	}
	if n := fullFetches(logs.String()); n != 0 {
		t.Errorf("the restarted cache fetched in full")
	}
	if got := generations(t, dir); len(got) != 1 || got[0] != gens[0] {
		t.Errorf("generations %v, want %v", got, gens)
	}

	// A new process meeting a damaged mirror replaces it.
	damagePacks(t, dir)
	c3, logs := start()
	s, err = c3.Fetch(context.Background(), rem, "main")
	if err != nil || s.Commit != c {
		t.Fatalf("with a damaged mirror: %v, %v", s, err)
	}
	if b, err := s.ReadFile("a", 10); err != nil || string(b) != "1" {
		t.Errorf("a = %q, %v", b, err)
	}
	if n := fullFetches(logs.String()); n != 1 {
		t.Errorf("%d full fetches of a damaged mirror, want 1", n)
	}
}

// TestConcurrentFetch: Fetches of one remote from many goroutines, while
// commits land upstream, and of another remote beside them; every snapshot
// reads its own commit's content.
func TestConcurrentFetch(t *testing.T) {
	e := newEnv(t, "http")
	e.repo.Write("v", "0")
	content := map[string]string{e.repo.Commit("0"): "0"}
	other := gittest.NewRepo(t)
	other.Write("v", "other")
	otherCommit := other.Commit("other")
	otherRemote := gitrepo.Remote{URL: other.ServeHTTP(t, "")}

	type seen struct{ commit, v string }
	var (
		mu  sync.Mutex
		got []seen
		wg  sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			rem := e.remote
			if g%4 == 3 {
				rem = otherRemote
			}
			for range 5 {
				s, err := e.cache.Fetch(context.Background(), rem, "main")
				if err != nil {
					t.Error(err)
					return
				}
				b, err := s.ReadFile("v", 10)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, seen{s.Commit, string(b)})
				mu.Unlock()
			}
		})
	}
	for i := 1; i <= 3; i++ {
		e.repo.Write("v", fmt.Sprint(i))
		c := e.repo.Commit(fmt.Sprint(i))
		mu.Lock()
		content[c] = fmt.Sprint(i)
		mu.Unlock()
	}
	wg.Wait()
	content[otherCommit] = "other"
	for _, s := range got {
		if want, ok := content[s.commit]; !ok || s.v != want {
			t.Errorf("snapshot %s read v = %q, want %q", s.commit, s.v, want)
		}
	}
	if len(got) != 40 {
		t.Errorf("%d snapshots, want 40", len(got))
	}
	if s := e.fetch(t, "main"); content[s.Commit] != "3" {
		t.Errorf("the last fetch is at %s, not the last commit", s.Commit)
	}
}
