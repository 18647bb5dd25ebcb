package apply_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (the
// router's controller among them).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
