package onnx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

func TestFindLibrary(t *testing.T) {
	root := t.TempDir()
	touch := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	repoLib := touch("repo/" + libRelPath)
	envLib := touch("custom/libonnxruntime.so.1.24.1")
	exeLib := touch("app/bin/" + libName)
	prefixLib := touch("usr/lib/" + libName)
	for _, d := range []string{"repo/a/b", "app/bin", "usr/bin", "empty/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j := func(p string) string { return filepath.Join(root, p) }

	tests := []struct {
		name             string
		env, cwd, exeDir string
		want             string // "" means not found
	}{
		{"env wins", envLib, j("repo"), j("app/bin"), envLib},
		{"cwd is the repo", "", j("repo"), "", repoLib},
		{"cwd below the repo", "", j("repo/a/b"), j("empty/bin"), repoLib},
		{"executable inside the repo", "", j("empty/bin"), j("repo/a/b"), repoLib},
		{"beside the executable", "", j("empty/bin"), j("app/bin"), exeLib},
		{"prefix lib dir", "", j("empty/bin"), j("usr/bin"), prefixLib},
		{"nowhere", "", j("empty/bin"), j("empty/bin"), ""},
		{"env set but missing", j("nope/" + libName), j("repo"), "", ""},
		{"env is a directory", j("repo"), j("repo"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findLibrary(tt.env, tt.cwd, tt.exeDir)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("findLibrary = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("findLibrary = %q, want an error", got)
			}
			if !errors.Is(err, errs.ErrUnavailable) {
				t.Errorf("err %v is not Unavailable", err)
			}
			if !strings.Contains(err.Error(), installHint) {
				t.Errorf("err %q lacks the install hint", err)
			}
		})
	}
}
