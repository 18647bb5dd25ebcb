package client_test

import (
	"net/http"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/auth"
)

// openMgmt is mgmt.NewHandler behind a guard with auth off: these tests are
// about the client; access is tested with real tokens in e2e.
func openMgmt(reg mgmt.Registry, opts mgmt.Options) http.Handler {
	return auth.NewGuard(nil).HTTP(mgmt.NewHandler(reg, opts))
}
