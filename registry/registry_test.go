package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// fakeInspector stands in for the ONNX inspector (runtime/onnx, built separately
// and needing the ONNX Runtime library): artifacts starting with "bad" are invalid,
// anything else has a fixed signature.
type fakeInspector struct{}

var fakeSig = tensor.Signature{
	Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
	Outputs: []tensor.TensorSpec{{Name: "y", DataType: tensor.FP32, Shape: []int64{-1, 1}}},
}

func (fakeInspector) Inspect(r io.ReaderAt, size int64) (tensor.Signature, error) {
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil {
		return tensor.Signature{}, err
	}
	if bytes.HasPrefix(b, []byte("bad")) {
		return tensor.Signature{}, errs.New(errs.InvalidArgument, "proto: cannot parse invalid wire-format data")
	}
	if bytes.HasPrefix(b, []byte("fixed")) {
		return fixedSig, nil
	}
	return fakeSig, nil
}

// fixedSig has no dynamic batch dimension, so it cannot batch.
var fixedSig = tensor.Signature{
	Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 4}}},
	Outputs: []tensor.TensorSpec{{Name: "y", DataType: tensor.FP32, Shape: []int64{1, 1}}},
}

type env struct {
	reg   *registry.Registry
	blobs *blob.FS
}

func newEnv(t *testing.T) env {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := blob.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	insp := map[string]runtime.Inspector{"onnx": fakeInspector{}, "tree": fakeInspector{}}
	return env{reg: registry.New(store, blobs, insp, log), blobs: blobs}
}

func (e env) put(t *testing.T, content string) string {
	t.Helper()
	info, err := e.reg.PutBlob(context.Background(), strings.NewReader(content), "")
	if err != nil {
		t.Fatal(err)
	}
	return info.SHA256
}

func (e env) push(t *testing.T, model, content string, aliases ...string) registry.Version {
	t.Helper()
	v, err := e.reg.CreateVersion(context.Background(), registry.CreateVersionRequest{
		Model: model, SHA256: e.put(t, content), Aliases: aliases,
	})
	if err != nil {
		t.Fatalf("CreateVersion(%s): %v", model, err)
	}
	return v
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// wantErr checks an error's kind and that its user-facing message contains msg.
func wantErr(t *testing.T, err error, kind error, msg string) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %v: kind %v, want %v", err, errs.KindOf(err), errs.KindOf(kind))
	}
	if pm := errs.PublicMessage(err); !strings.Contains(pm, msg) {
		t.Errorf("message %q does not contain %q", pm, msg)
	}
}

func TestNameValidation(t *testing.T) {
	const rule = "must consist of lowercase letters, digits, '-', '_' or '.', and start and end with a letter or digit"
	tests := []struct {
		name  string
		check func(string) error
		in    string
		want  string // "" means valid
	}{
		{"model ok", registry.ValidateModelName, "fraud-v2.1_x", ""},
		{"model one char", registry.ValidateModelName, "a", ""},
		{"model digits ok", registry.ValidateModelName, "2024", ""},
		{"model upper", registry.ValidateModelName, "Fraud!", `model name "Fraud!": ` + rule},
		{"model leading dash", registry.ValidateModelName, "-fraud", rule},
		{"model trailing dot", registry.ValidateModelName, "fraud.", rule},
		{"model slash", registry.ValidateModelName, "a/b", rule},
		{"model empty", registry.ValidateModelName, "", "model name: must not be empty"},
		{"model 63", registry.ValidateModelName, strings.Repeat("a", 63), ""},
		{"model 64", registry.ValidateModelName, strings.Repeat("a", 64), "must be at most 63 characters"},
		{"namespace ok", registry.ValidateNamespace, "team-a", ""},
		{"namespace bad", registry.ValidateNamespace, "Team A", `namespace "Team A": ` + rule},
		{"alias ok", registry.ValidateAlias, "champion", ""},
		{"alias with digit", registry.ValidateAlias, "v2", ""},
		{"alias digits", registry.ValidateAlias, "123", `alias "123": must not be all digits`},
		{"alias bad", registry.ValidateAlias, "Champ", `alias "Champ": ` + rule},
		{"digest ok", registry.ValidateDigest, sum("x"), ""},
		{"digest prefixed", registry.ValidateDigest, "sha256:" + sum("x"), "must be 64 lowercase hex characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Errorf("%q: unexpected error %v", tc.in, err)
				}
				return
			}
			wantErr(t, err, errs.ErrInvalid, tc.want)
		})
	}
}

