package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/residency"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status [MODEL]",
		Short: "Show which model versions are in memory, and the memory budget",
		Long: `Show the residency of a namespace's model versions, or of one model's: what
each version costs in memory, its execution instances (current/min..max), the
requests in flight on it and when it last answered one. The first line sums up
the server's memory budget and the process's resident set size.

States:
  loading   being loaded; requests wait for it
  ready     resident and serving
  idle      not resident: never loaded yet, or unloaded after its idleTimeout;
            the next request loads it
  evicted   not resident: unloaded to make room under the memory budget; the
            next request loads it
  failed    the last load failed (REASON says why); requests get that error
            until a retry is allowed
  unloaded  explicitly unloaded through the repository API; requests are
            refused until it is loaded again

-o json and -o yaml print the full report, with load counters and timings.`,
		Example: `  nimbus models status
  nimbus models status churn
  nimbus models status -n payments -o json`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var model string
			if len(argv) == 1 {
				model = argv[0]
			}
			rep, err := a.client().Status(cmd.Context(), a.namespace, model)
			if err != nil {
				return fmt.Errorf("model status: %w", err)
			}
			if rep.Versions == nil {
				rep.Versions = []residency.VersionStatus{}
			}
			now := time.Now()
			err = a.print(rep, func(t *table) { renderStatus(t, rep, now) })
			if err == nil && a.output == "table" && len(rep.Versions) == 0 {
				fmt.Fprintf(a.stderr, "No model versions in namespace %q.\n", a.namespace)
			}
			return err
		},
	}
}

// renderStatus writes the memory summary line, then one row per version, if
// any; now is what LAST-USED is relative to.
func renderStatus(t *table, rep residency.Report, now time.Time) {
	t.row(formatMemory(rep.Memory))
	if len(rep.Versions) == 0 {
		return
	}
	t.row("MODEL", "VERSION", "ALIASES", "STATE", "MEMORY", "INSTANCES", "INFLIGHT", "LAST-USED", "REASON")
	for _, v := range rep.Versions {
		aliases := "-"
		if len(v.Aliases) > 0 {
			aliases = strings.Join(v.Aliases, ",")
		}
		mem := "-"
		if v.MemoryBytes > 0 {
			mem = config.FormatBytes(v.MemoryBytes)
		}
		t.row(v.Model, strconv.FormatInt(v.Version, 10), aliases, v.State, mem,
			fmt.Sprintf("%d/%d..%d", v.Instances, v.MinInstances, v.MaxInstances),
			strconv.Itoa(v.InFlight), formatAgo(v.LastUsed, now), orDash(v.Reason))
	}
}

// formatMemory is the summary line:
// "memory: 12.3 MiB used of 2.0 GiB budget (3 resident), process RSS 81.0 MiB".
func formatMemory(m residency.Memory) string {
	used := config.FormatBytes(m.UsedBytes) + " used"
	if m.BudgetBytes > 0 {
		used += " of " + config.FormatBytes(m.BudgetBytes) + " budget"
	} else {
		used += ", no budget"
	}
	rss := "unknown"
	if m.ProcessRSSBytes > 0 {
		rss = config.FormatBytes(m.ProcessRSSBytes)
	}
	return fmt.Sprintf("memory: %s (%d resident), process RSS %s", used, m.Resident, rss)
}

// formatAgo says how long before now t was, in its largest whole unit: "3s ago",
// "5m ago", "2h ago", "3d ago"; "never" for the zero time. Times after now (the
// server's clock ahead of ours) read "just now".
func formatAgo(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}
