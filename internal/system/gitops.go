package system

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/gitops"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// appliedByServer is the identity of what the server applies from its own
// configuration (--git-url): an admin of every namespace. Only server code
// sets AppliedBy, so no caller can claim it.
const appliedByServer = "server"

// gitClientTimeout bounds one HTTP request to a git remote (a fetch is
// bounded by the pass's context as well).
const gitClientTimeout = 5 * time.Minute

// setupGitOps builds the GitSource controller over the engine.
func (s *System) setupGitOps() error {
	hc := s.egress.Client(nil)
	hc.Timeout = gitClientTimeout
	cache, err := gitrepo.New(gitrepo.Options{
		Dir: filepath.Join(s.Config.DataDir, "git"), HTTPClient: hc, LocalRoot: s.Config.SourceDir,
		Logger: s.Log,
	})
	if err != nil {
		return fmt.Errorf("gitops: %w", err)
	}
	s.GitOps = gitops.New(gitops.Options{
		Resources: s.Store.(spec.ResourceStore), Applier: s.Resources, Repos: gitops.CacheRepos(cache),
		Identities: identities{s.Auth}, Secrets: secretTokens{s}, Fetcher: s.fetcher,
		Metrics: s.Metrics, Logger: s.Log,
	})
	return nil
}

// applyServerGitSource declares the GitSource of --git-url.
func (s *System) applyServerGitSource(ctx context.Context) error {
	if s.Config.GitURL == "" {
		return nil
	}
	doc := fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: server, namespace: default}\nspec: {url: %q, ref: %q, path: %q}\n",
		s.Config.GitURL, s.Config.GitRef, s.Config.GitPath)
	_, err := s.Resources.Apply(ctx, spec.Request{Files: []spec.File{{Name: "--git-url", Content: doc}},
		Actor: "server", Source: "config", AppliedBy: appliedByServer})
	if err != nil {
		return fmt.Errorf("--git-url: %w", err)
	}
	return nil
}

// identities turns a GitSource's AppliedBy back into what it may write.
type identities struct{ a *auth.Authenticator }

func (i identities) Authorizer(ctx context.Context, appliedBy string) (func(kind, ns string) error, error) {
	var id *auth.Identity
	switch {
	case appliedBy == appliedByServer:
		id = auth.Anonymous
	case i.a == nil: // auth off: every caller is an admin
		id = auth.Anonymous
	case appliedBy == "" || appliedBy == auth.Anonymous.Name:
		return nil, errs.New(errs.Unauthenticated, "it was applied while auth was off")
	default:
		var err error
		if id, err = i.a.IdentityByID(ctx, appliedBy); err != nil {
			return nil, err
		}
	}
	return func(kind, ns string) error {
		if spec.AdminOnly(kind) {
			if id.Can(auth.PermAdmin, ns) {
				return nil
			}
			return errs.New(errs.PermissionDenied, "%s (role %s) may not change a %s in namespace %q: only an admin of it may", id.Actor(), id.Role, kind, ns)
		}
		if id.Can(auth.PermWrite, ns) {
			return nil
		}
		return errs.New(errs.PermissionDenied, "%s (role %s) may not write in namespace %q", id.Actor(), id.Role, ns)
	}, nil
}

// secretTokens resolves secret references for GitSources.
type secretTokens struct{ s *System }

func (t secretTokens) Token(a spec.SourceAuth) (string, error) {
	sec, err := t.s.secrets.Resolve(a.TokenFrom)
	if err != nil {
		return "", err
	}
	return sec.Reveal(), nil
}
