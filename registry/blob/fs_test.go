package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newFS(t *testing.T) *FS {
	t.Helper()
	f, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// assertEmpty fails the test if an upload left anything in tmp/ or sha256/.
func assertEmpty(t *testing.T, f *FS) {
	t.Helper()
	for _, d := range []string{f.tmpDir(), f.blobRoot()} {
		var files []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) > 0 {
			t.Errorf("left behind: %v", files)
		}
	}
}

func TestPut(t *testing.T) {
	data := []byte("model bytes")
	sum := digest(data)
	tests := []struct {
		name     string
		want     string
		wantKind error // nil: success
	}{
		{"no expected digest", "", nil},
		{"matching digest", sum, nil},
		{"mismatch", digest([]byte("other")), errs.ErrInvalid},
		{"malformed digest", "sha256:" + sum, errs.ErrInvalid},
		{"uppercase digest", strings.ToUpper(sum), errs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFS(t)
			ctx := context.Background()
			info, err := f.Put(ctx, bytes.NewReader(data), tc.want)
			if tc.wantKind != nil {
				if !errors.Is(err, tc.wantKind) {
					t.Fatalf("Put = %v, want kind %v", err, errs.KindOf(tc.wantKind))
				}
				assertEmpty(t, f)
				return
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.SHA256 != sum || info.Size != int64(len(data)) {
				t.Errorf("info = %+v", info)
			}
			if p := f.Path(sum); p != filepath.Join(f.dir, "sha256", sum[:2], sum) {
				t.Errorf("Path = %s", p)
			}
			r, oinfo, err := f.Open(ctx, sum)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(got, data) || oinfo.Size != int64(len(data)) {
				t.Errorf("Open read %q (%+v)", got, oinfo)
			}
			if err := f.Verify(ctx, sum); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if entries, _ := os.ReadDir(f.tmpDir()); len(entries) != 0 {
				t.Errorf("temp files left: %v", entries)
			}
		})
	}
}

func TestPutIdempotent(t *testing.T) {
	f := newFS(t)
	ctx := context.Background()
	data := []byte("same bytes")
	first, err := f.Put(ctx, bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	old := first.ModTime.Add(-1e12) // push the mtime back so the refresh is visible
	if err := os.Chtimes(f.Path(first.SHA256), old, old); err != nil {
		t.Fatal(err)
	}
	second, err := f.Put(ctx, bytes.NewReader(data), first.SHA256)
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if second.SHA256 != first.SHA256 || second.Size != first.Size || !second.ModTime.After(old) {
		t.Errorf("second Put = %+v, want same blob with refreshed mtime", second)
	}
	list, err := f.List(ctx)
	if err != nil || len(list) != 1 {
		t.Errorf("List = %v, %v; want one blob", list, err)
	}
}

// failingReader returns n bytes and then an error, like a dropped connection.
type failingReader struct {
	n int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

// cancelingReader cancels ctx after handing out its first chunk.
type cancelingReader struct {
	cancel context.CancelFunc
	sent   bool
}

func (r *cancelingReader) Read(p []byte) (int, error) {
	if r.sent {
		return len(p), nil // endless: only cancellation stops the copy
	}
	r.sent = true
	r.cancel()
	return len(p), nil
}

func TestPutFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name string
		put  func(f *FS) error
		want error
	}{
		{"reader fails halfway", func(f *FS) error {
			_, err := f.Put(context.Background(), &failingReader{n: 100_000}, "")
			return err
		}, nil},
		{"context cancelled mid-stream", func(f *FS) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := f.Put(ctx, &cancelingReader{cancel: cancel}, "")
			return err
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFS(t)
			err := tc.put(f)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Put = %v, want %v", err, tc.want)
			}
			assertEmpty(t, f)
		})
	}
}

func TestNewFSRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(f.tmpDir(), "upload-stale")
	if err := os.WriteFile(stale, []byte("half an upload"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFS(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file still there: %v", err)
	}
}

func TestVerifyDetectsCorruption(t *testing.T) {
	f := newFS(t)
	ctx := context.Background()
	info, err := f.Put(ctx, strings.NewReader("precious weights"), "")
	if err != nil {
		t.Fatal(err)
	}
	p := f.Path(info.SHA256)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = f.Verify(ctx, info.SHA256)
	if !errors.Is(err, errs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), "sha mismatch") {
		t.Errorf("Verify of corrupted blob = %v, want FailedPrecondition saying corrupt (sha mismatch)", err)
	}
}

func TestDigestValidationAndNotFound(t *testing.T) {
	f := newFS(t)
	ctx := context.Background()
	missing := digest([]byte("never stored"))
	calls := []struct {
		name string
		call func(sha string) error
	}{
		{"Open", func(sha string) error { _, _, err := f.Open(ctx, sha); return err }},
		{"Stat", func(sha string) error { _, err := f.Stat(ctx, sha); return err }},
		{"Verify", func(sha string) error { return f.Verify(ctx, sha) }},
		{"Delete", func(sha string) error { return f.Delete(ctx, sha) }},
	}
	digests := []struct {
		sha  string
		want error
	}{
		{missing, errs.ErrNotFound},
		{"../../etc/passwd", errs.ErrInvalid},
		{"", errs.ErrInvalid},
		{strings.Repeat("g", 64), errs.ErrInvalid},
		{strings.ToUpper(missing), errs.ErrInvalid},
	}
	for _, c := range calls {
		for _, d := range digests {
			if err := c.call(d.sha); !errors.Is(err, d.want) {
				t.Errorf("%s(%q) = %v, want kind %v", c.name, d.sha, err, errs.KindOf(d.want))
			}
		}
	}
	if p := f.Path("../../etc/passwd"); p != "" {
		t.Errorf("Path of malformed digest = %q, want empty", p)
	}
}

