package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// applyingKey marks the ctx of an apply's commit with the services the apply
// declares (namespace/name): their targets were checked against the state the
// apply leaves, and are checked again when each is written.
type applyingKey struct{}

// guardDelete is the registry's delete guard, run inside the transaction of
// every delete of a model, a version or an alias, whoever asks (API, CLI,
// apply): a delete that would take a target away from a stored
// InferenceService is refused (Conflict, naming the services), the last
// version of a model a service targets bare included, and a deleted
// Model's resource row goes with it, so what was last applied for it cannot
// shape a model pushed later under its name.
//
// The apply engine's commit re-checks a service's targets in its own
// transaction, and transactions are serializable, so a delete and an apply of
// a service racing each other cannot both commit.
func (e *Engine) guardDelete(ctx context.Context, d registry.DeleteIntent) error {
	applying, _ := ctx.Value(applyingKey{}).(map[string]bool)
	users, err := e.servicesTargeting(ctx, d.Namespace, d.Model, applying, func(ref string) bool {
		n, isNum := versionOf(ref)
		switch {
		case d.WholeModel:
			return true
		case ref == "":
			// The champion, else the latest: another version remains to
			// take over unless this is the last.
			return d.LastVersion
		case isNum:
			return n == d.Version
		default:
			return slices.Contains(d.Aliases, ref)
		}
	})
	if err != nil {
		return err
	}
	if len(users) > 0 {
		named := make([]string, len(users))
		for i, u := range users {
			named[i] = fmt.Sprintf("%s (%s)", u.name, u.target)
		}
		return errs.New(errs.Conflict, "inferenceservice %s still routes there; change or delete it first", strings.Join(named, ", "))
	}
	if d.WholeModel {
		if err := e.opts.Resources.DeleteResource(ctx, spec.KindModel, d.Namespace, d.Model, 0); err != nil && !errors.Is(err, errs.ErrNotFound) {
			return err
		}
	}
	return nil
}

// serviceUse is a stored service routing to a model through target.
type serviceUse struct{ name, target string }

// servicesTargeting lists the stored services in ns (other than those in
// skip, by namespace/name) with a target of model whose ref (alias, version
// number or "") uses says is affected; one entry per service.
func (e *Engine) servicesTargeting(ctx context.Context, ns, model string, skip map[string]bool, uses func(ref string) bool) ([]serviceUse, error) {
	rs, err := e.opts.Resources.ListResources(ctx, spec.KindInferenceService, ns)
	if err != nil {
		return nil, err
	}
	var out []serviceUse
	for _, r := range rs {
		if skip[ns+"/"+r.Name] {
			continue
		}
		var s spec.ServiceSpec
		if err := json.Unmarshal(r.Spec, &s); err != nil {
			return nil, fmt.Errorf("stored spec of inferenceservice %s/%s: %w", ns, r.Name, err)
		}
		for _, t := range targets(s) {
			if m, ref, err := spec.ParseTarget(t); err == nil && m == model && uses(ref) {
				out = append(out, serviceUse{name: r.Name, target: t})
				break
			}
		}
	}
	return out, nil
}

// checkTargetsExist fails (Conflict) when a target of the service no longer
// exists: called inside the commit, it catches a delete that committed after
// the apply was validated.
func (e *Engine) checkTargetsExist(ctx context.Context, ns, name string, s spec.ServiceSpec) error {
	for _, t := range targets(s) {
		model, ref, err := spec.ParseTarget(t)
		if err != nil {
			return errs.Wrap(errs.InvalidArgument, err, "inferenceservice %s: target %s", name, t)
		}
		m, err := e.opts.Registry.GetModel(ctx, ns, model)
		if err == nil {
			if _, isNum := versionOf(ref); isNum {
				_, err = e.opts.Registry.Resolve(ctx, ns, model, ref)
			} else if _, ok := m.Aliases[ref]; ref != "" && !ok {
				err = errs.New(errs.NotFound, "model %s has no alias %s", model, ref)
			}
		}
		if errors.Is(err, errs.ErrNotFound) {
			return errs.New(errs.Conflict, "inferenceservice %s: target %s was deleted while this apply ran; apply again", name, t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
