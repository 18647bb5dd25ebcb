package mgmt

import (
	"context"
	"net/http"
	"time"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Tokens is what the token routes need from *auth.Authenticator.
type Tokens interface {
	Create(ctx context.Context, by *auth.Identity, req auth.CreateRequest) (auth.Created, error)
	List(ctx context.Context, by *auth.Identity) ([]auth.Token, error)
	Revoke(ctx context.Context, by *auth.Identity, id, source string) (auth.Token, error)
}

var _ Tokens = (*auth.Authenticator)(nil)

func (a *api) whoami(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, auth.Whoami{Actor: id.Actor(), TokenID: id.TokenID, Name: id.Name, Role: id.Role,
		Scopes: id.Scopes, AuthEnabled: id.TokenID != ""})
	return nil
}

// withTokens answers 503 where auth is off (there are no tokens to manage).
func (a *api) withTokens(h func(w http.ResponseWriter, r *http.Request, t Tokens) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.opts.Tokens == nil {
			return errs.New(errs.FailedPrecondition, "this server runs with auth off: there are no tokens to manage")
		}
		return h(w, r, a.opts.Tokens)
	}
}

func (a *api) createToken(w http.ResponseWriter, r *http.Request, t Tokens) error {
	var req auth.CreateRequest
	if err := a.decodeJSON(w, r, &req); err != nil {
		return err
	}
	req.Source = source(r)
	c, err := t.Create(r.Context(), auth.FromContext(r.Context()), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, auth.CreatedView{TokenView: auth.ViewOf(c.Token, time.Now()), Secret: c.Secret})
	return nil
}

func (a *api) listTokens(w http.ResponseWriter, r *http.Request, t Tokens) error {
	ts, err := t.List(r.Context(), auth.FromContext(r.Context()))
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]auth.TokenView, 0, len(ts))
	for _, tk := range ts {
		out = append(out, auth.ViewOf(tk, now))
	}
	writeJSON(w, http.StatusOK, itemsBody[auth.TokenView]{Items: out})
	return nil
}

func (a *api) revokeToken(w http.ResponseWriter, r *http.Request, t Tokens) error {
	tk, err := t.Revoke(r.Context(), auth.FromContext(r.Context()), r.PathValue("id"), source(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, auth.ViewOf(tk, time.Now()))
	return nil
}

// readable keeps the items whose namespace the caller may read (cluster-wide
// lists: -A).
func readable[T any](r *http.Request, items []T, nsOf func(T) string) []T {
	id := auth.FromContext(r.Context())
	if id.InScope(auth.AllScopes) {
		return items
	}
	out := items[:0]
	for _, it := range items {
		if id.Can(auth.PermRead, nsOf(it)) {
			out = append(out, it)
		}
	}
	return out
}

// readableNamespace checks a namespace named in the query of a cluster-wide
// route ("" names none).
func readableNamespace(r *http.Request, ns string) error {
	if ns == "" {
		return nil
	}
	return auth.CanNamespace(r.Context(), auth.PermRead, ns)
}
