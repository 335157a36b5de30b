//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// inputPoll is how often watchFile looks again at its input when it has
// nothing to read, and so how soon it notices that ctx ended.
const inputPoll = 200 * time.Millisecond

// watchFile closes eof when f reaches end of file (or cannot be read any
// more), reading and discarding what arrives before. It returns when ctx
// ends or at end of file. It never blocks in a read: it polls first, so
// that ending ctx ends it. A terminal is read only while this process
// group is in its foreground, so that reading never stops a background
// "mongolock lock" with SIGTTIN.
func watchFile(ctx context.Context, f *os.File, eof chan<- struct{}) {
	fd := int(f.Fd())
	tty := isTerminalFd(fd)
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		if tty {
			if pg, ok := foreground(fd); ok && pg != unix.Getpgrp() {
				sleepCtx(ctx, inputPoll)
				continue
			}
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(inputPoll/time.Millisecond))
		switch {
		case errors.Is(err, unix.EINTR), err == nil && n == 0:
			continue
		case err != nil, fds[0].Revents&unix.POLLNVAL != 0:
			return // not a descriptor that can be watched: never end
		}
		m, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
		case m == 0 || err != nil:
			close(eof)
			return
		}
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
