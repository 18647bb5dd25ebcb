package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/client"
)

// stdinName is what errors call a file read from stdin.
const stdinName = "stdin"

// resourceExts are the file names a directory given to -f contributes.
var resourceExts = []string{".yaml", ".yml", ".json"}

// readResourceFiles reads what -f names: files, directories (recursively, their
// *.yaml, *.yml and *.json files in lexical order, skipping hidden ones and
// anything that is not a regular file) and "-" for stdin. A file named twice is
// sent once. Input without any document is the server's to refuse: it says so.
func readResourceFiles(paths []string, stdin io.Reader) ([]client.ApplyFile, error) {
	if len(paths) == 0 {
		return nil, usageErrorf("no input: give -f FILE, -f DIRECTORY or -f - (stdin)")
	}
	var files []client.ApplyFile
	// seen holds the cleaned paths of the files read, so a file named twice
	// (or named and found in a directory given too) is sent once. Stdin has a
	// flag of its own: no key is safe from some path ("./-" cleans to "-"),
	// and keyed by its name it hid a file called "stdin".
	seen := map[string]bool{}
	readStdin := false
	addFile := func(path string, content []byte) {
		path = filepath.ToSlash(filepath.Clean(path))
		if seen[path] {
			return
		}
		seen[path] = true
		name := path
		if name == stdinName {
			name = "./" + name // not to be taken for stdin in errors
		}
		files = append(files, client.ApplyFile{Name: name, Content: string(content)})
	}
	for _, p := range paths {
		if p == "-" {
			if readStdin {
				return nil, usageErrorf("-f - (stdin) given twice")
			}
			readStdin = true
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			files = append(files, client.ApplyFile{Name: stdinName, Content: string(b)})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if !fi.IsDir() {
			// A named pipe is read as a file: that is what "-f <(kustomize
			// build)" hands over. Devices, sockets and the like are refused
			// rather than read until they end, if ever.
			if !fi.Mode().IsRegular() && fi.Mode().Type() != fs.ModeNamedPipe {
				return nil, fmt.Errorf("read %s: not a regular file (%s)", p, fileType(fi.Mode()))
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			addFile(p, b)
			continue
		}
		found, err := resourceFilesUnder(p)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("no *.yaml, *.yml or *.json files under %s", p)
		}
		for _, f := range found {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			addFile(f, b)
		}
	}
	return files, nil
}

// fileType names what a non-regular file is, for errors.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.Type().String()
}

// resourceFilesUnder lists dir's resource files, recursively and sorted.
// Hidden files and directories (.git) are skipped, and so is whatever is not a
// regular file, or a link to one: reading a named pipe or a device nobody
// named would block or never end.
func resourceFilesUnder(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		hidden := p != dir && strings.HasPrefix(d.Name(), ".")
		if d.IsDir() {
			if hidden {
				return filepath.SkipDir
			}
			return nil
		}
		if hidden || !slices.Contains(resourceExts, strings.ToLower(filepath.Ext(p))) {
			return nil
		}
		regular := d.Type().IsRegular()
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(p) // a dangling link is an error, as it was
			if err != nil {
				return err
			}
			regular = fi.Mode().IsRegular()
		}
		if regular {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	slices.Sort(out)
	return out, nil
}

// resourceRef names a resource as kubectl does: "inferenceservice.nimbus.dev/fraud".
func resourceRef(kind, name string) string {
	return strings.ToLower(kind) + ".nimbus.dev/" + name
}

// printResults writes one line per resource: "model.nimbus.dev/churn created".
func (a *app) printResults(res *client.ApplyResult) error {
	return a.print(res, func(t *table) {
		suffix := ""
		if res.DryRun {
			suffix = " (dry run)"
		}
		for _, r := range res.Results {
			t.row(resourceRef(r.Kind, r.Name) + " " + r.Action + suffix)
		}
	})
}

// refused reports an apply or delete the server refused as a whole: every
// problem on stderr as "file:line: field: message" (and, for -o json/yaml, the
// list on stdout), then an error that exits with code.
func (a *app) refused(op string, err error, code int) error {
	var ae *client.ApplyError
	if !errors.As(err, &ae) {
		return &exitError{code: code, err: fmt.Errorf("%s: %w", op, err)}
	}
	for _, fe := range ae.Errors {
		fmt.Fprintln(a.stderr, fe.String())
	}
	if a.output == "json" || a.output == "yaml" {
		if perr := a.print(map[string]any{"errors": ae.Errors}, nil); perr != nil {
			return perr
		}
	}
	n := len(ae.Errors)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	if op == "diff" {
		return &exitError{code: code, err: fmt.Errorf("diff: %d problem%s in the input", n, plural)}
	}
	return &exitError{code: code, err: fmt.Errorf("%s refused: %d problem%s; nothing was changed", op, n, plural)}
}

