// Package spec is Nimbus's declarative resource model (apiVersion nimbus.dev/v1):
// the Model and InferenceService kinds, their YAML decoding with file:line and
// field-path errors, validation, server-side defaults, canonical YAML and diffs,
// and the request and response types of an apply. It does no I/O: package
// apply is the engine that makes the stored and served state match.
package spec

import (
	"time"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/secrets"
)

// APIVersion is the apiVersion of every Nimbus resource.
const APIVersion = "nimbus.dev/v1"

// Kinds.
const (
	KindModel            = "Model"
	KindInferenceService = "InferenceService"
)

// ObjectMeta is the metadata every resource has. Generation and ResourceVersion
// are written by the server: Generation counts spec changes, ResourceVersion
// every stored change (an update naming a stale one is refused with 409).
type ObjectMeta struct {
	Name              string            `json:"name" yaml:"name"`
	Namespace         string            `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
	Generation        int64             `json:"generation,omitempty" yaml:"generation,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty" yaml:"resourceVersion,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty" yaml:"creationTimestamp,omitempty"`
	// ManagedBy names the GitSource that owns the resource ("gitsource/NAME",
	// "gitsource/NS/NAME" when the source lives in another namespace), ""
	// for one made by hand. Written by the server only.
	ManagedBy string `json:"managedBy,omitempty" yaml:"managedBy,omitempty"`
}

// TypeMeta names a document's schema.
type TypeMeta struct {
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
}

// Object is a decoded resource of any kind.
type Object interface {
	GetKind() string
	GetMeta() *ObjectMeta
}

// Model declares one registered model: its versions (append-only), aliases and
// serving settings.
type Model struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta   `json:"metadata" yaml:"metadata"`
	Spec     ModelSpec    `json:"spec" yaml:"spec"`
	Status   *ModelStatus `json:"status,omitempty" yaml:"status,omitempty"`
}

// GetKind implements Object.
func (*Model) GetKind() string { return KindModel }

// GetMeta implements Object.
func (m *Model) GetMeta() *ObjectMeta { return &m.Metadata }

// ModelSpec is what a Model declares.
type ModelSpec struct {
	// Versions are append-only: a declared version that exists must have the same
	// sha256; versions pushed outside apply stay and are listed too.
	Versions []ModelVersion `json:"versions,omitempty" yaml:"versions,omitempty"`
	// Aliases map an alias (champion, challenger) to a version number.
	Aliases map[string]int64 `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	// Serving is the model's serving settings, the same single owner as
	// `nimbus models config`. Absent: left as it is.
	Serving *registry.ServingConfig `json:"serving,omitempty" yaml:"serving,omitempty"`
}

// ModelVersion declares one version and where its artifact comes from.
type ModelVersion struct {
	Version int64  `json:"version" yaml:"version"`
	Format  string `json:"format,omitempty" yaml:"format,omitempty"`
	Source  Source `json:"source" yaml:"source"`
}

// Source locates an artifact: uri (file:// under the allowed directory, https://)
// and its sha256, which the fetched bytes must match.
type Source struct {
	URI    string `json:"uri,omitempty" yaml:"uri,omitempty"`
	SHA256 string `json:"sha256" yaml:"sha256"`
	// Auth is how the server authenticates to an https:// source.
	Auth *SourceAuth `json:"auth,omitempty" yaml:"auth,omitempty"`
}

// SourceAuth authenticates an artifact fetch with a bearer token, named by
// reference only: {env: NIMBUS_SECRET_X} or {file: NAME} under the server's
// --secrets-dir. The token is sent to the source's host and to no other (not
// on a redirect elsewhere).
type SourceAuth struct {
	TokenFrom secrets.Ref `json:"tokenFrom" yaml:"tokenFrom"`
}

