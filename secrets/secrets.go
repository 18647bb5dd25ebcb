// Package secrets resolves secrets by reference, and only from places the
// operator controls: environment variables named NIMBUS_SECRET_* and files
// under one directory (--secrets-dir). A resolved value is a Secret, which
// never prints, logs or marshals its value; the one place that must send it
// calls Reveal. Declarations (a Model's source auth today; git tokens and
// broker credentials later) hold only a Ref, which is safe to store and show.
package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// EnvPrefix starts the name of every environment variable a Ref may name.
const EnvPrefix = "NIMBUS_SECRET_"

// DefaultMaxBytes bounds a secret file.
const DefaultMaxBytes = 64 << 10

// Redacted is what a Secret shows instead of its value.
const Redacted = "[redacted]"

// Ref names where a secret is: exactly one of an environment variable
// (NIMBUS_SECRET_*) or a file name relative to the secrets directory.
type Ref struct {
	Env  string `json:"env,omitempty" yaml:"env,omitempty"`
	File string `json:"file,omitempty" yaml:"file,omitempty"`
}

var envName = regexp.MustCompile(`^NIMBUS_SECRET_[A-Z0-9_]+$`)

// maxNameLen bounds the names in a Ref.
const maxNameLen = 255

// Validate checks r without resolving it. Errors are errs.InvalidArgument
// naming the field ("env" or "file").
func (r Ref) Validate() error {
	switch {
	case r.Env == "" && r.File == "":
		return errs.New(errs.InvalidArgument, "required: env (an environment variable named %s*) or file (a name under the server's secrets directory)", EnvPrefix)
	case r.Env != "" && r.File != "":
		return errs.New(errs.InvalidArgument, "give env or file, not both")
	case r.Env != "":
		if len(r.Env) > maxNameLen || !envName.MatchString(r.Env) {
			return errs.New(errs.InvalidArgument, "%q: secrets come only from environment variables named %s followed by A-Z, 0-9 or _", r.Env, EnvPrefix).WithField("env")
		}
	default:
		if len(r.File) > maxNameLen || !filepath.IsLocal(r.File) || strings.ContainsAny(r.File, "\x00\\") || filepath.Clean(r.File) != r.File {
			return errs.New(errs.InvalidArgument, "%q: must be a plain relative name inside the secrets directory (no .., no leading /)", r.File).WithField("file")
		}
	}
	return nil
}

// String names the reference (never a value): "env NIMBUS_SECRET_X" or "file x".
func (r Ref) String() string {
	if r.Env != "" {
		return "env " + r.Env
	}
	return "file " + r.File
}

// Secret is a resolved value. Every way of printing, logging or marshalling it
// shows Redacted; Reveal is the only way to the value.
type Secret struct {
	// A pointer, so that even fmt printing a struct that holds a Secret in an
	// unexported field (where it cannot call the methods below) shows an
	// address, not the value.
	value *string
}

func newSecret(v string) Secret { return Secret{value: &v} }

// Reveal returns the value, for the one place that must send it.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsZero reports whether s holds no value.
func (s Secret) IsZero() bool { return s.value == nil || *s.value == "" }

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (Secret) GoString() string { return "secrets.Secret(" + Redacted + ")" }

// Format implements fmt.Formatter, so no verb (%x, %d, %q, …) reaches the value.
func (Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, "secrets.Secret("+Redacted+")")
		return
	}
	io.WriteString(f, Redacted)
}

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalYAML implements yaml.Marshaler (gopkg.in/yaml.v3).
func (Secret) MarshalYAML() (any, error) { return Redacted, nil }

// Options configure a Resolver.
type Options struct {
	// Dir is the secrets directory (--secrets-dir); empty refuses file refs.
	Dir string
	// LookupEnv reads the environment (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// MaxBytes bounds a secret file (default DefaultMaxBytes).
	MaxBytes int64
}

// Resolver resolves Refs. It is safe for concurrent use.
type Resolver struct {
	dir      string
	lookup   func(string) (string, bool)
	maxBytes int64
}

// NewResolver returns a Resolver; a Dir that is set must be a directory.
func NewResolver(opts Options) (*Resolver, error) {
	r := &Resolver{dir: opts.Dir, lookup: opts.LookupEnv, maxBytes: opts.MaxBytes}
	if r.lookup == nil {
		r.lookup = os.LookupEnv
	}
	if r.maxBytes <= 0 {
		r.maxBytes = DefaultMaxBytes
	}
	if r.dir != "" {
		st, err := os.Stat(r.dir)
		if err != nil {
			return nil, fmt.Errorf("secrets directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("secrets directory %s: not a directory", r.dir)
		}
	}
	return r, nil
}

// Resolve returns the secret ref names. A file's trailing newline is dropped.
// Errors name the reference, never a value: InvalidArgument for a bad ref,
// FailedPrecondition for one the server cannot resolve (variable not set, no
// such file, no secrets directory, empty, too large, not a regular file).
func (r *Resolver) Resolve(ref Ref) (Secret, error) {
	if err := ref.Validate(); err != nil {
		return Secret{}, err
	}
	if ref.Env != "" {
		v, ok := r.lookup(ref.Env)
		if !ok {
			return Secret{}, errs.New(errs.FailedPrecondition, "secret %s: the variable is not set on the server", ref)
		}
		if v == "" {
			return Secret{}, errs.New(errs.FailedPrecondition, "secret %s: the variable is empty", ref)
		}
		return newSecret(v), nil
	}
	if r.dir == "" {
		return Secret{}, errs.New(errs.FailedPrecondition,
			"secret %s: file secrets are disabled on this server; start it with --secrets-dir (or NIMBUS_SECRETS_DIR)", ref)
	}
	v, err := r.readFile(ref)
	if err != nil {
		return Secret{}, err
	}
	return newSecret(v), nil
}

func (r *Resolver) readFile(ref Ref) (string, error) {
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return "", errs.Wrap(errs.FailedPrecondition, err, "secret %s: the secrets directory is unusable", ref)
	}
	defer root.Close()
	unusable := func(err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return errs.New(errs.FailedPrecondition, "secret %s: no such file in the secrets directory", ref)
		default:
			// Escapes through symlinks land here too: os.Root refuses them.
			return errs.Wrap(errs.FailedPrecondition, err, "secret %s: cannot be read from the secrets directory", ref)
		}
	}
	// Stat before opening: opening a FIFO would block.
	st, err := root.Stat(ref.File)
	if err != nil {
		return "", unusable(err)
	}
	if err := r.checkFile(ref, st); err != nil {
		return "", err
	}
	f, err := root.Open(ref.File)
	if err != nil {
		return "", unusable(err)
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return "", unusable(err)
	}
	if err := r.checkFile(ref, st); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, r.maxBytes+1))
	if err != nil {
		return "", unusable(err)
	}
	if int64(len(b)) > r.maxBytes {
		return "", errs.New(errs.FailedPrecondition, "secret %s: larger than %d bytes", ref, r.maxBytes)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", errs.New(errs.FailedPrecondition, "secret %s: the file is empty", ref)
	}
	return v, nil
}

func (r *Resolver) checkFile(ref Ref, st fs.FileInfo) error {
	switch {
	case !st.Mode().IsRegular():
		return errs.New(errs.FailedPrecondition, "secret %s: not a regular file", ref)
	case st.Size() > r.maxBytes:
		return errs.New(errs.FailedPrecondition, "secret %s: larger than %d bytes", ref, r.maxBytes)
	}
	return nil
}
