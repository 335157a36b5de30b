package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// binary is the mongolock command built once by TestMain, which the tests
// run as a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mongolock-cmd-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mongolock")
	if err := buildBinary(binary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}

	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds this package into path, without the race detector
// (the tests exercise the binary, not its memory model).
func buildBinary(path string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "build", "-o", path, ".")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build -o %s .: %v\n%s", path, err, out.String())
	}
	return nil
}

// result is how a run of the binary ended.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\n--- stdout:\n%s--- stderr:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// command returns an exec.Cmd for the binary with args, with env added to
// this process's environment less MONGOLOCK_URI, MONGOLOCK_DATABASE and
// MONGOLOCK_COLLECTION, in a session of its own
// (without the controlling terminal "go test" may have). It is killed when
// the test ends.
func command(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.WaitDelay = 5 * time.Second
	detach(cmd)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envURI+"=") && !strings.HasPrefix(kv, envDatabase+"=") && !strings.HasPrefix(kv, envCollection+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runBinary runs the binary to completion (at most a minute) with stdin
// as its standard input.
func runBinary(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := command(t, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	r := result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("mongolock %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// server starts a test server and returns it with the flags that point
// the binary at it.
func server(t *testing.T) (*mongolocktest.Server, []string) {
	t.Helper()
	srv := mongolocktest.Start(t)
	return srv, []string{"--uri", srv.URI(), "--database", srv.Database()}
}

// newClient connects a lock client to srv's database, closed when the
// test ends.
func newClient(t *testing.T, srv *mongolocktest.Server, opts ...mongolock.Option) *mongolock.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := mongolock.Connect(ctx, srv.URI(), append([]mongolock.Option{mongolock.WithDatabase(srv.Database())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if srv.CanInjectFaults() {
			srv.ResetFaults() // a paused server would hang Close
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// testCtx is a context for a test's own operations.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// args joins flag lists and arguments.
func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// lineReader collects a stream's lines and lets a test wait for one.
type lineReader struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // replaced each time a line is added
	all   bytes.Buffer
	eof   chan struct{} // closed when the stream ended
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{added: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(lr.eof)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.mu.Lock()
			lr.lines = append(lr.lines, sc.Text())
			lr.all.WriteString(sc.Text() + "\n")
			close(lr.added)
			lr.added = make(chan struct{})
			lr.mu.Unlock()
		}
	}()
	return lr
}

// waitFor waits until a line containing s has been read, and returns it.
func (lr *lineReader) waitFor(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	return lr.waitForFrom(t, 0, s, timeout)
}

// count returns how many lines have been read so far.
func (lr *lineReader) count() int {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return len(lr.lines)
}

// hasFrom reports whether a line containing s has been read after the
// first from lines.
func (lr *lineReader) hasFrom(from int, s string) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	for _, l := range lr.lines[min(from, len(lr.lines)):] {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// waitForFrom waits until a line containing s has been read, after the
// first from lines, and returns it.
func (lr *lineReader) waitForFrom(t *testing.T, from int, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		lr.mu.Lock()
		for _, l := range lr.lines[min(from, len(lr.lines)):] {
			if strings.Contains(l, s) {
				lr.mu.Unlock()
				return l
			}
		}
		added := lr.added
		lr.mu.Unlock()
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no line containing %q within %v; read:\n%s", s, timeout, lr.String())
		}
	}
}

func (lr *lineReader) String() string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.all.String()
}

// started is a binary running in the background.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *lineReader
	start          time.Time
	done           chan struct{}
	res            result
}

// startBinary starts the binary, with /dev/null as its standard input,
// and reads its output as it comes.
func startBinary(t *testing.T, env []string, args ...string) *started {
	t.Helper()
	return startBinaryInput(t, nil, env, args...)
}

// startBinaryInput is startBinary with stdin as standard input (nil:
// /dev/null).
func startBinaryInput(t *testing.T, stdin io.Reader, env []string, args ...string) *started {
	t.Helper()
	cmd := command(t, env, args...)
	cmd.Stdin = stdin
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	cmd.Stdout, cmd.Stderr = outW, errW
	s := &started{cmd: cmd, stdout: newLineReader(outR), stderr: newLineReader(errR), done: make(chan struct{})}
	s.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		_ = outW.Close()
		_ = errW.Close()
		s.res = result{code: cmd.ProcessState.ExitCode(), elapsed: time.Since(s.start)}
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// wait waits for the binary to exit and returns how it ended.
func (s *started) wait(t *testing.T, timeout time.Duration) result {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("still running after %v; stdout:\n%s\nstderr:\n%s", timeout, s.stdout, s.stderr)
	}
	<-s.stdout.eof
	<-s.stderr.eof
	r := s.res
	r.stdout, r.stderr = s.stdout.String(), s.stderr.String()
	return r
}

// closeLockClient closes a lock client a test connected itself.
func closeLockClient(c *mongolock.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
