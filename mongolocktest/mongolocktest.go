// Package mongolocktest provides a MongoDB-compatible server for tests, with
// fault injection.
//
// [Start] runs FerretDB 1.x in the test process, on SQLite in memory, behind
// a wire-protocol proxy. Each call starts a server of its own and picks a
// fresh database name; everything is stopped and freed when the test ends. A
// server starts in a few milliseconds, and a Lock and Release through it take
// a quarter of a millisecond (docs/PERFORMANCE.md). [WithDataDir] keeps the
// data in SQLite files instead, as `mongolock devserver --data` does.
//
// FerretDB 1.x does not execute findAndModify atomically (it reads, then
// writes), so two concurrent conditional updates of one document can both
// succeed. The proxy behind [Server.URI] forwards one command at a time,
// which restores per-document atomicity; [Server.DirectURI] bypasses it.
//
// The proxy also injects faults, and counts commands ([Server.CommandCount]):
//
//   - latency ([Server.SetLatency]) and delays in one direction only, per
//     command ([Server.SetDelay], [Server.DelayNext]): a delayed request
//     reaches the server late, a delayed reply reaches the client late while
//     other commands run, so that it can arrive after the effect (and the
//     reply) of a later operation; delaying only the request or only the
//     reply of hello pushes a client's estimate of the server's clock to one
//     edge of its error bound;
//   - a pause ([Server.Pause]) and dropped connections
//     ([Server.DropConnections]);
//   - lost replies to applied commands ([Server.DropReplies]);
//   - MongoDB's error replies ([Server.FailNext]): a writeConcernError on a
//     write that was applied or not, and NotWritablePrimary,
//     PrimarySteppedDown and InterruptedAtShutdown before or after the
//     command is applied, as a replica set produces in an election or a
//     shutdown (the ready-made [Failure] values say what the Go driver does
//     with each).
//
// [Server.ResetFaults] removes them all.
//
// # Environment
//
// When MONGOLOCK_TEST_URI is set, Start uses that server instead of starting
// FerretDB, with a fresh database that is dropped when the test ends. If the
// URI is a plain single-host mongodb:// URI without TLS, a non-serializing
// proxy is put in front of it so that fault injection still works;
// otherwise [Server.URI] is the given URI and the fault methods skip the
// test.
//
// MONGOLOCKTEST_LOG=1 sends FerretDB's logs to standard error
// (MONGOLOCKTEST_LOG=debug includes debug messages).
package mongolocktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/mongolock/mongolock/internal/embedded"
	"github.com/mongolock/mongolock/internal/wireproxy"
)

// Environment variables read by [Start].
const (
	// EnvURI names the variable holding the URI of an existing server to
	// test against instead of an embedded FerretDB.
	EnvURI = "MONGOLOCK_TEST_URI"

	// EnvLog names the variable that turns on FerretDB's logs: "1" (or
	// any value but "0" and "") for INFO and above, "debug" for everything.
	EnvLog = "MONGOLOCKTEST_LOG"
)

// Timeouts for setting up and tearing down a server.
const (
	startTimeout   = 60 * time.Second
	cleanupTimeout = 30 * time.Second
)

// Option configures [Start].
type Option func(*config)

// config is the result of applying Options.
type config struct {
	logger  *slog.Logger
	dataDir string // "" for in memory
}

// WithLogger sends FerretDB's logs to logger. It takes precedence over
// MONGOLOCKTEST_LOG. FerretDB logs every connection at INFO and every error
// reply (duplicate keys included) at WARN.
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
}

// WithDataDir makes the server store its data in SQLite files in dir, as
// `mongolock devserver --data DIR` does, instead of in memory: durable and
// slower (see docs/PERFORMANCE.md). dir is created if needed and kept; pass
// tb.TempDir() for a directory that the test removes. An empty dir keeps the
// data in memory. It has no effect with MONGOLOCK_TEST_URI.
func WithDataDir(dir string) Option {
	return func(c *config) { c.dataDir = dir }
}

