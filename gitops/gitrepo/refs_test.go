package gitrepo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
)

func TestRefs(t *testing.T) {
	for _, tr := range []string{"path", "http"} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			e.repo.Write("v.txt", "1")
			c1 := e.repo.Commit("one")
			e.repo.Tag("v1")
			e.repo.TagAnnotated("v1-annotated", "release 1")
			e.repo.Write("v.txt", "2")
			c2 := e.repo.Commit("two")
			e.repo.Branch("staging")
			e.repo.Write("v.txt", "3")
			c3 := e.repo.Commit("three")
			e.repo.Tag("both") // a tag and a branch of the same name
			e.repo.Branch("both")

			for _, tc := range []struct {
				ref, commit, name string
			}{
				{"", c3, "refs/heads/main"},
				{"main", c3, "refs/heads/main"},
				{"staging", c2, "refs/heads/staging"},
				{"v1", c1, "refs/tags/v1"},
				{"v1-annotated", c1, "refs/tags/v1-annotated"}, // peeled to its commit
				{"refs/heads/both", c3, "refs/heads/both"},
				{"refs/tags/both", c3, "refs/tags/both"},
				{c1, c1, ""}, // a commit no ref points at
				{c2, c2, ""},
			} {
				s := e.fetch(t, tc.ref)
				if s.Commit != tc.commit || s.Ref != tc.name {
					t.Errorf("Fetch(%q) = %s %q, want %s %q", tc.ref, s.Commit, s.Ref, tc.commit, tc.name)
				}
				if b, err := s.ReadFile("v.txt", 10); err != nil || string(b) != map[string]string{c1: "1", c2: "2", c3: "3"}[tc.commit] {
					t.Errorf("Fetch(%q): v.txt = %q, %v", tc.ref, b, err)
				}
			}

			_, err := e.cache.Fetch(context.Background(), e.remote, "both")
			wantErr(t, err, gitrepo.ErrRefNotFound, `ref "both" is ambiguous in `+e.shown()+`: it is both a branch and a tag; write refs/heads/both or refs/tags/both`)
			_, err = e.cache.Fetch(context.Background(), e.remote, "nope")
			wantErr(t, err, gitrepo.ErrRefNotFound, `ref "nope" not found in `+e.shown())
			_, err = e.cache.Fetch(context.Background(), e.remote, "refs/heads/nope")
			wantErr(t, err, gitrepo.ErrRefNotFound, `ref "refs/heads/nope" not found in `+e.shown())
			missing := "0123456789abcdef0123456789abcdef01234567"
			_, err = e.cache.Fetch(context.Background(), e.remote, missing)
			wantErr(t, err, gitrepo.ErrRefNotFound, "commit "+missing+" not found in "+e.shown())
		})
	}
}

// shown is the remote as messages name it.
func (e *env) shown() string { return e.remote.URL }

func TestCommitByHashInFreshCache(t *testing.T) {
	e := newEnv(t, "http")
	e.repo.Write("a", "old")
	c1 := e.repo.Commit("one")
	e.repo.Write("a", "new")
	e.repo.Commit("two")
	// Nothing in the mirror yet: the commit comes with the branches.
	s := e.fetch(t, c1)
	if b, err := s.ReadFile("a", 10); err != nil || string(b) != "old" {
		t.Errorf("a = %q, %v; want old", b, err)
	}
}

func TestEmptyRepository(t *testing.T) {
	for _, tr := range []string{"path", "http"} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			_, err := e.cache.Fetch(context.Background(), e.remote, "main")
			wantErr(t, err, gitrepo.ErrRefNotFound, "")
		})
	}
}

func TestDefaultBranchIsTheRemotesHEAD(t *testing.T) {
	e := newEnv(t, "http")
	e.repo.Write("a", "main")
	e.repo.Commit("on main")
	e.repo.Git("checkout", "--quiet", "-b", "trunk")
	e.repo.Write("a", "trunk")
	c := e.repo.Commit("on trunk")
	s := e.fetch(t, "")
	if s.Commit != c || s.Ref != "refs/heads/trunk" {
		t.Errorf("default branch: %s %s, want %s refs/heads/trunk", s.Commit, s.Ref, c)
	}
}

// TestHostileRefNames: a remote advertising a ref whose name climbs out of
// refs/ (git itself would never make one) does not get it written.
func TestHostileRefNames(t *testing.T) {
	e := newEnv(t, "path")
	e.repo.Write("a", "a")
	c := e.repo.Commit("one")
	packed := filepath.Join(e.repo.Dir(), ".git", "packed-refs")
	bad := []string{"refs/heads/../../config", "refs/tags/../../HEAD", "refs/heads/x/../../../../escape"}
	var lines strings.Builder
	for _, name := range bad {
		fmt.Fprintf(&lines, "%s %s\n", c, name)
	}
	if err := os.WriteFile(packed, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := e.fetch(t, "main"); s.Commit != c {
		t.Fatalf("fetched %s, want %s", s.Commit, c)
	}
	gens := generations(t, e.dir)
	cfg, err := os.ReadFile(filepath.Join(gens[0], "config"))
	if err != nil || !strings.Contains(string(cfg), "bare = true") {
		t.Errorf("the mirror's config was overwritten: %q, %v", cfg, err)
	}
	if head, err := os.ReadFile(filepath.Join(gens[0], "HEAD")); err != nil || !strings.HasPrefix(string(head), "ref: ") {
		t.Errorf("the mirror's HEAD was overwritten: %q, %v", head, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "escape")); err == nil {
		t.Errorf("a ref was written outside the mirror")
	}
	for _, name := range append(bad, "../x", "a..b", "-x\x00", ".hidden", "x.lock", "a b", "x:y") {
		_, err := e.cache.Fetch(context.Background(), e.remote, name)
		wantErr(t, err, gitrepo.ErrRefNotFound, fmt.Sprintf("ref %q is not a valid git ref name", name))
	}
}
