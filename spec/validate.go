package spec

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/rollout"
)

// Service bounds.
const (
	MaxTrafficTargets = 16        // targets in one service's traffic split
	MaxServiceTimeout = time.Hour // spec.timeout
	maxLabelKeyLen    = 253       // as the registry's model labels
)

// Validate checks a document's object on its own, after Default: names,
// versions, digests, source URIs, aliases and serving settings of a Model;
// targets, weights, shadow, timeout and routing of an InferenceService. What
// needs the registry or the store (that a target's model exists, that a
// declared version matches the stored one) is checked by apply. Each error
// names its field and the line of that field (else of its nearest parent, else
// of the document).
func Validate(doc Document) []FieldError {
	if doc.Object == nil {
		return []FieldError{{File: doc.File, Line: doc.Line, Message: "no resource in the document", Code: errs.InvalidArgument.String()}}
	}
	v := &validator{doc: doc}
	switch o := doc.Object.(type) {
	case *Model:
		v.meta(&o.Metadata, "model name")
		v.model(&o.Spec)
	case *InferenceService:
		v.meta(&o.Metadata, "service name")
		v.service(&o.Spec)
	case *GitSource:
		v.meta(&o.Metadata, "gitsource name")
		v.gitSource(&o.Spec, o.Metadata.Namespace)
	case *Connection:
		v.meta(&o.Metadata, "connection name")
		v.fields(ValidateConnection(o.Spec))
	case *Trigger:
		v.meta(&o.Metadata, "trigger name")
		v.fields(ValidateTrigger(o.Spec))
	default:
		v.errorf("kind", "unknown kind %q; known kinds: %s", doc.Object.GetKind(), knownKinds())
	}
	return v.errs
}

type validator struct {
	doc  Document
	errs []FieldError
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, v.doc.Errorf(field, errs.InvalidArgument, format, args...))
}

// fields records problems a kind's own check found, at their fields.
func (v *validator) fields(fes []FieldError) {
	for _, fe := range fes {
		v.errorf(fe.Field, "%s", fe.Message)
	}
}

// check records err, a registry validation error, at field.
func (v *validator) check(field string, err error) {
	if err != nil {
		v.errorf(field, "%s", err.Error())
	}
}

func (v *validator) meta(m *ObjectMeta, what string) {
	if m.Name == "" {
		v.errorf("metadata.name", "required")
	} else if err := registry.ValidateModelName(m.Name); err != nil {
		// Services follow the rules of model names (they share the OIP model
		// slot); say which name it is.
		v.errorf("metadata.name", "%s", strings.Replace(err.Error(), "model name", what, 1))
	}
	v.check("metadata.namespace", registry.ValidateNamespace(m.Namespace))
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		if k == "" || len(k) > maxLabelKeyLen {
			v.errorf(childPath("metadata.labels", k), "label keys must be 1 to %d characters, got %d", maxLabelKeyLen, len(k))
		}
	}
}

func (v *validator) model(s *ModelSpec) {
	first := map[int64]int{} // version -> index of its first declaration
	for i, mv := range s.Versions {
		f := fmt.Sprintf("spec.versions[%d]", i)
		if mv.Version < 1 {
			v.errorf(f+".version", "must be a positive number, got %d", mv.Version)
		} else if mv.Version > registry.MaxVersion {
			v.errorf(f+".version", "must be at most %d (2^53-1), got %d", registry.MaxVersion, mv.Version)
		} else if j, dup := first[mv.Version]; dup {
			v.errorf(f+".version", "version %d is declared twice (also spec.versions[%d])", mv.Version, j)
		} else {
			first[mv.Version] = i
		}
		if mv.Format == "" {
			v.errorf(f+".format", "required")
		}
		v.source(f+".source", mv.Source)
	}
	for _, a := range slices.Sorted(maps.Keys(s.Aliases)) {
		f := childPath("spec.aliases", a)
		v.check(f, registry.ValidateAlias(a))
		if n := s.Aliases[a]; n < 1 {
			v.errorf(f, "must be a positive version number, got %d", n)
		} else if n > registry.MaxVersion {
			v.errorf(f, "must be a version number at most %d (2^53-1), got %d", registry.MaxVersion, n)
		}
	}
	if s.Serving != nil {
		if err := s.Serving.Validate(); err != nil {
			// The registry names its fields from "serving.", as the CLI does.
			field := errs.FieldOf(err)
			msg := strings.TrimPrefix(err.Error(), field+": ")
			if field == "" {
				field = "serving"
			}
			v.errorf("spec."+field, "%s", msg)
		}
	}
}

