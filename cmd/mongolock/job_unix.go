//go:build unix

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/term"
)

// job is the command "run" runs, seen from "run": a supervising process
// (see supervisor_unix.go) that starts the command, reports on it, and
// kills it with all its descendants when "run" says so, when "run" dies,
// or when "run" stops renewing the lock.
type job struct {
	sup     *exec.Cmd
	control *os.File      // write end of the supervisor's control pipe
	events  chan jobEvent // the supervisor's reports; closed once it exited
	pgid    atomic.Int64  // the command's process group, once started

	tty *os.File // the terminal the command was started in the foreground of, or nil
}

// startJob starts the supervising process, which starts the command once
// it gets its first deadline.
func startJob(spec jobSpec) (*job, error) {
	exe, err := supervisorExecutable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to supervise the command: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the command: %w", err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, fmt.Errorf("starting the command: %w", err)
	}

	j := &job{control: ctlW, events: make(chan jobEvent, 4)}
	ttyArg := "-"
	extra := []*os.File{ctlR, repW}
	if j.tty = foregroundTerminal(); j.tty != nil {
		// In the terminal's foreground: the command goes there, so that
		// the terminal's signals (Ctrl-C) reach it, once, and it can read
		// from the terminal.
		ttyArg = "tty"
		extra = append(extra, j.tty)
	}

	j.sup = exec.Command(exe, append([]string{supervisorArg, spec.killGrace.String(), ttyArg, "--"}, spec.argv...)...)
	j.sup.Args[0] = "mongolock" // what ps shows, rather than /proc/self/exe
	j.sup.Env = spec.env
	j.sup.Stdin, j.sup.Stdout, j.sup.Stderr = spec.stdio.in, spec.stdio.out, spec.stdio.err
	j.sup.ExtraFiles = extra
	j.sup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = j.sup.Start()
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return nil, fmt.Errorf("starting the process that supervises the command: %w", err)
	}
	if j.tty != nil {
		// mongolock is now in the background of the terminal, where
		// writing to it (its messages) or taking the foreground back
		// would stop it with SIGTTOU: ignore that signal. The supervisor,
		// already started, is not affected.
		signal.Ignore(syscall.SIGTTOU)
	}
	go j.readReports(repR)
	return j, nil
}

// readReports turns the supervisor's reports into events until it exits,
// then sends jobEnded and closes j.events. Owned by the job: it ends when
// the supervisor does, which closeJob ensures.
func (j *job) readReports(r *os.File) {
	defer close(j.events)
	ended := false
	code := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		ev, ok := parseReport(sc.Text())
		if !ok {
			continue
		}
		switch ev.kind {
		case jobStarted:
			j.pgid.Store(int64(ev.n))
		case jobFailed:
			ended, code = true, ev.n
		case jobEnded:
			ended, code = true, ev.n
			continue // sent last, after Wait
		}
		j.events <- ev
	}
	r.Close()
	_ = j.sup.Wait()
	if !ended {
		// The supervisor died without a word (someone killed it): its
		// process group is the one handle left on the command.
		if pg := j.pgid.Load(); pg > 0 {
			_ = syscall.Kill(-int(pg), syscall.SIGKILL)
		}
		code = exitCodeOf(j.sup.ProcessState)
		j.events <- jobEvent{kind: jobDied, n: code, text: fmt.Sprintf(
			"the process supervising the command ended unexpectedly (%v): killed the command's process group", j.sup.ProcessState)}
	}
	j.events <- jobEvent{kind: jobEnded, n: code}
}

// parseReport parses one of the supervisor's report lines.
func parseReport(line string) (jobEvent, bool) {
	verb, rest, _ := strings.Cut(line, " ")
	arg, text, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(arg)
	numeric := err == nil
	switch {
	case verb == "started" && numeric:
		return jobEvent{kind: jobStarted, n: n}, true
	case verb == "error" && numeric:
		return jobEvent{kind: jobFailed, n: n, text: text}, true
	case verb == "stopped" && numeric:
		return jobEvent{kind: jobStopped, n: n}, true
	case verb == "leftovers":
		return jobEvent{kind: jobLeftovers}, true
	case verb == "watchdog":
		return jobEvent{kind: jobWatchdog}, true
	case verb == "exit" && numeric:
		return jobEvent{kind: jobEnded, n: n}, true
	}
	return jobEvent{}, false
}

// Events returns the job's events; the channel is closed after jobEnded.
func (j *job) Events() <-chan jobEvent { return j.events }

func (j *job) send(line string) { _, _ = j.control.WriteString(line + "\n") }

// setDeadline tells the supervisor the lock's local deadline: its
// watchdog stops the command watchdogSlack after it, unless told a later
// one. The zero time means no deadline.
func (j *job) setDeadline(t time.Time) {
	if t.IsZero() {
		j.send("deadline 0")
		return
	}
	j.send("deadline " + strconv.FormatInt(monotonicNow()+int64(time.Until(t)+watchdogSlack), 10))
}

// signal sends s to the command.
func (j *job) signal(s os.Signal) {
	if n, ok := s.(syscall.Signal); ok {
		j.send("signal " + strconv.Itoa(int(n)))
	}
}

// kill kills the command and all its descendants.
func (j *job) kill() { j.send("kill") }

// close ends the job once its events are closed: the supervisor is told
// to go if it is still there, and the terminal's foreground comes back to
// mongolock if the command's process group had it.
func (j *job) close() {
	_ = j.control.Close()
	if j.tty != nil {
		fd := int(j.tty.Fd())
		if fg, ok := foreground(fd); ok && fg != syscall.Getpgrp() &&
			(int64(fg) == j.pgid.Load() || syscall.Kill(-fg, 0) == syscall.ESRCH) {
			setForeground(fd, syscall.Getpgrp())
		}
	}
}

// foregroundTerminal returns standard input, output or error if it is a
// terminal whose foreground process group is mongolock's, or nil.
func foregroundTerminal() *os.File {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		fd := int(f.Fd())
		if !term.IsTerminal(fd) {
			continue
		}
		if pg, ok := foreground(fd); ok && pg == syscall.Getpgrp() {
			return f
		}
	}
	return nil
}
