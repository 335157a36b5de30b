//go:build !unix

package main

import (
	"os"
	"os/exec"

	"golang.org/x/term"
)

// On systems without process groups and POSIX signals, the command runs as
// a plain child process and is killed alone.

type terminalHandover struct{}

func ownProcessGroup(child *exec.Cmd) *terminalHandover { return &terminalHandover{} }

func (t *terminalHandover) started() {}

func (t *terminalHandover) restore() {}

func killGroup(child *exec.Cmd) { _ = child.Process.Kill() }

func exitCodeOf(ps *os.ProcessState) int { return ps.ExitCode() }

func signalNumber(s os.Signal) int { return 0 }

func isTerminalFd(fd int) bool { return term.IsTerminal(fd) }