// Server is a test server started by [Start].
//
// Its fault methods (SetLatency, SetDelay, DelayNext, Pause, Resume,
// DropConnections, DropReplies, DropNextReply, FailNext, InjectedFailures,
// ResetFaults, CommandCount, ResetCommandCounts) act on the proxy behind
// URI, so they affect every client of this Server and nothing else. When
// there is no proxy (see [Server.CanInjectFaults]) they call Skip on the
// testing.TB given to Start, so they must then be called from the goroutine
// running that test. The methods are safe for concurrent use.
type Server struct {
	tb       testing.TB
	uri      string
	database string

	embedded *embedded.Server // nil with MONGOLOCK_TEST_URI
	proxy    *wireproxy.Proxy // nil when faults are unavailable

	// noFaults says why fault injection is unavailable ("" if available).
	noFaults string
}

// Start starts a server for the test tb and stops it when tb ends. It fails
// the test (tb.Fatalf) if the server cannot be started. See the package
// documentation for MONGOLOCK_TEST_URI.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()

	cfg := config{logger: envLogger()}
	for _, o := range opts {
		o(&cfg)
	}

	s := &Server{tb: tb, database: "mongolocktest_" + randomHex(8)}

	if uri := os.Getenv(EnvURI); uri != "" {
		if err := s.useExternal(uri); err != nil {
			tb.Fatalf("mongolocktest: %s: %v", EnvURI, err)
		}
		return s
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	if err := s.startEmbedded(ctx, cfg); err != nil {
		tb.Fatalf("mongolocktest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()

		if err := s.Close(ctx); err != nil {
			tb.Errorf("mongolocktest: %v", err)
		}
	})

	return s
}

// NewServer starts the embedded server outside of a test — for an
// example, a program or a benchmark harness — and returns it; Close stops
// it. It is the server Start gives a test (in memory unless WithDataDir),
// fault injection included, but it does not consult MONGOLOCK_TEST_URI. Its
// methods never skip or fail a test: there is none.
func NewServer(ctx context.Context, opts ...Option) (*Server, error) {
	cfg := config{logger: envLogger()}
	for _, o := range opts {
		o(&cfg)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	s := &Server{database: "mongolocktest_" + randomHex(8)}
	if err := s.startEmbedded(ctx, cfg); err != nil {
		return nil, fmt.Errorf("mongolocktest: %w", err)
	}
	return s, nil
}

// startEmbedded starts FerretDB and its proxy for s.
func (s *Server) startEmbedded(ctx context.Context, cfg config) error {
	ecfg := embedded.Config{InMemory: true, Logger: cfg.logger}
	if cfg.dataDir != "" {
		ecfg = embedded.Config{Dir: cfg.dataDir, Logger: cfg.logger}
	}
	srv, err := embedded.Start(ctx, ecfg)
	if err != nil {
		return fmt.Errorf("start FerretDB: %w", err)
	}
	s.embedded = srv
	s.proxy = srv.Proxy()
	s.uri = srv.URI()
	return nil
}

// Close stops the embedded server (a Server from Start is also stopped
// when its test ends; calling Close first is harmless). With
// MONGOLOCK_TEST_URI there is nothing to stop.
func (s *Server) Close(ctx context.Context) error {
	if s.embedded == nil {
		return nil
	}
	if err := s.embedded.Close(ctx); err != nil {
		return fmt.Errorf("stop FerretDB: %w", err)
	}
	return nil
}

// helper marks the caller as a test helper, when there is a test.
func (s *Server) helper() {
	if s.tb != nil {
		s.tb.Helper()
	}
}

// useExternal sets s up for the server at uri (MONGOLOCK_TEST_URI).
func (s *Server) useExternal(uri string) error {
	tb := s.tb

	admin, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := admin.Ping(ctx, nil); err != nil {
		_ = admin.Disconnect(ctx)
		return fmt.Errorf("ping: %w", err)
	}

	// Registered first, so it runs last: after the clients and the proxy.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()

		if err := admin.Database(s.database).Drop(ctx); err != nil {
			tb.Errorf("mongolocktest: drop database %s: %v", s.database, err)
		}
		if err := admin.Disconnect(ctx); err != nil {
			tb.Errorf("mongolocktest: disconnect: %v", err)
		}
	})

	upstream, reason := proxyableHost(uri)
	if reason != "" {
		s.uri = uri
		s.noFaults = fmt.Sprintf("fault injection needs a proxy, but %s %s", EnvURI, reason)
		return nil
	}

	p, err := wireproxy.New(upstream, wireproxy.Options{})
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("mongolocktest: stop proxy: %v", err)
		}
	})

	proxied, err := replaceHost(uri, p.Addr())
	if err != nil {
		return err
	}

	s.proxy = p
	s.uri = proxied

	return nil
}

