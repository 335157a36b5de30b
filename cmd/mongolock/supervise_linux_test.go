package main

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// SIGKILL of "mongolock run" kills the command and all its descendants,
// also those that left its process group or session and those that
// double-forked, before the lock expires.
func TestRunKilledKillsCommand(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := markerEnv(t)
	t.Cleanup(func() { killMarked(t, marker) })
	const key = "killed-run"
	script := `setsid sleep 300 & (setsid sleep 301 &); sleep 302 & echo ready; sleep 303; echo first`
	p := startBinary(t, []string{marker}, args([]string{"run", "--key", key, "--expire", "10s"}, flags, []string{"--", "sh", "-c", script})...)
	p.stdout.waitFor(t, "ready", 20*time.Second)
	tree := waitProcs(t, marker, 20*time.Second, "the command's four sleeps", func(ps []proc) bool {
		return len(withPrefix(ps, "sleep 30")) == 4
	})
	t.Logf("before SIGKILL:\n%s", procList(tree))

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// The lock's expiry is judged by the server: until another client can
	// take the lock, every process of the tree must be gone.
	for {
		ps := markedProcs(t, marker)
		if len(ps) == 0 {
			break
		}
		l, err := c.TryAcquire(testCtx(t), key, mongolock.Expire(time.Minute))
		if err == nil {
			_ = l.Release(testCtx(t))
			t.Fatalf("the lock expired while processes of the command still ran:\n%s", procList(ps))
		}
		if !errors.Is(err, mongolock.ErrLocked) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if locked, err := c.IsLocked(testCtx(t), key); err != nil || !locked {
		t.Logf("the lock had expired by the time the tree was seen gone (IsLocked %v, %v)", locked, err)
	}
	r := p.wait(t, 20*time.Second)
	if strings.Contains(r.stdout, "first") {
		t.Errorf("the command went on after mongolock was killed:\n%s", r)
	}
	if r.code != -1 { // killed by a signal
		t.Errorf("exit code %d, want -1 (killed)", r.code)
	}
}

// "elect" runs its command under run's supervising process: SIGKILL of
// mongolock kills the command and its descendants while the leadership
// has not expired yet.
func TestElectKilledKillsCommand(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := markerEnv(t)
	t.Cleanup(func() { killMarked(t, marker) })
	const name = "killed-elect"
	p := startBinary(t, []string{marker}, args([]string{"elect", name, "--expire", "20s"}, flags,
		[]string{"--", "sh", "-c", `(setsid sleep 300 &); sleep 301 & echo ready; sleep 302; echo first`})...)
	p.stdout.waitFor(t, "ready", 60*time.Second)
	waitProcs(t, marker, 60*time.Second, "the command's three sleeps", func(ps []proc) bool {
		return len(withPrefix(ps, "sleep 30")) == 3
	})
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for {
		ps := markedProcs(t, marker)
		if len(ps) == 0 {
			break
		}
		if _, err := c.Election(name).Leader(testCtx(t)); err != nil {
			t.Fatalf("the leadership ended (%v) while processes of the command still ran:\n%s", err, procList(ps))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := p.wait(t, 20*time.Second); strings.Contains(r.stdout, "first") || r.code != -1 {
		t.Errorf("want mongolock killed and the command with it:\n%s", r)
	}
}

// What the command leaves running when it exits gets SIGTERM and, after
// --kill-grace, SIGKILL, before mongolock releases the lock and exits.
func TestRunStopsLeftovers(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := markerEnv(t)
	t.Cleanup(func() { killMarked(t, marker) })
	const key = "leftovers"
	// A background sleep in the command's group, one in a session of its
	// own that ignores SIGTERM (once it has created the file ready), and a
	// double-forked one.
	ready := filepath.Join(t.TempDir(), "ready")
	script := `sleep 300 & setsid sh -c 'trap "" TERM; touch "$0"; exec sleep 301' "$0" & (setsid sleep 302 &); ` +
		`while [ ! -e "$0" ]; do sleep 0.05; done; echo started`
	r := runBinary(t, "", []string{marker}, args([]string{"run", "--key", key, "--kill-grace", "500ms"}, flags, []string{"--", "sh", "-c", script, ready})...)
	if r.code != 0 || !strings.Contains(r.stdout, "started") {
		t.Fatalf("want exit 0 after the command ran:\n%s", r)
	}
	if !strings.Contains(r.stderr, "left processes running: SIGTERM now, SIGKILL in 500ms") {
		t.Errorf("no message about the processes left running:\n%s", r.stderr)
	}
	if ps := markedProcs(t, marker); len(ps) > 0 {
		t.Errorf("mongolock exited while processes of the command still ran:\n%s", procList(ps))
	}
	checkReleased(t, c, key)
}

// A stopped (or stalled) "mongolock run" does not renew the lock; the
// supervising process stops the command once the lock's deadline has
// passed, and mongolock, continued, exits 70.
func TestRunStoppedMongolockWatchdog(t *testing.T) {
	t.Parallel()
	_, flags := server(t)
	marker := markerEnv(t)
	t.Cleanup(func() { killMarked(t, marker) })
	script := `trap 'echo got-TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done`
	p := startBinary(t, []string{marker}, args([]string{"run", "--key", "stopped-run", "--expire", "2s", "--kill-grace", "1s"}, flags, []string{"--", "sh", "-c", script})...)
	p.stdout.waitFor(t, "ready", 20*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ps := waitProcs(t, marker, 30*time.Second, "the command stopped while mongolock is", func(ps []proc) bool {
		return len(withPrefix(ps, "sh -c")) == 0
	})
	for _, q := range ps {
		if q.pid == p.cmd.Process.Pid && q.state != "T" {
			t.Errorf("mongolock is not stopped any more: %v", q)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t, 20*time.Second)
	if r.code != exitLost || !strings.Contains(r.stderr, "LOST the lock") || !strings.Contains(r.stdout, "got-TERM") {
		t.Errorf("want exit %d, a message about the lost lock, and the command stopped with SIGTERM:\n%s", exitLost, r)
	}
}
