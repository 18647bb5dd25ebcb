package onnx

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// LibraryEnv names the environment variable that overrides library discovery.
const LibraryEnv = "NIMBUS_ORT_LIB"

// libName is the ONNX Runtime shared library's file name; libRelPath is where
// scripts/install-ort.sh puts it, relative to the repository root.
const (
	libName    = "libonnxruntime.so.1"
	libRelPath = ".deps/onnxruntime/" + libName
)

// installHint is the message a user sees whenever the library is missing.
const installHint = "ONNX Runtime library not found: run `make setup` (or scripts/install-ort.sh), " +
	"or set " + LibraryEnv + " to the path of " + libName

// FindLibrary returns the path of the ONNX Runtime shared library: $NIMBUS_ORT_LIB
// if set; else .deps/onnxruntime/libonnxruntime.so.1 in the working directory or
// one of its parents, or in the executable's directory or one of its parents; else
// libonnxruntime.so.1 beside the executable or in its ../lib. It fails with an
// errs.Unavailable error that says how to install the library.
func FindLibrary() (string, error) {
	cwd, _ := os.Getwd()
	exeDir := ""
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		exeDir = filepath.Dir(exe)
	}
	return findLibrary(os.Getenv(LibraryEnv), cwd, exeDir)
}

// findLibrary is FindLibrary with its inputs explicit, for tests.
func findLibrary(env, cwd, exeDir string) (string, error) {
	if env != "" {
		if err := isFile(env); err != nil {
			return "", errs.Wrap(errs.Unavailable, err, "%s (%s=%s is not usable)", installHint, LibraryEnv, env)
		}
		return filepath.Abs(env)
	}
	var candidates []string
	for _, start := range []string{cwd, exeDir} {
		if start == "" {
			continue
		}
		for dir := filepath.Clean(start); ; dir = filepath.Dir(dir) {
			candidates = append(candidates, filepath.Join(dir, libRelPath))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exeDir != "" {
		candidates = append(candidates, filepath.Join(exeDir, libName), filepath.Join(exeDir, "..", "lib", libName))
	}
	for _, c := range candidates {
		if isFile(c) == nil {
			return filepath.Abs(c)
		}
	}
	return "", errs.New(errs.Unavailable, "%s", installHint)
}

func isFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}