// proxyableHost returns the "host:port" of uri if a plain TCP proxy can be
// put in front of it, or else a reason why not.
func proxyableHost(uri string) (host, reason string) {
	cs, err := connstring.Parse(uri)
	switch {
	case err != nil:
		return "", fmt.Sprintf("cannot be parsed (%v)", err)
	case cs.Scheme != connstring.SchemeMongoDB:
		return "", fmt.Sprintf("uses the %s:// scheme", cs.Scheme)
	case len(cs.Hosts) != 1:
		return "", fmt.Sprintf("has %d hosts", len(cs.Hosts))
	case cs.SSL:
		return "", "uses TLS"
	case cs.LoadBalanced:
		return "", "is load balanced"
	}

	host = cs.Hosts[0]
	if strings.HasSuffix(host, ".sock") {
		return "", "is a Unix domain socket"
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "27017")
	}

	return host, ""
}

// replaceHost returns uri with its host replaced by addr and
// directConnection=true.
func replaceHost(uri, addr string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("parse URI: %w", err)
	}

	u.Host = addr
	if u.Path == "" {
		u.Path = "/"
	}
	q := u.Query()
	q.Set("directConnection", "true")
	u.RawQuery = q.Encode()

	return u.String(), nil
}

// envLogger returns the logger selected by MONGOLOCKTEST_LOG, or nil.
func envLogger() *slog.Logger {
	level := slog.LevelInfo
	switch v := os.Getenv(EnvLog); strings.ToLower(v) {
	case "", "0", "false":
		return nil
	case "debug":
		level = slog.LevelDebug
	}

	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// randomHex returns 2n random hexadecimal digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}

// URI returns the MongoDB URI to connect to: the proxy, with
// directConnection=true, or the MONGOLOCK_TEST_URI itself when no proxy can
// be put in front of it.
func (s *Server) URI() string {
	return s.uri
}

// Database returns this server's database name, fresh for each Start
// ("mongolocktest_" and 16 hexadecimal digits).
func (s *Server) Database() string {
	return s.database
}

// Embedded reports whether the server is an embedded FerretDB (rather than
// MONGOLOCK_TEST_URI).
func (s *Server) Embedded() bool {
	return s.embedded != nil
}

// DirectURI returns the URI of the embedded FerretDB without the proxy, so
// without serialization (findAndModify is not atomic there) and without
// faults. It is "" when the server is not embedded.
func (s *Server) DirectURI() string {
	if s.embedded == nil {
		return ""
	}
	return s.embedded.DirectURI()
}

// Client returns a new driver client for [Server.URI], with opts applied
// after the URI. It is disconnected when tb ends; just before that, the
// server's faults are reset ([Server.ResetFaults]) so that the disconnect
// cannot hang on a paused proxy. It fails the test if the client cannot be
// created. The driver connects lazily: the first operation dials.
func (s *Server) Client(tb testing.TB, opts ...*options.ClientOptions) *mongo.Client {
	tb.Helper()

	all := append([]*options.ClientOptions{options.Client().ApplyURI(s.uri)}, opts...)
	client, err := mongo.Connect(all...)
	if err != nil {
		tb.Fatalf("mongolocktest: connect: %v", err)
	}

	tb.Cleanup(func() {
		if s.proxy != nil {
			s.proxy.ResetFaults()
		}

		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()

		if err := client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
			tb.Errorf("mongolocktest: disconnect: %v", err)
		}
	})

	return client
}

// CanInjectFaults reports whether the fault methods work. It is false only
// with a MONGOLOCK_TEST_URI that cannot be proxied; the fault methods then
// skip the test.
func (s *Server) CanInjectFaults() bool {
	return s.proxy != nil
}

// faults returns the proxy, or skips the test that called Start.
func (s *Server) faults() *wireproxy.Proxy {
	s.helper()

	if s.proxy == nil {
		// Only Start, with a MONGOLOCK_TEST_URI that cannot be proxied,
		// leaves a Server without a proxy, and so with a test.
		s.tb.Skip("mongolocktest: " + s.noFaults)
	}
	return s.proxy
}

