package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/nimbus-ai/nimbus/registry"
)

// TensorMetadata describes one input or output in OIP model metadata.
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMetadata is the OIP v2 model metadata response.
type ModelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions,omitempty"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// Input returns the input named name.
func (m ModelMetadata) Input(name string) (TensorMetadata, bool) {
	for _, in := range m.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return TensorMetadata{}, false
}

// InferTensor is one input or output of an OIP JSON request or response. Data
// holds the JSON array as sent (flat or nested, row-major).
type InferTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// RequestedOutput selects an output of an inference.
type RequestedOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferRequest is an OIP v2 JSON inference request.
type InferRequest struct {
	ID         string            `json:"id,omitempty"`
	Parameters map[string]any    `json:"parameters,omitempty"`
	Inputs     []InferTensor     `json:"inputs"`
	Outputs    []RequestedOutput `json:"outputs,omitempty"`
}

// InferResponse is an OIP v2 JSON inference response. Raw is the body as received.
type InferResponse struct {
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	ID           string          `json:"id,omitempty"`
	Parameters   map[string]any  `json:"parameters,omitempty"`
	Outputs      []InferTensor   `json:"outputs"`
	Raw          json.RawMessage `json:"-"`
}

// oipBase is the OIP root for a namespace: /v2 for the default one.
func oipBase(ns string) string {
	if ns == "" || ns == registry.DefaultNamespace {
		return "/v2"
	}
	return "/ns/" + esc(ns) + "/v2"
}

func oipModelPath(ns, model, version string) string {
	p := oipBase(ns) + "/models/" + esc(model)
	if version != "" {
		p += "/versions/" + esc(version)
	}
	return p
}

// ServerLive reports whether the server answers its liveness probe.
func (c *Client) ServerLive(ctx context.Context) (bool, error) {
	return c.probe(ctx, "/v2/health/live")
}

// ServerReady reports whether the server is ready for inference.
func (c *Client) ServerReady(ctx context.Context) (bool, error) {
	return c.probe(ctx, "/v2/health/ready")
}

// ModelReady reports whether a model version (version "" for the default) is ready.
func (c *Client) ModelReady(ctx context.Context, ns, model, version string) (bool, error) {
	return c.probe(ctx, oipModelPath(ns, model, version)+"/ready")
}

// probe maps a 2xx to true and any other status to false; transport failures are errors.
func (c *Client) probe(ctx context.Context, path string) (bool, error) {
	err := c.call(ctx, request{method: http.MethodGet, path: path}, nil)
	var ae *APIError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ae):
		return false, nil
	default:
		return false, err
	}
}

// ModelMetadata returns a model's OIP metadata; version "" means the default
// version (champion alias, else latest), otherwise a number or an alias.
func (c *Client) ModelMetadata(ctx context.Context, ns, model, version string) (ModelMetadata, error) {
	var md ModelMetadata
	err := c.call(ctx, request{method: http.MethodGet, path: oipModelPath(ns, model, version)}, &md)
	return md, err
}

// Infer runs an OIP JSON inference.
func (c *Client) Infer(ctx context.Context, ns, model, version string, req *InferRequest) (*InferResponse, error) {
	resp, err := c.send(ctx, request{method: http.MethodPost, path: oipModelPath(ns, model, version) + "/infer", json: req})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("infer: read response: %w", err)
	}
	out := &InferResponse{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("infer: decode response: %w", err)
	}
	out.Raw = raw
	return out, nil
}
