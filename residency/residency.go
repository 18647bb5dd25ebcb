// Package residency describes where model versions live in memory: the states a
// version moves through (loading, ready, idle, evicted, failed, unloaded) and the
// status report the serving layer produces and the management API returns. It
// holds types only and imports nothing of Nimbus, so the server, the API and the
// client share one definition.
package residency

import "time"

// States of one model version.
const (
	// Loading: the version is being loaded; requests wait for it.
	Loading = "loading"
	// Ready: resident and serving.
	Ready = "ready"
	// Idle: not resident — never loaded yet, or unloaded after its idleTimeout
	// (scale to zero). The next request loads it.
	Idle = "idle"
	// Evicted: not resident — unloaded to make room under the memory budget. The
	// next request loads it.
	Evicted = "evicted"
	// Failed: the last load failed; Reason says why. Requests get that error
	// until a retry is allowed.
	Failed = "failed"
	// Unloaded: explicitly unloaded through the repository API; requests are
	// refused until it is loaded again.
	Unloaded = "unloaded"
)

// VersionStatus is one model version's residency.
type VersionStatus struct {
	Namespace string `json:"namespace" yaml:"namespace"`
	Model     string `json:"model" yaml:"model"`
	Version   int64  `json:"version" yaml:"version"`
	// Aliases naming this version (e.g. champion).
	Aliases []string `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	State   string   `json:"state" yaml:"state"`
	Reason  string   `json:"reason,omitempty" yaml:"reason,omitempty"`
	// MemoryBytes is what the loaded version costs, measured once per artifact
	// (allocator delta around its load and warm-up); 0 until first measured.
	MemoryBytes int64 `json:"memoryBytes" yaml:"memoryBytes"`
	// Instances is the current number of execution instances (0 when not
	// resident); Min, Max and TargetConcurrency are the autoscaling bounds.
	Instances         int `json:"instances" yaml:"instances"`
	MinInstances      int `json:"minInstances" yaml:"minInstances"`
	MaxInstances      int `json:"maxInstances" yaml:"maxInstances"`
	TargetConcurrency int `json:"targetConcurrency" yaml:"targetConcurrency"`
	// InFlight counts requests running or queued on the version now.
	InFlight int `json:"inFlight" yaml:"inFlight"`
	// LastUsed is when the version last answered a request (zero: never).
	LastUsed time.Time `json:"lastUsed,omitzero" yaml:"lastUsed,omitempty"`
	// LoadedAt is when the current residency began (zero when not resident).
	LoadedAt time.Time `json:"loadedAt,omitzero" yaml:"loadedAt,omitempty"`
	// LoadDuration is how long the last successful load took (warm-up included).
	LoadDuration time.Duration `json:"loadDurationNs,omitempty" yaml:"loadDurationNs,omitempty"`
	// Counters since the server started.
	Loads       int64 `json:"loads" yaml:"loads"`
	ColdStarts  int64 `json:"coldStarts" yaml:"coldStarts"`
	Evictions   int64 `json:"evictions" yaml:"evictions"`
	IdleUnloads int64 `json:"idleUnloads" yaml:"idleUnloads"`
}

// Memory summarizes the memory budget.
type Memory struct {
	// BudgetBytes bounds what resident versions may cost together; 0: unlimited.
	BudgetBytes int64 `json:"budgetBytes" yaml:"budgetBytes"`
	// UsedBytes is what resident and loading versions cost now.
	UsedBytes int64 `json:"usedBytes" yaml:"usedBytes"`
	// Resident counts the versions in memory (loading included).
	Resident int `json:"resident" yaml:"resident"`
	// ProcessRSSBytes is the server process's resident set size.
	ProcessRSSBytes int64 `json:"processRSSBytes" yaml:"processRSSBytes"`
}

// Report is the residency of a namespace's (or one model's) versions.
type Report struct {
	Memory   Memory          `json:"memory" yaml:"memory"`
	Versions []VersionStatus `json:"versions" yaml:"versions"`
}