// ModelStatus is written by the server.
type ModelStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty" yaml:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty" yaml:"conditions,omitempty"`
	// EffectiveAliases are the aliases a rollout has not moved to their
	// declared version yet, with the version each still serves.
	EffectiveAliases map[string]int64 `json:"effectiveAliases,omitempty" yaml:"effectiveAliases,omitempty"`
}

// InferenceService is a named endpoint that routes requests to model versions.
// It owns no serving settings: those stay on the Model.
type InferenceService struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta     `json:"metadata" yaml:"metadata"`
	Spec     ServiceSpec    `json:"spec" yaml:"spec"`
	Status   *ServiceStatus `json:"status,omitempty" yaml:"status,omitempty"`
}

// GetKind implements Object.
func (*InferenceService) GetKind() string { return KindInferenceService }

// GetMeta implements Object.
func (s *InferenceService) GetMeta() *ObjectMeta { return &s.Metadata }

// ServiceSpec is what an InferenceService declares.
type ServiceSpec struct {
	// Traffic splits requests over targets by weight (summing to 100).
	Traffic []TrafficTarget `json:"traffic" yaml:"traffic"`
	// Shadow copies a percentage of requests to another target; its answers are
	// compared with the primary's and recorded, never returned.
	Shadow *ShadowTarget `json:"shadow,omitempty" yaml:"shadow,omitempty"`
	// Timeout bounds each request, queueing included (0: none).
	Timeout registry.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Routing says what keeps a caller on one target.
	Routing *Routing `json:"routing,omitempty" yaml:"routing,omitempty"`
	// RateLimit bounds the service's inference requests (a token bucket);
	// unset takes the server's --rate-limit-per-service.
	RateLimit *RateLimit `json:"rateLimit,omitempty" yaml:"rateLimit,omitempty"`
	// Rollout makes a change of the version the service's target resolves
	// to (an alias moved, a ref changed) roll out step by step under
	// analysis instead of at once.
	Rollout *RolloutSpec `json:"rollout,omitempty" yaml:"rollout,omitempty"`
}

// RolloutSpec is a progressive rollout: canary weights walked step by step,
// each gated by analysis of the canary against the stable version.
type RolloutSpec struct {
	// Steps are the canary's weights (each 1..99, increasing) while the
	// stable version takes the rest.
	Steps []int `json:"steps" yaml:"steps"`
	// Interval is the least time a step lasts (default 1m).
	Interval registry.Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	Analysis RolloutAnalysis   `json:"analysis" yaml:"analysis"`
	// ProgressDeadline bounds the whole rollout (default 30m).
	ProgressDeadline registry.Duration `json:"progressDeadline,omitempty" yaml:"progressDeadline,omitempty"`
}

// RolloutAnalysis says what each step must show before the next.
type RolloutAnalysis struct {
	// MinSamples is the least number of requests per version per step
	// before a metric can pass or fail (default 200).
	MinSamples int64 `json:"minSamples,omitempty" yaml:"minSamples,omitempty"`
	// Confidence of every interval (default 0.95).
	Confidence float64 `json:"confidence,omitempty" yaml:"confidence,omitempty"`
	// Metrics are the gates (default: errorRate max 0.01).
	Metrics []RolloutMetric `json:"metrics,omitempty" yaml:"metrics,omitempty"`
	// MaxFailures is how many failed analyses the rollout survives
	// (default 0: the first one rolls back).
	MaxFailures *int `json:"maxFailures,omitempty" yaml:"maxFailures,omitempty"`
	// ShadowPercent is the share of the stable version's requests mirrored
	// to the canary for shadowMismatchRate (default 100).
	ShadowPercent *int `json:"shadowPercent,omitempty" yaml:"shadowPercent,omitempty"`
	// Tolerance is the largest absolute difference between the stable and
	// canary answers still counted as a match for shadowMismatchRate
	// (default 0: exact).
	Tolerance float64 `json:"tolerance,omitempty" yaml:"tolerance,omitempty"`
}

// RolloutMetric is one gate: errorRate and shadowMismatchRate take max (a
// rate), latencyP99 takes maxRatioToStable.
type RolloutMetric struct {
	Name             string  `json:"name" yaml:"name"`
	Max              float64 `json:"max,omitempty" yaml:"max,omitempty"`
	MaxRatioToStable float64 `json:"maxRatioToStable,omitempty" yaml:"maxRatioToStable,omitempty"`
}

// RateLimit is a token bucket: RequestsPerSecond refill, Burst capacity
// (default: RequestsPerSecond, at least 1). 0 requests per second is unlimited.
type RateLimit struct {
	RequestsPerSecond float64 `json:"requestsPerSecond" yaml:"requestsPerSecond"`
	Burst             int     `json:"burst,omitempty" yaml:"burst,omitempty"`
}

// TrafficTarget is one weighted target: "model", "model@alias" or "model@3".
type TrafficTarget struct {
	Model  string `json:"model" yaml:"model"`
	Weight *int   `json:"weight,omitempty" yaml:"weight,omitempty"`
}

// ShadowTarget receives copies of Percent of the requests.
type ShadowTarget struct {
	Model   string `json:"model" yaml:"model"`
	Percent *int   `json:"percent,omitempty" yaml:"percent,omitempty"`
}

// Sticky keys.
const (
	StickyByHeader    = "header"    // the Nimbus-Routing-Key header (gRPC: nimbus-routing-key)
	StickyByRequestID = "requestId" // the OIP request id, else the header
)

// Routing configures sticky routing.
type Routing struct {
	StickyBy string `json:"stickyBy,omitempty" yaml:"stickyBy,omitempty"`
}

// ServiceStatus is written by the server.
type ServiceStatus struct {
	ObservedGeneration int64           `json:"observedGeneration,omitempty" yaml:"observedGeneration,omitempty"`
	Conditions         []Condition     `json:"conditions,omitempty" yaml:"conditions,omitempty"`
	URL                string          `json:"url,omitempty" yaml:"url,omitempty"`
	Traffic            []TrafficStatus `json:"traffic,omitempty" yaml:"traffic,omitempty"`
	Shadow             *ShadowStatus   `json:"shadow,omitempty" yaml:"shadow,omitempty"`
	// Rollout is the service's progressive rollout, nil without one.
	Rollout *RolloutStatus `json:"rollout,omitempty" yaml:"rollout,omitempty"`
}

// Rollout phases, as a rollout's status names them.
const (
	RolloutIdle        = "Idle"        // nothing to roll out: the target serves its declared version
	RolloutProgressing = "Progressing" // walking the steps
	RolloutSucceeded   = "Succeeded"   // the canary took 100% and is now the stable version
	RolloutFailed      = "Failed"      // rolled back; the declared version is not retried
	RolloutFollowing   = "Following"   // another service owns the alias's rollout
)

// RolloutStatus is a service's rollout as the controller recorded it: the
// state it resumes from after a restart, and the last analysis.
type RolloutStatus struct {
	Phase string `json:"phase" yaml:"phase"`
	// Target is the traffic target rolled out ("model@alias").
	Target string `json:"target,omitempty" yaml:"target,omitempty"`
	// Stable is the version that serves (the alias's effective version);
	// Canary the declared one being rolled out (0: none).
	Stable int64 `json:"stable,omitempty" yaml:"stable,omitempty"`
	Canary int64 `json:"canary,omitempty" yaml:"canary,omitempty"`
	// Step is the 1-based step in progress (0 when none), of Steps.
	Step         int `json:"step,omitempty" yaml:"step,omitempty"`
	Steps        int `json:"steps,omitempty" yaml:"steps,omitempty"`
	CanaryWeight int `json:"canaryWeight" yaml:"canaryWeight"`
	// Failures counts failed analyses of this rollout.
	Failures    int        `json:"failures,omitempty" yaml:"failures,omitempty"`
	Started     *time.Time `json:"started,omitempty" yaml:"started,omitempty"`
	StepStarted *time.Time `json:"stepStarted,omitempty" yaml:"stepStarted,omitempty"`
	Finished    *time.Time `json:"finished,omitempty" yaml:"finished,omitempty"`
	// Message says what happens now, or why it ended.
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
	// FailedVersion is the declared version a failed rollout gave up on:
	// it is not retried until another version is declared (or `nimbus
	// rollout retry`).
	FailedVersion int64 `json:"failedVersion,omitempty" yaml:"failedVersion,omitempty"`
	// Owner names the service that owns the alias's rollout when this one
	// follows it.
	Owner string `json:"owner,omitempty" yaml:"owner,omitempty"`
	// StableRequests and CanaryRequests count the current step's window
	// (since the step began, or since the server restarted in it).
	StableRequests int64 `json:"stableRequests,omitempty" yaml:"stableRequests,omitempty"`
	CanaryRequests int64 `json:"canaryRequests,omitempty" yaml:"canaryRequests,omitempty"`
	// Analysis is each metric's last verdict in the current step's window.
	Analysis []RolloutCheck `json:"analysis,omitempty" yaml:"analysis,omitempty"`
	// History lists the steps done so far, with their last analysis.
	History []RolloutStep `json:"history,omitempty" yaml:"history,omitempty"`
}

