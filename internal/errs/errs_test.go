package errs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestKindsMapToStatuses(t *testing.T) {
	cases := []struct {
		k    Kind
		http int
		grpc codes.Code
		name string
	}{
		{InvalidArgument, http.StatusBadRequest, codes.InvalidArgument, "invalid_argument"},
		{NotFound, http.StatusNotFound, codes.NotFound, "not_found"},
		{Conflict, http.StatusConflict, codes.Aborted, "conflict"},
		{Unavailable, http.StatusServiceUnavailable, codes.Unavailable, "unavailable"},
		{ResourceExhausted, http.StatusTooManyRequests, codes.ResourceExhausted, "resource_exhausted"},
		{DeadlineExceeded, http.StatusGatewayTimeout, codes.DeadlineExceeded, "deadline_exceeded"},
		{TooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, "too_large"},
		{Internal, http.StatusInternalServerError, codes.Internal, "internal"},
	}
	for _, c := range cases {
		if c.k.HTTPStatus() != c.http || c.k.GRPCCode() != c.grpc || c.k.String() != c.name {
			t.Errorf("%v: http %d grpc %v name %q", c.k, c.k.HTTPStatus(), c.k.GRPCCode(), c.k.String())
		}
	}
}

func TestClassificationSurvivesWrapping(t *testing.T) {
	base := New(NotFound, "model %q not found", "fraud").WithField("model")
	wrapped := fmt.Errorf("registry: resolve: %w", base)
	if !errors.Is(wrapped, ErrNotFound) || errors.Is(wrapped, ErrConflict) {
		t.Error("errors.Is must match by kind through %w")
	}
	if KindOf(wrapped) != NotFound || FieldOf(wrapped) != "model" {
		t.Errorf("kind %v field %q", KindOf(wrapped), FieldOf(wrapped))
	}
	// The user sees the classified message, not the internal operation prefix.
	if got := PublicMessage(wrapped); got != `model "fraud" not found` {
		t.Errorf("public message %q", got)
	}
	// An unclassified error stays internal and its text is not shown.
	secret := errors.New("open /var/lib/nimbus/secret: permission denied")
	if KindOf(secret) != Internal || PublicMessage(secret) != "internal error" {
		t.Errorf("unclassified: %v %q", KindOf(secret), PublicMessage(secret))
	}
	if KindOf(fmt.Errorf("x: %w", context.DeadlineExceeded)) != DeadlineExceeded || KindOf(context.Canceled) != Canceled {
		t.Error("context errors must map to their kinds")
	}
}

func TestRetryAfterIsFoundInTheChain(t *testing.T) {
	inner := &Error{Kind: ResourceExhausted, Message: "queue full", RetryAfter: 2 * time.Second}
	outer := Wrap(ResourceExhausted, inner, "model m")
	if got := RetryAfterOf(fmt.Errorf("serve: %w", outer)); got != 2*time.Second {
		t.Errorf("RetryAfterOf = %v", got)
	}
	if RetryAfterOf(New(NotFound, "x")) != 0 || RetryAfterOf(nil) != 0 {
		t.Error("no hint expected")
	}
}

// TestPublicMessageKeepsCausesOut: the public message is the chain of *Error
// messages; a cause that is not an *Error (ONNX Runtime's text, a dial or TLS
// error, a path) stays in Error(), for the log.
func TestPublicMessageKeepsCausesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, dialErr := net.Dial("tcp", addr)
	_, pathErr := os.Open(filepath.Join(t.TempDir(), "secret", "model.onnx"))
	ortErr := errors.New("Error creating C session: External data path validation failed for initializer: w")
	var tlsErr error = x509.UnknownAuthorityError{}
	if dialErr == nil || pathErr == nil {
		t.Fatalf("setup: dial %v, open %v", dialErr, pathErr)
	}
	tests := []struct {
		name   string
		err    error
		public string
		cause  error
	}{
		{"ONNX Runtime", fmt.Errorf("load: %w", Wrap(InvalidArgument, ortErr, "onnx: ONNX Runtime cannot load the model")),
			"onnx: ONNX Runtime cannot load the model", ortErr},
		{"dial", Wrap(Unavailable, fmt.Errorf("fetch: %w", dialErr), "source https://%s/m.onnx", addr),
			"source https://" + addr + "/m.onnx", dialErr},
		{"path", Wrap(Internal, pathErr, "read blob"), "read blob", pathErr},
		{"x509", Wrap(Unavailable, tlsErr, "source https://h/m"), "source https://h/m", tlsErr},
		{"a classified cause adds its message, its own cause stays out",
			Wrap(Unavailable, fmt.Errorf("serving: %w", Wrap(InvalidArgument, pathErr, "input x")), "model m version 1 failed to load"),
			"model m version 1 failed to load: input x", pathErr},
		{"no message: the kind", &Error{Kind: NotFound, Err: pathErr}, "not found", pathErr},
		{"no message, internal", &Error{Kind: Internal, Err: ortErr}, "internal error", ortErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PublicMessage(tt.err); got != tt.public {
				t.Errorf("public message %q, want %q", got, tt.public)
			}
			if !strings.Contains(tt.err.Error(), tt.cause.Error()) || !errors.Is(tt.err, tt.cause) {
				t.Errorf("Error() %q lost the cause %q", tt.err.Error(), tt.cause)
			}
		})
	}
}
