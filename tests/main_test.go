package tests

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running when
// they end: every goroutine a Client starts must be stopped by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
