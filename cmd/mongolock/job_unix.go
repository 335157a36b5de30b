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

	"golang.org/x/sys/unix"
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

	tty        *os.File // the controlling terminal, or nil
	ownTTY     bool     // tty was opened here (/dev/tty) and is closed at the end
	canSuspend bool     // a job-control shell can continue mongolock once stopped
	contc      chan os.Signal
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

	j := &job{control: ctlW, events: make(chan jobEvent, 4), contc: make(chan os.Signal, 1)}
	j.tty, j.ownTTY = controllingTerminal()
	ttyArg := "-"
	extra := []*os.File{ctlR, repW}
	if j.tty != nil {
		if pg, ok := foreground(int(j.tty.Fd())); ok && pg == syscall.Getpgrp() {
			// In the terminal's foreground: the command goes there, so
			// that the terminal's signals (Ctrl-C, Ctrl-Z) reach it, once,
			// and it can read from the terminal.
			ttyArg = "tty"
			extra = append(extra, j.tty)
		}
		j.canSuspend = groupHasShell()
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
		j.closeTTY()
		return nil, fmt.Errorf("starting the process that supervises the command: %w", err)
	}
	if j.tty != nil {
		// mongolock is now, or may later be, in the background of the
		// terminal, where writing to it (its messages) or moving its
		// foreground would stop it with SIGTTOU: ignore that signal. The
		// supervisor, already started, is not affected.
		signal.Ignore(syscall.SIGTTOU)
	}
	signal.Notify(j.contc, syscall.SIGCONT)
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

// suspend stops mongolock as the command was stopped by signal sig, if
// that is job control at work (Ctrl-Z, or a read from or write to the
// terminal in the background) and a shell can continue it; it returns
// once mongolock is continued, true. Otherwise it does nothing and
// returns false.
//
// This is what a shell's job would do: the terminal stopped the command's
// process group only, and the shell waits for mongolock's. mongolock takes
// the terminal's foreground back if the command had it, and stops its own
// process group (itself and the rest of a pipeline) with the same signal.
// The lock is not renewed while mongolock is stopped.
func (j *job) suspend(sig int) bool {
	s := syscall.Signal(sig)
	if j.tty == nil || !j.canSuspend || (s != syscall.SIGTSTP && s != syscall.SIGTTIN && s != syscall.SIGTTOU) {
		return false
	}
	for len(j.contc) > 0 {
		<-j.contc
	}
	fd := int(j.tty.Fd())
	if pg, ok := foreground(fd); ok && int64(pg) == j.pgid.Load() {
		setForeground(fd, syscall.Getpgrp())
	}
	if s == syscall.SIGTTOU {
		s = syscall.SIGTSTP // mongolock ignores SIGTTOU
	}
	if signalIgnored(s) {
		s = syscall.SIGSTOP
	}
	_ = syscall.Kill(0, s)
	<-j.contc // sent by the shell's fg or bg, once mongolock stopped
	return true
}

// resume continues the command after mongolock was continued, in the
// terminal's foreground if mongolock was given it (fg), else in the
// background (bg).
func (j *job) resume() {
	pg := int(j.pgid.Load())
	if pg <= 0 {
		return
	}
	if j.tty != nil {
		fd := int(j.tty.Fd())
		if fg, ok := foreground(fd); ok && fg == syscall.Getpgrp() {
			setForeground(fd, pg)
		}
	}
	_ = syscall.Kill(-pg, syscall.SIGCONT)
}

// close ends the job once its events are closed: the supervisor is told
// to go if it is still there, and the terminal's foreground comes back to
// mongolock if the command's process group had it.
func (j *job) close() {
	_ = j.control.Close()
	signal.Stop(j.contc)
	if j.tty != nil {
		fd := int(j.tty.Fd())
		if fg, ok := foreground(fd); ok && fg != syscall.Getpgrp() &&
			(int64(fg) == j.pgid.Load() || syscall.Kill(-fg, 0) == syscall.ESRCH) {
			setForeground(fd, syscall.Getpgrp())
		}
	}
	j.closeTTY()
}

func (j *job) closeTTY() {
	if j.ownTTY {
		_ = j.tty.Close()
	}
}

// controllingTerminal returns the controlling terminal: standard input,
// output or error if one of them is it, else /dev/tty opened (owned true).
// It returns nil if there is none.
func controllingTerminal() (f *os.File, owned bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		fd := int(f.Fd())
		if term.IsTerminal(fd) {
			if _, ok := foreground(fd); ok { // only the controlling terminal has one for us
				return f, false
			}
		}
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, false
	}
	return f, true
}

// groupHasShell reports whether an ancestor of mongolock in its process
// group has its parent in the same session but another process group, as
// a job-control shell is to its job (mongolock itself, or a script that
// started mongolock). Only then can mongolock stop its process group: a
// shell will continue it (fg, bg), and the group is not orphaned, where
// the kernel discards SIGTSTP.
func groupHasShell() bool {
	sid, err := unix.Getsid(0)
	if err != nil {
		return false
	}
	pgrp := syscall.Getpgrp()
	for p, depth := os.Getppid(), 0; p > 1 && depth < 64; depth++ {
		psid, err1 := unix.Getsid(p)
		ppgrp, err2 := syscall.Getpgid(p)
		if err1 != nil || err2 != nil || psid != sid {
			return false
		}
		if ppgrp != pgrp {
			return true
		}
		if p, err = parentOf(p); err != nil {
			return false
		}
	}
	return false
}
