//go:build unix

package main

import (
	"os"
	"syscall"

	"golang.org/x/term"
)

// exitCodeOf is the exit code a shell would report for a finished process:
// its status, or 128+N if signal N killed it.
func exitCodeOf(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// signalNumber is s's number, for the 128+N exit code convention.
func signalNumber(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 0
}

func isTerminalFd(fd int) bool { return term.IsTerminal(fd) }