func (v *validator) source(f string, src Source) {
	switch {
	case src.SHA256 == "":
		v.errorf(f+".sha256", "required: the artifact's sha256 digest (64 lowercase hex characters)")
	case strings.HasPrefix(strings.ToLower(src.SHA256), "sha256:"):
		v.errorf(f+".sha256", "must be 64 lowercase hex characters, without the \"sha256:\" prefix")
	default:
		v.check(f+".sha256", registry.ValidateDigest(src.SHA256))
	}
	if src.URI != "" {
		if msg := checkSourceURI(src.URI); msg != "" {
			v.errorf(f+".uri", "%s", msg)
		}
	}
	if src.Auth != nil {
		v.sourceAuth(f+".auth", src)
	}
}

// sourceAuth checks a source's auth: a valid token reference, on an https://
// source without user info (the token would replace it).
func (v *validator) sourceAuth(f string, src Source) {
	if err := src.Auth.TokenFrom.Validate(); err != nil {
		field := f + ".tokenFrom"
		if sub := errs.FieldOf(err); sub != "" {
			field += "." + sub
		}
		v.errorf(field, "%s", err.Error())
	}
	switch u, err := url.Parse(src.URI); {
	case src.URI == "":
		v.errorf(f, "needs a uri: auth is sent to the https:// server the artifact comes from")
	case err != nil || !strings.EqualFold(u.Scheme, "https"):
		v.errorf(f, "is for https:// sources only")
	case u.User != nil:
		v.errorf(f, "give user info in the uri or auth, not both")
	}
}

// checkSourceURI says what is wrong with an artifact URI, "" if nothing is.
// Whether a file:// path lies under the allowed directory is apply's business.
func checkSourceURI(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		if IsRepoPath(uri) {
			return "" // a file beside the YAML in a GitSource's repository
		}
		if strings.HasPrefix(uri, "/") {
			return fmt.Sprintf("must be a file:// or https:// URI, got %q (for a local file write file://%s)", uri, uri)
		}
		return fmt.Sprintf("must be a file:// or https:// URI, got %q", uri)
	}
	switch strings.ToLower(scheme) {
	case "file":
		if rest == "" || !strings.HasPrefix(rest, "/") {
			return fmt.Sprintf("file URI %q must name an absolute path, e.g. file:///models/model.onnx", uri)
		}
		return ""
	case "https":
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" {
			return fmt.Sprintf("invalid https URI %q", uri)
		}
		return ""
	case "http":
		return fmt.Sprintf("scheme \"http\" is not supported: artifacts are fetched over https:// (or from file://), got %q", uri)
	}
	return fmt.Sprintf("scheme %q is not supported; use file:// or https://", scheme)
}

