// Package client is a typed Go client for a Nimbus server: the management API
// under /api/v1 (models, versions, aliases, blobs with resumable uploads) and the
// Open Inference Protocol v2 REST endpoints. The CLI and tests use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultChunkSize is the size of one resumable upload chunk.
const DefaultChunkSize = 8 << 20

// Client talks to one Nimbus server. It is safe for concurrent use.
type Client struct {
	base       string
	hc         *http.Client
	token      string
	userAgent  string
	chunkSize  int64
	retries    int
	retryDelay time.Duration
	source     string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default http.DefaultClient).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sends "Authorization: Bearer token" with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// ChangeSourceHeader names, on mutating requests, through what a change
// arrived (audit.SourceCLI...); the server records it in the audit log.
const ChangeSourceHeader = "Nimbus-Change-Source"

// WithChangeSource sends "Nimbus-Change-Source: source" with every mutating
// request (any method but GET and HEAD).
func WithChangeSource(source string) Option { return func(c *Client) { c.source = source } }

// WithChunkSize sets the chunk size of resumable uploads.
func WithChunkSize(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.chunkSize = n
		}
	}
}

// WithRetries sets how often PushFile retries a failed chunk (default 5) and
// the delay before the first retry, doubled each time (default 500ms).
func WithRetries(n int, delay time.Duration) Option {
	return func(c *Client) { c.retries, c.retryDelay = n, delay }
}

// New returns a client for the server at baseURL, e.g. "http://127.0.0.1:8080".
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:       strings.TrimRight(baseURL, "/"),
		hc:         http.DefaultClient,
		userAgent:  "nimbus-client",
		chunkSize:  DefaultChunkSize,
		retries:    5,
		retryDelay: 500 * time.Millisecond,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the server address the client talks to.
func (c *Client) BaseURL() string { return c.base }

// APIError is a non-2xx answer from the server. It decodes both the management
// API's {"error": {"code", "message", "field"}} and OIP's {"error": "..."}.
type APIError struct {
	Status  int    // HTTP status
	Code    string // e.g. "not_found"; empty for OIP errors
	Message string
	Field   string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	return msg
}

// IsNotFound reports whether err is an APIError with status 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// decodeError builds an APIError from a response body.
func decodeError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 {
		var detail struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		}
		var s string
		switch {
		case json.Unmarshal(env.Error, &detail) == nil:
			e.Code, e.Message, e.Field = detail.Code, detail.Message, detail.Field
			return e
		case json.Unmarshal(env.Error, &s) == nil:
			e.Message = s
			return e
		}
	}
	// Not ours (a proxy, say): keep a readable piece of the body.
	text := strings.TrimSpace(string(body))
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	e.Message = text
	return e
}

// request describes one call.
type request struct {
	method string
	path   string // starting with "/", already escaped
	query  url.Values
	header http.Header
	body   io.Reader
	json   any   // encoded as the body when body is nil
	length int64 // Content-Length of body when > 0 and net/http cannot tell
}

// send performs req and returns the response when its status is 2xx; other
// statuses become *APIError. The caller closes the body.
func (c *Client) send(ctx context.Context, req request) (*http.Response, error) {
	u := c.base + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	body := req.body
	if body == nil && req.json != nil {
		b, err := json.Marshal(req.json)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	if req.length > 0 {
		hr.ContentLength = req.length
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if req.json != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.source != "" && req.method != http.MethodGet && req.method != http.MethodHead {
		hr.Header.Set(ChangeSourceHeader, c.source)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, decodeAnswerError(resp.StatusCode, b)
}

// call performs req and decodes a JSON answer into out (when non-nil).
func (c *Client) call(ctx context.Context, req request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", req.method, req.path, err)
	}
	return nil
}

// esc escapes one path segment.
func esc(s string) string { return url.PathEscape(s) }

func jsonDecode(r io.Reader, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
