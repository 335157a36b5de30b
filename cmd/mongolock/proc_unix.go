//go:build unix

package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// ownProcessGroup makes child the leader of a process group of its own, so
// that the whole group can be killed when the lock is lost. If mongolock
// runs in the foreground of a terminal, the child's group becomes the
// terminal's foreground group instead: Ctrl-C and the terminal's other
// signals then reach the command (once, not also through a forwarding
// mongolock), and it can read from the terminal.
func ownProcessGroup(child *exec.Cmd) *terminalHandover {
	attr := &syscall.SysProcAttr{Setpgid: true}
	t := &terminalHandover{fd: -1}
	if fd, ok := foregroundTerminal(); ok {
		attr.Foreground = true
		attr.Ctty = fd
		t.fd = fd
	}
	child.SysProcAttr = attr
	return t
}

// terminalHandover takes the terminal's foreground back after the child.
type terminalHandover struct {
	fd int // the terminal handed to the child; -1 if none
}

// started is called once the child runs. mongolock is now in the
// background of the terminal, where writing to it (its messages) or taking
// the foreground back could stop it with SIGTTOU: ignore that signal. The
// child, already started, is not affected.
func (t *terminalHandover) started() {
	if t.fd >= 0 {
		signal.Ignore(syscall.SIGTTOU)
	}
}

// restore gives the terminal's foreground back to mongolock's group.
func (t *terminalHandover) restore() {
	if t.fd >= 0 {
		setForeground(t.fd, syscall.Getpgrp())
	}
}

// foregroundTerminal returns a descriptor among standard input, output and
// error that is a terminal whose foreground process group is mongolock's.
func foregroundTerminal() (int, bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		fd := int(f.Fd())
		if !term.IsTerminal(fd) {
			continue
		}
		if pg, ok := foreground(fd); ok && pg == syscall.Getpgrp() {
			return fd, true
		}
	}
	return -1, false
}

// killGroup sends SIGKILL to child's process group: the child and whatever
// it started that stayed in its group.
func killGroup(child *exec.Cmd) {
	if err := syscall.Kill(-child.Process.Pid, syscall.SIGKILL); err != nil {
		_ = child.Process.Kill()
	}
}

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
