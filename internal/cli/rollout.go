package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/spec"
)

// rolloutCommand is `nimbus rollout`: the progressive rollout of an
// InferenceService that declares spec.rollout.
func (a *app) rolloutCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Show and steer the progressive rollout of an InferenceService",
		Long: `An InferenceService with spec.rollout rolls a new version of its target out
step by step: a change of the alias it routes to (an apply, a GitOps sync,
'nimbus models alias set') or of its ref starts a rollout, the canary takes
each step's weight while the stable version takes the rest, and each step is
judged from confidence intervals (errorRate, latencyP99, shadowMismatchRate).
The last step passing promotes the canary; a failed analysis rolls it back.`,
	}
	var watch bool
	var interval time.Duration
	status := &cobra.Command{
		Use:   "status SERVICE",
		Short: "Show a rollout: phase, versions, each step and each metric's interval and verdict",
		Long: `Show a service's rollout. The exit status is 0 while it progresses or after
it succeeded, 1 when it failed (rolled back), so scripts can wait on it.
With --watch it prints a line each time the rollout moves (a step begins, an
analysis waits or fails) until the rollout ends, then the whole status.`,
		Example: `  nimbus rollout status fraud -n payments
  nimbus rollout status fraud --watch          # until Succeeded (exit 0) or Failed (exit 1)
  nimbus rollout status fraud -o json | jq .status.rollout.phase`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			get := func() (*spec.InferenceService, error) {
				obj, err := a.client().GetResource(cmd.Context(), spec.KindInferenceService, a.namespace, argv[0])
				if err != nil {
					return nil, fmt.Errorf("rollout status %s: %w", argv[0], err)
				}
				return obj.(*spec.InferenceService), nil
			}
			s, err := get()
			if err != nil {
				return err
			}
			if watch && s.Spec.Rollout != nil {
				if s, err = a.watchRollout(cmd, s, get, interval); err != nil {
					return err
				}
			}
			return a.printRollout(s)
		},
	}
	status.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout until it ends")
	status.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch looks")
	cmd.AddCommand(status)
	for _, c := range []struct{ name, short, long string }{
		{"promote", "Promote the canary now, skipping the remaining steps and analysis",
			"Give the canary 100% now and move the alias's effective version to it, as if\nevery remaining step had passed. Recorded in the audit log with your identity."},
		{"abort", "Roll the canary back now, as a failed analysis would",
			"Send all traffic back to the stable version now. The declared version is not\nretried until another one is declared or 'nimbus rollout retry' is run."},
		{"retry", "Start a failed rollout over with the same declared version",
			"A failed rollout is never retried by itself (GitOps self-heal included): this\nstarts it again from the first step."},
	} {
		name := c.name
		cmd.AddCommand(&cobra.Command{
			Use:     name + " SERVICE",
			Short:   c.short,
			Long:    c.long,
			Example: fmt.Sprintf("  nimbus rollout %s fraud -n payments", name),
			Args:    args(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, argv []string) error {
				s, err := a.client().RolloutCommand(cmd.Context(), a.namespace, argv[0], name)
				if err != nil {
					return fmt.Errorf("rollout %s %s: %w", name, argv[0], err)
				}
				return a.printRollout(s)
			},
		})
	}
	return cmd
}