// RolloutCheck is one metric's verdict: its value, confidence interval,
// sample count and the bound it was held to.
type RolloutCheck struct {
	Metric  string `json:"metric" yaml:"metric"`
	Verdict string `json:"verdict" yaml:"verdict"` // pass, fail, wait
	// Value is the point estimate; Lower and Upper the interval at the
	// rollout's confidence (nil: a bound the samples cannot give yet).
	Value   float64  `json:"value" yaml:"value"`
	Lower   *float64 `json:"lower" yaml:"lower"`
	Upper   *float64 `json:"upper" yaml:"upper"`
	Samples int64    `json:"samples" yaml:"samples"`
	// Max is the bound: a rate, or for latencyP99 the ratio to the stable
	// version's p99 (Value and the interval in seconds).
	Max float64 `json:"max" yaml:"max"`
	// Stable is the stable version's p99 interval, for latencyP99.
	Stable *RolloutInterval `json:"stable,omitempty" yaml:"stable,omitempty"`
	Note   string           `json:"note,omitempty" yaml:"note,omitempty"`
}

// RolloutInterval is a point estimate and its interval (nil bounds: not
// given by the samples yet).
type RolloutInterval struct {
	Value   float64  `json:"value" yaml:"value"`
	Lower   *float64 `json:"lower" yaml:"lower"`
	Upper   *float64 `json:"upper" yaml:"upper"`
	Samples int64    `json:"samples" yaml:"samples"`
}