// SetLatency delays each request by d before it is forwarded to the server
// (zero removes the delay). It is a request delay for every command; see
// [Server.SetDelay].
func (s *Server) SetLatency(d time.Duration) {
	s.helper()

	s.faults().SetLatency(d)
}

// SetDelay delays every request for command cmd (compared without regard to
// case; "" means every command) by request before it is forwarded to the
// server, and its reply by reply before the client gets it. A later call
// for the same cmd replaces the delays; zero for both removes them. Delays
// add up: SetLatency, SetDelay(""), SetDelay(cmd) and a [Server.DelayNext].
//
// A delayed request holds up nothing else. A delayed reply is held back
// after the command has been executed and the proxy has let the next
// command through, so other clients' commands run meanwhile and the reply
// can arrive after the effect and the reply of a later operation. Replies on
// one connection keep their order.
//
// Delaying only the request of "hello" makes the server's localTime late
// within the client's round trip, delaying only the reply makes it early:
// a client that brackets localTime by its round trip then sees the
// server's clock at one edge of its error bound. Delays apply to the
// drivers' own hello commands as well (monitoring, and the handshake of new
// connections when it is sent as "hello" rather than "isMaster"), whose
// round-trip estimates grow accordingly.
func (s *Server) SetDelay(cmd string, request, reply time.Duration) {
	s.helper()

	s.faults().SetDelay(cmd, request, reply)
}

// DelayNext delays the next n requests for command cmd (compared without
// regard to case; "" means every command) by request, and their replies by
// reply, in addition to the delays of [Server.SetDelay]. Requests are
// matched as they reach the proxy; each uses up at most one DelayNext rule.
// Rules from several calls accumulate.
//
// DelayNext(1, "findAndModify", 0, d) makes the reply to the next
// findAndModify arrive after the replies to the findAndModify commands that
// other clients send during d, although it was executed before them.
func (s *Server) DelayNext(n int, cmd string, request, reply time.Duration) {
	s.helper()

	s.faults().DelayNext(n, matchCommand(cmd), request, reply)
}

// Pause holds every request sent from now on (the connections stay open)
// until [Server.Resume]: operations block until their context ends.
func (s *Server) Pause() {
	s.helper()

	s.faults().Pause()
}

// Resume lets the requests held by [Server.Pause] through.
func (s *Server) Resume() {
	s.helper()

	s.faults().Resume()
}

// DropConnections closes every connection currently open through the proxy,
// on both sides. Operations in flight fail with a network error; clients
// reconnect afterwards.
func (s *Server) DropConnections() {
	s.helper()

	s.faults().DropConnections()
}

// DropReplies makes the next n requests whose command name satisfies match
// (nil matches all) lose their reply: the command is executed by the server,
// its reply is discarded and the client connection is closed, so the client
// sees a network error although the command was applied. Rules from several
// calls accumulate. match must not call the Server's methods.
//
// The embedded FerretDB presents itself as a standalone server, on which the
// driver does not retry writes; against a replica set (MONGOLOCK_TEST_URI)
// the driver retries a retryable write once, so drop two replies to make it
// fail.
func (s *Server) DropReplies(n int, match func(cmd string) bool) {
	s.helper()

	s.faults().DropReplies(n, match)
}

// DropNextReply makes the next request for command cmd (compared without
// regard to case, e.g. "findAndModify", "update", "insert") lose its reply,
// as [Server.DropReplies] does.
func (s *Server) DropNextReply(cmd string) {
	s.helper()

	s.faults().DropReplies(1, func(c string) bool { return strings.EqualFold(c, cmd) })
}

