package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/registry"
)

// progressMinSize is the smallest push that shows a progress bar; smaller ones
// finish before a bar would say anything.
const progressMinSize = 1 << 20

var nameUnsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

// defaultModelName turns "models/Churn_v2.onnx" into "churn-v2".
func defaultModelName(path string) string {
	base := strings.ToLower(filepath.Base(path))
	base = strings.TrimSuffix(base, filepath.Ext(base))
	return strings.Trim(nameUnsafe.ReplaceAllString(base, "-"), "-.")
}

func (a *app) pushCommand() *cobra.Command {
	var (
		name, description, format string
		aliases, lineage          []string
		version                   int64
		quiet                     bool
	)
	cmd := &cobra.Command{
		Use:   "push FILE",
		Short: "Upload a model file and register it as a new version",
		Long: `Upload a model file through the resumable upload API and register it as a
new version. The model is created on its first push. The name defaults to the
file's base name, lowercased, without extension. A failed chunk is retried from
where the server stopped. A progress bar is shown on stderr when it is a
terminal and the file is 1 MiB or more (--quiet hides it).`,
		Example: `  nimbus models push churn.onnx --alias champion
  nimbus models push ./out/model.onnx --name fraud-detector --alias challenger \
      --description "retrained on May data" --lineage run=42 --lineage commit=1a2b3c
  nimbus models push model.onnx --name churn --version 7 -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			path := argv[0]
			if name == "" {
				name = defaultModelName(path)
			}
			lin, err := parsePairs(lineage, "--lineage")
			if err != nil {
				return err
			}
			fi, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			if fi.IsDir() {
				return fmt.Errorf("push: %s is a directory, not a model file", path)
			}
			req := registry.CreateVersionRequest{
				Version: version, Format: format, Description: description,
				Lineage: lin, Aliases: aliases,
			}
			var progress func(done, total int64)
			var bar *progressbar.ProgressBar
			if !quiet && fi.Size() >= progressMinSize && a.isTerminal(a.stderr) {
				bar = progressbar.NewOptions64(fi.Size(),
					progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription("pushing "+name),
					progressbar.OptionShowBytes(true),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish(),
				)
				progress = func(done, _ int64) { _ = bar.Set64(done) }
			}
			v, err := a.client().PushFile(cmd.Context(), a.namespace, name, path, req, progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			return a.print(v, func(t *table) {
				t.row("MODEL", "VERSION", "SHA256", "SIZE", "ALIASES")
				al := "-"
				if len(aliases) > 0 {
					al = strings.Join(aliases, ",")
				}
				t.row(v.Model, strconv.FormatInt(v.Version, 10), shortSHA(v.SHA256), humanSize(v.Size), al)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "model name (default: the file name without extension)")
	f.StringArrayVar(&aliases, "alias", nil, "alias to point at the new version (repeatable)")
	f.Int64Var(&version, "version", 0, "version number (default: latest + 1)")
	f.StringVar(&description, "description", "", "version description")
	f.StringArrayVar(&lineage, "lineage", nil, "provenance as key=value, e.g. run=42 (repeatable)")
	f.StringVar(&format, "format", "onnx", "artifact format")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// parsePairs parses repeated key=value flags.
func parsePairs(pairs []string, flag string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErrorf("%s %q: want key=value", flag, p)
		}
		out[k] = v
	}
	return out, nil
}
