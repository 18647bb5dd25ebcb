package mgmt_test

import (
	"net/http"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/auth"
)

// mgmtOpen is mgmt.NewHandler behind a guard with auth off: these tests are
// about the API's behaviour; access is tested with real tokens in e2e
// (TestAccessMatrix) and in access_test.go.
func mgmtOpen(reg mgmt.Registry, opts mgmt.Options) http.Handler {
	return auth.NewGuard(nil).HTTP(mgmt.NewHandler(reg, opts))
}