// Failure is an error reply that [Server.FailNext] sends instead of the
// server's. Use the ready-made values (WriteConcernErrorApplied,
// NotWritablePrimaryBefore, ...), or describe another error.
//
// With WriteConcern false, the reply is a command error {ok: 0, errmsg,
// code, codeName}; the Go driver returns it as a [mongo.CommandError]
// (use [mongo.ServerError]'s HasErrorCode). With WriteConcern true, it is
// {ok: 1, ..., writeConcernError: {code, codeName, errmsg}}; the driver
// returns a [mongo.WriteException] whose WriteConcernError is set. For code
// 64 (WriteConcernFailed) the writeConcernError has errInfo: {wtimeout:
// true}, as when a write concern's wtimeout expires. Labels, if any, are the
// reply's errorLabels.
type Failure struct {
	// Code and CodeName are the error's code and name.
	Code     int32
	CodeName string

	// Message is the error message (errmsg). Empty means
	// "<CodeName> (injected by wireproxy)".
	Message string

	// WriteConcern makes the reply {ok: 1} with a writeConcernError, rather
	// than an {ok: 0} command error.
	WriteConcern bool

	// Applied sends the command to the server first: it is executed, and
	// then the client gets the failure. With WriteConcern, the server's
	// reply is kept and the writeConcernError added; otherwise the server's
	// reply is discarded.
	//
	// Without Applied the command does not reach the server. With
	// WriteConcern the reply then says nothing was written: n: 0 (and
	// nModified: 0 for update); for findAndModify, value: null and
	// lastErrorObject: {n: 0, updatedExisting: false}.
	Applied bool

	// Labels are the reply's errorLabels. A replica set member labels
	// errors of retryable writes "RetryableWriteError".
	Labels []string
}

// WithLabels returns a copy of f whose errorLabels are labels, e.g.
// NotWritablePrimaryBefore.WithLabels("RetryableWriteError").
func (f Failure) WithLabels(labels ...string) Failure {
	f.Labels = slices.Clone(labels)
	return f
}

// Ready-made failures for [Server.FailNext]. "Before" fails the command
// without executing it, "After" executes it and then fails it. What the Go
// driver (v2.10) does with each, observed against the embedded FerretDB,
// which presents itself as a standalone server:
//
//   - It never retries a write on a standalone server, whatever the error
//     and its labels (retryable writes need a replica set): the error
//     reaches the caller, and a "Before" write is simply not done.
//   - It retries reads (find, aggregate, ...) on all of these but the write
//     concern errors, even on a standalone server: once when the context
//     has no deadline, and as often as the deadline allows when it has one.
//     Each retry goes through the proxy, so fail as many requests as needed.
//   - WriteConcernErrorApplied, WriteConcernErrorNotApplied: a
//     [mongo.WriteException] whose WriteConcernError has code 64 (and
//     Details {wtimeout: true}), without write errors; FindOneAndUpdate and
//     its kin return it without a document. The driver's view of the server
//     does not change.
//   - NotWritablePrimaryBefore, NotWritablePrimaryAfter (code 10107),
//     PrimarySteppedDownBefore, PrimarySteppedDownAfter (189): a
//     [mongo.CommandError] with that code, name and message. The driver
//     marks the server Unknown and asks for a new check, which it makes at
//     most once per 500 ms: the next operation waits for it (about half a
//     second). Its connection pool is kept.
//   - InterruptedAtShutdownBefore, InterruptedAtShutdownAfter (11600): the
//     same, and the driver also clears its connection pool, so the next
//     operation runs on a new connection.
//
// Against a replica set (MONGOLOCK_TEST_URI), a write the driver retries
// goes through the proxy again; see [Server.FailNext].
//
// The values carry no errorLabels; see [Failure.WithLabels]. FailNext copies
// its argument.
var (
	// WriteConcernErrorApplied executes the write, then adds to the
	// server's reply a writeConcernError "waiting for replication timed
	// out" (code 64, errInfo {wtimeout: true}): the write was done, but not
	// confirmed as replicated.
	WriteConcernErrorApplied = Failure{
		Code: 64, CodeName: "WriteConcernFailed", Message: "waiting for replication timed out",
		WriteConcern: true, Applied: true,
	}

	// WriteConcernErrorNotApplied replies {ok: 1} with zero counts and the
	// same writeConcernError without executing the write, as when a write
	// that timed out waiting for replication is then rolled back.
	WriteConcernErrorNotApplied = Failure{
		Code: 64, CodeName: "WriteConcernFailed", Message: "waiting for replication timed out",
		WriteConcern: true,
	}

	// NotWritablePrimaryBefore refuses the command with NotWritablePrimary
	// (10107) without executing it: the server is no longer primary.
	NotWritablePrimaryBefore = Failure{Code: 10107, CodeName: "NotWritablePrimary", Message: "not primary"}

	// NotWritablePrimaryAfter executes the command, then fails it with
	// NotWritablePrimary (10107).
	NotWritablePrimaryAfter = Failure{
		Code: 10107, CodeName: "NotWritablePrimary", Message: "not primary", Applied: true,
	}

	// PrimarySteppedDownBefore fails the command with PrimarySteppedDown
	// (189) without executing it.
	PrimarySteppedDownBefore = Failure{
		Code: 189, CodeName: "PrimarySteppedDown", Message: "primary stepped down",
	}

	// PrimarySteppedDownAfter executes the command, then fails it with
	// PrimarySteppedDown (189), as when the primary steps down while the
	// command waits for its write concern.
	PrimarySteppedDownAfter = Failure{
		Code: 189, CodeName: "PrimarySteppedDown", Message: "primary stepped down", Applied: true,
	}

	// InterruptedAtShutdownBefore fails the command with
	// InterruptedAtShutdown (11600) without executing it.
	InterruptedAtShutdownBefore = Failure{
		Code: 11600, CodeName: "InterruptedAtShutdown", Message: "interrupted at shutdown",
	}

	// InterruptedAtShutdownAfter executes the command, then fails it with
	// InterruptedAtShutdown (11600).
	InterruptedAtShutdownAfter = Failure{
		Code: 11600, CodeName: "InterruptedAtShutdown", Message: "interrupted at shutdown", Applied: true,
	}
)

