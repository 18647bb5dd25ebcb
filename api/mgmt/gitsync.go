package mgmt

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// GitSync runs GitSource syncs on request (the gitops controller).
type GitSync interface {
	// Sync runs a pass over the GitSource now and returns its status.
	Sync(ctx context.Context, ns, name string) (spec.GitSourceStatus, error)
	// Trigger asks for a pass without waiting for it.
	Trigger(ctx context.Context, ns, name string) error
	// WebhookSecret is the GitSource's webhook secret (NotFound when the
	// source does not exist or takes no webhook).
	WebhookSecret(ctx context.Context, ns, name string) ([]byte, error)
}

// HeaderHubSignature carries the HMAC-SHA256 of a webhook's body, as git
// hosts send it: "sha256=<hex>".
const HeaderHubSignature = "X-Hub-Signature-256"

// maxWebhookBytes bounds a webhook body (push events are a few KB; GitHub
// caps them at 25 MB, but the body is only hashed here, never parsed).
const maxWebhookBytes = 1 << 20

// errBadSignature is the one answer to every failed signature check, so
// that a caller learns nothing about which part was wrong.
var errBadSignature = errs.New(errs.Unauthenticated, "webhook signature does not match (X-Hub-Signature-256: sha256=HMAC-SHA256 of the body with the GitSource's webhook secret)")

// syncGitSource is "sync now". A deployer token (the route's rule) waits for
// the pass and gets the status; a git host's webhook, signed with the
// source's webhook secret and carrying no token, only triggers a fetch and
// gets 202 with nothing about the source.
func (a *api) syncGitSource(rule auth.Rule) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.opts.GitSync == nil {
			return errs.New(errs.Unavailable, "GitOps is not enabled on this server")
		}
		ns, name := r.PathValue("ns"), r.PathValue("name")
		sig := r.Header.Get(HeaderHubSignature)
		if sig != "" && r.Header.Get("Authorization") == "" {
			if err := a.checkSignature(r, ns, name, sig); err != nil {
				return err
			}
			if err := a.opts.GitSync.Trigger(r.Context(), ns, name); err != nil {
				return errBadSignature // the source went away: say nothing more
			}
			writeJSON(w, http.StatusAccepted, map[string]string{"status": "sync requested"})
			return nil
		}
		if err := auth.Authorize(r.Context(), rule, ns); err != nil {
			return err
		}
		st, err := a.opts.GitSync.Sync(r.Context(), ns, name)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, st)
		return nil
	}
}

// checkSignature verifies a webhook's HMAC in constant time.
func (a *api) checkSignature(r *http.Request, ns, name, sig string) error {
	hexSum, ok := strings.CutPrefix(sig, "sha256=")
	want, err := hex.DecodeString(hexSum)
	if !ok || err != nil || len(want) != sha256.Size {
		return errBadSignature
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxWebhookBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errs.New(errs.TooLarge, "webhook body: more than %d bytes", maxWebhookBytes)
	}
	if err != nil {
		return errs.New(errs.InvalidArgument, "webhook body: unreadable")
	}
	secret, err := a.opts.GitSync.WebhookSecret(r.Context(), ns, name)
	if err != nil || len(secret) == 0 {
		// Compute anyway, so that a source without a webhook answers as
		// fast as a wrong signature.
		secret = []byte("no secret")
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		_ = hmac.Equal(mac.Sum(nil), want)
		return errBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), want) {
		return errBadSignature
	}
	return nil
}