func (v *validator) service(s *ServiceSpec) {
	switch {
	case len(s.Traffic) == 0:
		v.errorf("spec.traffic", "required: at least one target")
	case len(s.Traffic) > MaxTrafficTargets:
		v.errorf("spec.traffic", "at most %d targets, got %d", MaxTrafficTargets, len(s.Traffic))
	}
	sum, summable := 0, len(s.Traffic) > 0
	first := map[string]int{} // target -> index of its first listing
	for i, t := range s.Traffic {
		f := fmt.Sprintf("spec.traffic[%d]", i)
		if t.Model == "" {
			v.errorf(f+".model", "required: a target like model, model@alias or model@3")
		} else if model, ref, err := ParseTarget(t.Model); err != nil {
			v.errorf(f+".model", "%s", err.Error())
		} else {
			key := model + "@" + ref
			if j, dup := first[key]; dup {
				v.errorf(f+".model", "target %q is listed twice (also spec.traffic[%d])", t.Model, j)
			} else {
				first[key] = i
			}
		}
		switch {
		case t.Weight == nil:
			summable = false
			if len(s.Traffic) > 1 {
				v.errorf(f+".weight", "required when there is more than one target")
			}
		case *t.Weight < 0 || *t.Weight > 100:
			summable = false
			v.errorf(f+".weight", "must be 0..100, got %d", *t.Weight)
		default:
			sum += *t.Weight
		}
	}
	if summable && sum != 100 {
		v.errorf("spec.traffic", "weights sum to %d, must be 100", sum)
	}
	if sh := s.Shadow; sh != nil {
		if sh.Model == "" {
			v.errorf("spec.shadow.model", "required: a target like model, model@alias or model@3")
		} else if _, _, err := ParseTarget(sh.Model); err != nil {
			v.errorf("spec.shadow.model", "%s", err.Error())
		}
		if sh.Percent != nil && (*sh.Percent < 0 || *sh.Percent > 100) {
			v.errorf("spec.shadow.percent", "must be 0..100, got %d", *sh.Percent)
		}
	}
	switch t := s.Timeout.D(); {
	case t < 0:
		v.errorf("spec.timeout", "must not be negative, got %s", t)
	case t > MaxServiceTimeout:
		v.errorf("spec.timeout", "must be at most %s, got %s", MaxServiceTimeout, t)
	}
	if r := s.Routing; r != nil && r.StickyBy != StickyByHeader && r.StickyBy != StickyByRequestID {
		v.errorf("spec.routing.stickyBy", "must be %q or %q, got %q", StickyByHeader, StickyByRequestID, r.StickyBy)
	}
	if r := s.Rollout; r != nil {
		v.rollout(s, r)
	}
	if rl := s.RateLimit; rl != nil {
		if rl.RequestsPerSecond < 0 || rl.RequestsPerSecond > 1e9 || rl.RequestsPerSecond != rl.RequestsPerSecond {
			v.errorf("spec.rateLimit.requestsPerSecond", "must be 0..1e9 (0: unlimited), got %g", rl.RequestsPerSecond)
		}
		if rl.Burst < 0 || rl.Burst > 1e9 {
			v.errorf("spec.rateLimit.burst", "must be 0..1e9 (0: the default), got %d", rl.Burst)
		}
	}
}

// rollout checks a service's rollout: one traffic target (the one rolled
// out), a plan that can run, a shadow share in 0..100.
func (v *validator) rollout(s *ServiceSpec, r *RolloutSpec) {
	if len(s.Traffic) > 1 {
		v.errorf("spec.rollout", "a rollout moves one target: spec.traffic must have exactly one (it has %d); split traffic by hand or roll out one target", len(s.Traffic))
	}
	if a := r.Analysis; a.ShadowPercent != nil && (*a.ShadowPercent < 0 || *a.ShadowPercent > 100) {
		v.errorf("spec.rollout.analysis.shadowPercent", "must be 0..100, got %d", *a.ShadowPercent)
	}
	if t := r.Analysis.Tolerance; !(t >= 0) || math.IsInf(t, 1) {
		v.errorf("spec.rollout.analysis.tolerance", "must be a finite number ≥ 0, got %v", t)
	}
	if a := r.Analysis; a.ShadowPercent != nil && *a.ShadowPercent == 0 && r.Plan().Has(rollout.ShadowMismatchRate) {
		v.errorf("spec.rollout.analysis.shadowPercent", "is 0, so %s could never be measured", rollout.ShadowMismatchRate)
	}
	for _, p := range r.Plan().Problems() {
		v.errorf("spec.rollout."+p.Field, "%s", p.Message)
	}
}

