// Package embedded runs FerretDB 1.x in-process, on SQLite, behind a
// serializing wire-protocol proxy.
//
// The databases are SQLite files in a data directory ([Config.Dir]), or,
// with [Config.InMemory], SQLite databases in memory: nothing is written to
// disk, and a server starts and works faster, but its data ends with it.
//
// FerretDB 1.x executes findAndModify as a read followed by a separate write,
// so two concurrent conditional updates of one document can both succeed. The
// [wireproxy.Proxy] in front of it forwards one command at a time, which
// restores per-document atomicity. Clients should use [Server.URI];
// [Server.DirectURI] bypasses the proxy and exists to demonstrate the
// difference.
//
// The package does not depend on package testing; it backs the test helpers
// as well as development servers.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/ferretdb"

	"github.com/mongolock/mongolock/internal/wireproxy"
)

// newMu serializes calls to ferretdb.New, which writes a package-level
// variable of FerretDB's version package.
var newMu sync.Mutex

// defaultStartTimeout bounds Start when its context has no deadline.
const defaultStartTimeout = 30 * time.Second

// Config configures [Start].
type Config struct {
	// Dir is the data directory for the SQLite databases. It is created if
	// needed and kept by Close. If empty, a temporary directory is used and
	// removed by Close, unless InMemory is set.
	Dir string

	// InMemory keeps the databases in memory instead of in files: the data
	// lasts as long as the server. Dir must then be empty. It suits tests,
	// which start a server of their own and want it fast.
	InMemory bool

	// Listen is the proxy's listen address. Empty means "127.0.0.1:0".
	// FerretDB itself always listens on a random loopback port.
	Listen string

	// Logger receives FerretDB's logs (which are verbose: every connection
	// at INFO, every error reply at WARN) and the proxy's debug messages.
	// Nil discards them.
	Logger *slog.Logger
}

// Server is a running FerretDB with a serializing proxy in front of it.
type Server struct {
	dir       string // "" when in memory
	removeDir bool

	directAddr string
	proxy      *wireproxy.Proxy

	cancel  context.CancelFunc
	runDone chan struct{} // closed when FerretDB's Run returns; nil if not run

	stopOnce    sync.Once
	stopErr     error
	cleanupOnce sync.Once
	cleanupErr  error
}

// Start starts FerretDB and the proxy and waits until a ping through the
// proxy succeeds. ctx bounds the start-up only (30 seconds when it has no
// deadline); the server runs until [Server.Close].
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}

	s := &Server{}

	defer func() {
		if err != nil {
			_ = s.Close(context.Background())
		}
	}()

	var sqliteURL string
	switch {
	case cfg.InMemory && cfg.Dir != "":
		return nil, fmt.Errorf("embedded: both a data directory (%s) and InMemory given", cfg.Dir)
	case cfg.InMemory:
		sqliteURL = memorySQLiteURL()
	default:
		if err := s.prepareDir(cfg.Dir); err != nil {
			return nil, err
		}
		sqliteURL = fileSQLiteURL(s.dir)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	fdb, err := newFerretDB(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}

	// The listener is already bound: ferretdb.New listens, Run accepts.
	u, err := url.Parse(fdb.MongoDBURI())
	if err != nil {
		return nil, fmt.Errorf("embedded: parse FerretDB URI: %w", err)
	}
	s.directAddr = u.Host

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.runDone = make(chan struct{})
	go func() {
		defer close(s.runDone)
		_ = fdb.Run(runCtx) // always nil; returns when runCtx is canceled
	}()

	s.proxy, err = wireproxy.New(s.directAddr, wireproxy.Options{
		Listen:    cfg.Listen,
		Serialize: true,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: start proxy: %w", err)
	}

	if err := waitReady(ctx, s.proxy.Addr()); err != nil {
		return nil, fmt.Errorf("embedded: FerretDB did not answer: %w", err)
	}

	return s, nil
}

// prepareDir creates the data directory, or a temporary one if dir is empty.
func (s *Server) prepareDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "mongolock-ferretdb-*")
		if err != nil {
			return fmt.Errorf("embedded: create data directory: %w", err)
		}
		s.dir, s.removeDir = tmp, true
		return nil
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("embedded: data directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return fmt.Errorf("embedded: create data directory: %w", err)
	}
	s.dir = abs

	return nil
}