func TestServingValidate(t *testing.T) {
	tests := []struct {
		in   registry.ServingConfig
		want string
	}{
		{registry.ServingConfig{}, ""},
		{registry.ServingConfig{Threads: 64, InterOpThreads: 64}, ""},
		{registry.ServingConfig{Threads: 65}, "serving.threads: must be between 0 and 64"},
		{registry.ServingConfig{Threads: -1}, "serving.threads: must be between 0 and 64"},
		{registry.ServingConfig{InterOpThreads: 100}, "serving.interOpThreads: must be between 0 and 64"},
		{registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 64, MaxQueueDelay: registry.Duration(2 * time.Millisecond), PreferredBatchSizes: []int{16, 32}}}, ""},
		{registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: -1}}, "serving.batching.maxBatchSize: must be between 0 and 65536"},
		{registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8, MaxQueueDelay: registry.Duration(time.Minute)}}, "serving.batching.maxQueueDelay: must be between 0 and 10s, got 1m0s"},
		{registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8, PreferredBatchSizes: []int{4, 16}}}, "serving.batching.preferredBatchSizes[1]: must be between 1 and maxBatchSize (8), got 16"},
		{registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8, PreferredBatchSizes: []int{4, 2}}}, "serving.batching.preferredBatchSizes[1]: sizes must increase, got 2 after 4"},
		{registry.ServingConfig{Instances: &registry.InstancesConfig{Min: 3, Max: 2}}, "serving.instances.min: must not exceed max (2), got 3"},
		{registry.ServingConfig{Instances: &registry.InstancesConfig{Max: 65}}, "serving.instances.max: must be between 0 and 64"},
		{registry.ServingConfig{MaxQueueSize: -5}, "serving.maxQueueSize: must be between 0 and"},
		{registry.ServingConfig{Timeout: registry.Duration(2 * time.Hour)}, "serving.timeout: must be between 0 and 1h0m0s, got 2h0m0s"},
	}
	for _, tc := range tests {
		err := tc.in.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.in, err)
			}
			continue
		}
		wantErr(t, err, errs.ErrInvalid, tc.want)
	}
}

func TestCreateVersion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := e.put(t, "onnx bytes")
	bad := e.put(t, "bad bytes")
	tests := []struct {
		name     string
		req      registry.CreateVersionRequest
		kind     error
		msg      string
		wantVers int64
	}{
		{"defaults", registry.CreateVersionRequest{Model: "fraud", SHA256: good}, nil, "", 1},
		{"explicit format and aliases", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Format: "tree",
			Aliases: []string{"champion", "staging", "champion"}}, nil, "", 2},
		{"unknown format", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Format: "pickle"},
			errs.ErrInvalid, `format "pickle": unknown; known formats: onnx, tree`, 0},
		{"missing blob", registry.CreateVersionRequest{Model: "fraud", SHA256: sum("nope")},
			errs.ErrNotFound, "blob sha256:" + sum("nope") + " not found; upload it first", 0},
		{"malformed digest", registry.CreateVersionRequest{Model: "fraud", SHA256: "abc"}, errs.ErrInvalid, "sha256", 0},
		{"invalid artifact", registry.CreateVersionRequest{Model: "broken", SHA256: bad},
			errs.ErrInvalid, "artifact is not a valid onnx model: proto: cannot parse", 0},
		{"bad model name", registry.CreateVersionRequest{Model: "Fraud!", SHA256: good}, errs.ErrInvalid, `model name "Fraud!"`, 0},
		{"bad namespace", registry.CreateVersionRequest{Namespace: "A", Model: "fraud", SHA256: good}, errs.ErrInvalid, `namespace "A"`, 0},
		{"numeric alias", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Aliases: []string{"7"}}, errs.ErrInvalid, `alias "7"`, 0},
		{"bad serving", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Serving: &registry.ServingConfig{Threads: 999}},
			errs.ErrInvalid, "serving.threads", 0},
		{"negative version", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Version: -2}, errs.ErrInvalid, "version -2", 0},
		{"duplicate version", registry.CreateVersionRequest{Model: "fraud", SHA256: good, Version: 2}, errs.ErrAlreadyExists, "already exists", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := e.reg.CreateVersion(ctx, tc.req)
			if tc.kind != nil {
				wantErr(t, err, tc.kind, tc.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != tc.wantVers || v.Namespace != registry.DefaultNamespace || v.Size != int64(len("onnx bytes")) {
				t.Errorf("version = %+v", v)
			}
			if len(v.Signature.Inputs) != 1 || v.Signature.Inputs[0].Name != "x" {
				t.Errorf("signature not recorded: %+v", v.Signature)
			}
			if tc.req.Format == "" && v.Format != "onnx" {
				t.Errorf("format = %q, want onnx", v.Format)
			}
		})
	}
	// The invalid artifact created nothing.
	if _, err := e.reg.GetModel(ctx, "", "broken"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("GetModel(broken) = %v, want NotFound", err)
	}
	m, err := e.reg.GetModel(ctx, "", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if m.Aliases["champion"] != 2 || m.Aliases["staging"] != 2 || len(m.Aliases) != 2 {
		t.Errorf("aliases = %v", m.Aliases)
	}
}

