package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/registry"
)

func (a *app) modelsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "models",
		Aliases: []string{"model"},
		Short:   "Push, list, inspect and manage registered models",
		Example: `  nimbus models push churn.onnx --alias champion
  nimbus models list
  nimbus models get churn
  nimbus models alias set churn champion 2`,
	})
	alias := group(&cobra.Command{
		Use:   "alias",
		Short: "Point aliases (champion, challenger...) at versions",
		Example: `  nimbus models alias set churn champion 3
  nimbus models alias rm churn challenger`,
	})
	alias.AddCommand(a.aliasSetCommand(), a.aliasRmCommand())
	cmd.AddCommand(
		a.pushCommand(),
		a.listCommand(),
		a.getCommand(),
		a.statusCommand(),
		alias,
		a.deleteCommand(),
		a.configCommand(),
		a.gcCommand(),
	)
	return cmd
}

func (a *app) listCommand() *cobra.Command {
	var opt registry.ListOptions
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the models of a namespace",
		Long: `List the models of a namespace, by name. Without --all one page is shown;
the next page starts after the last name (--after).`,
		Example: `  nimbus models list
  nimbus models list --prefix fraud- --all -o json
  nimbus models list -n payments --limit 20 --after churn`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			var page registry.ModelPage
			if all {
				items, err := c.ListAllModels(cmd.Context(), a.namespace, opt)
				if err != nil {
					return fmt.Errorf("list models: %w", err)
				}
				page.Items = items
			} else {
				var err error
				if page, err = c.ListModels(cmd.Context(), a.namespace, opt); err != nil {
					return fmt.Errorf("list models: %w", err)
				}
			}
			if page.Items == nil {
				page.Items = []registry.Model{}
			}
			err := a.print(page, func(t *table) {
				t.row("NAME", "LATEST", "ALIASES", "UPDATED")
				for _, m := range page.Items {
					t.row(m.Name, strconv.FormatInt(m.LatestVersion, 10), formatAliases(m.Aliases), formatTime(m.UpdatedAt))
				}
			})
			if err == nil && a.output == "table" && page.Next != "" {
				fmt.Fprintf(a.stderr, "More models follow: use --all, or --after %s\n", page.Next)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&opt.Limit, "limit", 0, "models per page (server default 100, at most 1000)")
	f.StringVar(&opt.Prefix, "prefix", "", "only models whose name starts with this")
	f.StringVar(&opt.After, "after", "", "start after this model name")
	f.BoolVar(&all, "all", false, "follow every page")
	return cmd
}

// modelDetails is what `models get -o json` prints.
type modelDetails struct {
	Model    registry.Model     `json:"model"`
	Versions []registry.Version `json:"versions"`
}

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a model with its versions, digests and signatures",
		Example: `  nimbus models get churn
  nimbus models get churn -o yaml`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c := a.client()
			m, err := c.GetModel(cmd.Context(), a.namespace, argv[0])
			if err != nil {
				return fmt.Errorf("get model: %w", err)
			}
			vs, err := c.ListVersions(cmd.Context(), a.namespace, argv[0])
			if err != nil {
				return fmt.Errorf("list versions: %w", err)
			}
			if vs == nil {
				vs = []registry.Version{}
			}
			return a.print(modelDetails{Model: m, Versions: vs}, func(t *table) {
				t.row("Name:", m.Name)
				t.row("Namespace:", m.Namespace)
				t.row("Description:", orDash(m.Description))
				t.row("Labels:", formatLabels(m.Labels))
				t.row("Aliases:", formatAliasesServing(m.Aliases, m.Effective))
				t.row("Latest:", strconv.FormatInt(m.LatestVersion, 10))
				t.row("Serving:", fmt.Sprintf("threads=%s interOpThreads=%s", orDefault(m.Serving.Threads), orDefault(m.Serving.InterOpThreads)))
				t.row("Created:", formatTime(m.CreatedAt))
				t.row("")
				t.row("VERSION", "SHA256", "SIZE", "FORMAT", "CREATED", "ALIASES", "INPUTS", "OUTPUTS")
				for _, v := range vs {
					t.row(strconv.FormatInt(v.Version, 10), shortSHA(v.SHA256), humanSize(v.Size), v.Format,
						formatTime(v.CreatedAt), aliasesOf(m.Aliases, v.Version),
						formatSpecs(v.Signature.Inputs), formatSpecs(v.Signature.Outputs))
				}
			})
		},
	}
}

