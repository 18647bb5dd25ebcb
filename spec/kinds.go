package spec

import (
	"strings"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// NormalizeKind maps a kind as users type it (model, models, isvc,
// InferenceService, inferenceservice.nimbus.dev...) to its Kind.
func NormalizeKind(s string) (string, error) {
	switch strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".nimbus.dev") {
	case "model", "models":
		return KindModel, nil
	case "inferenceservice", "inferenceservices", "isvc", "isvcs":
		return KindInferenceService, nil
	case "gitsource", "gitsources", "gs":
		return KindGitSource, nil
	case "connection", "connections", "conn":
		return KindConnection, nil
	case "trigger", "triggers", "tr":
		return KindTrigger, nil
	}
	return "", errs.New(errs.NotFound, "unknown kind %q; known kinds: Model (models), InferenceService (inferenceservices, isvc), GitSource (gitsources, gs), Connection (connections, conn), Trigger (triggers, tr)", s).WithField("kind")
}

// Plural is a Kind as REST paths name it ("models", "inferenceservices").
func Plural(kind string) string { return strings.ToLower(kind) + "s" }

// NewObject returns an empty object of a Kind.
func NewObject(kind string) (Object, error) {
	if newObj := kindConstructors[kind]; newObj != nil {
		return newObj(), nil
	}
	return nil, errs.New(errs.NotFound, "unknown kind %q; known kinds: %s", kind, knownKinds())
}

// ServiceURL is the OIP inference path of a service.
func ServiceURL(ns, name string) string {
	if ns == registry.DefaultNamespace {
		return "/v2/models/" + name + "/infer"
	}
	return "/ns/" + ns + "/v2/models/" + name + "/infer"
}
