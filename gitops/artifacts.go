package gitops

import (
	"context"
	"errors"
	"io/fs"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// repoArtifacts fetches the artifacts of one sync: a source uri relative to
// its YAML file ("./fraud-v3.onnx") is read from the commit being synced and
// verified against its sha256 like any other source; every other uri goes to
// the server's fetcher (file:// under --source-dir, https:// under the egress
// rule).
type repoArtifacts struct {
	snap Snapshot
	next apply.Fetcher
}

func (r repoArtifacts) Check(a apply.Artifact) error {
	if !spec.IsRepoPath(a.URI) {
		if r.next == nil {
			return errs.New(errs.FailedPrecondition, "source %s cannot be fetched: this server fetches no sources", a.URI)
		}
		return r.next.Check(a)
	}
	if repoPath(a.File, a.URI) == "" {
		return errs.New(errs.InvalidArgument, "source %s: %v", a.URI, errOutsideRepo)
	}
	return nil
}

func (r repoArtifacts) Fetch(ctx context.Context, a apply.Artifact, dst apply.BlobPutter) (registry.BlobInfo, error) {
	if !spec.IsRepoPath(a.URI) {
		if err := r.Check(a); err != nil {
			return registry.BlobInfo{}, err
		}
		return r.next.Fetch(ctx, a, dst)
	}
	p := repoPath(a.File, a.URI)
	if p == "" {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "source %s: %v", a.URI, errOutsideRepo)
	}
	rc, _, err := r.snap.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return registry.BlobInfo{}, errs.New(errs.NotFound, "source %s: no file %s in commit %s", a.URI, p, short(r.snap.Commit()))
	}
	if err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.Unavailable, err, "source %s: read %s", a.URI, p)
	}
	defer rc.Close()
	// PutBlob verifies the digest while it streams, and stores nothing on a
	// mismatch.
	return dst.PutBlob(ctx, rc, a.SHA256)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