// RolloutStep is one step's outcome.
type RolloutStep struct {
	Step         int            `json:"step" yaml:"step"`
	CanaryWeight int            `json:"canaryWeight" yaml:"canaryWeight"`
	Outcome      string         `json:"outcome" yaml:"outcome"` // passed, failed, promoted, aborted
	At           time.Time      `json:"at" yaml:"at"`
	Requests     [2]int64       `json:"requests" yaml:"requests"` // stable, canary
	Analysis     []RolloutCheck `json:"analysis,omitempty" yaml:"analysis,omitempty"`
}

// TrafficStatus is one target as served: what it resolves to now and what it
// answered since the server started.
type TrafficStatus struct {
	Model    string  `json:"model" yaml:"model"`
	Weight   int     `json:"weight" yaml:"weight"`
	Version  int64   `json:"version,omitempty" yaml:"version,omitempty"`
	State    string  `json:"state,omitempty" yaml:"state,omitempty"`
	Requests int64   `json:"requests" yaml:"requests"`
	Errors   int64   `json:"errors" yaml:"errors"`
	Share    float64 `json:"share" yaml:"share"` // fraction of the service's requests
	MeanMS   float64 `json:"meanMs,omitempty" yaml:"meanMs,omitempty"`
}

// ShadowStatus counts shadow copies and how their answers compared.
type ShadowStatus struct {
	Model      string  `json:"model" yaml:"model"`
	Sent       int64   `json:"sent" yaml:"sent"`
	Errors     int64   `json:"errors" yaml:"errors"`
	Dropped    int64   `json:"dropped" yaml:"dropped"`
	Compared   int64   `json:"compared" yaml:"compared"`
	ExactMatch int64   `json:"exactMatch" yaml:"exactMatch"`
	MaxAbsDiff float64 `json:"maxAbsDiff" yaml:"maxAbsDiff"`
}

// Condition types and statuses, as Kubernetes writes them.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"

	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"
)

// Condition is one aspect of a resource's observed state.
type Condition struct {
	Type    string `json:"type" yaml:"type"`
	Status  string `json:"status" yaml:"status"`
	Reason  string `json:"reason,omitempty" yaml:"reason,omitempty"`
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
	// LastTransitionTime is when Status last changed (stored conditions only).
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty" yaml:"lastTransitionTime,omitempty"`
}

// FieldError is one problem with one document: where it is (file, 1-based line,
// field path like spec.traffic[1].weight) and what is wrong.
type FieldError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Code is the errs.Kind name (invalid_argument, conflict, not_found).
	Code string `json:"code,omitempty"`
}

// Document is one decoded YAML document and where it came from.
type Document struct {
	File   string
	Line   int // line of the document's first key
	Object Object
	// Lines maps field paths (spec.traffic[1].weight) to their line, so later
	// checks can still point at the file.
	Lines map[string]int
}