func TestCreateVersionCorruptBlob(t *testing.T) {
	e := newEnv(t)
	sha := e.put(t, "weights")
	if err := os.WriteFile(e.blobs.Path(sha), []byte("weighTs"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.reg.CreateVersion(context.Background(), registry.CreateVersionRequest{Model: "fraud", SHA256: sha})
	wantErr(t, err, errs.ErrFailedPrecondition, "corrupt")
}

func TestResolve(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "fraud", "v1")
	e.push(t, "fraud", "v2", "staging")
	e.push(t, "fraud", "v3")
	e.push(t, "churn", "c1")
	e.push(t, "churn", "c2")
	if err := e.reg.SetAlias(ctx, "", "churn", registry.ChampionAlias, 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model, ref string
		want       int64
		kind       error
		msg        string
	}{
		{"fraud", "", 3, nil, ""},
		{"churn", "", 1, nil, ""}, // champion wins over latest
		{"fraud", "2", 2, nil, ""},
		{"fraud", "staging", 2, nil, ""},
		{"fraud", "canary", 0, errs.ErrNotFound, `model fraud has no alias "canary"; existing aliases: staging`},
		{"churn", "canary", 0, errs.ErrNotFound, "existing aliases: champion"},
		{"fraud", "9", 0, errs.ErrNotFound, "version 9 of model fraud not found"},
		{"fraud", "0", 0, errs.ErrInvalid, "must be a positive number"},
		{"fraud", "99999999999999999999", 0, errs.ErrInvalid, "must be at most 9007199254740991"},
		{"fraud", "9007199254740992", 0, errs.ErrInvalid, "version 9007199254740992: must be at most 9007199254740991 (2^53-1)"},
		{"fraud", "Bad!", 0, errs.ErrInvalid, `alias "Bad!"`},
		{"nope", "", 0, errs.ErrNotFound, "model nope not found"},
	}
	for _, tc := range tests {
		t.Run(tc.model+"@"+tc.ref, func(t *testing.T) {
			v, err := e.reg.Resolve(ctx, "", tc.model, tc.ref)
			if tc.kind != nil {
				wantErr(t, err, tc.kind, tc.msg)
				return
			}
			if err != nil || v.Version != tc.want {
				t.Errorf("Resolve = %d, %v; want %d", v.Version, err, tc.want)
			}
		})
	}

	// Latest falls back to the highest remaining version when the highest was deleted.
	if err := e.reg.DeleteVersion(ctx, "", "fraud", 3, false); err != nil {
		t.Fatal(err)
	}
	if v, err := e.reg.Resolve(ctx, "", "fraud", ""); err != nil || v.Version != 2 {
		t.Errorf("Resolve after deleting v3 = %d, %v; want 2", v.Version, err)
	}
	for _, n := range []int64{1, 2} {
		if err := e.reg.DeleteVersion(ctx, "", "fraud", n, true); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.reg.Resolve(ctx, "", "fraud", "")
	wantErr(t, err, errs.ErrNotFound, "model fraud has no versions")
}

func TestDeleteVersion(t *testing.T) {
	e := newEnv(t)
	e.reg.SetGCGrace(0) // blobs are collected with their last version at once
	ctx := context.Background()
	v1 := e.push(t, "fraud", "shared bytes")
	e.push(t, "other", "shared bytes")
	own := e.push(t, "fraud", "own bytes", "champion")
	if err := e.reg.SetAlias(ctx, "", "fraud", "shadow", 2); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		version int64
		force   bool
		kind    error
		msg     string
	}{
		{"referenced by two aliases", 2, false,
			errs.ErrConflict, "version 2 of model fraud is referenced by aliases champion, shadow; remove the aliases or use --force"},
		{"missing", 7, false, errs.ErrNotFound, "version 7 of model fraud not found"},
		{"zero", 0, false, errs.ErrInvalid, "positive"},
		{"unreferenced", 1, false, nil, ""},
		{"forced", 2, true, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, e.reg.DeleteVersion(ctx, "", "fraud", tc.version, tc.force), tc.kind, tc.msg)
		})
	}
	// A single alias is named in the singular.
	v4 := e.push(t, "fraud", "v4", "champion")
	wantErr(t, e.reg.DeleteVersion(ctx, "", "fraud", v4.Version, false), errs.ErrConflict,
		fmt.Sprintf("version %d of model fraud is referenced by alias champion; remove the alias or use --force", v4.Version))

	// v1's blob is still used by other/1; v2's (own bytes) is gone with its last version.
	if _, err := e.blobs.Stat(ctx, v1.SHA256); err != nil {
		t.Errorf("shared blob deleted: %v", err)
	}
	if _, err := e.blobs.Stat(ctx, own.SHA256); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("unreferenced blob kept: %v", err)
	}
	m, err := e.reg.GetModel(ctx, "", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Aliases["shadow"]; ok {
		t.Errorf("alias of force-deleted version survived: %v", m.Aliases)
	}
}

