package errs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
