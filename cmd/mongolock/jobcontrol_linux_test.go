package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shell is an interactive bash on a pseudo-terminal of its own, as a user
// has in a terminal window: it does job control (Ctrl-Z, fg, bg, jobs).
type shell struct {
	out        *lineReader
	controller *os.File
}

// startShell starts bash -i with env added to its environment (less
// MONGOLOCK_URI), in a session whose controlling terminal is a fresh
// pseudo-terminal; it skips the test if there is no bash.
func startShell(t *testing.T, env ...string) *shell {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	controller, tty := openPTY(t)
	cmd := exec.Command(bash, "--norc", "--noprofile", "-i")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envURI+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PS1=$ ", "PS2=", "TERM=dumb", "HISTFILE=/dev/null")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = tty.Close()
	s := &shell{out: newLineReader(splitCarriageReturns{controller}), controller: controller}
	// In POSIX mode, bash says which signal stopped a job: Stopped(SIGTSTP).
	s.typeLine(t, "set -o posix")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("terminal:\n%s", s.out)
		}
	})
	return s
}

// typeLine types line and Enter.
func (s *shell) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := s.controller.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

// ctrlZ types Ctrl-Z.
func (s *shell) ctrlZ(t *testing.T) {
	t.Helper()
	if _, err := s.controller.Write([]byte{0x1a}); err != nil {
		t.Fatal(err)
	}
}

// waitJobs types "jobs" until its output says want.
func (s *shell) waitJobs(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		mark := s.out.count()
		s.typeLine(t, "jobs")
		for until := time.Now().Add(time.Second); time.Now().Before(until); time.Sleep(20 * time.Millisecond) {
			if s.out.hasFrom(mark, want) {
				return
			}
		}
	}
	t.Fatalf("jobs did not say %q within 20s", want)
}

// shellQuote quotes words for a POSIX shell.
func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// jobProcs returns mongolock run, its supervising process and the
// command (sh) among the processes marked with marker, once all three run.
func jobProcs(t *testing.T, marker string, cond func(run, sup, cmd proc) bool, what string) (run, sup, cmd proc) {
	t.Helper()
	waitProcs(t, marker, 20*time.Second, what, func(ps []proc) bool {
		r, s := withPrefix(ps, binary+" run --key "), containing(ps, supervisorArg)
		var c []proc // the command, not a script around mongolock
		for _, p := range withPrefix(ps, "sh -c") {
			if !strings.Contains(p.cmdline, binary) {
				c = append(c, p)
			}
		}
		if len(r) != 1 || len(s) != 1 || len(c) != 1 {
			return false
		}
		run, sup, cmd = r[0], s[0], c[0]
		return cond(run, sup, cmd)
	})
	return run, sup, cmd
}

