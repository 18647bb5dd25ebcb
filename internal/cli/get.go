package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/spec"
)

// resourceArg is one resource named on the command line; name is empty when
// only the kind was given.
type resourceArg struct {
	kind string // as client.NormalizeKind returns it: Model, InferenceService
	name string
}

// parseResourceArgs reads "KIND [NAME...]" or "KIND/NAME..." (what apply
// prints: "inferenceservice.nimbus.dev/fraud").
func parseResourceArgs(argv []string) ([]resourceArg, error) {
	if len(argv) == 0 {
		return nil, usageErrorf("give a kind: model or inferenceservice (isvc)")
	}
	if strings.Contains(argv[0], "/") {
		out := make([]resourceArg, 0, len(argv))
		for _, s := range argv {
			k, name, ok := strings.Cut(s, "/")
			if !ok || name == "" || strings.Contains(name, "/") {
				return nil, usageErrorf("%q: want KIND/NAME, or KIND NAME...", s)
			}
			kind, _, err := client.NormalizeKind(k)
			if err != nil {
				return nil, usageError{err}
			}
			out = append(out, resourceArg{kind, name})
		}
		return out, nil
	}
	kind, _, err := client.NormalizeKind(argv[0])
	if err != nil {
		return nil, usageError{err}
	}
	if len(argv) == 1 {
		return []resourceArg{{kind: kind}}, nil
	}
	out := make([]resourceArg, 0, len(argv)-1)
	for _, name := range argv[1:] {
		out = append(out, resourceArg{kind, name})
	}
	return out, nil
}

