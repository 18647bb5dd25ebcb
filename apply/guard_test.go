package apply_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// TestDeleteRacesServiceApply: an imperative delete of a model, of a version or
// of an alias races an apply of an InferenceService routing there. Whichever
// wins, the other is refused: the service never ends up routing to something
// deleted (issue 10, defect 5: the delete checked the services, then deleted
// outside the apply lock, and an apply validated its targets before committing).
func TestDeleteRacesServiceApply(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	wins := map[string]int{}
	for i := range 120 {
		model, svc := fmt.Sprintf("m%d", i), fmt.Sprintf("s%d", i)
		info, err := e.reg.PutBlob(ctx, strings.NewReader(model), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: model, SHA256: info.SHA256, Aliases: []string{"champion"}}); err != nil {
			t.Fatal(err)
		}
		target, del := model, func() error { return e.reg.DeleteModel(ctx, "", model, true) }
		switch i % 3 {
		case 1:
			target, del = model+"@1", func() error { return e.reg.DeleteVersion(ctx, "", model, 1, true) }
		case 2:
			target, del = model+"@champion", func() error { return e.reg.DeleteAlias(ctx, "", model, "champion") }
		}
		doc := fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: %s}\nspec:\n  traffic: [{model: %q}]\n", svc, target)

		start := make(chan struct{})
		var applyErr, delErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, applyErr = e.apply(ctx, doc)
		}()
		go func() {
			defer wg.Done()
			<-start
			// Reads stagger the delete across the apply's validation and
			// commit from round to round.
			for range (i / 3) % 10 * 3 {
				if _, err := e.reg.GetModel(ctx, "", model); err != nil {
					t.Error(err)
				}
			}
			delErr = del()
		}()
		close(start)
		wg.Wait()

		_, err = e.store.GetResource(ctx, spec.KindInferenceService, "default", svc)
		routes := err == nil
		if err != nil && !errors.Is(err, errs.ErrNotFound) {
			t.Fatal(err)
		}
		m, ref, _ := spec.ParseTarget(target)
		_, err = e.reg.Resolve(ctx, "", m, ref)
		exists := err == nil
		if routes && !exists {
			t.Fatalf("round %d: inferenceservice %s routes to %s, which was deleted (apply: %v, delete: %v)", i, svc, target, applyErr, delErr)
		}
		var fes spec.Errors
		switch {
		case applyErr == nil && delErr != nil && errs.KindOf(delErr) == errs.Conflict:
			wins["apply"]++
		case delErr == nil && errors.As(applyErr, &fes):
			wins["delete, then the apply's validation refused"]++
		case delErr == nil && errs.KindOf(applyErr) == errs.Conflict:
			wins["delete, then the apply's commit refused"]++
		case delErr == nil && errs.KindOf(applyErr) == errs.NotFound:
			// The model went between two reads of the apply's validation.
			wins["delete, during the apply's validation"]++
		default:
			t.Fatalf("round %d: apply: %v; delete: %v", i, applyErr, delErr)
		}
	}
	t.Logf("outcomes: %v", wins)
}

// TestImperativeDeleteOfADeclaredModel: deleting a model through the registry
// (as `nimbus models delete` does) drops its Model resource row in the same
// transaction, so a model pushed later under the name is not shaped by what was
// last applied; a delete the guard refuses keeps both.
func TestImperativeDeleteOfADeclaredModel(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	uri, sum := e.src.add("v1")
	e.mustApply(t, modelDoc("m", map[int64][2]string{1: {uri, sum}}, "champion: 1", "team: risk"))
	e.mustApply(t, "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc}\nspec:\n  traffic: [{model: m}]\n")

	err := e.reg.DeleteModel(ctx, "", "m", true)
	if errs.KindOf(err) != errs.Conflict || !strings.Contains(errs.PublicMessage(err), "inferenceservice svc (m) still routes there") {
		t.Fatalf("DeleteModel of a targeted model = %v", err)
	}
	if _, err := e.store.GetResource(ctx, spec.KindModel, "default", "m"); err != nil {
		t.Fatalf("resource row after a refused delete: %v", err)
	}
	if _, err := e.engine.Delete(ctx, spec.DeleteRequest{Kind: spec.KindInferenceService, Namespace: "default", Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteModel(ctx, "", "m", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetResource(ctx, spec.KindModel, "default", "m"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("resource row of the deleted model: %v", err)
	}
}

// TestDeleteLastVersionOfABareTarget: a service that targets a model bare
// ("m": its champion, else its latest version) keeps the model's last
// version: deleting it is refused (Conflict, naming the service), forced or
// not, since the service would route to nothing. Deleting any other version
// stays allowed: the latest moves to one that remains.
func TestDeleteLastVersionOfABareTarget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, content := range []string{"v1", "v2"} {
		info, err := e.reg.PutBlob(ctx, strings.NewReader(content), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "m", SHA256: info.SHA256}); err != nil {
			t.Fatal(err)
		}
	}
	e.mustApply(t, "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc}\nspec:\n  traffic: [{model: m}]\n")

	if err := e.reg.DeleteVersion(ctx, "", "m", 2, false); err != nil {
		t.Fatalf("delete of the latest, not the last, version: %v", err)
	}
	if v, err := e.reg.Resolve(ctx, "", "m", ""); err != nil || v.Version != 1 {
		t.Fatalf("svc's target resolves to %+v, %v; want version 1", v, err)
	}
	for _, force := range []bool{false, true} {
		err := e.reg.DeleteVersion(ctx, "", "m", 1, force)
		if errs.KindOf(err) != errs.Conflict || !strings.Contains(errs.PublicMessage(err), "inferenceservice svc (m) still routes there") {
			t.Fatalf("delete of the last version (force %v) = %v, want a conflict naming svc", force, err)
		}
	}
	if _, err := e.reg.Resolve(ctx, "", "m", ""); err != nil {
		t.Fatalf("svc's target after the refused deletes: %v", err)
	}
	if _, err := e.engine.Delete(ctx, spec.DeleteRequest{Kind: spec.KindInferenceService, Namespace: "default", Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteVersion(ctx, "", "m", 1, false); err != nil {
		t.Fatalf("delete of the last version nothing routes to: %v", err)
	}
}
