package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// detach starts cmd in a session of its own, without a controlling
// terminal: the binary must not find the terminal "go test" runs in.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// markerEnv returns a variable to put in a binary's environment: every
// process it starts inherits it, and markedProcs finds them by it.
func markerEnv(t *testing.T) string {
	return fmt.Sprintf("MONGOLOCK_TEST_MARK=%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
}

// proc is a process found by markedProcs.
type proc struct {
	pid     int
	state   string // as in /proc/PID/stat: R, S, T (stopped), ...
	cmdline string
}

func (p proc) String() string { return fmt.Sprintf("%d %s %q", p.pid, p.state, p.cmdline) }

// markedProcs returns the live processes (zombies left out) whose
// environment holds marker.
func markedProcs(t *testing.T, marker string) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte(marker+"\x00")) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) == 0 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out = append(out, proc{pid: pid, state: f[0], cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// withPrefix returns the processes whose command line starts with s.
func withPrefix(ps []proc, s string) []proc {
	var out []proc
	for _, p := range ps {
		if strings.HasPrefix(p.cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

// containing returns the processes whose command line contains s.
func containing(ps []proc, s string) []proc {
	var out []proc
	for _, p := range ps {
		if strings.Contains(p.cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

// waitProcs polls markedProcs until cond holds for them, and returns
// them; it fails the test after timeout.
func waitProcs(t *testing.T, marker string, timeout time.Duration, what string, cond func([]proc) bool) []proc {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps := markedProcs(t, marker)
		if cond(ps) {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; processes:\n%s", what, timeout, procList(ps))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func procList(ps []proc) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %v\n", p)
	}
	return b.String()
}

// killMarked kills what a failed test left behind.
func killMarked(t *testing.T, marker string) {
	for _, p := range markedProcs(t, marker) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}