func (a *app) getResourcesCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List or show declared resources: models, services, GitSources, Triggers, Connections",
		Long: `List the resources of a kind, or show one. Kinds: model(s),
inferenceservice(s) or isvc, gitsource(s) or gs, trigger(s) or tr,
connection(s) or conn; "KIND/NAME" works too.

Tables:
  models             NAME  VERSIONS  ALIASES  READY  AGE
  inferenceservices  NAME  TRAFFIC   READY    AGE
  gitsources         NAME  URL  REF  SYNC  COMMIT  READY  AGE
  triggers           NAME  SERVICE  SOURCE  READY  REASON  CONSUMED  PRODUCED  DLQ  LAG  AGE
  connections        NAME  BUS  ENDPOINT  AUTH  AGE
-A (--all-namespaces) adds a NAMESPACE column. -o wide adds GENERATION and,
for services, SHADOW, the requests each traffic target answered (REQUESTS,
in TRAFFIC's order, since the server started) and the ROLLOUT (its phase, step
and canary weight; "nimbus rollout status" shows it whole); for triggers, IN
FLIGHT, REDELIVERED, the end-to-end latency p50/p99 in ms, the SINK and the
Ready message. A trigger's counts are since the server started; LAG is what
waits at the broker ("-" where the broker does not report it: MQTT).

-o yaml prints the resources as YAML documents that "nimbus apply -f" takes
back unchanged (status and server-set metadata are ignored on apply); -o json
prints one object, or {"items": [...]} for a list.`,
		Example: `  nimbus get models
  nimbus get isvc -A
  nimbus get isvc fraud -o wide
  nimbus get triggers -n payments -o wide
  nimbus get isvc fraud -o yaml > fraud.yaml && nimbus apply -f fraud.yaml
  nimbus get model fraud-detector -n payments -o json`,
		Annotations: map[string]string{annotationWide: "true"},
		Args:        args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			refs, err := parseResourceArgs(argv)
			if err != nil {
				return err
			}
			if len(refs) != 1 {
				return usageErrorf("get takes one resource: KIND [NAME] or KIND/NAME")
			}
			ref := refs[0]
			c := a.client()
			var objs []spec.Object
			if ref.name != "" {
				if all {
					return usageErrorf("--all-namespaces lists; drop it to get %s in one namespace (-n)", ref.name)
				}
				obj, err := c.GetResource(cmd.Context(), ref.kind, a.namespace, ref.name)
				if err != nil {
					return fmt.Errorf("get %s: %w", resourceRef(ref.kind, ref.name), err)
				}
				objs = []spec.Object{obj}
			} else if objs, err = c.ListResources(cmd.Context(), ref.kind, a.namespace, all); err != nil {
				return fmt.Errorf("list %s: %w", spec.Plural(ref.kind), err)
			}

			switch a.output {
			case "json":
				if ref.name != "" {
					return writeJSON(a.stdout, objs[0])
				}
				return writeJSON(a.stdout, map[string]any{"items": objs})
			case "yaml":
				b, err := spec.MarshalYAML(objs...)
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(b)
				return err
			}
			if len(objs) == 0 {
				where := fmt.Sprintf(" in namespace %q", a.namespace)
				if all {
					where = ""
				}
				fmt.Fprintf(a.stderr, "No %s found%s.\n", spec.Plural(ref.kind), where)
				return nil
			}
			return a.print(nil, func(t *table) {
				renderResources(t, ref.kind, objs, time.Now(), all, a.output == "wide")
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the resources of every namespace")
	return cmd
}

// renderResources writes the get table of objects of kind.
func renderResources(t *table, kind string, objs []spec.Object, now time.Time, allNS, wide bool) {
	var head []string
	if allNS {
		head = append(head, "NAMESPACE")
	}
	if kind == spec.KindModel {
		head = append(head, "NAME", "VERSIONS", "ALIASES", "READY", "AGE")
		if wide {
			head = append(head, "GENERATION")
		}
	} else if kind == spec.KindGitSource {
		head = append(head, "NAME", "URL", "REF", "SYNC", "COMMIT", "READY", "AGE")
		if wide {
			head = append(head, "LAST SYNC", "MESSAGE")
		}
	} else if kind == spec.KindTrigger {
		head = append(head, triggerHead(wide)...)
	} else if kind == spec.KindConnection {
		head = append(head, connectionHead(wide)...)
	} else {
		head = append(head, "NAME", "TRAFFIC", "READY", "AGE")
		if wide {
			head = append(head, "SHADOW", "REQUESTS", "GENERATION", "ROLLOUT")
		}
	}
	t.row(head...)
	for _, o := range objs {
		meta := o.GetMeta()
		var row []string
		if allNS {
			row = append(row, meta.Namespace)
		}
		_, conds := statusOf(o)
		switch o := o.(type) {
		case *spec.Model:
			row = append(row, meta.Name, strconv.Itoa(len(o.Spec.Versions)), formatAliases(o.Spec.Aliases),
				readyOf(conds), formatAge(meta.CreationTimestamp, now))
			if wide {
				row = append(row, strconv.FormatInt(meta.Generation, 10))
			}
		case *spec.InferenceService:
			row = append(row, meta.Name, formatTraffic(o.Spec.Traffic), readyOf(conds), formatAge(meta.CreationTimestamp, now))
			if wide {
				row = append(row, formatShadow(o.Spec.Shadow), formatRequests(o.Status), strconv.FormatInt(meta.Generation, 10), formatRollout(o))
			}
		case *spec.GitSource:
			st := o.Status
			if st == nil {
				st = &spec.GitSourceStatus{}
			}
			row = append(row, meta.Name, spec.RedactURI(o.Spec.URL), orDash(o.Spec.Ref), orDash(st.Sync), orDash(shortSHA(st.SyncedCommit)),
				readyOf(conds), formatAge(meta.CreationTimestamp, now))
			if wide {
				row = append(row, formatAge(st.LastSyncTime, now), orDash(st.Message))
			}
		case *spec.Trigger:
			row = append(row, triggerRow(o, now, wide)...)
		case *spec.Connection:
			row = append(row, connectionRow(o, now)...)
		}
		t.row(row...)
	}
}

// formatRollout is a service's rollout in one word or three: "-" without
// one, "Progressing:1/2@20%", "Succeeded:v2", "Failed:v3", "Following:fraud".
func formatRollout(s *spec.InferenceService) string {
	if s.Spec.Rollout == nil {
		return "-"
	}
	if s.Status == nil || s.Status.Rollout == nil {
		return "Pending"
	}
	ro := s.Status.Rollout
	switch ro.Phase {
	case spec.RolloutProgressing:
		return fmt.Sprintf("%s:%d/%d@%d%%", ro.Phase, ro.Step, ro.Steps, ro.CanaryWeight)
	case spec.RolloutSucceeded, spec.RolloutIdle:
		return fmt.Sprintf("%s:v%d", ro.Phase, ro.Stable)
	case spec.RolloutFailed:
		return fmt.Sprintf("%s:v%d", ro.Phase, ro.FailedVersion)
	case spec.RolloutFollowing:
		return ro.Phase + ":" + ro.Owner
	}
	return ro.Phase
}

// statusOf is what get and describe show of an object's status: the observed
// generation and the conditions (zero without a status).
func statusOf(obj spec.Object) (observed int64, conds []spec.Condition) {
	switch o := obj.(type) {
	case *spec.Model:
		if o.Status != nil {
			return o.Status.ObservedGeneration, o.Status.Conditions
		}
	case *spec.InferenceService:
		if o.Status != nil {
			return o.Status.ObservedGeneration, o.Status.Conditions
		}
	case *spec.GitSource:
		if o.Status != nil {
			return o.Status.ObservedGeneration, o.Status.Conditions
		}
	case *spec.Trigger:
		if o.Status != nil {
			return o.Status.ObservedGeneration, o.Status.Conditions
		}
	}
	return 0, nil
}

// readyOf is the status of the Ready condition, "-" without one.
func readyOf(conds []spec.Condition) string {
	for _, c := range conds {
		if c.Type == spec.ConditionReady {
			return c.Status
		}
	}
	return "-"
}

// formatAge says how long ago t was in its largest unit, as kubectl's AGE:
// "42s", "5m", "3h", "12d"; "-" without a time.
func formatAge(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := max(now.Sub(*t), 0)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// formatTraffic lists targets with weights: "fraud-detector@champion=90,fraud-detector@challenger=10".
func formatTraffic(traffic []spec.TrafficTarget) string {
	if len(traffic) == 0 {
		return "-"
	}
	parts := make([]string, len(traffic))
	for i, tt := range traffic {
		parts[i] = tt.Model
		if tt.Weight != nil {
			parts[i] += "=" + strconv.Itoa(*tt.Weight)
		}
	}
	return strings.Join(parts, ",")
}

// formatShadow is "fraud-detector@4=100%", "-" without a shadow.
func formatShadow(s *spec.ShadowTarget) string {
	if s == nil {
		return "-"
	}
	if s.Percent == nil {
		return s.Model
	}
	return s.Model + "=" + strconv.Itoa(*s.Percent) + "%"
}

// formatRequests lists the requests each target answered, in traffic order.
func formatRequests(st *spec.ServiceStatus) string {
	if st == nil || len(st.Traffic) == 0 {
		return "-"
	}
	parts := make([]string, len(st.Traffic))
	for i, ts := range st.Traffic {
		parts[i] = strconv.FormatInt(ts.Requests, 10)
	}
	return strings.Join(parts, ",")
}
