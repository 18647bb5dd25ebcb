package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/tensor"
)

// table writes tab-aligned rows.
type table struct{ tw *tabwriter.Writer }

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

// print writes v as JSON or YAML, or calls render for the table format.
func (a *app) print(v any, render func(*table)) error {
	switch a.output {
	case "json":
		return writeJSON(a.stdout, v)
	case "yaml":
		return writeYAML(a.stdout, v)
	}
	t := &table{tw: tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)}
	render(t)
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeYAML goes through JSON so YAML keys match the API's JSON names and
// order; the registry types carry json tags only.
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return enc.Close()
}

// blockStyle drops the flow style JSON input leaves on every node.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style &^= yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// humanSize formats bytes with binary units: "512 B", "1.5 MiB" (as the
// server's messages do).
func humanSize(n int64) string { return config.FormatBytes(n) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// formatAliases lists aliases sorted by name: "champion=3,challenger=4".
func formatAliases(aliases map[string]int64) string {
	if len(aliases) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(aliases)) {
		parts = append(parts, k+"="+strconv.FormatInt(aliases[k], 10))
	}
	return strings.Join(parts, ",")
}

// formatAliasesServing is formatAliases with, for an alias a rollout has not
// moved yet, the version it still serves: "champion=2 (serving 1)".
func formatAliasesServing(declared, effective map[string]int64) string {
	if len(declared) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(declared)) {
		p := k + "=" + strconv.FormatInt(declared[k], 10)
		if v, ok := effective[k]; ok {
			p += " (serving " + strconv.FormatInt(v, 10) + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// aliasesOf lists the aliases pointing at version.
func aliasesOf(aliases map[string]int64, version int64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(aliases)) {
		if aliases[k] == version {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// formatSpecs renders tensor specs as "x FP32 [-1,4], y INT64 [-1]".
func formatSpecs(specs []tensor.TensorSpec) string {
	if len(specs) == 0 {
		return "-"
	}
	var parts []string
	for _, s := range specs {
		if !s.Supported() {
			parts = append(parts, s.Name+" "+s.Kind)
			continue
		}
		parts = append(parts, s.Name+" "+s.DataType.String()+" "+tensor.ShapeString(s.Shape))
	}
	return strings.Join(parts, ", ")
}

// orDefault shows a zero setting as the runtime default.
func orDefault(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
