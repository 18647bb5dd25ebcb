// Package errs is Nimbus's error vocabulary: a Kind that maps to an HTTP status and a
// gRPC code, a user-safe message kept apart from the internal cause, and the field the
// error is about. Domain packages return these; handlers map them once.
package errs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Kind classifies an error for status mapping.
type Kind uint8

// Kinds, each with one HTTP status and one gRPC code.
const (
	Internal Kind = iota
	InvalidArgument
	NotFound
	AlreadyExists
	Conflict // e.g. version referenced by an alias, stale resourceVersion
	FailedPrecondition
	Unavailable
	ResourceExhausted
	DeadlineExceeded
	Canceled
	TooLarge
	Unimplemented
	Unauthenticated
	PermissionDenied
	UnsupportedMediaType // a body whose Content-Type the endpoint does not take
)

var kindNames = [...]string{
	Internal: "internal", InvalidArgument: "invalid_argument", NotFound: "not_found",
	AlreadyExists: "already_exists", Conflict: "conflict", FailedPrecondition: "failed_precondition",
	Unavailable: "unavailable", ResourceExhausted: "resource_exhausted", DeadlineExceeded: "deadline_exceeded",
	Canceled: "canceled", TooLarge: "too_large", Unimplemented: "unimplemented",
	Unauthenticated: "unauthenticated", PermissionDenied: "permission_denied",
	UnsupportedMediaType: "unsupported_media_type",
}

// String is the stable code used in JSON error bodies.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// HTTPStatus maps a Kind to its HTTP status.
func (k Kind) HTTPStatus() int {
	switch k {
	case InvalidArgument:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case AlreadyExists, Conflict:
		return http.StatusConflict
	case FailedPrecondition:
		return http.StatusPreconditionFailed
	case Unavailable:
		return http.StatusServiceUnavailable
	case ResourceExhausted:
		return http.StatusTooManyRequests
	case DeadlineExceeded:
		return http.StatusGatewayTimeout
	case Canceled:
		return 499 // client closed request (nginx convention)
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case Unimplemented:
		return http.StatusNotImplemented
	case Unauthenticated:
		return http.StatusUnauthorized
	case PermissionDenied:
		return http.StatusForbidden
	case UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	default:
		return http.StatusInternalServerError
	}
}

// GRPCCode maps a Kind to its gRPC status code.
func (k Kind) GRPCCode() codes.Code {
	switch k {
	case InvalidArgument, UnsupportedMediaType:
		return codes.InvalidArgument
	case NotFound:
		return codes.NotFound
	case AlreadyExists:
		return codes.AlreadyExists
	case Conflict:
		return codes.Aborted
	case FailedPrecondition:
		return codes.FailedPrecondition
	case Unavailable:
		return codes.Unavailable
	case ResourceExhausted, TooLarge:
		return codes.ResourceExhausted
	case DeadlineExceeded:
		return codes.DeadlineExceeded
	case Canceled:
		return codes.Canceled
	case Unimplemented:
		return codes.Unimplemented
	case Unauthenticated:
		return codes.Unauthenticated
	case PermissionDenied:
		return codes.PermissionDenied
	default:
		return codes.Internal
	}
}

// Error is a classified error. Message is safe to show users; Err is the internal cause.
type Error struct {
	Kind    Kind
	Message string
	Field   string
	Err     error
	// RetryAfter, when set on ResourceExhausted or Unavailable errors, tells the
	// client when to try again (HTTP Retry-After).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil && e.Message == "" {
		return e.Err.Error()
	}
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errs.ErrNotFound) true for any NotFound error, etc.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) && t.Message == "" && t.Err == nil && t.Field == "" {
		return t.Kind == e.Kind
	}
	return false
}

// Sentinels for errors.Is; match by Kind.
var (
	ErrNotFound           = &Error{Kind: NotFound}
	ErrAlreadyExists      = &Error{Kind: AlreadyExists}
	ErrConflict           = &Error{Kind: Conflict}
	ErrInvalid            = &Error{Kind: InvalidArgument}
	ErrUnavailable        = &Error{Kind: Unavailable}
	ErrFailedPrecondition = &Error{Kind: FailedPrecondition}
)

// New returns an error of kind k with a formatted user-safe message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap classifies cause with kind k and a user-safe message.
func Wrap(k Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...), Err: cause}
}

// WithField returns a copy of e naming the field it is about.
func (e *Error) WithField(field string) *Error {
	c := *e
	c.Field = field
	return &c
}

// RetryAfterOf returns the retry hint of the first *Error in err's chain that has one.
func RetryAfterOf(err error) time.Duration {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return 0
		}
		if e.RetryAfter > 0 {
			return e.RetryAfter
		}
		err = e.Err
	}
	return 0
}

// KindOf returns the Kind of the first *Error in err's chain, or Internal.
// Context errors map to DeadlineExceeded and Canceled.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return Canceled
	}
	return Internal
}

// PublicMessage is what a client may see: the messages of the *Error values in
// err's chain, outermost first, joined by ": ". A cause that is not an *Error
// (and wraps none) never shows: it is the internal detail (ONNX Runtime's text,
// a dial or TLS error, a path, SQL) that Error() keeps for the log. Unclassified
// errors get a generic text.
func PublicMessage(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		switch KindOf(err) {
		case DeadlineExceeded:
			return "deadline exceeded"
		case Canceled:
			return "request canceled"
		}
		return "internal error"
	}
	var b strings.Builder
	for {
		if e.Message != "" {
			if b.Len() > 0 {
				b.WriteString(": ")
			}
			b.WriteString(e.Message)
		}
		if e.Err == nil || !errors.As(e.Err, &e) {
			break
		}
	}
	if b.Len() == 0 {
		return genericMessage(KindOf(err))
	}
	return b.String()
}

// genericMessage stands in for an *Error without a message.
func genericMessage(k Kind) string {
	if k == Internal {
		return "internal error"
	}
	return strings.ReplaceAll(k.String(), "_", " ")
}

// FieldOf returns the field of the first *Error in err's chain.
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