func TestDeleteModel(t *testing.T) {
	e := newEnv(t)
	e.reg.SetGCGrace(0)
	ctx := context.Background()
	v := e.push(t, "fraud", "a", "champion")
	e.push(t, "fraud", "b")
	wantErr(t, e.reg.DeleteModel(ctx, "", "fraud", false), errs.ErrConflict, "model fraud has aliases champion; remove them or use --force")
	wantErr(t, e.reg.DeleteModel(ctx, "", "nope", false), errs.ErrNotFound, "model nope not found")
	if err := e.reg.DeleteModel(ctx, "", "fraud", true); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.blobs.List(ctx); len(list) != 0 {
		t.Errorf("blobs left after deleting the model: %v", list)
	}
	if _, err := e.blobs.Stat(ctx, v.SHA256); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("blob of deleted model: %v", err)
	}
}

// TestDeleteKeepsBlobsWithinGrace: deleting the last version using a blob
// leaves the blob if it is younger than the GC grace — here because the same
// bytes were just uploaded again for a new version, which must then succeed
// (issue 10, defect 5: the delete removed the blob at once and the create
// failed). A blob past the grace goes with its last version.
func TestDeleteKeepsBlobsWithinGrace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	backdate := func(sha string) {
		t.Helper()
		old := time.Now().Add(-2 * registry.DefaultGCGrace)
		if err := os.Chtimes(e.blobs.Path(sha), old, old); err != nil {
			t.Fatal(err)
		}
	}
	v := e.push(t, "fraud", "shared bytes")
	backdate(v.SHA256)
	sha := e.put(t, "shared bytes") // a client uploads the same bytes again
	if err := e.reg.DeleteVersion(ctx, "", "fraud", v.Version, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "fraud", SHA256: sha}); err != nil {
		t.Fatalf("CreateVersion from the re-uploaded blob: %v", err)
	}

	old := e.push(t, "other", "old bytes")
	backdate(old.SHA256)
	if err := e.reg.DeleteModel(ctx, "", "other", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.blobs.Stat(ctx, old.SHA256); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("blob past the grace kept after its model was deleted: %v", err)
	}
	// Within the grace it stays for a later GC.
	young := e.push(t, "young", "young bytes")
	if err := e.reg.DeleteModel(ctx, "", "young", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.blobs.Stat(ctx, young.SHA256); err != nil {
		t.Errorf("blob within the grace deleted with its model: %v", err)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kept := e.push(t, "fraud", "referenced")
	orphan := e.put(t, "orphan")

	if e.reg.GCGrace() != registry.DefaultGCGrace {
		t.Errorf("default grace = %v", e.reg.GCGrace())
	}
	removed, err := e.reg.GC(ctx)
	if err != nil || len(removed) != 0 {
		t.Errorf("GC within grace period removed %v, %v", removed, err)
	}
	// A collected blob's load costs go with it; a kept one's stay.
	for _, sha := range []string{orphan, kept.SHA256} {
		if err := e.reg.SetArtifactCost(ctx, sha, "onnx 1.24.1", 4096); err != nil {
			t.Fatal(err)
		}
	}
	e.reg.SetGCGrace(0)
	removed, err = e.reg.GC(ctx)
	if err != nil || len(removed) != 1 || removed[0].SHA256 != orphan {
		t.Errorf("GC = %v, %v; want the orphan", removed, err)
	}
	if _, err := e.blobs.Stat(ctx, kept.SHA256); err != nil {
		t.Errorf("referenced blob removed: %v", err)
	}
	if _, ok, err := e.reg.ArtifactCost(ctx, orphan, "onnx 1.24.1"); ok || err != nil {
		t.Errorf("the collected blob's cost is still there (%v)", err)
	}
	if c, ok, err := e.reg.ArtifactCost(ctx, kept.SHA256, "onnx 1.24.1"); !ok || c != 4096 || err != nil {
		t.Errorf("the kept blob's cost = %d, %v, %v", c, ok, err)
	}
}

// TestGCRacesCreateVersion pushes while GC runs with no grace period: a push may
// fail (its blob was collected before the version existed) but no version may ever
// point at a missing blob.
func TestGCRacesCreateVersion(t *testing.T) {
	e := newEnv(t)
	e.reg.SetGCGrace(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := e.reg.GC(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("GC: %v", err)
				return
			}
		}
	}()
	const pushers, each = 4, 10
	var pw sync.WaitGroup
	for p := range pushers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := range each {
				info, err := e.reg.PutBlob(ctx, strings.NewReader(fmt.Sprintf("model %d-%d", p, i)), "")
				if err != nil {
					t.Errorf("PutBlob: %v", err)
					return
				}
				_, err = e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "race", SHA256: info.SHA256})
				if err != nil && !errors.Is(err, errs.ErrNotFound) {
					t.Errorf("CreateVersion: %v", err)
				}
			}
		}()
	}
	pw.Wait()
	cancel()
	wg.Wait()

	vs, err := e.reg.ListVersions(context.Background(), "", "race")
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		t.Fatal(err)
	}
	for _, v := range vs {
		if _, err := e.blobs.Stat(context.Background(), v.SHA256); err != nil {
			t.Errorf("version %d points at a missing blob: %v", v.Version, err)
		}
	}
}

func TestServingAndUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "fraud", "a")

	_, err := e.reg.SetModelServing(ctx, "", "fraud", registry.ServingConfig{InterOpThreads: 65})
	wantErr(t, err, errs.ErrInvalid, "serving.interOpThreads: must be between 0 and 64")
	m, err := e.reg.SetModelServing(ctx, "", "fraud", registry.ServingConfig{Threads: 4})
	if err != nil || m.Serving.Threads != 4 {
		t.Fatalf("SetModelServing = %+v, %v", m.Serving, err)
	}
	desc := "d"
	m, err = e.reg.PatchModel(ctx, "", "fraud", registry.ModelPatch{Description: &desc, Labels: map[string]string{"team": "risk"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Description != "d" || m.Labels["team"] != "risk" || m.Serving.Threads != 4 {
		t.Errorf("PatchModel lost or ignored fields: %+v", m)
	}
	// Nil fields stay; an empty label map clears the labels.
	m, err = e.reg.PatchModel(ctx, "", "fraud", registry.ModelPatch{Labels: map[string]string{}})
	if err != nil || m.Description != "d" || len(m.Labels) != 0 {
		t.Errorf("PatchModel(clear labels) = %+v, %v", m, err)
	}
	_, err = e.reg.PatchModel(ctx, "", "nope", registry.ModelPatch{Description: &desc})
	wantErr(t, err, errs.ErrNotFound, "model nope not found")

	wantErr(t, e.reg.SetVersionServing(ctx, "", "fraud", 1, &registry.ServingConfig{Threads: 65}), errs.ErrInvalid, "serving.threads")
	if err := e.reg.SetVersionServing(ctx, "", "fraud", 1, &registry.ServingConfig{Threads: 2}); err != nil {
		t.Fatal(err)
	}
	v, err := e.reg.GetVersion(ctx, "", "fraud", 1)
	if err != nil || v.Serving == nil || v.Serving.Threads != 2 {
		t.Errorf("version serving = %+v, %v", v.Serving, err)
	}
	if eff := m.Serving.Merge(v.Serving); eff.Threads != 2 {
		t.Errorf("merged serving = %+v", eff)
	}
	wantErr(t, e.reg.SetVersionServing(ctx, "", "fraud", 9, nil), errs.ErrNotFound, "version 9")
}

func TestAliasesAndListing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "b-model", "1")
	e.push(t, "a-model", "2", "champion")
	wantErr(t, e.reg.SetAlias(ctx, "", "a-model", "42", 1), errs.ErrInvalid, "must not be all digits")
	wantErr(t, e.reg.SetAlias(ctx, "", "a-model", "staging", 5), errs.ErrNotFound, "version 5")
	wantErr(t, e.reg.DeleteAlias(ctx, "", "a-model", "staging"), errs.ErrNotFound, "alias staging")
	if err := e.reg.DeleteAlias(ctx, "", "a-model", "champion"); err != nil {
		t.Fatal(err)
	}
	p, err := e.reg.ListModels(ctx, "", registry.ListOptions{Limit: 1})
	if err != nil || len(p.Items) != 1 || p.Items[0].Name != "a-model" || p.Next != "a-model" {
		t.Errorf("ListModels = %+v, %v", p, err)
	}
	_, err = e.reg.ListModels(ctx, "Bad NS", registry.ListOptions{})
	wantErr(t, err, errs.ErrInvalid, "namespace")
	vs, err := e.reg.ListVersions(ctx, "default", "b-model")
	if err != nil || len(vs) != 1 {
		t.Errorf("ListVersions = %v, %v", vs, err)
	}
}

