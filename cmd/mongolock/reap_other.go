//go:build unix && !linux

package main

import (
	"errors"
	"os"
	"syscall"
)

// On these systems the supervising process cannot adopt orphaned
// descendants nor list its children: it kills the command's process group
// only, and a descendant that left the group escapes.

func supervisorExecutable() (string, error) { return os.Executable() }

func becomeSubreaper() error { return errors.ErrUnsupported }

func liveChildren(parent int) ([]int, error) { return nil, errors.ErrUnsupported }

// parentOf knows this process's parent only.
func parentOf(pid int) (int, error) {
	if pid == os.Getpid() {
		return os.Getppid(), nil
	}
	return 0, errors.ErrUnsupported
}

func signalIgnored(sig syscall.Signal) bool { return false }
