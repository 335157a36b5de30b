//go:build !unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"time"

	"golang.org/x/term"
)

// On systems without process groups and POSIX signals, the command runs
// as a plain child process, without a supervising process: it is killed
// alone, and survives a mongolock that is killed.

func maybeSupervise(args []string) (int, bool) { return 0, false }

type job struct {
	cmd    *exec.Cmd
	events chan jobEvent
}

func startJob(spec jobSpec) (*job, error) {
	j := &job{events: make(chan jobEvent, 4)}
	j.cmd = exec.Command(spec.argv[0], spec.argv[1:]...)
	j.cmd.Env = spec.env
	j.cmd.Stdin, j.cmd.Stdout, j.cmd.Stderr = spec.stdio.in, spec.stdio.out, spec.stdio.err
	if err := j.cmd.Start(); err != nil {
		code := exitCannotExec
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = exitNotFound
		}
		j.events <- jobEvent{kind: jobFailed, n: code, text: err.Error()}
		j.events <- jobEvent{kind: jobEnded, n: code}
		close(j.events)
		return j, nil
	}
	j.events <- jobEvent{kind: jobStarted, n: j.cmd.Process.Pid}
	go func() {
		defer close(j.events)
		_ = j.cmd.Wait()
		j.events <- jobEvent{kind: jobEnded, n: j.cmd.ProcessState.ExitCode()}
	}()
	return j, nil
}

func (j *job) Events() <-chan jobEvent { return j.events }

func (j *job) setDeadline(t time.Time) {}

func (j *job) signal(s os.Signal) {
	if j.cmd.Process != nil {
		_ = j.cmd.Process.Signal(s)
	}
}

func (j *job) kill() {
	if j.cmd.Process != nil {
		_ = j.cmd.Process.Kill()
	}
}

func (j *job) suspend(sig int) bool { return false }

func (j *job) resume() {}

func (j *job) close() {}

func exitCodeOf(ps *os.ProcessState) int { return ps.ExitCode() }

func signalNumber(s os.Signal) int { return 0 }

func isTerminalFd(fd int) bool { return term.IsTerminal(fd) }
