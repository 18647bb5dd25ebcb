package gitrepo_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
)

func TestWalkOrderAndDirs(t *testing.T) {
	e := newEnv(t, "path")
	for _, p := range []string{"b", "a.txt", "a/z", "a/b/c", "a-b", "a0", "deploy/x.yaml", "deploy/sub/y.yaml"} {
		e.repo.Write(p, p)
	}
	if err := os.Chmod(filepath.Join(e.repo.Dir(), "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.repo.Git("add", "b")
	e.repo.Commit("files")
	s := e.fetch(t, "main")

	walk := func(dir string) ([]string, error) {
		var got []string
		err := s.Walk(dir, func(p string, size int64) error {
			if size != int64(len(p)) {
				t.Errorf("%s: size %d, want %d", p, size, len(p))
			}
			got = append(got, p)
			return nil
		})
		return got, err
	}
	got, err := walk("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a-b", "a.txt", "a/b/c", "a/z", "a0", "b", "deploy/sub/y.yaml", "deploy/x.yaml"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Walk(\"\") (-want +got):\n%s", diff)
	}
	for _, dir := range []string{"deploy", "deploy/"} {
		got, err := walk(dir)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"deploy/sub/y.yaml", "deploy/x.yaml"}, got); diff != "" {
			t.Errorf("Walk(%q) (-want +got):\n%s", dir, diff)
		}
	}
	_, err = walk("missing")
	wantErr(t, err, fs.ErrNotExist, "walk missing in "+e.remote.URL+"@"+s.Commit[:12]+": no such file or directory")
	_, err = walk("a.txt")
	wantErr(t, err, gitrepo.ErrNotRegular, "walk a.txt in "+e.remote.URL+"@"+s.Commit[:12]+": not a directory")

	// fn's error ends the walk as it is; fn may read the snapshot.
	stop := errors.New("stop")
	n := 0
	err = s.Walk("", func(p string, _ int64) error {
		if _, err := s.ReadFile(p, 100); err != nil {
			return err
		}
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("Walk with a failing fn: %v after %d files", err, n)
	}
}

func TestSymlinksAreNotFollowed(t *testing.T) {
	e := newEnv(t, "path")
	e.repo.Write("models/m.yaml", "kind: Model\n")
	e.repo.Symlink("passwd", "/etc/passwd")
	e.repo.Symlink("up", "../..")
	e.repo.Symlink("alias", "models")
	e.repo.Symlink("models/self.yaml", "m.yaml")
	e.repo.Commit("links")
	s := e.fetch(t, "main")

	if diff := cmp.Diff(map[string]string{"models/m.yaml": "kind: Model\n"}, files(t, s)); diff != "" {
		t.Errorf("Walk reports links (-want +got):\n%s", diff)
	}
	at := " in " + e.remote.URL + "@" + s.Commit[:12]
	for _, p := range []string{"passwd", "up", "alias", "models/self.yaml"} {
		_, err := s.ReadFile(p, 1<<20)
		wantErr(t, err, gitrepo.ErrNotRegular, "open "+p+at+": is a symbolic link (links in the repository are not followed)")
	}
	for _, p := range []string{"alias/m.yaml", "up/etc/passwd"} {
		_, _, err := s.Open(p)
		wantErr(t, err, fs.ErrNotExist, "open "+p+at+": no such file or directory")
	}
	_, _, err := s.Open("models")
	wantErr(t, err, gitrepo.ErrNotRegular, "open models"+at+": is a directory")
	err = s.Walk("alias", func(string, int64) error { return nil })
	wantErr(t, err, gitrepo.ErrNotRegular, "walk alias"+at+": not a directory")
}

func TestPathsAreChecked(t *testing.T) {
	e := newEnv(t, "path")
	e.repo.Write("a/b.yaml", "b")
	e.repo.Commit("one")
	s := e.fetch(t, "main")
	for _, p := range []string{"", ".", "..", "../a/b.yaml", "/a/b.yaml", "a/../a/b.yaml", "a//b.yaml", "./a/b.yaml", "a/./b.yaml", "a/b.yaml/", `a\b.yaml`} {
		_, _, err := s.Open(p)
		wantErr(t, err, gitrepo.ErrInvalidPath, "")
		if _, err := s.ReadFile(p, 10); !errors.Is(err, gitrepo.ErrInvalidPath) {
			t.Errorf("ReadFile(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	for _, dir := range []string{"..", "/", "/a", "a/..", "../x", "a//"} {
		err := s.Walk(dir, func(string, int64) error { return nil })
		wantErr(t, err, gitrepo.ErrInvalidPath, "")
	}
	_, _, err := s.Open("../x")
	wantErr(t, err, gitrepo.ErrInvalidPath, `open "../x": not a valid path; give a slash-separated path relative to the repository root, without . or .. elements`)
}

func TestReadFileLimit(t *testing.T) {
	e := newEnv(t, "path")
	e.repo.Write("ten", "0123456789")
	e.repo.Commit("one")
	s := e.fetch(t, "main")
	if b, err := s.ReadFile("ten", 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadFile at the limit: %q, %v", b, err)
	}
	_, err := s.ReadFile("ten", 9)
	wantErr(t, err, gitrepo.ErrTooLarge, "read ten in "+e.remote.URL+"@"+s.Commit[:12]+": 10 bytes, more than the limit of 9")
	_, err = s.ReadFile("nine", 9)
	wantErr(t, err, fs.ErrNotExist, "")
}

// TestLargeFileStreams: a file past the in-memory size streams from the
// pack, and reads the same.
func TestLargeFileStreams(t *testing.T) {
	for _, tr := range []string{"path", "http"} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			var big strings.Builder
			for i := 0; big.Len() < 3<<20; i++ {
				big.WriteString(strings.Repeat(string(rune('a'+i%26)), 1+i%97))
				big.WriteByte(byte(i))
			}
			e.repo.Write("model.bin", big.String())
			e.repo.Commit("big")
			s := e.fetch(t, "main")
			rc, size, err := s.Open("model.bin")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if size != int64(big.Len()) {
				t.Errorf("size %d, want %d", size, big.Len())
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(big.String())) {
				t.Errorf("content differs (%d bytes read)", len(got))
			}
		})
	}
}