// FailNext makes the next n requests for command cmd (compared without
// regard to case, e.g. "update", "findAndModify", "delete", "insert"; ""
// means every command, the drivers' hello included) fail with f instead of
// getting the server's reply; see [Failure] and the ready-made values for
// what the driver does. Requests are matched in the order the proxy lets
// them through to the server; each uses up at most one FailNext or
// DropReplies rule, FailNext first. Rules from several calls accumulate.
// Commands that are not executed (without f.Applied) are not counted by
// [Server.CommandCount]; [Server.InjectedFailures] counts the failures.
//
// Against a replica set (MONGOLOCK_TEST_URI) of MongoDB 4.4 or later, the
// driver retries a write that fails with the label "RetryableWriteError"
// (which f must then carry: see [Failure.WithLabels]): once when the
// context has no deadline, as often as the deadline allows when it has one. Reads are retried the same way,
// even on a standalone server, with or without labels.
func (s *Server) FailNext(n int, cmd string, f Failure) {
	s.helper()

	s.faults().FailNext(n, matchCommand(cmd), wireproxy.Failure{
		Code:         f.Code,
		CodeName:     f.CodeName,
		Message:      f.Message,
		WriteConcern: f.WriteConcern,
		Applied:      f.Applied,
		Labels:       slices.Clone(f.Labels),
	})
}

// InjectedFailures returns how many replies [Server.FailNext] has replaced
// since Start.
func (s *Server) InjectedFailures() int64 {
	s.helper()

	return s.faults().Failed()
}

// matchCommand returns a matcher for command name cmd, compared without
// regard to case; "" matches every command.
func matchCommand(cmd string) func(string) bool {
	if cmd == "" {
		return nil
	}
	return func(c string) bool { return strings.EqualFold(c, cmd) }
}

// ResetFaults removes every fault: the latency and the delays, a pause, and
// the pending DelayNext, DropReplies and FailNext rules. Delays being waited
// out end at once: held requests go to the server, held replies to their
// clients. It does not reset the command counts nor InjectedFailures.
func (s *Server) ResetFaults() {
	s.helper()

	s.faults().ResetFaults()
}

// CommandCount returns how many cmd requests (compared without regard to
// case) went through the proxy since Start or [Server.ResetCommandCounts],
// from all clients, the drivers' monitoring included (hello, isMaster).
func (s *Server) CommandCount(cmd string) int64 {
	s.helper()

	var n int64
	for c, k := range s.faults().Counts() {
		if strings.EqualFold(c, cmd) {
			n += k
		}
	}
	return n
}

// ResetCommandCounts sets all command counts to zero.
func (s *Server) ResetCommandCounts() {
	s.helper()

	s.faults().ResetCounts()
}
