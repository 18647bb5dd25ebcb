package errs

import "context"

var (
	contextDeadline = context.DeadlineExceeded
	contextCanceled = context.Canceled
)
