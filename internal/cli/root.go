package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
)

// Version is the nimbus version, set at build time with
// -ldflags "-X github.com/nimbus-ai/nimbus/internal/cli.Version=v1.2.3".
var Version = "dev"

// Defaults of the global flags.
const (
	defaultServer    = "http://127.0.0.1:8080"
	defaultNamespace = "default"
)

// Execute runs nimbus with the process's arguments and streams and returns the
// exit code: 0 on success, 1 on failure, 2 on a usage error (nimbus diff: 1
// when something would change, 2 on any error).
func Execute(ctx context.Context) int {
	return Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
}

// Run runs the command tree with args and returns the exit code. getenv
// supplies NIMBUS_* defaults; tests pass their own.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return run(ctx, args, os.Stdin, stdout, stderr, getenv)
}

// run is Run reading stdin (apply -f -) from stdin.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, isTerminal: isTerminal, getenv: getenv, stdin: stdin}
	root := a.rootCommand(getenv)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "Error: %s\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "Error: %s\n", err)
	if hint := a.authHint(err); hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	if isUsageError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return 1
}

// app is the state the commands share: streams, global flags and the
// connection they resolve to (see connect).
type app struct {
	stdout, stderr io.Writer
	isTerminal     func(io.Writer) bool
	getenv         func(string) string
	stdin          io.Reader

	server    string
	namespace string
	output    string
	conn      connFlags
}

func (a *app) client() *client.Client {
	return client.New(a.server, client.WithUserAgent("nimbus-cli/"+Version+" ("+runtime.GOOS+"/"+runtime.GOARCH+")"),
		client.WithChangeSource(audit.SourceCLI), client.WithToken(a.conn.token), client.WithHTTPClient(a.conn.http))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func (a *app) rootCommand(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "nimbus",
		Short: "Nimbus serves ML models: registry, inference APIs and a CLI in one binary",
		Long: `Nimbus serves ML models from one binary: a model registry, Open Inference
Protocol v2 over REST and gRPC, and this CLI for the management API.`,
		Example: `  nimbus server
  nimbus models push churn.onnx --name churn --alias champion
  nimbus models get churn
  nimbus predict churn --data '{"x": [[0.3, 12, 1, 0]]}'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "table", "json", "yaml":
			case "wide":
				if cmd.Annotations[annotationWide] == "" {
					return usageErrorf("%s does not support --output wide: want table, json or yaml", cmd.CommandPath())
				}
			default:
				return usageErrorf("invalid --output %q: want table, json or yaml", a.output)
			}
			return a.connect(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", "", "Nimbus server URL (env NIMBUS_SERVER; default: the current context's, else "+defaultServer+")")
	pf.StringVarP(&a.namespace, "namespace", "n", "", "namespace (env NIMBUS_NAMESPACE; default: the current context's, else "+defaultNamespace+")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml (get: also wide)")
	a.conn.register(pf)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		newServerCommand(),
		a.versionCommand(),
		a.modelsCommand(),
		a.predictCommand(),
		a.applyCommand(),
		a.diffCommand(),
		a.getResourcesCommand(),
		a.describeCommand(),
		a.deleteResourcesCommand(),
		a.gitSourceCommand(),
		a.rolloutCommand(),
		a.eventsCommand(),
		a.tokensCommand(),
		a.loginCommand(),
		a.whoamiCommand(),
		a.contextsCommand(),
	)
	return root
}

// annotationWide marks commands that accept --output wide.
const annotationWide = "nimbus.dev/output-wide"

// exitError ends the command with code; err, if set, is printed as any error
// is. Commands that print their own report (diff, refused applies) use it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks errors that should exit with code 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand flag")
}

// args wraps a cobra argument validator so its failures are usage errors.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// group makes a command that only holds subcommands refuse unknown ones
// instead of printing help and succeeding.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, a []string) error {
		if len(a) > 0 {
			return usageErrorf("unknown command %q for %q", a[0], c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the nimbus version",
		Example: `  nimbus version
  nimbus version -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			v := struct {
				Version  string `json:"version"`
				Go       string `json:"go"`
				Platform string `json:"platform"`
			}{Version, runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}
			return a.print(v, func(t *table) {
				t.row("nimbus " + v.Version)
				t.row("go " + v.Go + " " + v.Platform)
			})
		},
	}
}