func (a *app) applyCommand() *cobra.Command {
	var paths []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f PATH [-f PATH...]",
		Short: "Create or update models and inference services from YAML files",
		Long: `Declare models and inference services in YAML (apiVersion: nimbus.dev/v1) and
make the server match. PATH is a file, a directory (read recursively: its
*.yaml, *.yml and *.json files in lexical order; hidden ones are skipped) or
"-" for stdin. A file may hold several documents separated by "---".

Everything given is sent in one call: the server validates every document
before it changes anything, so either all of it applies or none of it does.
Problems are printed as "file:line: field: message" and the command exits 1.

Each resource is reported as created, configured or unchanged. --dry-run
validates and reports what would happen without changing anything; see
"nimbus diff" for the changes themselves. Documents without
metadata.namespace go to --namespace. Changes are recorded in the audit log
with source "cli" (see "nimbus events").`,
		Example: `  nimbus apply -f fraud.yaml
  nimbus apply -f deploy/ --dry-run
  nimbus apply -f model.yaml -f service.yaml -n payments
  nimbus get isvc fraud -o yaml | sed 's/weight: 10/weight: 50/' | nimbus apply -f -
  nimbus apply -f deploy/ -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := readResourceFiles(paths, cmd.InOrStdin())
			if err != nil {
				return err
			}
			res, err := a.client().Apply(cmd.Context(), files, client.ApplyOptions{Namespace: a.namespace, DryRun: dryRun})
			if err != nil {
				return a.refused("apply", err, 1)
			}
			return a.printResults(res)
		},
	}
	cmd.Flags().StringArrayVarP(&paths, "filename", "f", nil, `file, directory or "-" (stdin) to apply; repeatable`)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and report what would change, without changing anything")
	return cmd
}

func (a *app) diffCommand() *cobra.Command {
	var paths []string
	cmd := &cobra.Command{
		Use:   "diff -f PATH [-f PATH...]",
		Short: "Show what apply would change, as unified diffs",
		Long: `Show what "nimbus apply" would change: a dry-run apply of the same input
(files, directories or "-" for stdin, as apply reads them), printing each
resource's unified diff between its stored and declared YAML. Unchanged
resources print nothing.

Exit status, as "kubectl diff" and diff(1) have it:
  0  nothing would change
  1  something would change (the diffs are printed)
  2  an error: invalid documents (printed as "file:line: field: message"),
     an unreachable server, bad flags

-o json prints the dry-run result, diffs included.`,
		Example: `  nimbus diff -f deploy/
  nimbus diff -f fraud.yaml && echo "in sync"
  nimbus diff -f deploy/ -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := readResourceFiles(paths, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res, err := a.client().Apply(cmd.Context(), files, client.ApplyOptions{Namespace: a.namespace, DryRun: true})
			if err != nil {
				return a.refused("diff", err, 2)
			}
			if a.output == "table" {
				a.writeDiffs(res)
			} else if err := a.print(res, nil); err != nil {
				return &exitError{code: 2, err: err}
			}
			if res.Changed() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&paths, "filename", "f", nil, `file, directory or "-" (stdin) to compare; repeatable`)
	return cmd
}

// writeDiffs prints the diff of every resource that would change, each under
// a "diff -u -N live/NS/REF applied/NS/REF" line naming it, as kubectl diff
// does; "---"/"+++" headers are added where the server's diff has none.
func (a *app) writeDiffs(res *client.ApplyResult) {
	for _, r := range res.Results {
		if r.Action == client.ActionUnchanged {
			continue
		}
		ref := r.Namespace + "/" + resourceRef(r.Kind, r.Name)
		fmt.Fprintf(a.stdout, "diff -u -N live/%s applied/%s\n", ref, ref)
		d := r.Diff
		if !strings.HasPrefix(d, "--- ") {
			from := "live"
			if r.Action == client.ActionCreated {
				from = "/dev/null"
			}
			d = "--- " + from + "\n+++ applied\n" + d
		}
		if !strings.HasSuffix(d, "\n") {
			d += "\n"
		}
		fmt.Fprint(a.stdout, d)
	}
}

func (a *app) deleteResourcesCommand() *cobra.Command {
	var paths []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "delete (-f PATH... | KIND NAME... | KIND/NAME...)",
		Short: "Delete models and inference services, by file or by name",
		Long: `Delete declared resources, either those the files name (-f, read as apply
reads them; only kind, namespace and name matter) or by kind and name.

With -f the server deletes all of them or, if one is missing, none. By name,
each resource is deleted in turn and the failures are reported at the end.

Deleting a Model deletes the model with all its versions; kinds are model and
inferenceservice (isvc).`,
		Example: `  nimbus delete -f fraud.yaml
  nimbus delete isvc fraud
  nimbus delete model fraud-detector churn -n payments
  nimbus delete inferenceservice.nimbus.dev/fraud`,
		RunE: func(cmd *cobra.Command, argv []string) error {
			c := a.client()
			if len(paths) > 0 {
				if len(argv) > 0 {
					return usageErrorf("give either -f or KIND NAME, not both")
				}
				files, err := readResourceFiles(paths, cmd.InOrStdin())
				if err != nil {
					return err
				}
				res, err := c.DeleteFiles(cmd.Context(), files, client.ApplyOptions{Namespace: a.namespace, DryRun: dryRun})
				if err != nil {
					return a.refused("delete", err, 1)
				}
				return a.printResults(res)
			}
			refs, err := parseResourceArgs(argv)
			if err != nil {
				return err
			}
			res := &client.ApplyResult{DryRun: dryRun, Results: []client.ResourceResult{}}
			var errs []error
			for _, r := range refs {
				if r.name == "" {
					return usageErrorf("delete %s: give the names to delete (KIND NAME...)", r.kind)
				}
				if err := c.DeleteResource(cmd.Context(), r.kind, a.namespace, r.name, dryRun); err != nil {
					errs = append(errs, fmt.Errorf("delete %s: %w", resourceRef(r.kind, r.name), err))
					continue
				}
				res.Results = append(res.Results, client.ResourceResult{Kind: r.kind, Namespace: a.namespace, Name: r.name, Action: client.ActionDeleted})
			}
			if err := a.printResults(res); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringArrayVarP(&paths, "filename", "f", nil, `file, directory or "-" (stdin) naming what to delete; repeatable`)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check and report what would be deleted, without deleting")
	return cmd
}
