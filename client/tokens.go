package client

import (
	"context"
	"net/http"

	"github.com/nimbus-ai/nimbus/auth"
)

// Whoami returns the identity the server sees for this client's token.
func (c *Client) Whoami(ctx context.Context) (auth.Whoami, error) {
	var w auth.Whoami
	err := c.call(ctx, request{method: http.MethodGet, path: "/api/v1/whoami"}, &w)
	return w, err
}

// CreateToken makes a token; the answer holds the token itself, shown this once.
func (c *Client) CreateToken(ctx context.Context, req auth.CreateRequest) (auth.CreatedView, error) {
	var out auth.CreatedView
	err := c.call(ctx, request{method: http.MethodPost, path: "/api/v1/tokens", json: req}, &out)
	return out, err
}

// ListTokens lists the tokens this client's admin token covers.
func (c *Client) ListTokens(ctx context.Context) ([]auth.TokenView, error) {
	var out struct {
		Items []auth.TokenView `json:"items"`
	}
	err := c.call(ctx, request{method: http.MethodGet, path: "/api/v1/tokens"}, &out)
	return out.Items, err
}

// RevokeToken revokes a token by id.
func (c *Client) RevokeToken(ctx context.Context, id string) (auth.TokenView, error) {
	var out auth.TokenView
	err := c.call(ctx, request{method: http.MethodDelete, path: "/api/v1/tokens/" + esc(id)}, &out)
	return out, err
}
