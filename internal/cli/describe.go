package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// describeEvents is how many of a resource's latest events describe shows.
const describeEvents = 10

// description is what `describe -o json` prints.
type description struct {
	Resource spec.Object   `json:"resource"`
	Events   []audit.Event `json:"events"`
}

func (a *app) describeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show a resource in detail (model, service, GitSource, Trigger, Connection), with its latest events",
		Long: `Show one resource for people: metadata, generation (declared and observed),
what it declares, its conditions and the last 10 changes from the audit log.

For an inference service, the traffic table shows each target as served: the
version it resolves to now, the requests it answered since the server started,
its share of them, errors and mean latency; then the shadow's counters (copies
sent, errors, dropped, answers compared, exact matches, largest absolute
difference). For a model: its versions (with the first 12 characters of the
sha256), aliases and serving settings. For a trigger: its source, sink and
dead-letter destination, its format, and what it counted since the server
started (consumed, produced, dead-lettered, in flight, redelivered, lag,
end-to-end latency p50/p99). For a connection: its bus, endpoint and how it
authenticates (secret references, never secrets).

-o json and -o yaml print {"resource": ..., "events": [...]}.`,
		Example: `  nimbus describe isvc fraud
  nimbus describe trigger score-transactions -n payments
  nimbus describe model fraud-detector -n payments
  nimbus describe inferenceservice.nimbus.dev/fraud`,
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			refs, err := parseResourceArgs(argv)
			if err != nil {
				return err
			}
			if len(refs) != 1 || refs[0].name == "" {
				return usageErrorf("describe takes one resource: KIND NAME or KIND/NAME")
			}
			ref := refs[0]
			c := a.client()
			obj, err := c.GetResource(cmd.Context(), ref.kind, a.namespace, ref.name)
			if err != nil {
				return fmt.Errorf("describe %s: %w", resourceRef(ref.kind, ref.name), err)
			}
			meta := obj.GetMeta()
			ns := meta.Namespace
			if ns == "" {
				ns = a.namespace
			}
			events, err := c.Events(cmd.Context(), audit.Query{Namespace: ns, Kind: obj.GetKind(), Name: meta.Name,
				Limit: describeEvents, Latest: true})
			if err != nil {
				return fmt.Errorf("describe %s: events: %w", resourceRef(ref.kind, ref.name), err)
			}
			return a.print(description{Resource: obj, Events: events}, func(t *table) { renderDescription(t, obj, events) })
		},
	}
}

// renderDescription writes the sections of describe; rows of a section are
// indented by two spaces.
func renderDescription(t *table, obj spec.Object, events []audit.Event) {
	meta := obj.GetMeta()
	t.row("Name:", meta.Name)
	t.row("Namespace:", orDash(meta.Namespace))
	t.row("Kind:", obj.GetKind())
	t.row("Labels:", formatLabels(meta.Labels))
	t.row("Annotations:", formatLabels(meta.Annotations))
	created := "-"
	if meta.CreationTimestamp != nil {
		created = formatTime(*meta.CreationTimestamp)
	}
	t.row("Created:", created)

	observed, conds := statusOf(obj)
	t.row("Generation:", generations(meta.Generation, observed))
	switch o := obj.(type) {
	case *spec.Model:
		describeModel(t, o)
	case *spec.InferenceService:
		describeService(t, o)
	case *spec.GitSource:
		describeGitSource(t, o)
	case *spec.Trigger:
		describeTrigger(t, o)
	case *spec.Connection:
		describeConnection(t, o)
	}

	t.row("")
	if len(conds) == 0 {
		t.row("Conditions:", "<none>")
	} else {
		t.row("Conditions:")
		t.row("  TYPE", "STATUS", "REASON", "MESSAGE")
		for _, c := range conds {
			t.row("  "+c.Type, c.Status, orDash(c.Reason), orDash(c.Message))
		}
	}

	t.row("")
	if len(events) == 0 {
		t.row("Events:", "<none>")
		return
	}
	t.row("Events:")
	t.row("  TIME", "ACTOR", "SOURCE", "ACTION", "SUMMARY")
	for _, e := range events {
		t.row("  "+formatTime(e.Time), orDash(e.Actor), orDash(e.Source), e.Action, orDash(e.Summary))
	}
}

// generations is "3 (observed 3)"; a lagging observed generation shows the
// server has not caught up with the last change yet.
func generations(gen, observed int64) string {
	return fmt.Sprintf("%d (observed %d)", gen, observed)
}

