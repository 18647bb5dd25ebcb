package apply

import (
	"context"
	"errors"
	"fmt"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Artifact is one declared artifact: where it is, the sha256 its bytes must
// have, and where the bearer token for an https server is (nil: none).
type Artifact struct {
	URI       string
	SHA256    string
	TokenFrom *secrets.Ref
	// File is the file that declared it: a GitSource resolves a path
	// relative to it inside its repository.
	File string
}

// artifactKey names a declared version.
type artifactKey struct {
	ns, model string
	version   int64
}

// artifact is what became of a new version's artifact before planning.
type artifact struct {
	sig   tensor.Signature
	known bool // sig was read from the stored artifact
	fetch bool // fetched by this apply, or, on a dry run, it would be
	// err is the failed check, fetch or inspection; public and field (below
	// the version's "source.") are what the caller is told.
	err           error
	public, field string
}

// artifactMode is what prepareArtifacts does with a new version's artifact.
type artifactMode int

const (
	// checkArtifacts makes the checks a fetch makes before it reads or
	// connects (Fetcher.Check), and no more: a real apply plans with it
	// first, so that a refused apply fetches nothing.
	checkArtifacts artifactMode = iota
	// inspectArtifacts checks the artifact, and inspects it when the blob
	// store already has it: a dry run.
	inspectArtifacts
	// fetchArtifacts fetches and inspects it.
	fetchArtifacts
)

// prepareArtifacts prepares the artifact of every declared version that does
// not exist yet, as mode says. It runs before the apply lock is taken, so a
// slow source holds up no other apply or delete; planning reads the registry
// again under the lock, and a version that became new in between is refused
// rather than fetched there.
func (e *Engine) prepareArtifacts(ctx context.Context, mode artifactMode, docs []spec.Document, f Fetcher) map[artifactKey]*artifact {
	if f == nil {
		return nil
	}
	out := map[artifactKey]*artifact{}
	for _, d := range docs {
		m, ok := d.Object.(*spec.Model)
		if !ok {
			continue
		}
		ns, name := m.Metadata.Namespace, m.Metadata.Name
		reg, vs, exists, err := e.loadModel(ctx, ns, name)
		if err != nil {
			continue // planning reads the model again and reports the failure
		}
		have := make(map[int64]bool, len(vs))
		for _, v := range vs {
			have[v.Version] = true
		}
		for _, dv := range m.Spec.Versions {
			// The versions planModel will want to create, and no others.
			if have[dv.Version] || (exists && dv.Version <= reg.LatestVersion) || dv.Source.URI == "" {
				continue
			}
			out[artifactKey{ns, name, dv.Version}] = e.prepareArtifact(ctx, mode, f, d.File, ns, name, dv)
		}
	}
	return out
}

func (e *Engine) prepareArtifact(ctx context.Context, mode artifactMode, f Fetcher, file, ns, name string, dv spec.ModelVersion) *artifact {
	a := Artifact{URI: dv.Source.URI, SHA256: dv.Source.SHA256, File: file}
	if dv.Source.Auth != nil {
		ref := dv.Source.Auth.TokenFrom
		a.TokenFrom = &ref
	}
	r := &artifact{}
	// A failed check or fetch says what the caller got wrong, at the field
	// it names (sha256, auth.tokenFrom), or only that the source could not
	// be fetched; the detail of the latter (what the server did, the address
	// dialled) is for the log.
	fetchFailed := func(err error) *artifact {
		r.err, r.public, r.field = err, publicOf(err), errs.FieldOf(err)
		if r.field == "" {
			r.field = "uri"
		}
		return r
	}
	if mode == fetchArtifacts {
		if _, err := f.Fetch(ctx, a, e.opts.Registry); err != nil {
			e.log.Warn("source could not be fetched", "namespace", ns, "model", name, "version", dv.Version,
				"uri", spec.RedactURI(a.URI), "err", err)
			return fetchFailed(err)
		}
		r.fetch = true
	} else if err := f.Check(a); err != nil {
		return fetchFailed(err)
	}
	if mode == checkArtifacts {
		r.fetch = true // the signature is read once it is fetched
		return r
	}
	sig, err := e.opts.Registry.InspectBlob(ctx, dv.Format, a.SHA256)
	switch {
	case mode == inspectArtifacts && errors.Is(err, errs.ErrNotFound):
		r.fetch = true // a real apply fetches it, then inspects it
	case err != nil:
		// The artifact's digest is the declared one: what is wrong with its
		// bytes tells the caller nothing they did not know.
		r.err, r.public, r.field = err, errs.PublicMessage(err), "uri"
	default:
		r.sig, r.known = sig, true
	}
	return r
}

// publicOf is what a caller may read of err: the message of its outermost
// classified error, without the cause that error wraps (a failed fetch keeps
// what the source server did there, for the log only).
func publicOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return errs.PublicMessage(err)
}

// decode decodes a request's files once a decode slot is free. Decoding is
// CPU and memory bound (prescan bounds each request), so at most
// Options.MaxDecodes run at once; the others wait for their turn as long as
// their request's context lets them: a request's body is already read and
// bounded, and a burst of applies (a CI run) should queue, not fail with 429.
// The documents that failed decoding or validation come back in invalid.
func (e *Engine) decode(ctx context.Context, req spec.Request) (docs, invalid []spec.Document, fes spec.Errors, err error) {
	select {
	case e.decodes <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, fmt.Errorf("apply: waiting for a turn to decode: %w", context.Cause(ctx))
	}
	defer func() { <-e.decodes }()
	docs, invalid, fes = spec.DecodeRequest(req)
	return docs, invalid, fes, nil
}
