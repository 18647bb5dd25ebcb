package serving_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// background load, preload and trim runs on the manager's tracker, which
// Close drains.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
