package spec

import (
	"strings"
	"testing"
	"time"
)

func decodeOne(t *testing.T, yaml string) (*GitSource, []FieldError) {
	t.Helper()
	docs, fes := Decode("gs.yaml", []byte(yaml))
	if len(fes) > 0 {
		return nil, fes
	}
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	Default(docs[0].Object, "payments")
	return docs[0].Object.(*GitSource), Validate(docs[0])
}

func TestGitSourceDecodesAndDefaults(t *testing.T) {
	gs, fes := decodeOne(t, `apiVersion: nimbus.dev/v1
kind: GitSource
metadata: {name: platform, managedBy: gitsource/other}
spec: {url: "https://git.example/ml/deploy.git", ref: main, path: payments/, selfHeal: true}
`)
	if len(fes) > 0 {
		t.Fatalf("errors: %v", fes)
	}
	s := gs.Spec
	if gs.Metadata.Namespace != "payments" || gs.Metadata.ManagedBy != "" {
		t.Fatalf("metadata %+v: managedBy is the server's to write", gs.Metadata)
	}
	if s.IntervalOrDefault() != time.Minute || !Flag(s.Prune, false) || !Flag(s.SelfHeal, false) ||
		Flag(s.LockImperative, true) || Flag(s.AllowEmpty, true) {
		t.Fatalf("defaults: %+v", s)
	}
	// Default is idempotent: a defaulted source equals itself defaulted again.
	again := Clone(gs)
	Default(again, "payments")
	if !SpecEqual(gs, again) {
		t.Fatal("Default is not idempotent")
	}
}

func TestGitSourceValidation(t *testing.T) {
	for _, tc := range []struct{ spec, field, msg string }{
		{`{ref: main}`, "spec.url", "required"},
		{`{url: "ssh://git@host/repo"}`, "spec.url", `scheme "ssh" is not supported`},
		{`{url: "https://user:pw@host/repo"}`, "spec.url", "must not carry credentials"},
		{`{url: "file://relative/repo"}`, "spec.url", "must name an absolute path"},
		{`{url: "https://host/r.git", ref: "main..x"}`, "spec.ref", "not a valid branch"},
		{`{url: "https://host/r.git", path: "../etc"}`, "spec.path", "clean folder path"},
		{`{url: "https://host/r.git", path: "/abs"}`, "spec.path", "clean folder path"},
		{`{url: "https://host/r.git", interval: 10ms}`, "spec.interval", "at least 1s"},
		{`{url: "https://host/r.git", targetNamespaces: [payments]}`, "spec.targetNamespaces[0]", "own namespace"},
		{`{url: "https://host/r.git", targetNamespaces: [a, a]}`, "spec.targetNamespaces[1]", "listed twice"},
		{`{url: "http://host/r.git", auth: {tokenFrom: {env: NIMBUS_SECRET_GIT}}}`, "spec.auth", "only to https://"},
		{`{url: "https://host/r.git", auth: {tokenFrom: {env: HOME}}}`, "spec.auth.tokenFrom.env", "NIMBUS_SECRET_"},
	} {
		_, fes := decodeOne(t, "apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: g}\nspec: "+tc.spec+"\n")
		found := false
		for _, fe := range fes {
			if fe.Field == tc.field && strings.Contains(fe.Message, tc.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: errors %+v, want %s: %s", tc.spec, fes, tc.field, tc.msg)
		}
	}
	for _, ok := range []string{`{url: "/srv/repos/deploy"}`, `{url: "file:///srv/repos/deploy", ref: v1.2.0, path: deploy/prod}`,
		`{url: "https://host/r.git", auth: {tokenFrom: {file: git-token}}, webhook: {secretFrom: {env: NIMBUS_SECRET_HOOK}}, targetNamespaces: [risk]}`} {
		if _, fes := decodeOne(t, "apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: g}\nspec: "+ok+"\n"); len(fes) > 0 {
			t.Errorf("%s: %v", ok, fes)
		}
	}
}

func TestRepoPathSources(t *testing.T) {
	for uri, want := range map[string]bool{
		"./fraud-v3.onnx": true, "models/m.onnx": false, "./models/m.onnx": true, "../artifacts/m.onnx": true,
		"/abs/m.onnx": false, "file:///m.onnx": false, "c:m.onnx": false, "": false, `a\b.onnx`: false,
	} {
		if got := IsRepoPath(uri); got != want {
			t.Errorf("IsRepoPath(%q) = %v, want %v", uri, got, want)
		}
	}
}
