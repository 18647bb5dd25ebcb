package registry

import (
	"strconv"
	"strings"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// MaxNameLen is the longest namespace, model or alias name: a DNS label, so names can
// become Kubernetes object names, metric label values and URL path segments unchanged.
const MaxNameLen = 63

// ValidateNamespace checks a namespace name (the caller maps "" to DefaultNamespace first).
func ValidateNamespace(ns string) error { return validateName("namespace", "namespace", ns) }

// ValidateModelName checks a model name.
func ValidateModelName(name string) error { return validateName("model", "model name", name) }

// ValidateAlias checks an alias name. Unlike model names an alias may not be all
// digits: a reference of digits means a version number (see Registry.Resolve).
func ValidateAlias(alias string) error {
	if err := validateName("alias", "alias", alias); err != nil {
		return err
	}
	if allDigits(alias) {
		return errs.New(errs.InvalidArgument, "alias %q: must not be all digits (a number refers to a version)", alias).WithField("alias")
	}
	return nil
}

// ValidateDigest checks that s is a sha256 digest as the registry stores it:
// 64 lowercase hex characters, no "sha256:" prefix.
func ValidateDigest(s string) error {
	if len(s) != 64 {
		return errs.New(errs.InvalidArgument, "sha256 %q: must be 64 lowercase hex characters", s).WithField("sha256")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return errs.New(errs.InvalidArgument, "sha256 %q: must be 64 lowercase hex characters", s).WithField("sha256")
		}
	}
	return nil
}

func validateName(field, what, s string) error {
	if s == "" {
		return errs.New(errs.InvalidArgument, "%s: must not be empty", what).WithField(field)
	}
	if len(s) > MaxNameLen {
		return errs.New(errs.InvalidArgument, "%s %q: must be at most %d characters", what, s, MaxNameLen).WithField(field)
	}
	ok := isAlnum(s[0]) && isAlnum(s[len(s)-1])
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = isAlnum(c) || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return errs.New(errs.InvalidArgument,
			"%s %q: must consist of lowercase letters, digits, '-', '_' or '.', and start and end with a letter or digit", what, s).WithField(field)
	}
	return nil
}

func isAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// IsVersionNumber reports whether a model reference is a version number: all
// digits ("3", "007"). Resolve reads such a reference as a number, never as an
// alias, which is why an alias may not be all digits.
func IsVersionNumber(ref string) bool { return allDigits(ref) }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// namespaceOr returns ns, or DefaultNamespace when ns is empty.
func namespaceOr(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// checkModelRef defaults and validates a namespace and model name.
func checkModelRef(ns, model string) (string, error) {
	ns = namespaceOr(ns)
	if err := ValidateNamespace(ns); err != nil {
		return "", err
	}
	if err := ValidateModelName(model); err != nil {
		return "", err
	}
	return ns, nil
}

// MaxVersion is the highest version number: 2^53-1, the largest integer a JSON
// number carries exactly (JavaScript's Number.MAX_SAFE_INTEGER), so every
// client reads a version as the server wrote it. It is also far below the
// store's int64: latest+1 can never overflow, and numbering stops cleanly at
// the bound instead.
const MaxVersion int64 = 1<<53 - 1

// ValidateVersion checks a version number: 1 to MaxVersion.
func ValidateVersion(v int64) error {
	if v <= 0 {
		return errs.New(errs.InvalidArgument, "version %d: must be a positive number", v).WithField("version")
	}
	if v > MaxVersion {
		return errs.New(errs.InvalidArgument, "version %d: must be at most %d (2^53-1)", v, MaxVersion).WithField("version")
	}
	return nil
}

// ParseVersion reads a reference of digits ("3", "007") as a version number
// and validates it (see IsVersionNumber).
func ParseVersion(ref string) (int64, error) {
	if !allDigits(ref) {
		return 0, errs.New(errs.InvalidArgument, "version %q: must be a positive number", ref).WithField("version")
	}
	n, err := strconv.ParseInt(ref, 10, 64)
	if err != nil || n > MaxVersion { // digits only: err is out of range
		return 0, errs.New(errs.InvalidArgument, "version %s: must be at most %d (2^53-1)", ref, MaxVersion).WithField("version")
	}
	return n, ValidateVersion(n)
}

// VersionsExhausted is the error a Store returns when a model's next version
// number would pass MaxVersion.
func VersionsExhausted(model string) error {
	return errs.New(errs.FailedPrecondition,
		"model %s has used every version number up to %d (2^53-1), and numbers are never reused; push to a new model", model, MaxVersion)
}

// joinList is for error messages listing names.
func joinList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
