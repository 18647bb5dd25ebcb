package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

var testSig = tensor.Signature{
	Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
	Outputs: []tensor.TensorSpec{{Name: "label", DataType: tensor.Int64, Shape: []int64{-1}}},
}

// mgmtServer starts the management API over a fake registry.
func mgmtServer(t *testing.T) string {
	t.Helper()
	return mgmtServerSig(t, testSig)
}

// mgmtServerSig is mgmtServer whose versions get sig.
func mgmtServerSig(t *testing.T, sig tensor.Signature) string {
	t.Helper()
	reg := mgmttest.New(sig)
	srv := httptest.NewServer(openMgmt(reg, mgmt.Options{Logger: slog.New(slog.DiscardHandler), UploadDir: t.TempDir()}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type result struct {
	out, err string
	code     int
}

func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

// cli runs nimbus against server and fails the test on a non-zero exit.
func cli(t *testing.T, server string, args ...string) string {
	t.Helper()
	r := runCLI(t, nil, append([]string{"--server", server}, args...)...)
	if r.code != 0 {
		t.Fatalf("nimbus %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

func modelFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPushAndGet(t *testing.T) {
	srv := mgmtServer(t)
	file := modelFile(t, "Churn_Model.onnx", "onnx-bytes")

	out := cli(t, srv, "models", "push", file, "--alias", "champion", "--lineage", "run=42")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "MODEL") || !strings.Contains(lines[1], "churn-model") ||
		!strings.Contains(lines[1], "10 B") || !strings.Contains(lines[1], "champion") {
		t.Fatalf("push table:\n%s", out)
	}

	out = cli(t, srv, "models", "push", file, "--name", "churn-model", "--description", "second", "-o", "json")
	var v registry.Version
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("push json %q: %v", out, err)
	}
	if v.Model != "churn-model" || v.Version != 2 || v.Description != "second" || v.Size != 10 || len(v.SHA256) != 64 {
		t.Errorf("pushed version = %+v", v)
	}

	out = cli(t, srv, "models", "get", "churn-model")
	for _, want := range []string{
		"Name:         churn-model",
		"Aliases:      champion=1",
		"Serving:      threads=default interOpThreads=default",
		"x FP32 [-1,4]",
		"label INT64 [-1]",
		v.SHA256[:12],
	} {
		if !strings.Contains(out, want) {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}

	var d modelDetails
	if err := json.Unmarshal([]byte(cli(t, srv, "models", "get", "churn-model", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Versions) != 2 || d.Versions[0].Lineage["run"] != "42" || d.Model.Aliases["champion"] != 1 {
		t.Errorf("get json = %+v", d)
	}
	yml := cli(t, srv, "models", "get", "churn-model", "-o", "yaml")
	if !strings.Contains(yml, "latestVersion: 2") || !strings.Contains(yml, "datatype: FP32") {
		t.Errorf("get yaml:\n%s", yml)
	}
}

func TestListPaging(t *testing.T) {
	srv := mgmtServer(t)
	file := modelFile(t, "m.onnx", "onnx-bytes")
	for _, n := range []string{"bravo", "alpha", "charlie"} {
		cli(t, srv, "models", "push", file, "--name", n)
	}
	tests := []struct {
		name      string
		args      []string
		wantNames []string
		wantHint  bool
	}{
		{name: "all", args: nil, wantNames: []string{"alpha", "bravo", "charlie"}},
		{name: "one page", args: []string{"--limit", "2"}, wantNames: []string{"alpha", "bravo"}, wantHint: true},
		{name: "follow pages", args: []string{"--limit", "1", "--all"}, wantNames: []string{"alpha", "bravo", "charlie"}},
		{name: "after", args: []string{"--after", "alpha"}, wantNames: []string{"bravo", "charlie"}},
		{name: "prefix", args: []string{"--prefix", "ch"}, wantNames: []string{"charlie"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"--server", srv, "models", "list"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.err)
			}
			lines := strings.Split(strings.TrimSpace(r.out), "\n")
			var got []string
			for _, l := range lines[1:] {
				got = append(got, strings.Fields(l)[0])
			}
			if diff := cmp.Diff(tt.wantNames, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if hint := strings.Contains(r.err, "--after"); hint != tt.wantHint {
				t.Errorf("hint = %v, stderr %q", hint, r.err)
			}

			var page registry.ModelPage
			out := cli(t, srv, append([]string{"models", "list", "-o", "json"}, tt.args...)...)
			if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Items) != len(tt.wantNames) {
				t.Errorf("json page %s: %v", out, err)
			}
		})
	}
	want := "NAME   LATEST  ALIASES  UPDATED\nalpha  1       -        2025-01-02T03:04:05Z\n"
	if out := cli(t, srv, "models", "list", "--limit", "1"); out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestAliasDeleteConfigGC(t *testing.T) {
	srv := mgmtServer(t)
	file := modelFile(t, "churn.onnx", "onnx-bytes")
	cli(t, srv, "models", "push", file)
	cli(t, srv, "models", "push", file)

	if out := cli(t, srv, "models", "alias", "set", "churn", "champion", "2"); out != "churn@champion -> version 2\n" {
		t.Errorf("alias set: %q", out)
	}
	r := runCLI(t, nil, "--server", srv, "models", "delete", "churn@2")
	if r.code != 1 || !strings.HasPrefix(r.err, "Error: delete version: version 2 is referenced by alias \"champion\"") {
		t.Errorf("delete aliased: exit %d, stderr %q", r.code, r.err)
	}
	if out := cli(t, srv, "models", "alias", "rm", "churn", "champion"); out != "removed alias churn@champion\n" {
		t.Errorf("alias rm: %q", out)
	}
	if out := cli(t, srv, "models", "delete", "churn@2", "-o", "json"); !strings.Contains(out, `"deleted": "churn@2"`) {
		t.Errorf("delete json: %q", out)
	}

	want := "MODEL  churn\nthreads         1 (default)\ninterOpThreads  1 (default)\nbatching        off\n" +
		"instances       max=1 (default)\nmaxQueueSize    1024 (default)\ntimeout         none\nidleTimeout     15m0s (default)\nwarmup          off\n"
	if out := cli(t, srv, "models", "config", "churn"); out != want {
		t.Errorf("config show:\n%s\nwant:\n%s", out, want)
	}
	if out := cli(t, srv, "models", "config", "churn", "--threads", "4"); !strings.Contains(out, "\nthreads         4\n") {
		t.Errorf("config set:\n%s", out)
	}
	out := cli(t, srv, "models", "config", "churn", "--version", "1", "--inter-op-threads", "2")
	if !strings.Contains(out, "\nthreads         4                -          4\n") ||
		!strings.Contains(out, "\ninterOpThreads  1 (default)      2          2\n") {
		t.Errorf("config version:\n%s", out)
	}
	var view servingView
	if err := json.Unmarshal([]byte(cli(t, srv, "models", "config", "churn", "--version", "1", "--clear", "-o", "json")), &view); err != nil {
		t.Fatal(err)
	}
	if view.Override != nil || view.Effective != (registry.ServingConfig{Threads: 4, InterOpThreads: 1}) {
		t.Errorf("config clear = %+v", view)
	}

	cli(t, srv, "models", "delete", "churn")
	if out := cli(t, srv, "models", "gc"); !strings.Contains(out, "removed 1 blobs (10 B)") {
		t.Errorf("gc: %q", out)
	}
	if out := cli(t, srv, "models", "gc", "-o", "json"); out != "{\n  \"removed\": []\n}\n" {
		t.Errorf("gc json: %q", out)
	}
}

func TestExitCodesAndGlobals(t *testing.T) {
	srv := mgmtServer(t)
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		errHas string
		outHas string
	}{
		{name: "missing argument", args: []string{"models", "get"}, code: 2, errHas: "accepts 1 arg(s)"},
		{name: "unknown flag", args: []string{"models", "list", "--bogus"}, code: 2, errHas: "unknown flag: --bogus"},
		{name: "unknown subcommand", args: []string{"models", "frobnicate"}, code: 2, errHas: `unknown command "frobnicate"`},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, errHas: "unknown command"},
		{name: "bad output", args: []string{"-o", "xml", "version"}, code: 2, errHas: `invalid --output "xml"`},
		{name: "bad alias version", args: []string{"models", "alias", "set", "m", "a", "x"}, code: 2, errHas: "not a positive number"},
		{name: "bad lineage", args: []string{"models", "push", "f", "--lineage", "oops"}, code: 2, errHas: "want key=value"},
		{name: "not found", args: []string{"--server", srv, "models", "get", "nope"}, code: 1, errHas: `Error: get model: model "nope" not found`},
		{name: "server from env", env: map[string]string{"NIMBUS_SERVER": srv}, args: []string{"models", "list"}, code: 0, outHas: "NAME"},
		{name: "namespace from env", env: map[string]string{"NIMBUS_SERVER": srv, "NIMBUS_NAMESPACE": "other"}, args: []string{"models", "list", "-o", "json"}, code: 0, outHas: `"items": []`},
		{name: "unreachable server", args: []string{"--server", "http://127.0.0.1:1", "models", "list"}, code: 1, errHas: "connection refused"},
		{name: "version", args: []string{"version"}, code: 0, outHas: "nimbus dev\ngo go1."},
		{name: "version json", args: []string{"version", "-o", "json"}, code: 0, outHas: `"version": "dev"`},
		{name: "help", args: []string{"models", "push", "--help"}, code: 0, outHas: "Examples:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, tt.args...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) || !strings.Contains(r.out, tt.outHas) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", r.code, tt.code, r.out, r.err)
			}
		})
	}
}

func TestDefaultModelName(t *testing.T) {
	tests := map[string]string{
		"churn.onnx":                "churn",
		"/tmp/Models/Fraud_V2.onnx": "fraud-v2",
		"my model (final).onnx":     "my-model-final",
		"iris":                      "iris",
	}
	for in, want := range tests {
		if got := defaultModelName(in); got != want {
			t.Errorf("defaultModelName(%q) = %q, want %q", in, got, want)
		}
	}
}
