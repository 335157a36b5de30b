package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mongolock/mongolock"
)

// openPTY opens a pseudo-terminal and returns its controller and its
// terminal side, or skips the test if there is none.
func openPTY(t *testing.T) (controller, tty *os.File) {
	t.Helper()
	controller, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = controller.Close() })
	fd := int(controller.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the terminal side: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return controller, tty
}

// startOnTerminal starts the binary in a session of its own whose
// controlling terminal is a fresh pseudo-terminal, as a shell would in an
// interactive terminal. It returns the binary, the terminal's output and
// the controller to type into.
func startOnTerminal(t *testing.T, args ...string) (*exec.Cmd, *lineReader, *os.File) {
	t.Helper()
	controller, tty := openPTY(t)
	cmd := command(t, nil, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = tty.Close() // the binary has it; the controller sees EOF once it exits
	out := newLineReader(splitCarriageReturns{controller})
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, out, controller
}

// splitCarriageReturns turns "\r" into "\n", so that a line rewritten in
// place on the terminal is read as several lines.
type splitCarriageReturns struct{ f *os.File }

func (s splitCarriageReturns) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	for i := range p[:n] {
		if p[i] == '\r' {
			p[i] = '\n'
		}
	}
	return n, err
}

func waitExit(t *testing.T, cmd *exec.Cmd, out *lineReader, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		t.Fatalf("still running after %v; terminal:\n%s", timeout, out)
		return -1
	}
}

// On a terminal, a wait longer than a second says who holds the lock and
// when it expires.
func TestRunWaitingOnTerminal(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	l, err := c.TryAcquire(testCtx(t), "tty", mongolock.Owner("tty-holder"), mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cmd, out, _ := startOnTerminal(t, args([]string{"run", "--key", "tty", "--timeout", "30s"}, flags, []string{"--", "echo", "ran-after-wait"})...)
	start := time.Now()
	line := out.waitFor(t, `held by "tty-holder"`, 10*time.Second)
	t.Logf("%v: %s", time.Since(start), line)
	if !strings.Contains(line, "waiting") || !strings.Contains(line, "expires in") {
		t.Errorf("waiting line %q does not say it waits and when the lock expires", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "ran-after-wait", 10*time.Second)
	t.Logf("%v: ran", time.Since(start))
	if code := waitExit(t, cmd, out, 10*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0; terminal:\n%s", code, out)
	}
}

// On a terminal, the waiting line of elect names the leader; that of a
// semaphore or a writer among readers counts the holders (whose own owner
// name is "*semaphore" or "*shared").
func TestRecipesWaitingOnTerminal(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	tests := []struct {
		name string
		hold func(t *testing.T) *mongolock.Lease
		line []string
		want string
	}{
		{"elect", func(t *testing.T) *mongolock.Lease {
			l, err := c.Election("tty-elect", mongolock.Owner("tty-leader")).Campaign(testCtx(t), "v")
			if err != nil {
				t.Fatal(err)
			}
			return l
		}, []string{"elect", "tty-elect"}, `to lead "tty-elect": led by "tty-leader", expires in`},
		{"limit", func(t *testing.T) *mongolock.Lease {
			var l *mongolock.Lease
			for range 2 { // the second is released; the first stays
				var err error
				if l, err = c.TryAcquire(testCtx(t), "tty-limit", mongolock.Limit(2)); err != nil {
					t.Fatal(err)
				}
			}
			return l
		}, []string{"run", "tty-limit", "--limit", "2", "--timeout", "60s"}, `for the lock "tty-limit": held by 2 holders (limit 2)`},
		{"writer", func(t *testing.T) *mongolock.Lease {
			l, err := c.TryAcquire(testCtx(t), "tty-shared", mongolock.Shared())
			if err != nil {
				t.Fatal(err)
			}
			return l
		}, []string{"run", "tty-shared", "--timeout", "60s"}, `for the lock "tty-shared": held by 1 reader`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.hold(t)
			cmd, out, _ := startOnTerminal(t, args(tt.line, flags, []string{"--", "echo", "ran-after-wait"})...)
			out.waitFor(t, tt.want, 60*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			out.waitFor(t, "ran-after-wait", 60*time.Second)
			if code := waitExit(t, cmd, out, 60*time.Second); code != 0 {
				t.Errorf("exit code %d, want 0; terminal:\n%s", code, out)
			}
		})
	}
}

// On a terminal, the command runs in the foreground: Ctrl-C reaches it
// once (from the terminal, not again through mongolock).
func TestRunCtrlCOnTerminal(t *testing.T) {
	t.Parallel()
	_, flags := server(t)
	script := `n=0; trap 'n=$((n+1))' INT; echo ready; i=0; while [ $i -lt 30 ]; do sleep 0.05; i=$((i+1)); done; echo "interrupts=$n"`
	cmd, out, controller := startOnTerminal(t, args([]string{"run", "--key", "ctrl-c"}, flags, []string{"--", "sh", "-c", script})...)
	out.waitFor(t, "ready", 20*time.Second)
	if _, err := controller.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	line := out.waitFor(t, "interrupts=", 10*time.Second)
	if !strings.HasSuffix(strings.TrimSpace(line), "interrupts=1") {
		t.Errorf("the command saw %q; want interrupts=1", line)
	}
	if code := waitExit(t, cmd, out, 20*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0; terminal:\n%s", code, out)
	}
}
