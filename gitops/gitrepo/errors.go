package gitrepo

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Kinds of failure, matched with errors.Is on any error this package returns.
// A context's error (context.Canceled, context.DeadlineExceeded) is a kind
// too: when ctx ends first, that is what the error matches.
var (
	// ErrInvalidRemote: the remote's URL is not one this cache fetches
	// (scheme, credentials in the URL, local remotes or http(s) disabled).
	ErrInvalidRemote = errors.New("invalid remote")
	// ErrOutsideRoot: a local remote resolves outside Options.LocalRoot.
	ErrOutsideRoot = errors.New("local path outside the source dir")
	// ErrAuth: the server asked for credentials (401) or refused the ones
	// sent (403).
	ErrAuth = errors.New("authentication required")
	// ErrRepoNotFound: nothing at the URL or path is a git repository.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrRefNotFound: the repository has no such branch, tag or commit (or
	// no commits at all), or the ref is not a valid git ref name.
	ErrRefNotFound = errors.New("ref not found")
	// ErrUnavailable: the repository could not be fetched for another reason
	// (network, TLS, the server's answer, the egress rule, the local disk);
	// the error's Cause says which, for the server's log.
	ErrUnavailable = errors.New("repository unavailable")
	// ErrSnapshotGone: the mirror a Snapshot reads was replaced by a full
	// fetch (history rewritten upstream, or a damaged mirror); fetch again.
	ErrSnapshotGone = errors.New("snapshot gone")
	// ErrInvalidPath: a path given to Walk, Open or ReadFile is absolute,
	// has . or .. elements, or is otherwise not a clean relative path.
	ErrInvalidPath = errors.New("invalid path")
	// ErrNotRegular: the path names a directory, a symbolic link or a
	// submodule, not a regular file (or, for Walk, not a directory).
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: ReadFile's file is larger than its limit.
	ErrTooLarge = errors.New("file too large")
)

// Error is what Fetch and the Snapshot methods return. Its message (Error)
// is safe to show to whoever declared the remote: it names the URL without
// credentials and says what went wrong in words, never the token, and for
// network failures not where exactly the connection went (so a GitSource
// cannot be used to map the network the server sits in). Cause keeps what
// happened underneath for the server's log; LogValue puts both in a log
// record.
//
// Unwrap yields Kind only, not Cause: an internal cause (a missing file in
// the mirror, say) must not make errors.Is(err, fs.ErrNotExist) true for a
// file that exists in the repository.
type Error struct {
	Kind  error // one of the Err* kinds above, fs.ErrNotExist, or a context error
	msg   string
	Cause error // may be nil; never shown to users
}

func (e *Error) Error() string { return e.msg }

// Unwrap makes errors.Is(err, e.Kind) true.
func (e *Error) Unwrap() error { return e.Kind }

// LogValue shows the message and, for the log, the cause.
func (e *Error) LogValue() slog.Value {
	if e.Cause == nil {
		return slog.StringValue(e.msg)
	}
	return slog.GroupValue(slog.String("msg", e.msg), slog.String("cause", e.Cause.Error()))
}

// newError returns an *Error of kind with the formatted message.
func newError(kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, msg: fmt.Sprintf(format, args...), Cause: cause}
}

// scrubbed hides secrets in a cause's text. go-git puts a failed HTTP
// response's body into its errors, and a server may echo what it was sent;
// the token must not reach the log that way.
type scrubbed struct {
	err     error
	secrets []string
}

func (s *scrubbed) Error() string {
	msg := s.err.Error()
	for _, v := range s.secrets {
		if v != "" {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}

func (s *scrubbed) Unwrap() error { return s.err }

// tokenForms are the ways a token can appear on the wire: itself, and inside
// the basic-auth header value.
func tokenForms(user, token string) []string {
	if token == "" {
		return nil
	}
	return []string{token, base64.StdEncoding.EncodeToString([]byte(user + ":" + token))}
}

// localError marks a failure of the mirror itself (reading or writing it, a
// missing object, a pack that does not decode): the one kind of failure a
// fresh full fetch can cure.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func local(err error) error {
	if err == nil {
		return nil
	}
	return &localError{err}
}
