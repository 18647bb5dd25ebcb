package registry

import (
	"context"
	"maps"
	"slices"
)

// DeleteIntent is a delete of a model, a version or an alias that is about to
// be committed, as a delete guard sees it.
type DeleteIntent struct {
	Namespace string
	Model     string
	// WholeModel is set when the model goes, with every version and alias.
	WholeModel bool
	// Version is the version deleted (0 unless a version is).
	Version int64
	// LastVersion is set when Version is the model's only version: the model
	// is left with none, so "" (the champion, else the latest) resolves to
	// nothing either.
	LastVersion bool
	// Aliases are the aliases that go (sorted): the alias deleted, those a
	// forced version delete drops with the version, or all of a deleted model's.
	Aliases []string
}

// DeleteGuard may refuse a delete (its error is returned to the caller) or add
// to it: it runs inside the delete's transaction, before the delete, and
// reads and writes through ctx, so what it checked still holds when the delete
// commits and what it wrote commits or rolls back with it.
type DeleteGuard func(ctx context.Context, d DeleteIntent) error

// AddDeleteGuard registers g for every delete of a model, a version or an
// alias, whoever asks for it (API, CLI, apply). Guards run in the order added.
// Register guards before the Registry is used.
func (r *Registry) AddDeleteGuard(g DeleteGuard) {
	r.guards = append(r.guards, g)
}

func (r *Registry) guard(ctx context.Context, d DeleteIntent) error {
	for _, g := range r.guards {
		if err := g(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// aliasesOf returns the model's aliases pointing at version (all of them when
// version is 0), sorted.
func aliasesOf(m Model, version int64) []string {
	var out []string
	for _, a := range slices.Sorted(maps.Keys(m.Aliases)) {
		if version == 0 || m.Aliases[a] == version {
			out = append(out, a)
		}
	}
	return out
}

// AliasHold reports whether a rollout owns alias of model: a change of the
// alias's declared version then leaves its effective version (what serving
// resolves) where it is, for the rollout to move. It runs inside the change's
// transaction.
type AliasHold func(ctx context.Context, ns, model, alias string) bool

// SetAliasHold registers h (the rollout controller). Register it before the
// Registry is used.
func (r *Registry) SetAliasHold(h AliasHold) { r.holds = h }

// SetEffectiveAlias moves alias's effective version (a rollout promoting or
// rolling back); its declared version stays. Moving it to the declared
// version ends the hold.
func (r *Registry) SetEffectiveAlias(ctx context.Context, ns, model, alias string, version int64) error {
	return r.moveAlias(ctx, ns, model, alias, version, aliasMove{op: "set effective alias", summary: "serving version of alias ",
		logged: "effective alias moved",
		set: func(context.Context, string) func(context.Context, string, string, string, int64) error {
			return r.store.SetEffectiveAlias
		}})
}