func (a *app) aliasSetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "set NAME ALIAS VERSION",
		Short:   "Point an alias at a version (creating or moving it)",
		Example: `  nimbus models alias set churn champion 3`,
		Args:    args(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ver, err := strconv.ParseInt(argv[2], 10, 64)
			if err != nil || ver <= 0 {
				return usageErrorf("version %q is not a positive number", argv[2])
			}
			m, err := a.client().SetAlias(cmd.Context(), a.namespace, argv[0], argv[1], ver)
			if err != nil {
				return fmt.Errorf("set alias: %w", err)
			}
			return a.print(m, func(t *table) {
				t.row(fmt.Sprintf("%s@%s -> version %d", m.Name, argv[1], ver))
			})
		},
	}
}

func (a *app) aliasRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME ALIAS",
		Aliases: []string{"delete"},
		Short:   "Remove an alias",
		Example: `  nimbus models alias rm churn challenger`,
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client().DeleteAlias(cmd.Context(), a.namespace, argv[0], argv[1]); err != nil {
				return fmt.Errorf("remove alias: %w", err)
			}
			out := map[string]string{"model": argv[0], "alias": argv[1], "status": "deleted"}
			return a.print(out, func(t *table) { t.row("removed alias " + argv[0] + "@" + argv[1]) })
		},
	}
}

// splitRef splits "name@ref" into its name and version reference.
func splitRef(s string) (name, ref string) {
	name, ref, _ = strings.Cut(s, "@")
	return name, ref
}

func (a *app) deleteCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "delete NAME[@VERSION]",
		Aliases: []string{"rm"},
		Short:   "Delete a model, or one version of it",
		Long: `Delete a model with all its versions, or one version (NAME@VERSION).
Deleting is refused while an alias points at what would go; --force removes
those aliases too. Artifacts no version uses are collected afterwards.`,
		Example: `  nimbus models delete churn@2
  nimbus models delete churn --force`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			name, ref := splitRef(argv[0])
			c := a.client()
			if ref == "" {
				if err := c.DeleteModel(cmd.Context(), a.namespace, name, force); err != nil {
					return fmt.Errorf("delete model: %w", err)
				}
			} else {
				ver, err := strconv.ParseInt(ref, 10, 64)
				if err != nil || ver <= 0 {
					return usageErrorf("delete takes a version number, not %q", ref)
				}
				if err := c.DeleteVersion(cmd.Context(), a.namespace, name, ver, force); err != nil {
					return fmt.Errorf("delete version: %w", err)
				}
			}
			out := map[string]string{"deleted": argv[0], "namespace": a.namespace}
			return a.print(out, func(t *table) { t.row("deleted " + argv[0]) })
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while aliases point at it")
	return cmd
}

func (a *app) gcCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Delete stored artifacts that no version references",
		Long: `Delete stored artifacts (blobs) that no model version references. Blobs
uploaded moments ago are kept for a grace period so a push in flight survives.`,
		Example: `  nimbus models gc
  nimbus models gc -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := a.client().GC(cmd.Context())
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if removed == nil {
				removed = []registry.BlobInfo{}
			}
			out := struct {
				Removed []registry.BlobInfo `json:"removed"`
			}{removed}
			return a.print(out, func(t *table) {
				var total int64
				if len(removed) > 0 {
					t.row("SHA256", "SIZE")
				}
				for _, b := range removed {
					t.row(b.SHA256, humanSize(b.Size))
					total += b.Size
				}
				t.row(fmt.Sprintf("removed %d blobs (%s)", len(removed), humanSize(total)))
			})
		},
	}
}
