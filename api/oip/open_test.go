package oip

import (
	"net/http"

	"github.com/nimbus-ai/nimbus/auth"
)

// openHandler is NewHandler behind a guard with auth off: these tests are about
// the protocol; access is tested with real tokens in e2e (TestAccessMatrix).
func openHandler(b Backend, opts Options) http.Handler {
	return auth.NewGuard(nil).HTTP(NewHandler(b, opts))
}
