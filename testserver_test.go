package mongolock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This package's own tests import nothing but the standard library and
// the driver: a module that imports the library loads them when it runs
// go mod tidy, so whatever they import would land in every user's go.mod.
// The few that need a server get `mongolock devserver`, built from this
// checkout's workspace and run as a process, or MONGOLOCK_TEST_URI. The
// tests that inject faults live in ./tests, with the test server
// (mongolocktest).

// TestMain stops the server the tests started, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	devserver.stop()
	os.Exit(code)
}

// devserver is the server this package's tests share, started by the first
// test that needs one.
var devserver testServer

type testServer struct {
	once sync.Once
	uri  string
	err  error
	cmd  *exec.Cmd
	dir  string
}

// testServerURI returns the URI of the shared server, starting it first.
func testServerURI() (string, error) {
	devserver.once.Do(devserver.start)
	return devserver.uri, devserver.err
}

func (s *testServer) start() {
	if uri := os.Getenv("MONGOLOCK_TEST_URI"); uri != "" {
		s.uri = uri
		return
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	dir, err := os.MkdirTemp("", "mongolock-devserver-*")
	if err != nil {
		s.err = err
		return
	}
	s.dir = dir
	bin := filepath.Join(dir, "mongolock")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race") // reuses the dependencies -race built
	}
	build := exec.Command(gobin, append(args, "github.com/mongolock/mongolock/cmd/mongolock")...)
	if out, err := build.CombinedOutput(); err != nil {
		s.err = fmt.Errorf("building mongolock devserver (it needs this checkout's go.work): %v\n%s", err, out)
		return
	}
	s.cmd = exec.Command(bin, "devserver", "--listen", "127.0.0.1:0")
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		s.err = err
		return
	}
	if err := s.cmd.Start(); err != nil {
		s.err = err
		return
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- strings.TrimSpace(sc.Text())
		}
		close(line)
	}()
	select {
	case uri, ok := <-line:
		if !ok || uri == "" {
			s.err = fmt.Errorf("mongolock devserver printed no URI:\n%s", stderr.String())
			return
		}
		s.uri = uri
	case <-time.After(time.Minute):
		s.err = fmt.Errorf("mongolock devserver did not start within a minute:\n%s", stderr.String())
	}
}

func (s *testServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// testClient connects a Client to the shared server, in a database of its
// own; it is closed when the test ends.
func testClient(t testing.TB, opts ...Option) *Client {
	t.Helper()
	uri, err := testServerURI()
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Connect(ctx, uri, append([]Option{WithDatabase("mongolock_" + hex.EncodeToString(b[:]))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Collection().Database().Drop(ctx)
		_ = c.Close(ctx)
	})
	return c
}
