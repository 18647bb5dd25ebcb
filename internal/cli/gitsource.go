package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/spec"
)

// describeGitSource writes what a GitSource syncs and how its last pass went:
// the commits, the errors of a failed commit with file and line, and each
// declared resource with its diff when it drifted.
func describeGitSource(t *table, g *spec.GitSource) {
	st := g.Status
	if st == nil {
		st = &spec.GitSourceStatus{}
	}
	t.row("URL:", spec.RedactURI(g.Spec.URL))
	t.row("Ref:", orDash(g.Spec.Ref))
	t.row("Path:", "/"+strings.Trim(g.Spec.Path, "/"))
	t.row("Interval:", g.Spec.IntervalOrDefault().String())
	t.row("Prune:", fmt.Sprint(spec.Flag(g.Spec.Prune, true)), "SelfHeal:", fmt.Sprint(spec.Flag(g.Spec.SelfHeal, false)),
		"AllowEmpty:", fmt.Sprint(spec.Flag(g.Spec.AllowEmpty, false)))
	if len(g.Spec.TargetNamespaces) > 0 {
		t.row("Target namespaces:", strings.Join(g.Spec.TargetNamespaces, ","))
	}
	t.row("Syncs as:", orDash(st.AppliedBy))
	t.row("")
	describeGitSync(t, st)
}

// describeGitSync writes a GitSource's status: what `gs sync` prints.
func describeGitSync(t *table, st *spec.GitSourceStatus) {
	t.row("Sync:", orDash(st.Sync))
	t.row("Synced commit:", orDash(shortSHA(st.SyncedCommit)))
	t.row("Last attempted:", orDash(shortSHA(st.LastAttemptedCommit)))
	t.row("Last sync:", timeOrDash(st.LastSyncTime))
	t.row("Last attempt:", timeOrDash(st.LastAttemptTime))
	t.row("Message:", orDash(st.Message))
	if len(st.Errors) > 0 {
		t.row("")
		t.row("Errors:")
		for _, fe := range st.Errors {
			t.row("  " + fe.String())
		}
	}
	if len(st.Resources) > 0 {
		t.row("")
		t.row("Resources:")
		t.row("  KIND", "NAMESPACE", "NAME", "STATE", "MESSAGE")
		for _, r := range st.Resources {
			t.row("  "+r.Kind, r.Namespace, r.Name, r.State, orDash(r.Message))
		}
		for _, r := range st.Resources {
			if r.Diff == "" {
				continue
			}
			t.row("")
			t.row(fmt.Sprintf("Drift of %s %s/%s (live vs git):", r.Kind, r.Namespace, r.Name))
			for _, line := range strings.Split(strings.TrimRight(r.Diff, "\n"), "\n") {
				t.row("  " + line)
			}
		}
	}
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// gitSourceCommand is `nimbus gs`: what only GitSources do.
func (a *app) gitSourceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "gitsource",
		Aliases: []string{"gs"},
		Short:   "Sync GitSources (list and inspect them with get gs / describe gs)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "sync NAME",
		Short: "Sync a GitSource now, wait for the pass and print its result",
		Long: `Fetch the GitSource's ref now, render its path and apply it (or compare it
with what is live), as its periodic pass does, and print the status it left.
The exit status is 1 when the sync failed (the last good state keeps serving).`,
		Example: `  nimbus gs sync platform -n payments
  nimbus gs sync platform -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			st, err := a.client().SyncGitSource(cmd.Context(), a.namespace, argv[0])
			if err != nil {
				return fmt.Errorf("sync gitsource %s: %w", argv[0], err)
			}
			if err := a.print(st, func(t *table) {
				describeGitSync(t, &st)
			}); err != nil {
				return err
			}
			if st.Sync == spec.SyncFailed {
				return &exitError{code: 1}
			}
			return nil
		},
	})
	return cmd
}