func TestListAndDelete(t *testing.T) {
	f := newFS(t)
	ctx := context.Background()
	want := map[string]int64{}
	for _, s := range []string{"a", "bb", "ccc"} {
		info, err := f.Put(ctx, strings.NewReader(s), "")
		if err != nil {
			t.Fatal(err)
		}
		want[info.SHA256] = int64(len(s))
	}
	// Stray files are not blobs.
	os.WriteFile(filepath.Join(f.blobRoot(), "README"), []byte("x"), 0o644)
	list, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Fatalf("List = %v, want %d blobs", list, len(want))
	}
	for _, b := range list {
		if want[b.SHA256] != b.Size {
			t.Errorf("List entry %+v unexpected", b)
		}
	}
	for sha := range want {
		if err := f.Delete(ctx, sha); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := f.Stat(ctx, sha); !errors.Is(err, errs.ErrNotFound) {
			t.Errorf("Stat after Delete = %v, want NotFound", err)
		}
	}
}

// TestDeleteIfOlder: a blob older than the cutoff is deleted, one stored or
// refreshed since is kept (in place, nothing left in tmp/), a missing one is
// NotFound.
func TestDeleteIfOlder(t *testing.T) {
	f := newFS(t)
	ctx := context.Background()
	info, err := f.Put(ctx, strings.NewReader("bytes"), "")
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(f.Path(info.SHA256), old, old); err != nil {
		t.Fatal(err)
	}
	cutoff := old.Add(time.Minute)
	// Uploading the same bytes again refreshes the blob past the cutoff.
	if _, err := f.Put(ctx, strings.NewReader("bytes"), info.SHA256); err != nil {
		t.Fatal(err)
	}
	if deleted, err := f.DeleteIfOlder(ctx, info.SHA256, cutoff); err != nil || deleted {
		t.Fatalf("DeleteIfOlder(refreshed) = %v, %v; want kept", deleted, err)
	}
	if _, err := f.Stat(ctx, info.SHA256); err != nil {
		t.Fatalf("kept blob: %v", err)
	}
	if err := f.Verify(ctx, info.SHA256); err != nil {
		t.Fatalf("kept blob: %v", err)
	}
	if ents, _ := os.ReadDir(f.tmpDir()); len(ents) != 0 {
		t.Errorf("tmp/ after keeping a blob: %v", ents)
	}
	if err := os.Chtimes(f.Path(info.SHA256), old, old); err != nil {
		t.Fatal(err)
	}
	if deleted, err := f.DeleteIfOlder(ctx, info.SHA256, cutoff); err != nil || !deleted {
		t.Fatalf("DeleteIfOlder(old) = %v, %v; want deleted", deleted, err)
	}
	assertEmpty(t, f)
	if _, err := f.DeleteIfOlder(ctx, info.SHA256, cutoff); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("DeleteIfOlder(missing) = %v, want NotFound", err)
	}
	if _, err := f.DeleteIfOlder(ctx, "../x", cutoff); !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("DeleteIfOlder(bad digest) = %v, want InvalidArgument", err)
	}
}

func TestAdopt(t *testing.T) {
	data := []byte("staged upload bytes")
	sum := digest(data)
	tests := []struct {
		name     string
		want     string
		existing bool  // the blob is already stored
		wantKind error // nil: success
	}{
		{name: "no expected digest", want: ""},
		{name: "matching digest", want: sum},
		{name: "already stored", want: sum, existing: true},
		{name: "mismatch", want: digest([]byte("other")), wantKind: errs.ErrInvalid},
		{name: "malformed digest", want: "../" + sum, wantKind: errs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFS(t)
			ctx := context.Background()
			if tc.existing {
				if _, err := f.Put(ctx, bytes.NewReader(data), ""); err != nil {
					t.Fatal(err)
				}
			}
			src := filepath.Join(t.TempDir(), "upload")
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-48 * time.Hour) // an upload staged long ago
			if err := os.Chtimes(src, old, old); err != nil {
				t.Fatal(err)
			}
			info, err := f.Adopt(ctx, src, tc.want)
			if tc.wantKind != nil {
				if !errors.Is(err, tc.wantKind) {
					t.Fatalf("Adopt = %v, want kind %v", err, errs.KindOf(tc.wantKind))
				}
				if got, rerr := os.ReadFile(src); rerr != nil || !bytes.Equal(got, data) {
					t.Errorf("rejected source changed: %q, %v", got, rerr)
				}
				assertEmpty(t, f)
				return
			}
			if err != nil {
				t.Fatalf("Adopt: %v", err)
			}
			if info.SHA256 != sum || info.Size != int64(len(data)) {
				t.Errorf("info = %+v", info)
			}
			if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("source still there after Adopt: %v", err)
			}
			st, err := f.Stat(ctx, sum)
			if err != nil {
				t.Fatal(err)
			}
			if !st.ModTime.After(old.Add(time.Hour)) || !info.ModTime.After(old.Add(time.Hour)) {
				t.Errorf("mtime %v (reported %v) not refreshed: GC grace would count from the upload's start", st.ModTime, info.ModTime)
			}
			if err := f.Verify(ctx, sum); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if fi, err := os.Stat(f.Path(sum)); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("blob mode = %v, %v; want 0644", fi.Mode(), err)
			}
		})
	}
}
