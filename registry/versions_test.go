package registry_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// TestVersionNumbersAreBounded (issue 10 defect 7): version 2^63-1 was
// accepted, and latest+1 then turned into a REAL in SQLite, breaking every
// later push of the model. Numbers above MaxVersion are refused wherever they
// enter, and the store's numbering stops at MaxVersion instead of overflowing.
func TestVersionNumbersAreBounded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sha := e.put(t, "onnx bytes")
	tooBig := "must be at most 9007199254740991 (2^53-1)"

	for _, n := range []int64{registry.MaxVersion + 1, math.MaxInt64} {
		_, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "m", SHA256: sha, Version: n})
		wantErr(t, err, errs.ErrInvalid, "version "+strconv.FormatInt(n, 10)+": "+tooBig)
		// The store refuses it too, whoever calls it.
		_, err = e.reg.Store().CreateVersion(ctx, registry.Version{Namespace: "default", Model: "m", Version: n,
			Format: "onnx", SHA256: sha, CreatedAt: time.Now()})
		wantErr(t, err, errs.ErrInvalid, tooBig)
		wantErr(t, e.reg.SetAlias(ctx, "default", "m", "a", n), errs.ErrInvalid, tooBig)
		wantErr(t, e.reg.DeleteVersion(ctx, "default", "m", n, true), errs.ErrInvalid, tooBig)
		_, err = e.reg.GetVersion(ctx, "default", "m", n)
		wantErr(t, err, errs.ErrInvalid, tooBig)
		_, err = e.reg.Resolve(ctx, "default", "m", strconv.FormatInt(n, 10))
		wantErr(t, err, errs.ErrInvalid, tooBig)
	}
	if _, err := e.reg.GetModel(ctx, "default", "m"); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("a refused version left a model: %v", err)
	}

	// The highest number is fine; numbering then stops with a clear error and
	// the model keeps working.
	v, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "m", SHA256: sha, Version: registry.MaxVersion})
	if err != nil || v.Version != registry.MaxVersion {
		t.Fatalf("version MaxVersion: %v %v", v.Version, err)
	}
	for range 2 {
		_, err = e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "m", SHA256: sha})
		wantErr(t, err, errs.ErrFailedPrecondition, "model m has used every version number up to 9007199254740991")
	}
	m, err := e.reg.GetModel(ctx, "default", "m")
	if err != nil || m.LatestVersion != registry.MaxVersion {
		t.Fatalf("model after refused pushes: %+v %v", m, err)
	}
	if got, err := e.reg.Resolve(ctx, "default", "m", ""); err != nil || got.Version != registry.MaxVersion {
		t.Fatalf("resolve latest: %v %v", got.Version, err)
	}
	// Other models number on.
	if v := e.push(t, "other", "onnx bytes"); v.Version != 1 {
		t.Fatalf("other model's first version: %d", v.Version)
	}
}
