package registry_test

import (
	"context"
	"testing"

	"github.com/nimbus-ai/nimbus/registry"
)

// TestAliasHold: with a hold registered (a rollout owns the alias), setting
// the alias moves its declared version only: Resolve keeps answering the
// version that served, until SetEffectiveAlias moves it; every move notifies
// (the manager's resolution cache). Without a hold the effective version
// follows at once.
func TestAliasHold(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "fraud", "one", "champion")
	e.push(t, "fraud", "two")
	held := true
	e.reg.SetAliasHold(func(_ context.Context, ns, model, alias string) bool {
		return held && ns == registry.DefaultNamespace && model == "fraud" && alias == "champion"
	})
	var changes int
	e.reg.OnChange(func(c registry.Change) {
		if c.Kind == registry.AliasChanged {
			changes++
		}
	})
	resolve := func() int64 {
		t.Helper()
		v, err := e.reg.Resolve(ctx, registry.DefaultNamespace, "fraud", "champion")
		if err != nil {
			t.Fatal(err)
		}
		return v.Version
	}
	if err := e.reg.SetAlias(ctx, registry.DefaultNamespace, "fraud", "champion", 2); err != nil {
		t.Fatal(err)
	}
	m, _ := e.reg.GetModel(ctx, registry.DefaultNamespace, "fraud")
	if m.Aliases["champion"] != 2 || m.Effective["champion"] != 1 || resolve() != 1 {
		t.Fatalf("held: declared %v effective %v resolves %d, want 2, 1, 1", m.Aliases, m.Effective, resolve())
	}
	// "" resolves the champion too.
	if v, _ := e.reg.Resolve(ctx, registry.DefaultNamespace, "fraud", ""); v.Version != 1 {
		t.Fatalf(`"" resolves %d while champion serves 1`, v.Version)
	}
	if err := e.reg.SetEffectiveAlias(ctx, registry.DefaultNamespace, "fraud", "champion", 2); err != nil {
		t.Fatal(err)
	}
	if resolve() != 2 {
		t.Fatalf("after the rollout moved it: %d", resolve())
	}
	held = false
	if err := e.reg.SetAlias(ctx, registry.DefaultNamespace, "fraud", "champion", 1); err != nil {
		t.Fatal(err)
	}
	if resolve() != 1 {
		t.Fatalf("without a hold the effective version follows at once: %d", resolve())
	}
	if changes != 3 {
		t.Fatalf("%d alias notifications, want 3", changes)
	}
}
