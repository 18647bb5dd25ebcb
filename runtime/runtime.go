// Package runtime defines how Nimbus runs a model: a Runtime loads an artifact into a
// Model that reports its signature and runs a batch. Implementations live in
// subpackages (onnx) so a build without a heavy runtime still works.
package runtime

import (
	"context"
	"io"

	"github.com/nimbus-ai/nimbus/tensor"
)

// Options are per-load execution settings, taken from the model's serving settings.
type Options struct {
	// IntraOpThreads is the number of threads inside one operator; 0 means the runtime default (1 for ONNX).
	IntraOpThreads int
	// InterOpThreads is the number of threads across operators; 0 means the runtime default (1 for ONNX).
	InterOpThreads int
}

// Runtime loads artifacts of one format.
type Runtime interface {
	// Format is the artifact format this runtime serves, e.g. "onnx".
	Format() string
	// Load opens the artifact at path. It fails with a clear message when the
	// runtime's library is missing or the artifact is invalid.
	Load(ctx context.Context, path string, opts Options) (Model, error)
}

// BytesLoader is a Runtime that can open an artifact from its bytes, as
// read (and verified) by the caller: a load then reads the file once.
type BytesLoader interface {
	LoadBytes(ctx context.Context, data []byte, opts Options) (Model, error)
}

// Model is a loaded, runnable model. Run is safe for concurrent use.
type Model interface {
	Signature() tensor.Signature
	// Run executes one batch. inputs are ordered and named as the caller chose; the
	// model matches them by name. outputs names what to return (nil means every
	// supported output), in that order.
	Run(ctx context.Context, inputs []*tensor.Tensor, outputs []string) ([]*tensor.Tensor, error)
	Close() error
}

// Inspector reads a signature from an artifact without loading it for serving;
// registries use it at push time to validate uploads and record signatures. It
// reads the artifact through r (size bytes) as it needs, so inspecting a large
// artifact does not hold it in memory. It refuses an invalid artifact, or one
// the runtime could be made to misuse (a model that names other files to read),
// with an errs.InvalidArgument error saying why; any other error is a failure
// to read.
type Inspector interface {
	Inspect(r io.ReaderAt, size int64) (tensor.Signature, error)
}