func describeModel(t *table, m *spec.Model) {
	t.row("Aliases:", formatAliases(m.Spec.Aliases))
	t.row("Serving:", formatServing(m.Spec.Serving))
	t.row("")
	if len(m.Spec.Versions) == 0 {
		t.row("Versions:", "<none>")
		return
	}
	t.row("Versions:")
	t.row("  VERSION", "FORMAT", "SHA256", "ALIASES", "SOURCE")
	for _, v := range m.Spec.Versions {
		t.row("  "+strconv.FormatInt(v.Version, 10), orDash(v.Format), orDash(shortSHA(v.Source.SHA256)),
			aliasesOf(m.Spec.Aliases, v.Version), orDash(v.Source.URI))
	}
}

// formatServing sums up serving settings on one line; unset ones are left out.
func formatServing(s *registry.ServingConfig) string {
	if s == nil {
		return "- (not managed by apply)"
	}
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if s.Threads != 0 {
		add("threads", strconv.Itoa(s.Threads))
	}
	if s.InterOpThreads != 0 {
		add("interOpThreads", strconv.Itoa(s.InterOpThreads))
	}
	if b := s.Batching; b != nil {
		v := "maxBatchSize:" + strconv.Itoa(b.MaxBatchSize)
		if b.MaxQueueDelay != 0 {
			v += ",maxQueueDelay:" + b.MaxQueueDelay.String()
		}
		add("batching", v)
	}
	if in := s.Instances; in != nil {
		add("instances", fmt.Sprintf("%d..%d", in.Min, in.Max))
	}
	if s.MaxQueueSize != 0 {
		add("maxQueueSize", strconv.Itoa(s.MaxQueueSize))
	}
	if s.Timeout != 0 {
		add("timeout", s.Timeout.String())
	}
	if s.IdleTimeout != 0 {
		add("idleTimeout", s.IdleTimeout.String())
	}
	if s.Warmup != nil {
		add("warmupRuns", strconv.Itoa(s.Warmup.Runs))
	}
	if len(parts) == 0 {
		return "defaults"
	}
	return strings.Join(parts, " ")
}

func describeService(t *table, s *spec.InferenceService) {
	st := s.Status
	if st == nil {
		st = &spec.ServiceStatus{}
	}
	t.row("URL:", orDash(st.URL))
	timeout := "none"
	if s.Spec.Timeout != 0 {
		timeout = s.Spec.Timeout.String()
	}
	t.row("Timeout:", timeout)
	sticky := "-"
	if s.Spec.Routing != nil && s.Spec.Routing.StickyBy != "" {
		sticky = s.Spec.Routing.StickyBy
	}
	t.row("Sticky by:", sticky)

	t.row("")
	t.row("Traffic:")
	t.row("  TARGET", "WEIGHT", "VERSION", "REQUESTS", "SHARE", "ERRORS", "MEAN")
	if len(st.Traffic) > 0 {
		for _, ts := range st.Traffic {
			version := "-"
			if ts.Version > 0 {
				version = strconv.FormatInt(ts.Version, 10)
			}
			mean := "-"
			if ts.MeanMS > 0 {
				mean = strconv.FormatFloat(ts.MeanMS, 'f', 2, 64) + "ms"
			}
			t.row("  "+ts.Model, strconv.Itoa(ts.Weight), version, strconv.FormatInt(ts.Requests, 10),
				strconv.FormatFloat(ts.Share*100, 'f', 1, 64)+"%", strconv.FormatInt(ts.Errors, 10), mean)
		}
	} else {
		// Not served yet: what is declared.
		for _, tt := range s.Spec.Traffic {
			weight := "-"
			if tt.Weight != nil {
				weight = strconv.Itoa(*tt.Weight)
			}
			t.row("  "+tt.Model, weight, "-", "-", "-", "-", "-")
		}
	}

	if s.Spec.Rollout != nil {
		t.row("")
		describeRollout(t, s.Spec.Rollout, st.Rollout)
	}

	t.row("")
	if s.Spec.Shadow == nil && st.Shadow == nil {
		t.row("Shadow:", "<none>")
		return
	}
	target := ""
	if s.Spec.Shadow != nil {
		target = formatShadow(s.Spec.Shadow)
	} else {
		target = st.Shadow.Model
	}
	t.row("Shadow:", target)
	if sh := st.Shadow; sh != nil {
		exact := "-"
		if sh.Compared > 0 {
			exact = strconv.FormatFloat(float64(sh.ExactMatch)*100/float64(sh.Compared), 'f', 1, 64) + "%"
		}
		t.row("  SENT", "ERRORS", "DROPPED", "COMPARED", "EXACT-MATCH", "MAX-ABS-DIFF")
		t.row("  "+strconv.FormatInt(sh.Sent, 10), strconv.FormatInt(sh.Errors, 10), strconv.FormatInt(sh.Dropped, 10),
			strconv.FormatInt(sh.Compared, 10), exact, strconv.FormatFloat(sh.MaxAbsDiff, 'g', 6, 64))
	}
}
