//go:build unix

package main

// The supervising process of "mongolock run".
//
// "run" does not start the command itself: it starts this program again
// as a small supervisor (supervisorArg), which starts the command and
// stays its parent. The supervisor guarantees what "run" alone cannot:
//
//   - If "run" dies, by any signal, SIGKILL included, the command and
//     everything it started are killed at once. The supervisor holds the
//     read end of a pipe whose only write end is in "run"; the kernel
//     closes it when "run" dies, however it dies, and the supervisor sees
//     end of file. (PR_SET_PDEATHSIG is not used: it fires when the thread
//     that forked exits, not the process — https://go.dev/issue/27505 —
//     and it would kill the supervisor before it could clean up.)
//   - If "run" stops renewing (it is stopped, or stalled), a watchdog
//     stops the command when the lock's deadline, which "run" keeps
//     sending, has passed by watchdogSlack: SIGTERM, and SIGKILL to all
//     of it --kill-grace later.
//   - Descendants that leave the command's process group are found too:
//     on Linux the supervisor is a subreaper (PR_SET_CHILD_SUBREAPER), so
//     whatever the command orphans, double-forked daemons included,
//     becomes its child, and it kills its children until none is left.
//   - Nothing the command started outlives it unnoticed: when the command
//     exits, what it left running gets SIGTERM and, --kill-grace later,
//     SIGKILL, before "run" releases the lock.
//
// The supervisor runs in a process group of its own, so that neither the
// terminal's signals nor signals to the shell's job reach it, and the
// command in another, which a terminal's foreground is handed to.
//
// Protocol: "run" writes lines to the supervisor's descriptor 3:
//
//	deadline NS   the watchdog fires at CLOCK_MONOTONIC NS (0: never)
//	signal N      send signal N to the command
//	kill          kill the command and all its descendants now
//
// and reads the supervisor's lines from descriptor 4:
//
//	started PID   the command runs, as PID, leader of process group PID
//	error CODE M  the command could not be started (M: why; CODE: 126/127)
//	stopped N     the command was stopped by signal N
//	leftovers     the command exited; what it left running gets SIGTERM
//	watchdog      "run" did not renew in time; the command is being stopped
//	exit CODE     all is over; CODE is the command's (128+N for signal N)

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// supervisorArg, as mongolock's first argument, makes it the supervising
// process of "mongolock run". It is not a command for users.
const supervisorArg = "__mongolock-run-supervisor"

// Descriptors the supervisor inherits from "run".
const (
	controlFd = 3 // run → supervisor
	reportFd  = 4 // supervisor → run
	ttyFd     = 5 // the terminal whose foreground goes to the command, if any
)

// watchdogSlack is how long after the lock's deadline the supervisor
// stops the command if "run" has not taken over by then (it normally
// does at the deadline itself).
const watchdogSlack = time.Second

// killTreeLimit bounds the killing of the command's descendants (against
// a fork bomb, or a process this user may not kill).
const killTreeLimit = 10 * time.Second

// maybeSupervise runs the supervising process if args (without the
// program name) ask for it, and returns its exit code.
func maybeSupervise(args []string) (code int, ok bool) {
	if len(args) == 0 || args[0] != supervisorArg {
		return 0, false
	}
	return superviseMain(args[1:]), true
}

// superviseMain is the supervising process. args: the --kill-grace,
// "tty" or "-", "--", then the command line.
func superviseMain(args []string) int {
	internal := func() int {
		fmt.Fprintf(os.Stderr, "mongolock: %s is internal to \"mongolock run\"\n", supervisorArg)
		return exitUsage
	}
	if len(args) < 4 || args[2] != "--" || !isPipe(controlFd) || !isPipe(reportFd) {
		return internal()
	}
	grace, err := time.ParseDuration(args[0])
	if err != nil || grace < 0 {
		return internal()
	}
	withTTY := args[1] == "tty"
	for _, fd := range []int{controlFd, reportFd, ttyFd} {
		syscall.CloseOnExec(fd) // the command must not hold them
	}
	// Pollable, so that closing it ends the read below.
	if err := syscall.SetNonblock(controlFd, true); err != nil {
		return internal()
	}
	s := &supervisor{
		grace:  grace,
		self:   os.Getpid(),
		report: os.NewFile(reportFd, "report"),
	}
	defer s.report.Close()
	control := os.NewFile(controlFd, "control")
	lines := make(chan string)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		sc := bufio.NewScanner(control)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	defer func() {
		_ = control.Close()
		for range lines { // unblock the reader if it was sending
		}
		<-readerDone
	}()
	return s.run(args[3:], withTTY, lines)
}

// isPipe reports whether fd is an open pipe.
func isPipe(fd int) bool {
	var st syscall.Stat_t
	return syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFIFO
}

// supervisor is the state of the supervising process.
type supervisor struct {
	grace  time.Duration
	self   int      // this process's pid
	report *os.File // to "run"

	pid    int  // the command (and its process group); 0 before it started
	reaped bool // the command exited and was reaped
	code   int  // its exit code, once reaped
}

// send writes a report line to "run"; if "run" is gone, nobody listens.
func (s *supervisor) send(format string, a ...any) {
	_, _ = fmt.Fprintf(s.report, format+"\n", a...)
}

