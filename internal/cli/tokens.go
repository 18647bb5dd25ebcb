package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/cliconfig"
)

func (a *app) tokensCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token"},
		Short:   "Create, list and revoke API tokens (admin)",
		Long: `API tokens authenticate every call but health checks. Each has a role and the
namespaces it applies to (its scopes, "*" for all):

  admin     everything in its scopes, including tokens (with scope *: also GC)
  deployer  models, services, blobs: read, change and call inference
  invoker   inference and model metadata only
  viewer    read only: management API, events, status, metrics (with scope *)

A token is shown once, when it is made; the server keeps only its hash. An
admin creates, lists and revokes only tokens within its own scopes.`,
	})
	cmd.AddCommand(a.tokensCreateCommand(), a.tokensListCommand(), a.tokensRevokeCommand())
	return cmd
}

func (a *app) tokensCreateCommand() *cobra.Command {
	var (
		req   auth.CreateRequest
		limit string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE --scope NAMESPACE|* [--scope ...]",
		Short: "Create a token and print it (shown only this once)",
		Example: `  nimbus tokens create --role deployer --scope payments --name ci --expires 30d
  nimbus tokens create --role invoker --scope payments --scope fraud --rate-limit 100:200
  nimbus tokens create --role viewer --scope '*' --name prometheus
  TOKEN=$(nimbus tokens create --role invoker --scope default -o json | jq -r .token)`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Role == "" || len(req.Scopes) == 0 {
				return usageErrorf("--role and --scope are required (the global -n is not a token's scope)")
			}
			if limit != "" {
				l, err := auth.ParseLimit(limit)
				if err != nil {
					return usageError{err}
				}
				req.RateLimit = &l
			}
			out, err := a.client().CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(out, func(t *table) {
				t.row("token " + out.ID + " created (" + string(out.Role) + ", scopes " + strings.Join(out.Scopes, ",") + expiry(out.ExpiresAt) + ").")
				t.row("It is shown only now; store it safely:")
				t.row("")
				t.row("  " + out.Secret)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Role, "role", "", "admin, deployer, invoker or viewer")
	f.StringArrayVar(&req.Scopes, "scope", nil, "namespace the token applies to, or * for all (repeat for several)")
	f.StringVar(&req.Name, "name", "", "a name to recognize the token by (lists, the audit log)")
	f.StringVar(&req.ExpiresIn, "expires", "", "lifetime, e.g. 30d, 12h, 1w (default: never)")
	f.StringVar(&limit, "rate-limit", "", "requests per second, optionally :burst, e.g. 100:200 (default: the server's per-token limit)")
	return cmd
}

func expiry(at *time.Time) string {
	if at == nil {
		return ", never expires"
	}
	return ", expires " + formatTime(*at)
}

func (a *app) tokensListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tokens (never their secrets), with when each was last used",
		Example: `  nimbus tokens list
  nimbus tokens list -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := a.client().ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			return a.print(ts, func(t *table) {
				t.row("ID", "NAME", "ROLE", "SCOPES", "STATE", "CREATED", "EXPIRES", "LAST USED")
				for _, tk := range ts {
					exp := "never"
					if tk.ExpiresAt != nil {
						exp = formatTime(*tk.ExpiresAt)
					}
					last := "never"
					if tk.LastUsedAt != nil {
						last = formatAge(tk.LastUsedAt, now) + " ago"
					}
					t.row(tk.ID, orDash(tk.Name), string(tk.Role), strings.Join(tk.Scopes, ","), tk.State,
						formatAge(&tk.CreatedAt, now), exp, last)
				}
			})
		},
	}
}

func (a *app) tokensRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Aliases: []string{"rm", "delete"},
		Short:   "Revoke a token: it stops working within a second",
		Example: `  nimbus tokens revoke 3f9a0c1d2e4b`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			id := argv[0]
			if full := auth.IDOf(id); full != "" {
				id = full // a whole token was pasted: revoke it by its id
			}
			tk, err := a.client().RevokeToken(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.print(tk, func(t *table) { t.row("token " + tk.ID + " revoked") })
		},
	}
}

func (a *app) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show who the server takes you for: token, role and scopes",
		Example: `  nimbus whoami`,
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, err := a.client().Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(w, func(t *table) {
				t.row("actor:", w.Actor)
				t.row("role:", string(w.Role))
				t.row("scopes:", strings.Join(w.Scopes, ","))
				t.row("server:", a.server)
				if !w.AuthEnabled {
					t.row("note:", "this server runs with auth off")
				}
			})
		},
	}
}

func (a *app) loginCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "login --server URL --token TOKEN",
		Short: "Check a token against a server and save both as a context in the CLI config",
		Long: `login asks the server who the token belongs to and, if it is accepted, saves
server, token and namespace as a context in the CLI config file
(~/.config/nimbus/config.yaml, or $NIMBUS_CLI_CONFIG) and makes it current.
--token - reads the token from standard input (keeps it out of shell history).`,
		Example: `  nimbus login --server https://nimbus.example.com --token "$(cat nimbus-data/admin.token)"
  nimbus login --server http://127.0.0.1:8080 --token - < admin.token
  nimbus login --server https://nimbus.example.com --token "$T" --context prod -n payments --ca-file ca.pem`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("server") || !cmd.Flags().Changed("token") {
				return usageErrorf("--server and --token are required")
			}
			if a.conn.token == "-" {
				tok, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && err != io.EOF {
					return fmt.Errorf("read token from stdin: %w", err)
				}
				a.conn.token = strings.TrimSpace(tok)
			}
			w, err := a.client().Whoami(cmd.Context())
			if err != nil {
				return fmt.Errorf("the server did not accept the token: %w", err)
			}
			if name == "" {
				name = contextNameFor(a.server)
			}
			c := cliconfig.Context{Name: name, Server: a.server, Token: a.conn.token, CertificateAuthority: a.conn.caFile,
				InsecureSkipTLSVerify: a.conn.insecure}
			if cmd.Flags().Changed("namespace") {
				c.Namespace = a.namespace
			}
			err = cliconfig.Update(a.conn.configPath, func(f *cliconfig.File) error {
				f.Set(c)
				f.CurrentContext = name
				return nil
			})
			if err != nil {
				return err
			}
			return a.print(map[string]any{"context": name, "server": a.server, "actor": w.Actor, "role": w.Role, "scopes": w.Scopes},
				func(t *table) {
					t.row(fmt.Sprintf("logged in to %s as %s (%s, scopes %s); context %q saved in %s and made current",
						a.server, w.Actor, w.Role, strings.Join(w.Scopes, ","), name, a.conn.configPath))
				})
		},
	}
	cmd.Flags().StringVar(&name, "context-name", "", "name of the context to save (default: from the server's host)")
	return cmd
}

// contextNameFor makes a context name from a server URL's host and port.
func contextNameFor(server string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	s = strings.TrimRight(s, "/")
	return strings.NewReplacer(":", "-", "/", "-", "[", "", "]", "").Replace(s)
}
