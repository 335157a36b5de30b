package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// checkReleased fails the test unless key is stored and released.
func checkReleased(t *testing.T, c *mongolock.Client, key string) {
	t.Helper()
	info, err := c.Info(testCtx(t), key)
	if err != nil {
		t.Fatalf("Info(%q): %v", key, err)
	}
	if info.Locked {
		t.Errorf("lock %q still held by %q after mongolock run exited", key, info.Owner)
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	notExecutable := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		command []string
		want    int
	}{
		{"success", []string{"--", "true"}, 0},
		{"the child's code", []string{"--", "sh", "-c", "exit 3"}, 3},
		{"killed by a signal", []string{"--", "sh", "-c", "kill -TERM $$"}, 128 + int(syscall.SIGTERM)},
		{"through a shell", []string{"--shell", "--", "exit", "4"}, 4},
		{"command not found", []string{"--", "mongolock-no-such-command"}, exitNotFound},
		{"command not executable", []string{"--", notExecutable}, exitCannotExec},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "exit-" + strconv.Itoa(i)
			r := runBinary(t, "", nil, args([]string{"run", "--key", key}, flags, tt.command)...)
			if r.code != tt.want {
				t.Errorf("exit code %d, want %d\n%s", r.code, tt.want, r)
			}
			checkReleased(t, c, key)
		})
	}
}

// The command gets the lock's key, owner, token and fence, and its
// standard input, output and error are passed through.
func TestRunEnvironmentAndStdio(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)

	script := `read line; echo "got:$line"; echo "key=$MONGOLOCK_KEY owner=$MONGOLOCK_OWNER token=$MONGOLOCK_TOKEN fence=$MONGOLOCK_FENCE"; echo to-stderr >&2`
	tests := []struct {
		name      string
		owner     []string
		wantOwner string // "" for a generated one
	}{
		{"given owner", []string{"--owner", "reporter-1"}, "reporter-1"},
		{"generated owner", nil, ""},
	}
	var lastFence int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, "hello\n", nil, args([]string{"run", "--key", "env"}, tt.owner, flags, []string{"--", "sh", "-c", script})...)
			if r.code != 0 {
				t.Fatal(r)
			}
			if !strings.Contains(r.stdout, "got:hello\n") || !strings.Contains(r.stderr, "to-stderr") {
				t.Errorf("standard input, output or error not passed through:\n%s", r)
			}
			m := regexp.MustCompile(`key=(\S*) owner=(\S*) token=(\S*) fence=(\S*)`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no environment line:\n%s", r)
			}
			if m[1] != "env" {
				t.Errorf("MONGOLOCK_KEY=%q, want env", m[1])
			}
			if tt.wantOwner != "" && m[2] != tt.wantOwner || m[2] == "" {
				t.Errorf("MONGOLOCK_OWNER=%q, want %q", m[2], tt.wantOwner)
			}
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(m[3]) {
				t.Errorf("MONGOLOCK_TOKEN=%q, want 32 hex digits", m[3])
			}
			fence, err := strconv.ParseInt(m[4], 10, 64)
			if err != nil || fence <= lastFence {
				t.Errorf("MONGOLOCK_FENCE=%q, want a number above the previous fence %d", m[4], lastFence)
			}
			lastFence = fence
			info, err := c.Info(testCtx(t), "env")
			if err != nil {
				t.Fatal(err)
			}
			if info.Fence != fence || info.Locked {
				t.Errorf("stored lock: fence %d locked %v; want fence %d, released", info.Fence, info.Locked, fence)
			}
		})
	}
}

