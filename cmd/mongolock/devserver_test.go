package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// devserver prints a URI that works, keeps its data in --data (or removes
// its temporary directory), and stops cleanly on SIGTERM and SIGINT.
func TestDevserver(t *testing.T) {
	t.Parallel()
	data := t.TempDir()

	// startDev starts devserver and returns it with its URI and data
	// directory.
	startDev := func(t *testing.T, extra ...string) (*started, string, string) {
		t.Helper()
		p := startBinary(t, nil, args([]string{"devserver", "--listen", "127.0.0.1:0"}, extra)...)
		uri := p.stdout.waitFor(t, "mongodb://", 60*time.Second)
		dir := regexp.MustCompile(`data: (\S+)`).FindStringSubmatch(p.stderr.waitFor(t, "data: ", 5*time.Second))[1]
		return p, uri, dir
	}
	connect := func(t *testing.T, uri string) *mongolock.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := mongolock.Connect(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	stop := func(t *testing.T, p *started, sig syscall.Signal) {
		t.Helper()
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if r := p.wait(t, 20*time.Second); r.code != 0 || !strings.Contains(r.stderr, "stopped") {
			t.Errorf("after %v: want exit 0 and a clean stop:\n%s", sig, r)
		}
	}

	t.Run("data kept", func(t *testing.T) {
		p, uri, dir := startDev(t, "--data", data)
		if dir != data {
			t.Errorf("data directory %s, want %s", dir, data)
		}
		c := connect(t, uri)
		if ok, err := c.Lock(testCtx(t), "kept", "me"); !ok || err != nil {
			t.Fatal(ok, err)
		}
		closeLockClient(c)
		stop(t, p, syscall.SIGTERM)

		// Started again on the same data, the lock is still there.
		p, uri, _ = startDev(t, "--data", data)
		c = connect(t, uri)
		info, err := c.Info(testCtx(t), "kept")
		closeLockClient(c)
		if err != nil || !info.Locked || info.Owner != "me" {
			t.Errorf("after a restart, Info = %+v, %v; want held by me", info, err)
		}
		stop(t, p, syscall.SIGINT)
		if entries, err := os.ReadDir(data); err != nil || len(entries) == 0 {
			t.Errorf("data directory empty or gone after the stop: %v", err)
		}
	})

	t.Run("temporary data", func(t *testing.T) {
		p, uri, dir := startDev(t)
		if !strings.Contains(p.stderr.String(), "temporary") {
			t.Errorf("does not say the data is temporary:\n%s", p.stderr)
		}
		c := connect(t, uri)
		if ok, err := c.Lock(testCtx(t), "k", "me"); !ok || err != nil {
			t.Fatal(ok, err)
		}
		closeLockClient(c)
		stop(t, p, syscall.SIGTERM)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("temporary data directory %s not removed: %v", dir, err)
		}
	})

	t.Run("bad --listen", func(t *testing.T) {
		for _, listen := range []string{"nonsense", "127.0.0.1:99999", "127.0.0.1:-1", "localhost:http2", "a b:27017", "127.0.0.1"} {
			r := runBinary(t, "", nil, "devserver", "--listen", listen)
			if r.code != exitUsage || !strings.Contains(r.stderr, "--listen") || r.stdout != "" {
				t.Errorf("--listen %q: want exit 2 naming --listen, and no server:\n%s", listen, r)
			}
		}
	})

	t.Run("address in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		r := runBinary(t, "", nil, "devserver", "--listen", ln.Addr().String())
		if r.code != exitFailure || !strings.Contains(r.stderr, ln.Addr().String()) {
			t.Errorf("want exit 1 naming the address:\n%s", r)
		}
	})
}
