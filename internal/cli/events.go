package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
)

// defaultEventLimit is how many of the latest events `nimbus events` shows.
const defaultEventLimit = 50

func (a *app) eventsCommand() *cobra.Command {
	var (
		q        audit.Query
		all      bool
		since    string
		showDiff bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the audit log: who changed what, when, and how",
		Long: `Show the audit log of the namespace (-A: of every namespace), oldest first:
every change to models, versions, aliases and declared resources, with who
made it (a token's identity, or "local"), through what (api, cli, gitops),
the resource's generation after it and a one-line summary.

Without --after the latest --limit events are shown. With --after ID the
first --limit events after that ID are shown, so a script can follow the log
by passing the last ID it saw. --kind takes model, inferenceservice or isvc
(other kinds are passed as given); --since takes a duration (1h) or an
RFC 3339 time. --diff prints each change's unified diff under it.

-o json and -o yaml print the events as a list, diffs included.`,
		Example: `  nimbus events
  nimbus events --kind isvc --name fraud --diff
  nimbus events -A --since 24h
  nimbus events --after 1200 --limit 100 -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if q.Limit < 0 || q.Limit > audit.MaxLimit {
				return usageErrorf("--limit must be between 1 and %d", audit.MaxLimit)
			}
			if q.Limit == 0 {
				q.Limit = defaultEventLimit
			}
			if q.Kind != "" {
				if kind, _, err := client.NormalizeKind(q.Kind); err == nil {
					q.Kind = kind
				}
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				q.Since = t
			}
			if !all {
				q.Namespace = a.namespace
			}
			// Without --after: the latest --limit events, in one request.
			q.Latest = q.After == 0
			events, err := a.client().Events(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("events: %w", err)
			}
			if a.output == "table" && len(events) == 0 {
				fmt.Fprintln(a.stderr, "No events found.")
				return nil
			}
			if a.output == "table" && showDiff {
				a.writeEventLog(events)
				return nil
			}
			return a.print(events, func(t *table) {
				t.row("TIME", "ID", "ACTOR", "SOURCE", "ACTION", "KIND", "NAMESPACE/NAME", "GEN", "SUMMARY")
				for _, e := range events {
					t.row(eventRow(e)...)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Kind, "kind", "", "only events of this kind (model, inferenceservice/isvc, ...)")
	f.StringVar(&q.Name, "name", "", "only events of resources with this name")
	f.BoolVarP(&all, "all-namespaces", "A", false, "events of every namespace")
	f.IntVar(&q.Limit, "limit", 0, fmt.Sprintf("at most this many events (default %d, at most %d)", defaultEventLimit, audit.MaxLimit))
	f.Int64Var(&q.After, "after", 0, "only events after this event ID, oldest first")
	f.StringVar(&since, "since", "", "only events from this long ago (1h) or since this RFC 3339 time")
	f.BoolVar(&showDiff, "diff", false, "print each event's diff")
	return cmd
}

// parseSince reads --since: a duration before now or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageErrorf("invalid --since %q: want a duration (1h) or an RFC 3339 time", s)
}

func eventRow(e audit.Event) []string {
	gen := "-"
	if e.Generation > 0 {
		gen = strconv.FormatInt(e.Generation, 10)
	}
	return []string{formatTime(e.Time), strconv.FormatInt(e.ID, 10), orDash(e.Actor), orDash(e.Source), e.Action,
		orDash(e.Kind), eventObject(e), gen, orDash(e.Summary)}
}

// eventObject is "namespace/name", or what of it the event has.
func eventObject(e audit.Event) string {
	switch {
	case e.Namespace != "" && e.Name != "":
		return e.Namespace + "/" + e.Name
	case e.Name != "":
		return e.Name
	case e.Namespace != "":
		return e.Namespace + "/"
	}
	return "-"
}

// writeEventLog prints events one after another with their diffs, as git log -p.
func (a *app) writeEventLog(events []audit.Event) {
	for i, e := range events {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		gen := ""
		if e.Generation > 0 {
			gen = " generation " + strconv.FormatInt(e.Generation, 10)
		}
		fmt.Fprintf(a.stdout, "event %d  %s  %s via %s  %s %s %s%s\n", e.ID, formatTime(e.Time), orDash(e.Actor),
			orDash(e.Source), e.Action, orDash(e.Kind), eventObject(e), gen)
		if e.Summary != "" {
			fmt.Fprintf(a.stdout, "    %s\n", e.Summary)
		}
		if e.Diff != "" {
			d := e.Diff
			if !strings.HasSuffix(d, "\n") {
				d += "\n"
			}
			fmt.Fprint(a.stdout, d)
		}
	}
}
