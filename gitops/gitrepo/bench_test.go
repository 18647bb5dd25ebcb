package gitrepo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
)

// repo1000 is a repository of 1,000 small YAML files in 20 directories,
// served as a file:// remote.
func repo1000(b *testing.B) (*gitrepo.Cache, gitrepo.Remote) {
	b.Helper()
	repo := gittest.NewRepo(b)
	for i := range 1000 {
		p := filepath.Join(repo.Dir(), fmt.Sprintf("ns%02d", i%20), fmt.Sprintf("model-%04d.yaml", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, fmt.Appendf(nil, "kind: Model\nmetadata: {name: m%d}\nspec: {versions: [{version: 1}]}\n", i), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	repo.Git("add", "-A")
	repo.Commit("1000 files")
	c := newCache(b, gitrepo.Options{Dir: b.TempDir(), LocalRoot: filepath.Dir(repo.Dir())})
	return c, gitrepo.Remote{URL: "file://" + repo.Dir()}
}

// BenchmarkFetchNoop is a sync when nothing changed upstream: the remote's
// refs read and compared, nothing transferred.
func BenchmarkFetchNoop(b *testing.B) {
	c, rem := repo1000(b)
	if _, err := c.Fetch(context.Background(), rem, "main"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Fetch(context.Background(), rem, "main"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWalk1000 lists the 1,000 files (with their sizes).
func BenchmarkWalk1000(b *testing.B) {
	c, rem := repo1000(b)
	s, err := c.Fetch(context.Background(), rem, "main")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := s.Walk("", func(string, int64) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != 1000 {
			b.Fatalf("walked %d files", n)
		}
	}
}
