package client

import (
	"context"
	"net/http"

	"github.com/nimbus-ai/nimbus/residency"
)

// Status returns where a model's versions live in memory, with the server's
// memory budget; model "" reports every model of the namespace (none for a
// namespace without models). An unknown model is an *APIError for which
// IsNotFound holds; a server without residency tracking answers 503.
func (c *Client) Status(ctx context.Context, ns, model string) (residency.Report, error) {
	path := "/api/v1/namespaces/" + esc(ns) + "/status"
	if model != "" {
		path = modelPath(ns, model) + "/status"
	}
	var rep residency.Report
	err := c.call(ctx, request{method: http.MethodGet, path: path}, &rep)
	return rep, err
}
