package mgmt

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/residency"
)

// Residency is what the status routes need from the serving layer: where a
// namespace's (model "") or one model's versions live in memory. An unknown
// model is an errs.NotFound error; a namespace without models has no versions.
type Residency interface {
	Status(ctx context.Context, ns, model string) (residency.Report, error)
}

// status answers GET .../namespaces/{ns}/status and .../models/{model}/status;
// on the namespace route {model} is absent and PathValue gives "", which asks
// for every model.
func (a *api) status(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Residency == nil {
		return errs.New(errs.Unavailable, "residency status is unavailable on this server")
	}
	rep, err := a.opts.Residency.Status(r.Context(), r.PathValue("ns"), r.PathValue("model"))
	if err != nil {
		return fmt.Errorf("residency status: %w", err)
	}
	if rep.Versions == nil {
		rep.Versions = []residency.VersionStatus{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}
