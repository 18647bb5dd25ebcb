package spec

import (
	"net/url"

	"github.com/nimbus-ai/nimbus/registry"
)

// ServingDefaults returns s with every default made explicit, so what `get -o
// yaml` shows is what runs, and re-applying it is a no-op.
func ServingDefaults(s registry.ServingConfig) registry.ServingConfig {
	if s.Threads == 0 {
		s.Threads = 1
	}
	if s.InterOpThreads == 0 {
		s.InterOpThreads = 1
	}
	if s.MaxQueueSize == 0 {
		s.MaxQueueSize = registry.DefaultMaxQueueSize
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = registry.Duration(registry.DefaultIdleTimeout)
	}
	inst := registry.InstancesConfig{}
	if s.Instances != nil {
		inst = *s.Instances
	}
	if inst.Max == 0 {
		inst.Max = max(registry.DefaultInstances, inst.Min)
	}
	if inst.TargetConcurrency == 0 {
		inst.TargetConcurrency = registry.DefaultTargetConcurrency
	}
	if inst.StableWindow == 0 {
		inst.StableWindow = registry.Duration(registry.DefaultStableWindow)
	}
	s.Instances = &inst
	if s.Warmup != nil {
		w := *s.Warmup
		if w.Runs == 0 {
			w.Runs = 1
		}
		if w.BatchSize == 0 {
			w.BatchSize = 1
		}
		s.Warmup = &w
	}
	if s.Batching != nil && s.Batching.MaxBatchSize <= 1 {
		s.Batching = nil // off either way; one spelling
	}
	return s
}

// RedactURI drops what may be a credential from a source URI before it is
// stored, diffed or written to the audit log: user info, and the query of a
// presigned URL (kept as "?<redacted>" so readers know there was one).
func RedactURI(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.User == nil && u.RawQuery == "" && u.Fragment == "") {
		return s
	}
	q := u.RawQuery != ""
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	out := u.String()
	if q {
		out += "?<redacted>"
	}
	return out
}
