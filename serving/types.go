// Package serving runs models for requests: it resolves a name and version reference
// through the registry, loads versions on demand (one load however many callers
// wait), verifies artifacts, validates inputs against signatures and keeps per-model
// statistics. REST and gRPC handlers are thin adapters over Manager.
package serving

import (
	"time"

	"github.com/nimbus-ai/nimbus/tensor"
)

// OutputRequest selects one output and carries its OIP parameters (e.g. binary_data).
type OutputRequest struct {
	Name       string
	Parameters map[string]any
}

// InferRequest is a protocol-neutral inference request.
type InferRequest struct {
	Namespace string
	Model     string
	// Version is a version number, an alias, or "" (champion alias, else latest).
	Version string
	ID      string
	// RoutingKey keeps a caller on one target of an InferenceService (the
	// Nimbus-Routing-Key header, gRPC metadata nimbus-routing-key); "" routes by weight.
	RoutingKey string
	Parameters map[string]any
	Inputs     []*tensor.Tensor
	// Outputs selects outputs; empty means every supported output.
	Outputs []OutputRequest
}

// InferResponse is a protocol-neutral inference response.
type InferResponse struct {
	ModelName    string
	ModelVersion string
	ID           string
	Parameters   map[string]any
	Outputs      []*tensor.Tensor
	// ColdStart is how long this request waited for its version to load (0 when
	// the version was resident).
	ColdStart time.Duration
	// Target names the model and version that answered a request made to an
	// InferenceService ("fraud-detector@4"); "" for a request made to a model.
	Target string
}

// ModelMetadata is OIP model metadata.
type ModelMetadata struct {
	Name     string
	Versions []string
	Platform string // "onnxruntime_onnx"
	Inputs   []tensor.TensorSpec
	Outputs  []tensor.TensorSpec
}

// ServerMetadata is OIP server metadata.
type ServerMetadata struct {
	Name       string
	Version    string
	Extensions []string
}

// Model states as the repository extension reports them.
const (
	StateReady       = "READY"
	StateUnavailable = "UNAVAILABLE"
	StateLoading     = "LOADING"
	StateUnloading   = "UNLOADING"
)

// RepositoryEntry is one row of the repository index.
type RepositoryEntry struct {
	Name    string
	Version string
	State   string
	Reason  string
}

// Duration is a count and a cumulative time, as Triton's statistics report them.
type Duration struct {
	Count int64
	Total time.Duration
}

// ModelStats are Triton-style statistics for one model version.
type ModelStats struct {
	Name           string
	Version        string
	LastInference  time.Time
	InferenceCount int64 // rows inferred
	ExecutionCount int64 // runtime executions
	Success        Duration
	Fail           Duration
	Queue          Duration
	ComputeInput   Duration
	ComputeInfer   Duration
	ComputeOutput  Duration
}
