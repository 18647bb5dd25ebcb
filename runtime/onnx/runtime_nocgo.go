//go:build !cgo

package onnx

import (
	"context"
	"log/slog"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
)

// Runtime stands in for the ONNX Runtime-backed runtime in builds without cgo:
// every Load fails with an errs.Unavailable error.
type Runtime struct{}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a Runtime whose Load always fails: this build has no cgo.
func New(libPath string, log *slog.Logger) *Runtime { return &Runtime{} }

// Initialized is false: this build has no ONNX Runtime.
func Initialized() bool { return false }

// Format returns "onnx".
func (*Runtime) Format() string { return Format }

// Version is "": this build has no ONNX Runtime.
func (*Runtime) Version() string { return "" }

// Load fails: ONNX Runtime needs cgo.
func (*Runtime) Load(ctx context.Context, path string, opts runtime.Options) (runtime.Model, error) {
	return nil, errs.New(errs.Unavailable,
		"this build of Nimbus has no ONNX Runtime support (built with CGO_ENABLED=0); rebuild with cgo enabled to serve ONNX models")
}
