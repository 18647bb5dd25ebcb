package mgmt

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// failingReader yields data then fails, like a connection cut mid-chunk.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestUploadsLifecycle(t *testing.T) {
	u := newUploads(t.TempDir(), time.Hour, 10)
	id, err := u.start("default")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		offset  int64
		body    io.Reader
		want    int64 // offset afterwards
		wantErr errs.Kind
		wantAt  int64 // offset in an offsetError
	}{
		{name: "first chunk", offset: 0, body: strings.NewReader("abc"), want: 3},
		{name: "stale offset", offset: 0, body: strings.NewReader("abc"), want: 3, wantErr: errs.Conflict, wantAt: 3},
		{name: "ahead of upload", offset: 5, body: strings.NewReader("x"), want: 3, wantErr: errs.Conflict, wantAt: 3},
		{name: "cut connection keeps prefix", offset: 3, body: failingReader{strings.NewReader("de")}, want: 5, wantErr: errs.InvalidArgument},
		{name: "resume", offset: 5, body: strings.NewReader("fgh"), want: 8},
		{name: "over the limit", offset: 8, body: strings.NewReader("ijk"), want: 8, wantErr: errs.TooLarge},
		{name: "exactly the limit", offset: 8, body: strings.NewReader("ij"), want: 10},
	}
	for _, s := range steps {
		got, err := u.append("default", id, s.offset, s.body)
		if s.wantErr == 0 && err != nil || s.wantErr != 0 && (err == nil || errs.KindOf(err) != s.wantErr) {
			t.Fatalf("%s: err = %v, want kind %v", s.name, err, s.wantErr)
		}
		var oe *offsetError
		switch isOE := errors.As(err, &oe); {
		case s.wantAt != 0 && !isOE:
			t.Errorf("%s: err = %v, want an offsetError at %d", s.name, err, s.wantAt)
		case isOE && oe.offset != s.wantAt:
			t.Errorf("%s: offsetError at %d, want %d", s.name, oe.offset, s.wantAt)
		}
		if off, _ := u.offset("default", id); off != s.want {
			t.Errorf("%s: offset = %d, want %d", s.name, off, s.want)
		}
		if err == nil && got != s.want {
			t.Errorf("%s: append returned %d, want %d", s.name, got, s.want)
		}
	}

	var stored string
	if err := u.finish("default", id, func(path string) error {
		b, err := os.ReadFile(path)
		stored = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if stored != "abcdefghij" {
		t.Errorf("stored %q", stored)
	}
	if _, err := u.offset("default", id); errs.KindOf(err) != errs.NotFound {
		t.Errorf("finished upload still there: %v", err)
	}
}

func TestUploadsFinishFailure(t *testing.T) {
	tests := []struct {
		name     string
		storeErr error
		kept     bool
	}{
		{name: "rejected bytes are dropped", storeErr: errs.New(errs.InvalidArgument, "digest mismatch"), kept: false},
		{name: "server failure keeps the upload", storeErr: errs.New(errs.Unavailable, "disk busy"), kept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUploads(t.TempDir(), time.Hour, 100)
			id, err := u.start("ns1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.append("ns1", id, 0, strings.NewReader("data")); err != nil {
				t.Fatal(err)
			}
			err = u.finish("ns1", id, func(string) error { return tt.storeErr })
			if !errors.Is(err, tt.storeErr) {
				t.Fatalf("err = %v", err)
			}
			_, err = u.offset("ns1", id)
			if kept := err == nil; kept != tt.kept {
				t.Errorf("kept = %v, want %v (%v)", kept, tt.kept, err)
			}
		})
	}
}

func TestUploadsExpiry(t *testing.T) {
	dir := t.TempDir()
	u := newUploads(dir, time.Hour, 100)
	now := time.Now()
	u.now = func() time.Time { return now }
	idOld, _ := u.start("default")
	idNew, _ := u.start("default")
	old := now.Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "default", idOld), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := u.offset("default", idNew); err != nil {
		t.Errorf("fresh upload: %v", err)
	}
	n, err := u.sweep()
	if err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want 1 removed", n, err)
	}
	if _, err := u.offset("default", idOld); errs.KindOf(err) != errs.NotFound {
		t.Errorf("expired upload: %v", err)
	}
	// Expiry is checked on access too, before any sweep.
	if err := os.Chtimes(filepath.Join(dir, "default", idNew), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := u.append("default", idNew, 0, strings.NewReader("x")); errs.KindOf(err) != errs.NotFound {
		t.Errorf("append to expired upload: %v", err)
	}
}

func TestUploadsRejectBadNames(t *testing.T) {
	u := newUploads(t.TempDir(), time.Hour, 100)
	tests := []struct {
		ns, id string
		kind   errs.Kind
	}{
		{"../etc", "0123456789abcdef0123456789abcdef", errs.InvalidArgument},
		{"default", "../../x", errs.NotFound},
		{"default", "0123456789abcdef0123456789abcdef", errs.NotFound},
	}
	for _, tt := range tests {
		if _, err := u.offset(tt.ns, tt.id); errs.KindOf(err) != tt.kind {
			t.Errorf("offset(%q, %q) = %v, want %v", tt.ns, tt.id, err, tt.kind)
		}
	}
	if _, err := u.start("Bad/NS"); errs.KindOf(err) != errs.InvalidArgument {
		t.Errorf("start with bad namespace: %v", err)
	}
}

func TestUploadsBusy(t *testing.T) {
	u := newUploads(t.TempDir(), time.Hour, 100)
	id, _ := u.start("default")
	rel, _ := u.rel("default", id)
	if err := u.acquire(rel); err != nil {
		t.Fatal(err)
	}
	if _, err := u.append("default", id, 0, strings.NewReader("x")); errs.KindOf(err) != errs.Conflict {
		t.Errorf("append while busy: %v", err)
	}
	u.release(rel)
	if _, err := u.append("default", id, 0, strings.NewReader("x")); err != nil {
		t.Errorf("append after release: %v", err)
	}
}

// Two requests finishing the same upload: the second is refused while the first
// stores, and after it the upload is gone; the bytes are stored exactly once.
func TestUploadsConcurrentFinish(t *testing.T) {
	u := newUploads(t.TempDir(), time.Hour, 100)
	id, err := u.start("default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.append("default", id, 0, strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	entered, unblock := make(chan struct{}), make(chan struct{})
	calls := 0
	store := func(path string) error {
		calls++
		close(entered)
		<-unblock
		return os.Remove(path) // moved away, as Adopt does
	}
	first := make(chan error, 1)
	go func() { first <- u.finish("default", id, store) }()
	<-entered
	if err := u.finish("default", id, store); errs.KindOf(err) != errs.Conflict {
		t.Errorf("second finish while the first stores: %v, want Conflict", err)
	}
	if err := u.cancel("default", id); errs.KindOf(err) != errs.Conflict {
		t.Errorf("cancel while finishing: %v, want Conflict", err)
	}
	close(unblock)
	if err := <-first; err != nil {
		t.Fatalf("first finish: %v", err)
	}
	if err := u.finish("default", id, store); errs.KindOf(err) != errs.NotFound {
		t.Errorf("finish after finish: %v, want NotFound", err)
	}
	if calls != 1 {
		t.Errorf("store called %d times, want 1", calls)
	}
	// A request that found nothing must not leave the upload marked busy.
	u.mu.Lock()
	busy := len(u.busy)
	u.mu.Unlock()
	if busy != 0 {
		t.Errorf("%d uploads still marked busy", busy)
	}
}