// TestBatchingNeedsADynamicBatchDim: batching is refused for a model (or version)
// whose signature has no dynamic first dimension, naming the version and tensor.
func TestBatchingNeedsADynamicBatchDim(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.push(t, "m", "dynamic model bytes")
	e.push(t, "m", "fixed model bytes")
	on := registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8}}
	_, err := e.reg.SetModelServing(ctx, "default", "m", on)
	wantErr(t, err, errs.ErrInvalid, "serving.batching.maxBatchSize: version 2 cannot batch: input x has shape [1,4] without a dynamic first (batch) dimension")
	if got := errs.FieldOf(err); got != "serving.batching.maxBatchSize" {
		t.Errorf("field = %q", got)
	}
	err = e.reg.SetVersionServing(ctx, "default", "m", 2, &on)
	wantErr(t, err, errs.ErrInvalid, "version 2 cannot batch")
	// Version 2 opting out lets the model batch (version 1 can).
	off := registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 0}}
	if err := e.reg.SetVersionServing(ctx, "default", "m", 2, &off); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.SetModelServing(ctx, "default", "m", on); err != nil {
		t.Fatalf("model batching with the fixed version opted out: %v", err)
	}
	m, err := e.reg.GetModel(ctx, "default", "m")
	if err != nil || m.Serving.BatchSize() != 8 {
		t.Fatalf("stored settings: %+v %v", m.Serving, err)
	}
}
