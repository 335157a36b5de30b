package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// heldLines waits for lock's four NAME=VALUE lines and returns them.
func heldLines(t *testing.T, p *started) map[string]string {
	t.Helper()
	p.stdout.waitFor(t, envFence+"=", 30*time.Second)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(p.stdout.String()), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not a NAME=VALUE line: %q", line)
		}
		got[k] = v
	}
	for _, k := range []string{envKey, envOwner, envToken, envFence} {
		if got[k] == "" {
			t.Fatalf("no %s line in:\n%s", k, p.stdout)
		}
	}
	return got
}

// checkHeldBy fails the test unless key is held with the given fence.
func checkHeldBy(t *testing.T, c *mongolock.Client, key string, fence string) {
	t.Helper()
	info, err := c.Info(testCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Locked || strconv.FormatInt(info.Fence, 10) != fence {
		t.Errorf("lock %q: locked %v, fence %d; want held with fence %s", key, info.Locked, info.Fence, fence)
	}
}

// "mongolock lock KEY" takes the lock, prints it, holds it, and releases
// it when its standard input closes or a signal comes.
func TestLock(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)

	t.Run("standard input closes", func(t *testing.T) {
		t.Parallel()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		p := startBinaryInput(t, r, nil, args([]string{"lock", "lk-eof", "--owner", "script-1"}, flags)...)
		_ = r.Close()
		got := heldLines(t, p)
		if got[envKey] != "lk-eof" || got[envOwner] != "script-1" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got[envToken]) {
			t.Errorf("printed %v", got)
		}
		checkHeldBy(t, c, "lk-eof", got[envFence])
		_, _ = w.WriteString("input is read and ignored\n")
		_ = w.Close()
		if res := p.wait(t, 30*time.Second); res.code != 0 {
			t.Errorf("want exit 0 after the end of standard input:\n%s", res)
		}
		checkReleased(t, c, "lk-eof")
	})

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			key := "lk-" + strconv.Itoa(int(sig))
			// Standard input is /dev/null, as for "mongolock lock KEY &" in a
			// script: not watched, so only the signal ends it.
			p := startBinary(t, nil, args([]string{"lock", key}, flags)...)
			got := heldLines(t, p)
			time.Sleep(300 * time.Millisecond) // had /dev/null's end of file released it, it would be by now
			checkHeldBy(t, c, key, got[envFence])
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if res := p.wait(t, 30*time.Second); res.code != 0 {
				t.Errorf("want exit 0 after %v:\n%s", sig, res)
			}
			checkReleased(t, c, key)
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		p := startBinary(t, nil, args([]string{"lock", "--key", "lk-json", "--json"}, flags)...)
		line := p.stdout.waitFor(t, "{", 30*time.Second)
		var got heldJSON
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		checkHeldBy(t, c, "lk-json", strconv.FormatInt(got.Fence, 10))
		if got.Key != "lk-json" || got.Owner == "" || len(got.Token) != 32 {
			t.Errorf("printed %+v", got)
		}
		for _, field := range []string{`"key"`, `"owner"`, `"token"`, `"fence"`} {
			if !strings.Contains(line, field) {
				t.Errorf("JSON lacks %s: %s", field, line)
			}
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if res := p.wait(t, 30*time.Second); res.code != 0 {
			t.Error(res)
		}
	})

	t.Run("values quoted for the shell", func(t *testing.T) {
		t.Parallel()
		const key, owner = "nightly report's", "ops $USER"
		p := startBinary(t, nil, args([]string{"lock", key, "--owner", owner}, flags)...)
		heldLines(t, p)
		out, err := exec.Command("sh", "-c", "eval \"$1\"; printf '%s|%s' \"$MONGOLOCK_KEY\" \"$MONGOLOCK_OWNER\"", "sh",
			strings.Join(strings.Split(strings.TrimSpace(p.stdout.String()), "\n"), "; ")).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != key+"|"+owner {
			t.Errorf("the shell read back %q, want %q", out, key+"|"+owner)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		p.wait(t, 30*time.Second)
	})

	t.Run("held elsewhere", func(t *testing.T) {
		t.Parallel()
		if _, err := c.TryAcquire(testCtx(t), "lk-busy", mongolock.Owner("other"), mongolock.Expire(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			flags []string
			code  int
		}{
			{nil, exitConflict},
			{[]string{"-n"}, exitConflict},
			{[]string{"-E", "3", "-w", "0.3"}, 3},
		} {
			r := runBinary(t, "", nil, args([]string{"lock", "lk-busy"}, tt.flags, flags)...)
			if r.code != tt.code || r.stdout != "" || !strings.Contains(r.stderr, `held by "other"`) || !strings.Contains(r.stderr, "the lock was not taken") {
				t.Errorf("lock %v: want exit %d, nothing on standard output, and who holds it:\n%s", tt.flags, tt.code, r)
			}
		}
	})

	t.Run("lost", func(t *testing.T) {
		t.Parallel()
		p := startBinary(t, nil, args([]string{"lock", "lk-lost", "--expire", "1s"}, flags)...)
		heldLines(t, p)
		if _, err := c.ForceRelease(testCtx(t), "lk-lost"); err != nil {
			t.Fatal(err)
		}
		res := p.wait(t, 30*time.Second)
		if res.code != exitLost || !strings.Contains(res.stderr, `LOST the lock "lk-lost"`) {
			t.Errorf("want exit 70 and LOST:\n%s", res)
		}
	})

	t.Run("the script is killed", func(t *testing.T) {
		t.Parallel()
		// The coprocess pattern of lock's help: when the script dies,
		// however it dies, the lock's standard input closes.
		sh := exec.CommandContext(t.Context(), "bash", append([]string{"-c",
			`coproc LOCK { exec "$0" lock lk-script "$@"; }
			for _ in 1 2 3 4; do read -r kv <&"${LOCK[0]}" || exit 75; eval "export $kv"; done
			echo "$MONGOLOCK_FENCE"
			while :; do read -r -t 1 _ <&"${LOCK[0]}"; done  # builtins only: nothing else holds the pipe`,
			binary}, flags...)...)
		detach(sh)
		out, err := sh.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		lines := newLineReader(out)
		fence := lines.waitFor(t, "", 30*time.Second)
		checkHeldBy(t, c, "lk-script", fence)
		_ = sh.Process.Kill()
		_ = sh.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for {
			info, err := c.Info(testCtx(t), "lk-script")
			if err != nil {
				t.Fatal(err)
			}
			if !info.Locked {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lock is still held 30s after its script was killed")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("interrupted while waiting", func(t *testing.T) {
		t.Parallel()
		if _, err := c.TryAcquire(testCtx(t), "lk-wait", mongolock.Owner("other"), mongolock.Expire(time.Minute)); err != nil {
			t.Fatal(err)
		}
		p := startBinary(t, nil, args([]string{"lock", "lk-wait", "-w", "-1", "--verbose"}, flags)...)
		p.stderr.waitFor(t, "waiting without limit", 30*time.Second)
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		res := p.wait(t, 30*time.Second)
		if res.code != 128+int(syscall.SIGINT) || res.stdout != "" || !strings.Contains(res.stderr, "the lock was not taken") {
			t.Errorf("want exit 130, nothing printed on standard output:\n%s", res)
		}
		info, err := c.Info(testCtx(t), "lk-wait")
		if err != nil || info.Owner != "other" {
			t.Errorf("the lock changed: %+v, %v", info, err)
		}
	})
}
