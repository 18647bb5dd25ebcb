package batch

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: Close
// waits for every worker.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