// watchRollout polls until the rollout is no longer in progress, writing a
// line to stderr for each change (stdout stays the final status, for -o json).
func (a *app) watchRollout(cmd *cobra.Command, s *spec.InferenceService, get func() (*spec.InferenceService, error), every time.Duration) (*spec.InferenceService, error) {
	last := ""
	// A change the server has not acted on yet (an alias moved a moment
	// ago) still shows the previous rollout's end: wait a little for the
	// declared version to show up.
	settle := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(max(every, 100*time.Millisecond))
	defer tick.Stop()
	for {
		var ro *spec.RolloutStatus
		if s.Status != nil {
			ro = s.Status.Rollout
		}
		if ro != nil {
			line := fmt.Sprintf("%s %s", ro.Phase, ro.Message)
			if ro.Phase == spec.RolloutProgressing {
				line = fmt.Sprintf("%s step %d/%d, canary %d%% (version %d over %d; window %d/%d requests): %s",
					ro.Phase, ro.Step, ro.Steps, ro.CanaryWeight, ro.Canary, ro.Stable, ro.StableRequests, ro.CanaryRequests, ro.Message)
			}
			if line != last {
				fmt.Fprintf(a.stderr, "%s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			if ro.Phase != spec.RolloutProgressing && (time.Now().After(settle) || a.rolloutCaughtUp(cmd, ro)) {
				return s, nil
			}
		}
		select {
		case <-cmd.Context().Done():
			return nil, cmd.Context().Err()
		case <-tick.C:
		}
		var err error
		if s, err = get(); err != nil {
			return nil, err
		}
	}
}

// rolloutCaughtUp reports whether a finished rollout is about the version
// its target declares now.
func (a *app) rolloutCaughtUp(cmd *cobra.Command, ro *spec.RolloutStatus) bool {
	model, ref, err := spec.ParseTarget(ro.Target)
	if err != nil || ro.Phase == spec.RolloutFollowing {
		return true
	}
	m, err := a.client().GetModel(cmd.Context(), a.namespace, model)
	if err != nil {
		return true
	}
	declared, ok := m.Aliases[ref]
	if ref == "" {
		declared, ok = m.Aliases["champion"]
	}
	if !ok {
		if v, err := strconv.ParseInt(ref, 10, 64); err == nil {
			declared, ok = v, true
		}
	}
	return !ok || ro.Stable == declared || ro.FailedVersion == declared
}

// printRollout writes a service's rollout (JSON and YAML: the whole service);
// a failed rollout exits 1.
func (a *app) printRollout(s *spec.InferenceService) error {
	var ro *spec.RolloutStatus
	if s.Status != nil {
		ro = s.Status.Rollout
	}
	if err := a.print(s, func(t *table) {
		if s.Spec.Rollout == nil {
			t.row("Rollout:", "<none> (the service declares no spec.rollout)")
			return
		}
		describeRollout(t, s.Spec.Rollout, ro)
	}); err != nil {
		return err
	}
	if ro != nil && ro.Phase == spec.RolloutFailed {
		return &exitError{code: 1}
	}
	return nil
}

// describeRollout writes a rollout: phase and versions, the steps, and the
// analysis of the current step's window.
func describeRollout(t *table, r *spec.RolloutSpec, ro *spec.RolloutStatus) {
	if ro == nil {
		t.row("Rollout:", "not observed yet")
		return
	}
	t.row("Rollout:", ro.Phase)
	t.row("Target:", orDash(ro.Target))
	t.row("Stable version:", versionOrDash(ro.Stable))
	if ro.Canary != 0 && ro.Canary != ro.Stable || ro.Phase == spec.RolloutSucceeded {
		t.row("Canary version:", versionOrDash(ro.Canary))
	}
	if ro.Phase == spec.RolloutProgressing {
		t.row("Step:", fmt.Sprintf("%d of %d: canary %d%%, stable %d%%", ro.Step, ro.Steps, ro.CanaryWeight, 100-ro.CanaryWeight))
		t.row("Step started:", timeOrDash(ro.StepStarted))
		t.row("Window:", fmt.Sprintf("stable %d requests, canary %d requests", ro.StableRequests, ro.CanaryRequests))
	}
	if ro.FailedVersion != 0 {
		t.row("Failed version:", strconv.FormatInt(ro.FailedVersion, 10)+" (not retried until another version is declared or 'nimbus rollout retry')")
	}
	if ro.Owner != "" {
		t.row("Owner:", ro.Owner)
	}
	t.row("Started:", timeOrDash(ro.Started))
	if ro.Finished != nil {
		t.row("Finished:", timeOrDash(ro.Finished))
	}
	t.row("Message:", orDash(ro.Message))
	steps := make([]string, len(r.Steps))
	for i, w := range r.Steps {
		steps[i] = strconv.Itoa(w) + "%"
	}
	t.row("Plan:", fmt.Sprintf("steps %s, each at least %s, deadline %s, confidence %g, minSamples %d",
		strings.Join(steps, " → "), r.Interval, r.ProgressDeadline, r.Analysis.Confidence, r.Analysis.MinSamples))
	if len(ro.Analysis) > 0 {
		t.row("")
		if ro.Phase == spec.RolloutProgressing {
			t.row("Analysis (current step):")
		} else {
			t.row("Analysis (the last one):")
		}
		analysisRows(t, ro.Analysis)
	}
	if len(ro.History) > 0 {
		t.row("")
		t.row("Steps:")
		t.row("  STEP", "CANARY", "OUTCOME", "AT", "REQUESTS (STABLE/CANARY)", "VERDICTS")
		for _, h := range ro.History {
			var vs []string
			for _, c := range h.Analysis {
				vs = append(vs, c.Metric+"="+c.Verdict)
			}
			t.row("  "+strconv.Itoa(h.Step), strconv.Itoa(h.CanaryWeight)+"%", h.Outcome, formatTime(h.At),
				fmt.Sprintf("%d/%d", h.Requests[0], h.Requests[1]), orDash(strings.Join(vs, " ")))
		}
	}
}

func analysisRows(t *table, cs []spec.RolloutCheck) {
	t.row("  METRIC", "VERDICT", "VALUE", "INTERVAL", "SAMPLES", "BOUND", "NOTE")
	for _, c := range cs {
		value, interval, bound := fmtRate(c.Value), fmtInterval(c.Lower, c.Upper, fmtRate), "≤ "+fmtRate(c.Max)
		if c.Metric == "latencyP99" {
			value, interval = fmtSeconds(c.Value), fmtInterval(c.Lower, c.Upper, fmtSeconds)
			bound = fmt.Sprintf("≤ %g × stable", c.Max)
			if c.Stable != nil {
				bound += fmt.Sprintf(" (stable p99 %s %s, n=%d)", fmtSeconds(c.Stable.Value), fmtInterval(c.Stable.Lower, c.Stable.Upper, fmtSeconds), c.Stable.Samples)
			}
		}
		t.row("  "+c.Metric, c.Verdict, value, interval, strconv.FormatInt(c.Samples, 10), bound, orDash(c.Note))
	}
}

func fmtRate(x float64) string { return strconv.FormatFloat(x*100, 'f', 2, 64) + "%" }

func fmtSeconds(x float64) string {
	switch {
	case x >= 1:
		return strconv.FormatFloat(x, 'f', 2, 64) + "s"
	case x >= 1e-3:
		return strconv.FormatFloat(x*1e3, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(x*1e6, 'f', 0, 64) + "µs"
}

func fmtInterval(lo, hi *float64, f func(float64) string) string {
	side := func(p *float64, none string) string {
		if p == nil {
			return none
		}
		return f(*p)
	}
	return "[" + side(lo, "?") + ", " + side(hi, "?") + "]"
}

func versionOrDash(v int64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}
