package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/nimbus-ai/nimbus/registry"
)

// ModelPatch changes a model's description and labels; nil fields stay as they are.
type ModelPatch struct {
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

func modelPath(ns, model string) string {
	return "/api/v1/namespaces/" + esc(ns) + "/models/" + esc(model)
}

func forceQuery(force bool) url.Values {
	if !force {
		return nil
	}
	return url.Values{"force": {"true"}}
}

// Namespaces lists the namespaces that hold models.
func (c *Client) Namespaces(ctx context.Context) ([]string, error) {
	var out struct {
		Items []string `json:"items"`
	}
	err := c.call(ctx, request{method: http.MethodGet, path: "/api/v1/namespaces"}, &out)
	return out.Items, err
}

// ListModels returns one page of a namespace's models.
func (c *Client) ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error) {
	q := url.Values{}
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	if opt.After != "" {
		q.Set("after", opt.After)
	}
	if opt.Prefix != "" {
		q.Set("prefix", opt.Prefix)
	}
	var page registry.ModelPage
	err := c.call(ctx, request{method: http.MethodGet, path: "/api/v1/namespaces/" + esc(ns) + "/models", query: q}, &page)
	return page, err
}

// ListAllModels follows pages until the last one.
func (c *Client) ListAllModels(ctx context.Context, ns string, opt registry.ListOptions) ([]registry.Model, error) {
	var all []registry.Model
	for {
		page, err := c.ListModels(ctx, ns, opt)
		if err != nil {
			return all, err
		}
		all = append(all, page.Items...)
		if page.Next == "" || page.Next == opt.After {
			return all, nil
		}
		opt.After = page.Next
	}
}

// GetModel returns a model with its aliases.
func (c *Client) GetModel(ctx context.Context, ns, model string) (registry.Model, error) {
	var m registry.Model
	err := c.call(ctx, request{method: http.MethodGet, path: modelPath(ns, model)}, &m)
	return m, err
}

// UpdateModel changes a model's description and labels.
func (c *Client) UpdateModel(ctx context.Context, ns, model string, p ModelPatch) (registry.Model, error) {
	var m registry.Model
	err := c.call(ctx, request{method: http.MethodPatch, path: modelPath(ns, model), json: p}, &m)
	return m, err
}

// DeleteModel deletes a model with all its versions; force deletes it even
// while aliases exist.
func (c *Client) DeleteModel(ctx context.Context, ns, model string, force bool) error {
	return c.call(ctx, request{method: http.MethodDelete, path: modelPath(ns, model), query: forceQuery(force)}, nil)
}

// GetServing returns a model's serving settings.
func (c *Client) GetServing(ctx context.Context, ns, model string) (registry.ServingConfig, error) {
	var s registry.ServingConfig
	err := c.call(ctx, request{method: http.MethodGet, path: modelPath(ns, model) + "/serving"}, &s)
	return s, err
}

// SetServing replaces a model's serving settings.
func (c *Client) SetServing(ctx context.Context, ns, model string, s registry.ServingConfig) (registry.ServingConfig, error) {
	var out registry.ServingConfig
	err := c.call(ctx, request{method: http.MethodPut, path: modelPath(ns, model) + "/serving", json: s}, &out)
	return out, err
}

// ListVersions returns a model's versions, oldest first.
func (c *Client) ListVersions(ctx context.Context, ns, model string) ([]registry.Version, error) {
	var out struct {
		Items []registry.Version `json:"items"`
	}
	err := c.call(ctx, request{method: http.MethodGet, path: modelPath(ns, model) + "/versions"}, &out)
	return out.Items, err
}

// CreateVersion declares a version from an uploaded blob; req.Namespace and
// req.Model say where.
func (c *Client) CreateVersion(ctx context.Context, req registry.CreateVersionRequest) (registry.Version, error) {
	var v registry.Version
	err := c.call(ctx, request{method: http.MethodPost, path: modelPath(req.Namespace, req.Model) + "/versions", json: req}, &v)
	return v, err
}

// GetVersion returns a version by number or alias ("3", "champion").
func (c *Client) GetVersion(ctx context.Context, ns, model, ref string) (registry.Version, error) {
	var v registry.Version
	err := c.call(ctx, request{method: http.MethodGet, path: modelPath(ns, model) + "/versions/" + esc(ref)}, &v)
	return v, err
}

// DeleteVersion deletes a version; force deletes it even while aliases point to it.
func (c *Client) DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error {
	p := modelPath(ns, model) + "/versions/" + strconv.FormatInt(version, 10)
	return c.call(ctx, request{method: http.MethodDelete, path: p, query: forceQuery(force)}, nil)
}

// SetVersionServing sets a version's serving override, or clears it when s is nil.
func (c *Client) SetVersionServing(ctx context.Context, ns, model string, version int64, s *registry.ServingConfig) (registry.Version, error) {
	req := request{method: http.MethodDelete, path: modelPath(ns, model) + "/versions/" + strconv.FormatInt(version, 10) + "/serving"}
	if s != nil {
		req.method, req.json = http.MethodPut, s
	}
	var v registry.Version
	err := c.call(ctx, req, &v)
	return v, err
}

// DownloadArtifact writes a version's artifact to w and returns its size.
func (c *Client) DownloadArtifact(ctx context.Context, ns, model, ref string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: modelPath(ns, model) + "/versions/" + esc(ref) + "/artifact"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download artifact: %w", err)
	}
	return n, nil
}

// SetAlias points alias at version and returns the updated model.
func (c *Client) SetAlias(ctx context.Context, ns, model, alias string, version int64) (registry.Model, error) {
	var m registry.Model
	body := struct {
		Version int64 `json:"version"`
	}{version}
	err := c.call(ctx, request{method: http.MethodPut, path: modelPath(ns, model) + "/aliases/" + esc(alias), json: body}, &m)
	return m, err
}

// DeleteAlias removes an alias.
func (c *Client) DeleteAlias(ctx context.Context, ns, model, alias string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: modelPath(ns, model) + "/aliases/" + esc(alias)}, nil)
}

// GC deletes blobs no version references and returns them.
func (c *Client) GC(ctx context.Context) ([]registry.BlobInfo, error) {
	var out struct {
		Removed []registry.BlobInfo `json:"removed"`
	}
	err := c.call(ctx, request{method: http.MethodPost, path: "/api/v1/gc"}, &out)
	return out.Removed, err
}