// ParseTarget splits a traffic or shadow target into its model and reference:
// "fraud" gives ("fraud", ""), meaning the champion alias, else the latest
// version; "fraud@challenger" gives ("fraud", "challenger"); "fraud@3" and
// "fraud@003" give ("fraud", "3"), a version number. Errors are
// errs.InvalidArgument and say what is wrong.
func ParseTarget(s string) (model, ref string, err error) {
	model, ref, hasRef := strings.Cut(s, "@")
	bad := func(format string, args ...any) error {
		return errs.New(errs.InvalidArgument, "target %q: %s", s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return "", "", errs.New(errs.InvalidArgument, "target must not be empty: write model, model@alias or model@3")
	}
	if err := registry.ValidateModelName(model); err != nil {
		return "", "", bad("%s", err.Error())
	}
	if !hasRef {
		return model, "", nil
	}
	if ref == "" {
		return "", "", bad("nothing after @: write model@alias or model@3")
	}
	if strings.TrimLeft(ref, "0123456789") == "" { // all digits: a version number
		n, err := strconv.ParseInt(ref, 10, 64)
		if err != nil || n < 1 {
			return "", "", bad("version %q must be a positive number", ref)
		}
		if n > registry.MaxVersion {
			return "", "", bad("version %s must be at most %d (2^53-1)", ref, registry.MaxVersion)
		}
		return model, strconv.FormatInt(n, 10), nil
	}
	if err := registry.ValidateAlias(ref); err != nil {
		return "", "", bad("%s", err.Error())
	}
	return model, ref, nil
}

// IsRepoPath reports whether a source uri is a path relative to the YAML file
// that declares it, written with a leading ./ or ../ ("./fraud-v3.onnx",
// "../artifacts/m.onnx", so that a forgotten file:// is still caught): valid only in
// a repository a GitSource syncs, resolved inside its checkout.
func IsRepoPath(uri string) bool {
	return (strings.HasPrefix(uri, "./") || strings.HasPrefix(uri, "../")) && !strings.Contains(uri, "://") &&
		!strings.ContainsAny(uri, "\\\x00") && !strings.Contains(uri, ":")
}

// gitSource checks a GitSource's spec; ns is its own namespace.
func (v *validator) gitSource(s *GitSourceSpec, ns string) {
	v.gitURL(s)
	if s.Ref != "" {
		if strings.ContainsFunc(s.Ref, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("~^:?*[\\", r) }) ||
			strings.Contains(s.Ref, "..") || strings.HasPrefix(s.Ref, "-") || strings.HasSuffix(s.Ref, "/") || strings.HasSuffix(s.Ref, ".lock") {
			v.errorf("spec.ref", "%q is not a valid branch, tag or commit", s.Ref)
		}
	}
	if s.Path != "" {
		p := strings.TrimSuffix(s.Path, "/")
		if strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\\") {
			v.errorf("spec.path", "must be a clean folder path inside the repository (like payments/ or deploy/prod), got %q", s.Path)
		}
	}
	if s.Interval != nil && s.Interval.D() < MinGitInterval {
		v.errorf("spec.interval", "must be at least %v, got %v", MinGitInterval, s.Interval.D())
	}
	seen := map[string]bool{}
	for i, n := range s.TargetNamespaces {
		f := fmt.Sprintf("spec.targetNamespaces[%d]", i)
		if err := registry.ValidateNamespace(n); err != nil {
			v.errorf(f, "%s", err.Error())
		} else if n == ns {
			v.errorf(f, "%q is the source's own namespace, which it may always write into", n)
		} else if seen[n] {
			v.errorf(f, "%q is listed twice", n)
		}
		seen[n] = true
	}
	if s.Auth != nil {
		if err := s.Auth.TokenFrom.Validate(); err != nil {
			v.errorf(refField("spec.auth.tokenFrom", err), "%s", err.Error())
		}
		if u, err := url.Parse(s.URL); err == nil && !strings.EqualFold(u.Scheme, "https") {
			v.errorf("spec.auth", "a token is sent only to https:// remotes")
		}
	}
	if s.Webhook != nil {
		if err := s.Webhook.SecretFrom.Validate(); err != nil {
			v.errorf(refField("spec.webhook.secretFrom", err), "%s", err.Error())
		}
	}
}

// refField is the field of a secret reference's error.
func refField(f string, err error) string {
	if sub := errs.FieldOf(err); sub != "" {
		return f + "." + sub
	}
	return f
}

// gitURL checks a GitSource's url: https://, http:// (no token), file:///path
// or an absolute path. Whether a local path is under --source-dir, and
// whether the host may be reached, is the server's business.
func (v *validator) gitURL(s *GitSourceSpec) {
	switch {
	case s.URL == "":
		v.errorf("spec.url", "required: the repository, like https://git.example/ml/deploy.git or file:///srv/repos/deploy")
		return
	case strings.HasPrefix(s.URL, "/"):
		return
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		v.errorf("spec.url", "invalid URL %q", s.URL)
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "http":
		if u.Host == "" {
			v.errorf("spec.url", "invalid URL %q: no host", s.URL)
		}
		if u.User != nil {
			v.errorf("spec.url", "must not carry credentials: give a token by reference in spec.auth.tokenFrom")
		}
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			v.errorf("spec.url", "file URL %q must name an absolute path, like file:///srv/repos/deploy", s.URL)
		}
	default:
		v.errorf("spec.url", "scheme %q is not supported; use https://, http://, file:// or an absolute path (ssh is not supported yet)", u.Scheme)
	}
}