// In an interactive shell, "mongolock run" is a job like any other: Ctrl-Z
// suspends the command and mongolock and gives the prompt back; fg resumes
// the command in the terminal's foreground; bg resumes it in the
// background, where reading the terminal suspends the job again ("Stopped
// (tty input)"). Also when the command's standard input, output and error
// are not the terminal and it opens /dev/tty itself, and when mongolock
// runs in a script or a pipeline, where Ctrl-Z suspends the whole job.
func TestRunJobControl(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	const script = `echo "ready-$((1+1))"; read a; echo "got-$a"; read b; echo "got-$b"`
	tests := []struct {
		name   string
		script string
		redir  string // appended to mongolock's command line
		inSh   bool   // mongolock runs in a script (sh -c), in the script's process group
	}{
		{"on the terminal", script, "", false},
		{"through /dev/tty", `exec </dev/tty >/dev/tty; ` + script, " </dev/null >/dev/null 2>&1", false},
		{"in a script", script, "", true},
		{"in a pipeline", script, " | cat", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := "jobs-" + string(rune('a'+i))
			marker := markerEnv(t)
			t.Cleanup(func() { killMarked(t, marker) })
			sh := startShell(t, marker)
			line := shellQuote(args([]string{binary, "run", "--key", key}, flags, []string{"--", "sh", "-c", tt.script})) + tt.redir
			if tt.inSh {
				line = shellQuote([]string{"sh", "-c", line + `; echo "script-$((1+1))"`})
			}
			sh.typeLine(t, line)
			sh.out.waitFor(t, "ready-2", 30*time.Second)

			// Ctrl-Z: the command and mongolock stop, the supervisor does
			// not, the shell has the terminal, and the lock stays held.
			mark := sh.out.count()
			sh.ctrlZ(t)
			sh.out.waitForFrom(t, mark, "Stopped(SIGTSTP)", 20*time.Second)
			run, sup, cmd := jobProcs(t, marker, func(run, sup, cmd proc) bool { return run.state == "T" && cmd.state == "T" },
				"mongolock run and the command stopped")
			if sup.state == "T" {
				t.Errorf("the supervising process is stopped too: %v", sup)
			}
			if locked, err := c.IsLocked(testCtx(t), key); err != nil || !locked {
				t.Errorf("IsLocked while suspended = %v, %v; want true", locked, err)
			}
			t.Logf("suspended:\n  %v\n  %v\n  %v", run, sup, cmd)

			// fg: the command is back in the foreground and reads the terminal.
			sh.typeLine(t, "fg")
			sh.typeLine(t, "one")
			sh.out.waitFor(t, "got-one", 20*time.Second)

			// Ctrl-Z again, then bg: the command runs in the background and
			// is stopped when it reads the terminal; so is the job.
			mark = sh.out.count()
			sh.ctrlZ(t)
			sh.out.waitForFrom(t, mark, "Stopped(SIGTSTP)", 20*time.Second)
			sh.typeLine(t, "bg")
			jobProcs(t, marker, func(run, sup, cmd proc) bool { return run.state == "T" && cmd.state == "T" },
				"the job stopped again by its read in the background")
			sh.waitJobs(t, "Stopped(SIGTTIN)")

			// fg: it reads this time, and the job ends normally.
			sh.typeLine(t, "fg")
			sh.typeLine(t, "two")
			sh.out.waitFor(t, "got-two", 20*time.Second)
			if tt.inSh {
				sh.out.waitFor(t, "script-2", 20*time.Second)
			}
			sh.typeLine(t, `echo "status=$?" | tr = :`)
			if line := sh.out.waitFor(t, "status:", 20*time.Second); !strings.HasSuffix(strings.TrimSpace(line), "status:0") {
				t.Errorf("the job ended with %q; want status:0", line)
			}
			checkReleased(t, c, key)
		})
	}
}

// A job suspended for longer than the lock's expiry has lost the lock: the
// supervising process kills the suspended command, and fg makes mongolock
// exit 70 instead of resuming it.
func TestRunSuspendedPastExpiry(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	const key = "suspended"
	marker := markerEnv(t)
	t.Cleanup(func() { killMarked(t, marker) })
	sh := startShell(t, marker)
	sh.typeLine(t, shellQuote(args([]string{binary, "run", "--key", key, "--expire", "2s", "--kill-grace", "1s"}, flags,
		[]string{"--", "sh", "-c", `echo "ready-$((1+1))"; read a; echo "got-$a"`})))
	sh.out.waitFor(t, "ready-2", 30*time.Second)
	mark := sh.out.count()
	sh.ctrlZ(t)
	sh.out.waitForFrom(t, mark, "Stopped(SIGTSTP)", 20*time.Second)

	waitProcs(t, marker, 30*time.Second, "the suspended command killed once the lock's deadline passed", func(ps []proc) bool {
		return len(withPrefix(ps, "sh -c")) == 0
	})
	if locked, err := c.IsLocked(testCtx(t), key); err != nil || locked {
		t.Errorf("IsLocked = %v, %v; want false: the lock expired while mongolock was stopped", locked, err)
	}
	sh.typeLine(t, "fg")
	sh.out.waitFor(t, "LOST the lock", 20*time.Second)
	sh.typeLine(t, `echo "status=$?" | tr = :`)
	if line := sh.out.waitFor(t, "status:", 20*time.Second); !strings.HasSuffix(strings.TrimSpace(line), "status:70") {
		t.Errorf("the job ended with %q; want status:70", line)
	}
}