// A lock held by someone else: the command does not run, and mongolock
// exits 75 or --conflict-exit-code, saying who holds it unless --quiet.
func TestRunConflict(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	if _, err := c.TryAcquire(testCtx(t), "busy", mongolock.Owner("other-host"), mongolock.Expire(time.Minute)); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")

	tests := []struct {
		name     string
		flags    []string
		code     int
		stderrRe string // "" for no output
	}{
		{"default", nil, exitConflict, `the lock "busy" is held by "other-host" since .* expires in \d`},
		{"conflict exit code", []string{"-E", "9"}, 9, `held by "other-host"`},
		{"conflict exit code 0", []string{"--conflict-exit-code", "0"}, 0, `held by "other-host"`},
		{"quiet", []string{"--quiet"}, exitConflict, ""},
		{"bounded wait", []string{"--timeout", "300ms"}, exitConflict, `held by "other-host"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, "", nil, args([]string{"run", "--key", "busy"}, tt.flags, flags, []string{"--", "touch", marker})...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d\n%s", r.code, tt.code, r)
			}
			if tt.stderrRe == "" && r.stderr != "" {
				t.Errorf("stderr not empty:\n%s", r.stderr)
			}
			if tt.stderrRe != "" && !regexp.MustCompile(tt.stderrRe).MatchString(r.stderr) {
				t.Errorf("stderr does not match %s:\n%s", tt.stderrRe, r.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command ran although the lock was held")
			}
		})
	}
	if r := runBinary(t, "", nil, args([]string{"run", "--key", "busy", "--timeout", "300ms"}, flags, []string{"--", "true"})...); r.elapsed < 300*time.Millisecond {
		t.Errorf("--timeout 300ms gave up after %v", r.elapsed)
	}
}

// With --timeout, run waits for the holder to release.
func TestRunWaits(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)

	for _, timeout := range []string{"20s", "-1"} {
		t.Run("timeout "+timeout, func(t *testing.T) {
			key := "wait" + timeout
			l, err := c.TryAcquire(testCtx(t), key, mongolock.Expire(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			const hold = 700 * time.Millisecond
			released := make(chan error, 1)
			go func() {
				time.Sleep(hold)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				released <- l.Release(ctx)
			}()
			r := runBinary(t, "", nil, args([]string{"run", "--key", key, "--timeout", timeout}, flags, []string{"--", "echo", "ran"})...)
			if r.code != 0 || r.stdout != "ran\n" {
				t.Fatal(r)
			}
			if r.elapsed < hold {
				t.Errorf("ran after %v, before the holder released at %v", r.elapsed, hold)
			}
			if err := <-released; err != nil {
				t.Error(err)
			}
		})
	}
}

// A signal while waiting ends the wait: the command does not run, no lock
// is taken, and the exit code is 128+signal.
func TestRunInterruptedWhileWaiting(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	l, err := c.TryAcquire(testCtx(t), "held", mongolock.Owner("holder"), mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	p := startBinary(t, nil, args([]string{"run", "--key", "held", "--timeout", "-1"}, flags, []string{"--", "touch", marker})...)
	time.Sleep(500 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	r := p.wait(t, 10*time.Second)
	if r.code != 128+int(syscall.SIGINT) || !strings.Contains(r.stderr, "while waiting") {
		t.Errorf("want exit %d and a message:\n%s", 128+int(syscall.SIGINT), r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
	info, err := c.Info(testCtx(t), "held")
	if err != nil || info.Owner != "holder" || info.Fence != l.Fence() {
		t.Errorf("the lock changed: %+v, %v", info, err)
	}
}

// SIGINT, SIGTERM and SIGHUP sent to mongolock reach the command; mongolock
// exits with the command's code and releases the lock.
func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)

	tests := []struct {
		sig  syscall.Signal
		name string
		code int
	}{
		{syscall.SIGTERM, "TERM", 42},
		{syscall.SIGINT, "INT", 41},
		{syscall.SIGHUP, "HUP", 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := "signal-" + tt.name
			script := `trap 'echo got-` + tt.name + `; exit ` + strconv.Itoa(tt.code) + `' ` + tt.name + `; echo ready; while :; do sleep 0.05; done`
			p := startBinary(t, nil, args([]string{"run", "--key", key}, flags, []string{"--", "sh", "-c", script})...)
			p.stdout.waitFor(t, "ready", 20*time.Second)
			if err := p.cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			r := p.wait(t, 10*time.Second)
			if r.code != tt.code || !strings.Contains(r.stdout, "got-"+tt.name) {
				t.Errorf("want exit %d after the command trapped SIG%s:\n%s", tt.code, tt.name, r)
			}
			checkReleased(t, c, key)
		})
	}
}

// A lost lock stops the command (SIGTERM, then SIGKILL after --kill-grace)
// and mongolock exits 70 with a message.
func TestRunLockLost(t *testing.T) {
	t.Parallel()
	const keepRunning = `echo ready; while :; do sleep 0.05; done`
	tests := []struct {
		name   string
		script string
		lose   func(t *testing.T, s *testCase)
		grace  string
		stdout string // what the command must have printed
	}{
		{
			name:   "force-released, command stops on SIGTERM",
			script: `trap 'echo got-TERM; exit 0' TERM; ` + keepRunning,
			lose:   forceRelease,
			grace:  "10s",
			stdout: "got-TERM",
		},
		{
			name:   "force-released, command ignores SIGTERM",
			script: `trap 'echo ignoring-TERM' TERM; ` + keepRunning,
			lose:   forceRelease,
			grace:  "300ms",
			stdout: "ignoring-TERM",
		},
		{
			name:   "server paused past the expiry",
			script: `trap 'echo got-TERM; exit 0' TERM; ` + keepRunning,
			lose:   func(t *testing.T, s *testCase) { s.srv.Pause() },
			grace:  "10s",
			stdout: "got-TERM",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, flags := server(t)
			s := &testCase{srv: srv, c: newClient(t, srv), key: "lost-" + strconv.Itoa(i)}
			p := startBinary(t, nil, args([]string{"run", "--key", s.key, "--expire", "1s", "--kill-grace", tt.grace}, flags, []string{"--", "sh", "-c", tt.script})...)
			p.stdout.waitFor(t, "ready", 20*time.Second)
			tt.lose(t, s)
			lost := time.Now()
			p.stdout.waitFor(t, tt.stdout, 10*time.Second)
			srv.ResetFaults()
			r := p.wait(t, 20*time.Second)
			if r.code != exitLost {
				t.Errorf("exit code %d, want %d\n%s", r.code, exitLost, r)
			}
			if !strings.Contains(r.stderr, "LOST the lock") {
				t.Errorf("no message about the lost lock:\n%s", r.stderr)
			}
			if d := time.Since(lost); d > 8*time.Second {
				t.Errorf("took %v to stop the command after the lock was lost", d)
			}
		})
	}
}

// testCase is what a lock-loss scenario acts on.
type testCase struct {
	srv *mongolocktest.Server
	c   *mongolock.Client
	key string
}

func forceRelease(t *testing.T, s *testCase) {
	t.Helper()
	if _, err := s.c.ForceRelease(testCtx(t), s.key); err != nil {
		t.Fatal(err)
	}
}

// The lock is kept alive while the command runs longer than --expire.
func TestRunKeepsLockAlive(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	p := startBinary(t, nil, args([]string{"run", "--key", "alive", "--expire", "1s"}, flags, []string{"--", "sh", "-c", "echo ready; sleep 2.5"})...)
	p.stdout.waitFor(t, "ready", 20*time.Second)
	// The command runs 2.5s; without renewals the lock would be free after
	// 1s. (The lock is released before mongolock exits, so stop trying a
	// little before the command ends.)
	for ready := time.Now(); time.Since(ready) < 2200*time.Millisecond; time.Sleep(200 * time.Millisecond) {
		l, err := c.TryAcquire(testCtx(t), "alive", mongolock.Expire(time.Minute))
		if err == nil {
			_ = l.Release(testCtx(t))
			t.Fatalf("took the lock %v after the command started: it was not kept alive", time.Since(ready))
		}
		if !errors.Is(err, mongolock.ErrLocked) {
			t.Fatal(err)
		}
	}
	if r := p.wait(t, 20*time.Second); r.code != 0 {
		t.Fatalf("want exit 0:\n%s", r)
	}
	checkReleased(t, c, "alive")
}

// --min-hold keeps the lock after a command that ends sooner.
func TestRunMinHold(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	const minHold = 2 * time.Second
	r := runBinary(t, "", nil, args([]string{"run", "--key", "cron", "--min-hold", minHold.String()}, flags, []string{"--", "true"})...)
	if r.code != 0 {
		t.Fatal(r)
	}
	if r.elapsed >= minHold {
		t.Errorf("mongolock run took %v: --min-hold must not make it wait", r.elapsed)
	}
	if locked, err := c.IsLocked(testCtx(t), "cron"); err != nil || !locked {
		t.Fatalf("IsLocked right after the command = %v, %v; want true (min hold)", locked, err)
	}
	deadline := time.Now().Add(minHold + 3*time.Second)
	for {
		locked, err := c.IsLocked(testCtx(t), "cron")
		if err != nil {
			t.Fatal(err)
		}
		if !locked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still locked %v after the command", minHold+3*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
