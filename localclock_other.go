//go:build !linux

package mongolock

import "time"

// defaultLocalClock returns the clock a Client measures elapsed time with:
// Go's monotonic clock. (On Linux, CLOCK_BOOTTIME, which also counts time
// the machine spent suspended; see localclock_linux.go.)
func defaultLocalClock() (now func() time.Time, countsSuspend bool) {
	return time.Now, false
}
