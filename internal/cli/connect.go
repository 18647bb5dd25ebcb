package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/internal/cliconfig"
)

// connFlags are the global flags that say how to reach the server, and what
// they resolved to.
type connFlags struct {
	context, token, caFile string
	insecure               bool

	// Resolved by connect.
	configPath string
	file       *cliconfig.File
	current    cliconfig.Context // the context in use (zero: none)
	http       *http.Client
	// fromContext says where the server came from, for hints.
	fromContext bool
}

func (c *connFlags) register(pf *pflag.FlagSet) {
	pf.StringVar(&c.context, "context", "", "CLI config context to use (env NIMBUS_CONTEXT; default: the current one, see nimbus config)")
	pf.StringVar(&c.token, "token", "", "API token (env NIMBUS_TOKEN; default: the context's)")
	pf.StringVar(&c.caFile, "ca-file", "", "PEM file of CAs to trust for an https server (env NIMBUS_CA_FILE; default: the context's)")
	pf.BoolVar(&c.insecure, "insecure-skip-tls-verify", false, "trust any server certificate (testing only)")
}

// connect resolves server, token, namespace and TLS settings: a flag, else
// its NIMBUS_* variable, else the context (--context, NIMBUS_CONTEXT or the
// current one in the CLI config file), else the default. A context's token is
// sent only to that context's server, never to one named by --server.
func (a *app) connect(cmd *cobra.Command) error {
	c := &a.conn
	c.configPath = cliconfig.Path(a.getenv)
	f, err := cliconfig.Load(c.configPath)
	if err != nil {
		if skipsConfig(cmd) {
			f = &cliconfig.File{}
		} else {
			return err
		}
	}
	c.file = f
	name := firstOf(c.context, a.getenv("NIMBUS_CONTEXT"))
	switch {
	case name != "":
		ctx, ok := f.Get(name)
		if !ok {
			return usageErrorf("context %q is not in %s (nimbus config get-contexts lists them)", name, c.configPath)
		}
		c.current = ctx
	default:
		c.current, _ = f.Current()
	}
	a.server = firstOf(a.server, a.getenv("NIMBUS_SERVER"))
	if a.server == "" && c.current.Server != "" {
		a.server, c.fromContext = c.current.Server, true
	}
	if a.server == "" {
		a.server = defaultServer
	}
	sameServer := c.current.Server != "" && strings.TrimRight(c.current.Server, "/") == strings.TrimRight(a.server, "/")
	c.token = firstOf(c.token, a.getenv("NIMBUS_TOKEN"))
	if c.token == "" && sameServer {
		c.token = c.current.Token
	}
	ns := a.namespace
	if !cmd.Flags().Changed("namespace") {
		ns = firstOf(a.getenv("NIMBUS_NAMESPACE"), c.current.Namespace, defaultNamespace)
	}
	a.namespace = ns
	c.caFile = firstOf(c.caFile, a.getenv("NIMBUS_CA_FILE"))
	insecure := c.insecure
	if sameServer {
		c.caFile = firstOf(c.caFile, c.current.CertificateAuthority)
		insecure = insecure || c.current.InsecureSkipTLSVerify
	}
	c.http, err = httpClient(c.caFile, insecure)
	return err
}

// skipsConfig: commands that must work with a broken CLI config file.
func skipsConfig(cmd *cobra.Command) bool {
	for p := cmd; p != nil; p = p.Parent() {
		switch p.Name() {
		case "server", "version", "config", "login":
			return true
		}
	}
	return false
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// httpClient trusts caFile's CAs (besides the system's) or, with insecure,
// any certificate.
func httpClient(caFile string, insecure bool) (*http.Client, error) {
	if caFile == "" && !insecure {
		return http.DefaultClient, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // asked for by flag
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// authHint says how to get a working token after the server refused one.
func (a *app) authHint(err error) string {
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return ""
	}
	if a.conn.token == "" {
		return "Hint: this server needs a token. On the server's machine the bootstrap admin token is in <data-dir>/admin.token:\n" +
			"  nimbus login --server " + a.server + " --token \"$(cat nimbus-data/admin.token)\"\n" +
			"or pass --token / NIMBUS_TOKEN. Lost it? nimbus server reset-admin-token --data-dir <data-dir>"
	}
	return "Hint: the token was refused. Get a new one from an admin (nimbus tokens create), then nimbus login --server " + a.server +
		" --token <token>; on the server's machine, nimbus server reset-admin-token --data-dir <data-dir> makes a new admin token."
}