// run starts the command and supervises it until it and everything it
// started are gone.
func (s *supervisor) run(argv []string, withTTY bool, control <-chan string) int {
	subreaper := becomeSubreaper() == nil

	// The terminal's and the job's signals do not reach this process group;
	// these are for a kill of this process or of a whole session or
	// cgroup (a service manager stopping everything): the command gets
	// its own, and the supervisor stays to clean up. A signal inherited
	// as ignored stays ignored, also for the command.
	quiet := make(chan os.Signal, 1)
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGPIPE} {
		if !signal.Ignored(sig) {
			signal.Notify(quiet, sig)
		}
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	defer signal.Stop(quiet)
	defer signal.Stop(chld)

	// The first word from "run" arms the watchdog. Without it ("run" is
	// gone already), the command does not start.
	watchdog := time.NewTimer(time.Hour)
	watchdog.Stop()
	defer watchdog.Stop()
	first, ok := <-control
	if !ok || !s.control(first, watchdog) {
		return 0
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr := &syscall.SysProcAttr{Setpgid: true}
	if withTTY {
		attr.Foreground, attr.Ctty = true, ttyFd
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		code := exitCannotExec
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = exitNotFound
		}
		s.send("error %d %s", code, strings.ReplaceAll(err.Error(), "\n", " "))
		return 0
	}
	// Not before: the command would inherit it. This process writes to
	// the terminal from a background process group.
	signal.Ignore(syscall.SIGTTOU, syscall.SIGTTIN, syscall.SIGTSTP)
	s.pid = cmd.Process.Pid
	s.send("started %d", s.pid)

	poll := time.NewTicker(time.Second) // in case a SIGCHLD was missed
	defer poll.Stop()
	var grace *time.Timer // running once the command is being stopped
	graceC := func() <-chan time.Time {
		if grace == nil {
			return nil
		}
		return grace.C
	}
	// stopping sends what is left SIGTERM and starts the grace period.
	stopping := func() {
		if grace != nil {
			return
		}
		if s.reaped {
			s.signalAll(syscall.SIGTERM)
		} else {
			_ = syscall.Kill(s.pid, syscall.SIGTERM)
		}
		grace = time.NewTimer(s.grace)
	}
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()

	for {
		select {
		case line, ok := <-control:
			if !ok {
				fmt.Fprintf(os.Stderr, "mongolock: \"mongolock run\" ended before the command did: killing the command and all it started\n")
				s.killAll(subreaper)
				return 0
			}
			if line == "kill" {
				s.killAll(subreaper)
				s.send("exit %d", s.code)
				return 0
			}
			s.control(line, watchdog)
		case <-chld:
		case <-poll.C:
		case <-quiet:
			continue
		case <-watchdog.C:
			s.send("watchdog")
			stopping()
		case <-graceC():
			s.killAll(subreaper)
			s.send("exit %d", s.code)
			return 0
		}
		s.reap()
		if !s.reaped {
			continue
		}
		if !s.leftovers(subreaper) {
			s.send("exit %d", s.code)
			return 0
		}
		if grace == nil {
			s.send("leftovers")
			stopping()
		}
	}
}

// control acts on a line from "run" other than "kill", and reports
// whether it understood it.
func (s *supervisor) control(line string, watchdog *time.Timer) bool {
	verb, arg, _ := strings.Cut(line, " ")
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return false
	}
	switch verb {
	case "deadline":
		watchdog.Stop()
		if n > 0 {
			watchdog.Reset(time.Duration(n - monotonicNow()))
		}
	case "signal":
		if s.pid > 0 && !s.reaped {
			_ = syscall.Kill(s.pid, syscall.Signal(n))
		}
	default:
		return false
	}
	return true
}

// reap collects every child that exited (the command, or a descendant
// orphaned to this subreaper) and reports the command's stops.
func (s *supervisor) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WUNTRACED, nil)
		if pid <= 0 || err != nil {
			return
		}
		if pid != s.pid || s.reaped {
			continue
		}
		switch {
		case ws.Stopped():
			s.send("stopped %d", int(ws.StopSignal()))
		case ws.Exited():
			s.reaped, s.code = true, ws.ExitStatus()
		case ws.Signaled():
			s.reaped, s.code = true, 128+int(ws.Signal())
		}
	}
}

// leftovers reports whether anything the command started still runs: a
// member of its process group, or (on Linux) a child of this process.
func (s *supervisor) leftovers(subreaper bool) bool {
	if syscall.Kill(-s.pid, 0) == nil {
		return true
	}
	if !subreaper {
		return false
	}
	kids, err := liveChildren(s.self)
	return err == nil && len(kids) > 0
}

// signalAll sends sig to the command's process group and to this
// process's children.
func (s *supervisor) signalAll(sig syscall.Signal) {
	_ = syscall.Kill(-s.pid, sig)
	kids, _ := liveChildren(s.self)
	for _, k := range kids {
		_ = syscall.Kill(k, sig)
	}
}

// killAll kills the command and all its descendants with SIGKILL, and
// reaps them. As a subreaper, this process inherits every descendant
// whose parent dies, so killing its own children until none is left
// reaches all of them, however they forked, without killing by a pid
// that could have been reused. Bounded by killTreeLimit.
func (s *supervisor) killAll(subreaper bool) {
	if s.pid == 0 {
		return
	}
	for start := time.Now(); ; {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
		var kids []int
		if subreaper {
			kids, _ = liveChildren(s.self)
			for _, k := range kids {
				_ = syscall.Kill(k, syscall.SIGKILL)
			}
		}
		s.reap()
		if len(kids) == 0 && syscall.Kill(-s.pid, 0) != nil && (s.reaped || time.Since(start) > time.Second) {
			return
		}
		if time.Since(start) > killTreeLimit {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// monotonicNow is CLOCK_MONOTONIC in nanoseconds: the same clock in every
// process of this machine, unlike Go's monotonic readings.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now().UnixNano() // not reached on the supported systems
	}
	return ts.Nano()
}
