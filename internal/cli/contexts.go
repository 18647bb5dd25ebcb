package cli

import (
	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/cliconfig"
)

func (a *app) contextsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "config",
		Short: "Show and switch the CLI's contexts (server, token, namespace)",
		Long: `The CLI config file (~/.config/nimbus/config.yaml, or $NIMBUS_CLI_CONFIG) holds
contexts, as kubeconfig does: each a server URL, a token and a default
namespace. nimbus login adds one; a server started on loopback adds its own when
it makes its bootstrap token. Flags and NIMBUS_SERVER / NIMBUS_TOKEN /
NIMBUS_NAMESPACE override the current context; a context's token is only ever
sent to that context's server.`,
	})
	cmd.AddCommand(
		&cobra.Command{
			Use:     "get-contexts",
			Short:   "List the contexts; * marks the current one",
			Example: "  nimbus config get-contexts",
			Args:    args(cobra.NoArgs),
			RunE: func(*cobra.Command, []string) error {
				f, err := cliconfig.Load(a.conn.configPath)
				if err != nil {
					return err
				}
				view := redacted(f)
				return a.print(view, func(t *table) {
					t.row("CURRENT", "NAME", "SERVER", "NAMESPACE")
					for _, c := range f.Contexts {
						cur := ""
						if c.Name == f.CurrentContext {
							cur = "*"
						}
						t.row(cur, c.Name, c.Server, orDash(c.Namespace))
					}
				})
			},
		},
		&cobra.Command{
			Use:     "use-context NAME",
			Short:   "Make a context the current one",
			Example: "  nimbus config use-context local",
			Args:    args(cobra.ExactArgs(1)),
			RunE: func(_ *cobra.Command, argv []string) error {
				err := cliconfig.Update(a.conn.configPath, func(f *cliconfig.File) error {
					if _, ok := f.Get(argv[0]); !ok {
						return usageErrorf("no context %q in %s (nimbus config get-contexts lists them)", argv[0], a.conn.configPath)
					}
					f.CurrentContext = argv[0]
					return nil
				})
				if err != nil {
					return err
				}
				return a.print(map[string]string{"currentContext": argv[0]}, func(t *table) { t.row("switched to context " + argv[0]) })
			},
		},
		&cobra.Command{
			Use:     "current-context",
			Short:   "Print the current context's name",
			Example: "  nimbus config current-context",
			Args:    args(cobra.NoArgs),
			RunE: func(*cobra.Command, []string) error {
				f, err := cliconfig.Load(a.conn.configPath)
				if err != nil {
					return err
				}
				if f.CurrentContext == "" {
					return usageErrorf("no current context in %s (nimbus login sets one)", a.conn.configPath)
				}
				return a.print(map[string]string{"currentContext": f.CurrentContext}, func(t *table) { t.row(f.CurrentContext) })
			},
		},
		&cobra.Command{
			Use:     "delete-context NAME",
			Short:   "Remove a context (and its token) from the CLI config",
			Example: "  nimbus config delete-context old-cluster",
			Args:    args(cobra.ExactArgs(1)),
			RunE: func(_ *cobra.Command, argv []string) error {
				err := cliconfig.Update(a.conn.configPath, func(f *cliconfig.File) error {
					if !f.Delete(argv[0]) {
						return usageErrorf("no context %q in %s", argv[0], a.conn.configPath)
					}
					return nil
				})
				if err != nil {
					return err
				}
				return a.print(map[string]string{"deleted": argv[0]}, func(t *table) { t.row("deleted context " + argv[0]) })
			},
		},
		&cobra.Command{
			Use:     "view",
			Short:   "Print the CLI config with tokens redacted",
			Example: "  nimbus config view -o yaml",
			Args:    args(cobra.NoArgs),
			RunE: func(*cobra.Command, []string) error {
				f, err := cliconfig.Load(a.conn.configPath)
				if err != nil {
					return err
				}
				view := redacted(f)
				if a.output == "table" {
					return writeYAML(a.stdout, view)
				}
				return a.print(view, nil)
			},
		},
	)
	return cmd
}

// redacted is f with every token replaced by its public id.
func redacted(f *cliconfig.File) *cliconfig.File {
	out := &cliconfig.File{CurrentContext: f.CurrentContext}
	for _, c := range f.Contexts {
		if id := auth.IDOf(c.Token); id != "" {
			c.Token = "REDACTED (token/" + id + ")"
		} else if c.Token != "" {
			c.Token = "REDACTED"
		}
		out.Contexts = append(out.Contexts, c)
	}
	return out
}
