package mgmt

import (
	"context"
	"net/http"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// Rollouts carries out rollout commands (promote, abort, retry) on an
// InferenceService; the rollout controller (package delivery).
type Rollouts interface {
	Command(ctx context.Context, ns, name, command, actor string) error
}

// rolloutCommandTimeout bounds the wait for the pass that carries a
// command out (a pass is a few store reads and writes).
const rolloutCommandTimeout = 30 * time.Second

// rolloutCommand runs `nimbus rollout promote|abort|retry` and answers with
// the service as it is after the command.
func (a *api) rolloutCommand(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Rollouts == nil || a.opts.Resources == nil {
		return errs.New(errs.Unavailable, "rollouts are not enabled on this server")
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), rolloutCommandTimeout)
	defer cancel()
	if err := a.opts.Rollouts.Command(ctx, ns, name, r.PathValue("command"), actor(r)); err != nil {
		return err
	}
	obj, err := a.opts.Resources.Get(r.Context(), spec.KindInferenceService, ns, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, obj)
	return nil
}
