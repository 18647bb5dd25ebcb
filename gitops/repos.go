package gitops

import (
	"context"
	"io"

	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
)

// CacheRepos is the Repos of a git mirror cache: the server's, and the
// tests'.
func CacheRepos(c *gitrepo.Cache) Repos { return cacheRepos{c} }

type cacheRepos struct{ c *gitrepo.Cache }

func (r cacheRepos) Fetch(ctx context.Context, rem Remote, ref string) (Snapshot, error) {
	s, err := r.c.Fetch(ctx, gitrepo.Remote{URL: rem.URL, Token: rem.Token}, ref)
	if err != nil {
		return nil, err
	}
	return snapshot{s}, nil
}

// snapshot gives a gitrepo.Snapshot the Commit method of Snapshot.
type snapshot struct{ s *gitrepo.Snapshot }

func (s snapshot) Commit() string { return s.s.Commit }

func (s snapshot) Walk(dir string, fn func(string, int64) error) error { return s.s.Walk(dir, fn) }

func (s snapshot) Open(p string) (io.ReadCloser, int64, error) { return s.s.Open(p) }
