//go:build linux

package mongolock

import (
	"syscall"
	"time"
	"unsafe"
)

// clockBoottime is Linux's CLOCK_BOOTTIME: like CLOCK_MONOTONIC (which Go's
// monotonic readings use), but it keeps counting while the machine is
// suspended.
const clockBoottime = 7

// defaultLocalClock returns the clock a Client measures elapsed time with.
// On Linux it is CLOCK_BOOTTIME, so that a lease that expired while the
// machine slept (a laptop's suspend, a paused VM) is seen as expired after
// the resume: Go's own monotonic clock stands still during a suspend.
// Readings carry no monotonic part; differences between them are exact.
func defaultLocalClock() (now func() time.Time, countsSuspend bool) {
	anchor, ok := readBoottime()
	if !ok {
		return time.Now, false
	}
	anchorMono := time.Now()
	return func() time.Time {
		if t, ok := readBoottime(); ok {
			return t
		}
		// CLOCK_BOOTTIME exists since Linux 2.6.39 and worked above; should
		// it ever fail, go on with the monotonic clock from the anchor
		// rather than fail the operation.
		return anchor.Add(time.Since(anchorMono))
	}, true
}

func readBoottime() (time.Time, bool) {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return time.Time{}, false
	}
	return time.Unix(ts.Sec, ts.Nsec), true
}