// fileSQLiteURL returns FerretDB's SQLiteURL for the directory dir. FerretDB
// puts SQLite in WAL mode; synchronous(normal) makes a commit skip the
// fsync (the WAL is synced at checkpoints), which is still crash-safe for
// the database file and makes each write a fraction of a millisecond
// instead of about one: a bulk write of N updates is N commits.
func fileSQLiteURL(dir string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(dir) + "/", OmitHost: true,
		RawQuery: "_pragma=synchronous(normal)"}
	return u.String()
}

// memorySQLiteURL returns FerretDB's SQLiteURL for databases in memory.
//
// FerretDB's SQLite backend opens each database with the URL's path and
// query: with mode=memory, SQLite keeps the database in the memory of its
// connection and never opens the file the path names (FerretDB then gives
// each database a single connection, and the patched copy reads each query's
// rows before it releases that connection; see its README). The path must
// still be an existing directory; the system's temporary directory is only a
// name here.
func memorySQLiteURL() string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(os.TempDir()) + "/", OmitHost: true,
		RawQuery: "mode=memory"}
	return u.String()
}

// newFerretDB calls ferretdb.New under newMu.
func newFerretDB(cfg *ferretdb.Config) (*ferretdb.FerretDB, error) {
	newMu.Lock()
	defer newMu.Unlock()

	fdb, err := ferretdb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded: start FerretDB: %w", err)
	}

	return fdb, nil
}

// waitReady pings addr until it answers or ctx is done.
func waitReady(ctx context.Context, addr string) error {
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := wireproxy.Ping(pingCtx, addr)
		cancel()
		if err == nil {
			return nil
		}

		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

// URI returns the MongoDB URI of the proxy, with directConnection=true.
// Use it for everything except demonstrating FerretDB's own behaviour.
func (s *Server) URI() string {
	return "mongodb://" + s.proxy.Addr() + "/?directConnection=true"
}

// DirectURI returns the MongoDB URI of FerretDB itself, bypassing the
// proxy, with directConnection=true. Through it, findAndModify is not atomic.
func (s *Server) DirectURI() string {
	return "mongodb://" + s.directAddr + "/?directConnection=true"
}

// DirectAddr returns FerretDB's own listen address ("host:port").
func (s *Server) DirectAddr() string {
	return s.directAddr
}

// Proxy returns the serializing proxy in front of FerretDB, for fault
// injection and command counts.
func (s *Server) Proxy() *wireproxy.Proxy {
	return s.proxy
}

// Dir returns the data directory, or "" if the databases are in memory.
func (s *Server) Dir() string {
	return s.dir
}

// Close stops the proxy and FerretDB, waits for their goroutines and removes
// the data directory if Start created it.
//
// FerretDB gives clients still connected to it directly (through DirectURI)
// up to 3 seconds to disconnect before it drops them, so disconnect those
// clients first. If ctx ends before FerretDB has stopped, Close returns an
// error wrapping ctx's error; FerretDB keeps stopping in the background and
// a later Close waits for it again. Once FerretDB has stopped, further calls
// return the same result.
func (s *Server) Close(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if s.proxy != nil {
			if err := s.proxy.Close(); err != nil {
				s.stopErr = fmt.Errorf("embedded: %w", err)
			}
		}
		if s.cancel != nil {
			s.cancel()
		}
	})

	if s.runDone != nil {
		select {
		case <-s.runDone:
		case <-ctx.Done():
			return errors.Join(s.stopErr,
				fmt.Errorf("embedded: waiting for FerretDB to stop: %w", ctx.Err()))
		}
	}

	s.cleanupOnce.Do(func() {
		if !s.removeDir {
			return
		}
		if err := os.RemoveAll(s.dir); err != nil {
			s.cleanupErr = fmt.Errorf("embedded: remove data directory: %w", err)
		}
	})

	return errors.Join(s.stopErr, s.cleanupErr)
}
