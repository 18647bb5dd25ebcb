package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/cliconfig"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// runIn runs the CLI with env as its whole environment and stdin as input.
func runWith(env map[string]string, stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

// TestLoginAndContexts: login checks the token against a real server and saves
// a context; the CLI then needs nothing else; contexts are listed with tokens
// redacted and switched; a context's token never goes to another server.
func TestLoginAndContexts(t *testing.T) {
	srv := testutil.StartServer(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	env := map[string]string{cliconfig.EnvPath: cfgPath}

	// A refused token saves nothing.
	if _, errOut, code := runWith(env, "", "login", "--server", srv.URL, "--token", "nimbus_000000000000_"+strings.Repeat("a", 52)); code != 1 ||
		!strings.Contains(errOut, "did not accept the token") {
		t.Fatalf("login with a bad token: %d %s", code, errOut)
	}
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("a failed login wrote the config: %v", err)
	}
	// The token from stdin, kept out of the shell's history.
	out, errOut, code := runWith(env, srv.Token+"\n", "login", "--server", srv.URL, "--token", "-", "--context-name", "dev", "-n", "payments")
	if code != 0 || !strings.Contains(out, `context "dev" saved`) {
		t.Fatalf("login: %d %s %s", code, out, errOut)
	}
	if st, _ := os.Stat(cfgPath); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v", st.Mode().Perm())
	}
	if out, _, code := runWith(env, "", "whoami"); code != 0 || !strings.Contains(out, "bootstrap-admin") {
		t.Fatalf("whoami from the context: %d %s", code, out)
	}
	// The context's namespace is the default -n.
	if _, _, code := runWith(env, "", "models", "push", testutil.Model("mlp"), "--name", "m"); code != 0 {
		t.Fatal("push from the context")
	}
	if out, _, _ := runWith(env, "", "models", "list", "-n", "payments"); !strings.Contains(out, "m ") {
		t.Fatalf("the push did not go to the context's namespace: %s", out)
	}
	out, _, _ = runWith(env, "", "config", "view")
	if strings.Contains(out, srv.Token) || !strings.Contains(out, "REDACTED") {
		t.Fatalf("config view shows the token: %s", out)
	}
	if out, _, _ := runWith(env, "", "config", "get-contexts"); !strings.Contains(out, "*        dev") {
		t.Fatalf("get-contexts: %s", out)
	}
	if _, _, code := runWith(env, "", "config", "use-context", "nope"); code != 2 {
		t.Fatalf("use-context of a missing context: %d", code)
	}

	// --server elsewhere: the context's token stays home.
	var mu sync.Mutex
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"items":[]}`))
	}))
	defer other.Close()
	if _, errOut, code := runWith(env, "", "--server", other.URL, "models", "list"); code != 0 {
		t.Fatalf("list elsewhere: %s", errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "" {
		t.Fatalf("the other server received Authorization %q", got)
	}
	// Delete it: the CLI falls back to the defaults.
	if _, _, code := runWith(env, "", "config", "delete-context", "dev"); code != 0 {
		t.Fatal("delete-context")
	}
	if f, _ := cliconfig.Load(cfgPath); len(f.Contexts) != 0 || f.CurrentContext != "" {
		t.Fatalf("after delete: %+v", f)
	}
}

// TestBrokenConfigFile: a damaged CLI config is reported with its path;
// commands that do not need it still run.
func TestBrokenConfigFile(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgPath, []byte("contexts: [oops\n"), 0o600)
	env := map[string]string{cliconfig.EnvPath: cfgPath}
	if _, errOut, code := runWith(env, "", "models", "list"); code == 0 || !strings.Contains(errOut, cfgPath) {
		t.Fatalf("models list with a broken config: %d %s", code, errOut)
	}
	if _, _, code := runWith(env, "", "version"); code != 0 {
		t.Fatal("version needs no config")
	}
}
