package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

const planted = "s3cr3t-VALUE-do-not-leak"

// TestSecretNeverShowsItsValue: every way a value gets printed, logged or
// marshalled shows Redacted.
func TestSecretNeverShowsItsValue(t *testing.T) {
	s := newSecret(planted)
	if s.Reveal() != planted || s.IsZero() {
		t.Fatal("Reveal lost the value")
	}
	holder := struct {
		Token  Secret
		Ptr    *Secret
		hidden Secret // fmt cannot call methods through an unexported field
	}{s, &s, s}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10s", "%-8v"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, holder), fmt.Sprintf(verb, &s))
	}
	out = append(out, fmt.Sprint(s), fmt.Sprintln(s, holder), s.String(), s.GoString())
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j), string(y))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{
		slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
	} {
		l := slog.New(h)
		l.Debug("token", "secret", s, "holder", holder, "ptr", &s)
		l.Info("group", slog.Group("g", "s", s), slog.Any("any", s))
	}
	out = append(out, logs.String())
	for _, o := range out {
		if strings.Contains(o, planted) {
			t.Errorf("the value leaked: %s", o)
		}
	}
	if !strings.Contains(string(j), Redacted) || !strings.Contains(logs.String(), Redacted) {
		t.Errorf("no redaction marker in %s / %s", j, logs.String())
	}
}

func TestRefValidate(t *testing.T) {
	for _, tc := range []struct {
		ref   Ref
		msg   string // "": valid
		field string
	}{
		{ref: Ref{Env: "NIMBUS_SECRET_TOKEN"}},
		{ref: Ref{Env: "NIMBUS_SECRET_GIT_2"}},
		{ref: Ref{File: "token"}},
		{ref: Ref{File: "git/token"}},
		{ref: Ref{}, msg: "required: env"},
		{ref: Ref{Env: "NIMBUS_SECRET_X", File: "x"}, msg: "not both"},
		{ref: Ref{Env: "HOME"}, msg: "only from environment variables named NIMBUS_SECRET_", field: "env"},
		{ref: Ref{Env: "NIMBUS_SECRET_"}, msg: "NIMBUS_SECRET_", field: "env"},
		{ref: Ref{Env: "NIMBUS_SECRET_lower"}, msg: "NIMBUS_SECRET_", field: "env"},
		{ref: Ref{Env: "NIMBUS_DATA_DIR"}, msg: "NIMBUS_SECRET_", field: "env"},
		{ref: Ref{File: "../token"}, msg: "plain relative name", field: "file"},
		{ref: Ref{File: "/etc/shadow"}, msg: "plain relative name", field: "file"},
		{ref: Ref{File: "a/../../b"}, msg: "plain relative name", field: "file"},
		{ref: Ref{File: "./token"}, msg: "plain relative name", field: "file"},
		{ref: Ref{File: "a\x00b"}, msg: "plain relative name", field: "file"},
		{ref: Ref{File: strings.Repeat("a", 300)}, msg: "plain relative name", field: "file"},
	} {
		t.Run(tc.ref.String(), func(t *testing.T) {
			err := tc.ref.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) || errs.KindOf(err) != errs.InvalidArgument || errs.FieldOf(err) != tc.field {
				t.Fatalf("Validate = %v (field %q), want %q at %q", err, errs.FieldOf(err), tc.msg, tc.field)
			}
		})
	}
}

func TestResolveEnv(t *testing.T) {
	env := map[string]string{"NIMBUS_SECRET_TOKEN": planted, "NIMBUS_SECRET_EMPTY": "", "HOME": planted}
	r, err := NewResolver(Options{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Resolve(Ref{Env: "NIMBUS_SECRET_TOKEN"})
	if err != nil || s.Reveal() != planted {
		t.Fatalf("Resolve = %v, %v", s, err)
	}
	for ref, want := range map[Ref]string{
		{Env: "NIMBUS_SECRET_MISSING"}: "not set on the server",
		{Env: "NIMBUS_SECRET_EMPTY"}:   "is empty",
		{Env: "HOME"}:                  "only from environment variables named NIMBUS_SECRET_",
		{File: "token"}:                "file secrets are disabled on this server; start it with --secrets-dir",
	} {
		_, err := r.Resolve(ref)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), planted) {
			t.Errorf("Resolve(%s) = %v, want %q", ref, err, want)
		}
	}
}

func TestResolveFile(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "token"), planted+"\n")
	write(filepath.Join(dir, "crlf"), planted+"\r\n")
	write(filepath.Join(dir, "git", "token"), planted)
	write(filepath.Join(dir, "empty"), "\n")
	write(filepath.Join(dir, "big"), strings.Repeat("x", 65))
	write(filepath.Join(outside, "stolen"), planted)
	if err := os.Symlink(filepath.Join(outside, "stolen"), filepath.Join(dir, "escape")); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	if err := os.Symlink("git/token", filepath.Join(dir, "inside-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	haveFIFO := exec.Command("mkfifo", filepath.Join(dir, "pipe")).Run() == nil

	r, err := NewResolver(Options{Dir: dir, MaxBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"token", "crlf", "git/token", "inside-link"} {
		s, err := r.Resolve(Ref{File: name})
		if err != nil || s.Reveal() != planted {
			t.Errorf("Resolve(file %s) = %q, %v", name, s.Reveal(), err)
		}
	}
	for _, tc := range []struct{ name, msg string }{
		{"missing", "no such file in the secrets directory"},
		{"escape", "cannot be read from the secrets directory"},
		{"escape-dir/stolen", "cannot be read from the secrets directory"},
		{"git", "not a regular file"},
		{"empty", "the file is empty"},
		{"big", "larger than 64 bytes"},
		{"pipe", "not a regular file"},
		{"../" + filepath.Base(outside) + "/stolen", "plain relative name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "pipe" && !haveFIFO {
				t.Skip("mkfifo unavailable")
			}
			s, err := r.Resolve(Ref{File: tc.name})
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Resolve(file %s) = %q, %v; want %q", tc.name, s.Reveal(), err, tc.msg)
			}
			if strings.Contains(err.Error(), planted) || !s.IsZero() {
				t.Errorf("leaked: %v", err)
			}
		})
	}
	if _, err := NewResolver(Options{Dir: filepath.Join(dir, "nope")}); err == nil {
		t.Error("a missing secrets directory was accepted")
	}
	if _, err := NewResolver(Options{Dir: filepath.Join(dir, "token")}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as secrets directory: %v", err)
	}
}

// FuzzResolveFile: whatever name a reference gives, only files inside the
// secrets directory are read.
func FuzzResolveFile(f *testing.F) {
	for _, s := range []string{"token", "../outside", "/etc/passwd", "a/../../outside", "link/outside", "inside-link", ".", "", "a\\..\\b"} {
		f.Add(s)
	}
	dir := f.TempDir()
	outside := filepath.Join(filepath.Dir(dir), "outside")
	if err := os.WriteFile(outside, []byte(planted), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("inside"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(dir), filepath.Join(dir, "link")); err != nil {
		f.Skip(err)
	}
	r, err := NewResolver(Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s, err := r.Resolve(Ref{File: name})
		if s.Reveal() == planted {
			t.Fatalf("file %q reached outside the secrets directory", name)
		}
		if err != nil && strings.Contains(err.Error(), planted) {
			t.Fatalf("error leaks the value: %v", err)
		}
	})
}
