package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The demo's workers die with the demo: when its output goes away
// ("| head") and when it is killed with SIGKILL.
func TestDemoWorkersDieWithDemo(t *testing.T) {
	t.Parallel()
	t.Run("output closed", func(t *testing.T) {
		t.Parallel()
		marker := markerEnv(t)
		t.Cleanup(func() { killMarked(t, marker) })
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		sh := exec.CommandContext(ctx, "sh", "-c", `"$0" demo --workers 3 --duration 5s | head -2`, binary)
		detach(sh)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, envURI+"=") {
				sh.Env = append(sh.Env, kv)
			}
		}
		sh.Env = append(sh.Env, marker, "TMPDIR="+t.TempDir())
		out, err := sh.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if n := strings.Count(string(out), "\n"); n != 2 {
			t.Errorf("head printed %d lines:\n%s", n, out)
		}
		waitProcs(t, marker, 30*time.Second, "every process of the demo gone", func(ps []proc) bool { return len(ps) == 0 })
	})
	t.Run("SIGKILL", func(t *testing.T) {
		t.Parallel()
		marker := markerEnv(t)
		t.Cleanup(func() { killMarked(t, marker) })
		// Killed, the demo cannot remove its temporary directories: they go
		// in the test's.
		p := startBinary(t, []string{marker, "TMPDIR=" + t.TempDir()}, "demo", "--workers", "3", "--duration", "30s")
		p.stdout.waitFor(t, "has the lock", time.Minute)
		ps := waitProcs(t, marker, 20*time.Second, "three demo workers", func(ps []proc) bool {
			return len(containing(ps, " demo-worker ")) == 3
		})
		t.Logf("before SIGKILL:\n%s", procList(ps))
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		waitProcs(t, marker, 30*time.Second, "every worker gone after the demo was killed", func(ps []proc) bool { return len(ps) == 0 })
	})
}

// An interrupted demo is not a failed one: Ctrl-C (SIGINT to the demo and
// its workers, as a terminal sends it) or SIGTERM to the demo alone ends it
// with exit 130 and the report of what it saw, without "A GUARANTEE DID
// NOT HOLD".
func TestDemoInterrupted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		group bool
		sig   syscall.Signal
	}{
		{"Ctrl-C", true, syscall.SIGINT},
		{"SIGTERM", false, syscall.SIGTERM},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, []string{"TMPDIR=" + t.TempDir()}, "demo", "--workers", "3", "--duration", "60s")
			p.stdout.waitFor(t, "has the lock", time.Minute)
			pid := p.cmd.Process.Pid
			if tt.group {
				pid = -pid // the demo leads its process group (a session of its own)
			}
			if err := syscall.Kill(pid, tt.sig); err != nil {
				t.Fatal(err)
			}
			r := p.wait(t, time.Minute)
			if r.code != 130 {
				t.Errorf("exit code %d, want 130", r.code)
			}
			for _, bad := range []string{"GUARANTEE DID NOT HOLD", "FAILED"} {
				if strings.Contains(r.stdout, bad) {
					t.Errorf("an interrupted demo reports %q:\n%s", bad, r.stdout)
				}
			}
			for _, want := range []string{"Report (interrupted", "overlapping sections:        0  ok", "Interrupted after"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("the report lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}
