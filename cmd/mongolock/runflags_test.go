package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// The lock's key is the first argument, as for flock, consul lock and
// etcdctl lock; --key still works, also together with the same key.
func TestRunKeyArgument(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	for _, line := range [][]string{
		{"run", "report"},
		{"run", "--key", "report"},
		{"run", "report", "--key", "report"},
		{"run", "--expire", "10s", "report", "--timeout", "5s"},
	} {
		t.Run(strings.Join(line, " "), func(t *testing.T) {
			r := runBinary(t, "", nil, args(line, flags, []string{"--", "sh", "-c", `echo "key=$MONGOLOCK_KEY"`})...)
			if r.code != 0 || r.stdout != "key=report\n" {
				t.Errorf("want exit 0 and key=report:\n%s", r)
			}
			checkReleased(t, c, "report")
		})
	}
}

// flock's flags: -n makes one attempt (the default), -w/--wait is
// --timeout and takes flock's bare seconds, --verbose says how the wait
// went; -E is tested with the conflicts.
func TestRunFlockFlags(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := filepath.Join(t.TempDir(), "ran")

	t.Run("-n", func(t *testing.T) {
		if _, err := c.TryAcquire(testCtx(t), "busy-n", mongolock.Owner("other"), mongolock.Expire(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, nb := range []string{"-n", "--nonblock"} {
			r := runBinary(t, "", nil, args([]string{"run", "busy-n", nb}, flags, []string{"--", "touch", marker})...)
			if r.code != exitConflict || !strings.Contains(r.stderr, `held by "other"`) {
				t.Errorf("%s: want exit 75 naming the holder:\n%s", nb, r)
			}
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the command ran")
		}
	})

	for _, wait := range [][]string{{"-w", "20"}, {"--wait", "20s"}, {"-w", "-1"}, {"--timeout", "19.5"}} {
		t.Run(strings.Join(wait, " "), func(t *testing.T) {
			key := "wait" + strings.Join(wait, "")
			l, err := c.TryAcquire(testCtx(t), key, mongolock.Owner("other"), mongolock.Expire(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			released := make(chan error, 1)
			go func() {
				time.Sleep(500 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				released <- l.Release(ctx)
			}()
			r := runBinary(t, "", nil, args([]string{"run", key, "--verbose"}, wait, flags, []string{"--", "echo", "ran"})...)
			if err := <-released; err != nil {
				t.Fatal(err)
			}
			if r.code != 0 || r.stdout != "ran\n" {
				t.Fatalf("want the command run once the holder released:\n%s", r)
			}
			for _, want := range []string{`mongolock: waiting `, `held by "other"`, `mongolock: took the lock "` + key + `" after `, `mongolock: released the lock "` + key + `" after holding it `} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("--verbose did not say %q:\n%s", want, r.stderr)
				}
			}
			// Standard error is not a terminal: no "waiting..." line
			// rewritten in place.
			if strings.Contains(r.stderr, "\r") {
				t.Errorf("a terminal's waiting line on a non-terminal:\n%q", r.stderr)
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		r := runBinary(t, "", nil, "run", "--help")
		for _, want := range []string{"By default it makes one attempt", "cron", "-n, --nonblock", "-w, --wait", "--verbose", "-E, --conflict-exit-code", "only if standard error is a terminal"} {
			if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), want) {
				t.Errorf("run --help does not say %q:\n%s", want, r.stdout)
			}
		}
	})
}

// An expiry shorter than the server's round trip allows is a usage error
// that says so, before any lock is taken; not "lock lost".
func TestExpireTooShort(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := filepath.Join(t.TempDir(), "ran")
	for _, line := range [][]string{
		{"run", "short-run", "--expire", "1ms", "--", "touch", marker},
		{"lock", "short-lock", "--expire", "1ms"},
	} {
		t.Run(line[0], func(t *testing.T) {
			r := runBinary(t, "", nil, args(line[:4], flags, line[4:])...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "--expire 1ms is too short for the server's round trip") {
				t.Errorf("want exit 2 saying the expiry is too short for the round trip:\n%s", r)
			}
			if strings.Contains(r.stderr, "lost") || strings.Contains(r.stderr, "LOST") {
				t.Errorf("reported as a lost lock:\n%s", r.stderr)
			}
			if _, err := c.Info(testCtx(t), line[1]); !errors.Is(err, mongolock.ErrNotFound) {
				t.Errorf("Info(%s) = %v, want ErrNotFound: no lock may be taken", line[1], err)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}
