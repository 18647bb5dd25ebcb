package gitops

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/nimbus-ai/nimbus/spec"
)

// Bounds of one render: a repository is text the server reads on every
// commit, so what one commit can make it hold is bounded.
const (
	maxRenderFiles  = 10_000
	maxFileBytes    = 4 << 20  // one YAML file
	maxRenderBytes  = 64 << 20 // every YAML file of the path together
	renderErrorCode = "invalid_argument"
)

// render reads every YAML file under dir of snap, in lexical order, as the
// files of one apply. Other files (artifacts, READMEs) are skipped; a path
// that is missing renders nothing.
func render(snap Snapshot, dir string) ([]spec.File, error) {
	dir = strings.Trim(dir, "/")
	var files []spec.File
	var total int64
	err := snap.Walk(dir, func(p string, size int64) error {
		// Hidden is judged below dir: a source may sync a hidden folder.
		if !isYAML(strings.TrimPrefix(p, dir+"/")) {
			return nil
		}
		if len(files) == maxRenderFiles {
			return fmt.Errorf("more than %d YAML files under %q", maxRenderFiles, dir)
		}
		if size > maxFileBytes {
			return fmt.Errorf("%s: %d bytes, more than the %d a resource file may have", p, size, maxFileBytes)
		}
		if total += size; total > maxRenderBytes {
			return fmt.Errorf("the YAML files under %q hold more than %d bytes", dir, maxRenderBytes)
		}
		rc, _, err := snap.Open(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxFileBytes+1))
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		files = append(files, spec.File{Name: p, Content: string(b)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

func isYAML(p string) bool {
	ext := strings.ToLower(path.Ext(p))
	// Hidden files and folders (.github/workflows/ci.yml) are another
	// tool's configuration, not resources.
	return (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(p, ".") && !strings.Contains(p, "/.")
}

// declaredBy is what the files declare, documents in ns unless they name
// another, and whether any of them failed to decode (errors are the apply's
// to report; a broken file must never read as "the repo is empty").
func declaredBy(files []spec.File, ns string) (keys []resourceKey, broken bool) {
	docs, invalid, fes := spec.DecodeRequest(spec.Request{Files: files, Namespace: ns})
	for _, d := range append(docs, invalid...) {
		m := d.Object.GetMeta()
		keys = append(keys, resourceKey{d.Object.GetKind(), m.Namespace, m.Name})
	}
	return keys, len(fes) > 0 && !(len(fes) == 1 && fes[0].Message == spec.NoResources)
}

// repoPath resolves a source uri written relative to the YAML file that
// declares it, inside the repository: "" when it would leave it.
func repoPath(file, uri string) string {
	p := path.Join(path.Dir(file), uri)
	if p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") {
		return ""
	}
	return p
}

var errOutsideRepo = errors.New("the path leaves the repository")
