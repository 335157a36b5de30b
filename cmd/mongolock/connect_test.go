package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// silentServer listens on a local port, accepts connections and never
// answers: a server that hangs. It returns the URI pointing at it.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "mongodb://" + ln.Addr().String() + "/?directConnection=true"
}

// refusedURI returns a URI of a local port nobody listens on: a server
// that is down.
func refusedURI(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "mongodb://" + addr + "/?directConnection=true"
}

// checkOneMessage fails the test unless standard error is one message
// with one "mongolock: " prefix and no driver topology dump.
func checkOneMessage(t *testing.T, r result) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "mongolock: ") {
		t.Errorf("stderr does not start with \"mongolock: \":\n%s", r.stderr)
	}
	for _, bad := range []string{"mongolock: mongolock:", ": mongolock: ", "current topology", "Usage:"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr contains %q:\n%s", bad, r.stderr)
		}
	}
}

// Connecting to a server that is down or hangs gives up at
// --connect-timeout, or at a command's --timeout when that is shorter, and
// says which. (The other limit is ten minutes in each case: the test
// finishing at all shows that the shorter one applied.)
func TestConnectBounded(t *testing.T) {
	t.Parallel()
	silent, refused := silentServer(t), refusedURI(t)
	marker := filepath.Join(t.TempDir(), "ran")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"run --timeout, server hangs", []string{"run", "--key", "k", "--uri", silent, "--timeout", "1s", "--connect-timeout", "10m", "--", "touch", marker}, "within 1s (--timeout)"},
		{"run --timeout, server down", []string{"run", "--key", "k", "--uri", refused, "--timeout", "1s", "--connect-timeout", "10m", "--", "touch", marker}, "within 1s (--timeout)"},
		{"run --connect-timeout", []string{"run", "--key", "k", "--uri", silent, "--timeout", "-1", "--connect-timeout", "1s", "--", "touch", marker}, "within 1s (--connect-timeout)"},
		{"status --connect-timeout", []string{"status", "--uri", silent, "--timeout", "10m", "--connect-timeout", "1s"}, "within 1s (--connect-timeout)"},
		{"status --timeout", []string{"status", "--uri", refused, "--timeout", "1s", "--connect-timeout", "10m"}, "within 1s (--timeout)"},
		{"release --connect-timeout", []string{"release", "k", "--force", "--uri", refused, "--connect-timeout", "1s"}, "within 1s (--connect-timeout)"},
		{"doctor --connect-timeout", []string{"doctor", "--uri", silent, "--connect-timeout", "1s"}, "within 1s (--connect-timeout)"},
		{"URI's serverSelectionTimeoutMS", []string{"status", "--uri", refused + "&serverSelectionTimeoutMS=500", "--connect-timeout", "10m"}, "within 500ms (serverSelectionTimeoutMS in the connection string)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, "", nil, tt.args...)
			if r.code != exitFailure {
				t.Errorf("exit code %d, want %d\n%s", r.code, exitFailure, r)
			}
			if !strings.Contains(r.stderr, "no answer from 127.0.0.1:") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not say there was no answer %s:\n%s", tt.want, r.stderr)
			}
			checkOneMessage(t, r)
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

// A wrong password is reported as an authentication failure, not as an
// unreachable server, and the password is not printed. (The embedded
// server refuses every SCRAM conversation with AuthenticationFailed, as a
// MongoDB server refuses a wrong password.)
func TestAuthenticationFailure(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)
	const password = "wrong-horse-battery"
	u, err := url.Parse(srv.URI())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("mongolock-nobody", password)
	uri := u.String()
	marker := filepath.Join(t.TempDir(), "ran")

	for _, line := range [][]string{
		{"status", "--uri", uri, "--database", srv.Database()},
		{"run", "--key", "auth", "--uri", uri, "--database", srv.Database(), "--", "touch", marker},
		{"release", "auth", "--force", "--uri", uri, "--database", srv.Database()},
	} {
		t.Run(line[0], func(t *testing.T) {
			r := runBinary(t, "", nil, line...)
			if r.code != exitFailure {
				t.Errorf("exit code %d, want %d\n%s", r.code, exitFailure, r)
			}
			if !strings.Contains(r.stderr, `authentication failed for user "mongolock-nobody"`) {
				t.Errorf("stderr does not report an authentication failure:\n%s", r.stderr)
			}
			for _, bad := range []string{"no answer", "unreachable", password} {
				if strings.Contains(r.stderr+r.stdout, bad) {
					t.Errorf("output contains %q:\n%s", bad, r)
				}
			}
			checkOneMessage(t, r)
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

// The driver's ways of reporting refused credentials are all classified
// as authentication failures, and nothing else is.
func TestIsAuthError(t *testing.T) {
	t.Parallel()
	serverSays := mongo.CommandError{Code: 18, Name: "AuthenticationFailed", Message: "Authentication failed."}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"server's AuthenticationFailed", serverSays, true},
		{"by code only", mongo.CommandError{Code: 18}, true},
		{"by name only", mongo.CommandError{Name: "AuthenticationFailed"}, true},
		{"driver's auth error", &auth.Error{}, true},
		{"in a handshake", topology.ConnectionError{Wrapped: &auth.Error{}}, true},
		{"wrapped", fmt.Errorf("pinging: %w", topology.ConnectionError{Wrapped: serverSays}), true},
		{"another command error", mongo.CommandError{Code: 13, Name: "Unauthorized"}, false},
		{"server selection", topology.ServerSelectionError{Wrapped: errors.New("context deadline exceeded")}, false},
		{"network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false},
	}
	for _, tt := range tests {
		if got := isAuthError(tt.err); got != tt.want {
			t.Errorf("%s: isAuthError(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// A malformed connection string is a usage error at once, whatever the
// malformation, and its password is not printed. (--connect-timeout is
// ten minutes: a command that tried to connect would not finish.)
func TestMalformedURI(t *testing.T) {
	t.Parallel()
	const pw = "s3cret-pw"
	for _, uri := range []string{
		"nonsense",
		"mongo://alice:" + pw + "@db1",
		"mongodb://",
		"mongodb://:27017",
		"mongodb://alice:" + pw + "@db 1:27017",
		"mongodb://db1:99999",
		"mongodb://db1:port",
		"mongodb://[::1",
		"mongodb://db1/?bogusOption=1",
		"mongodb://db1/?compressors=bogus",
		"mongodb://db1/?tlsCAFile=/nonexistent/ca.pem",
		"mongodb://db1/?readPreference=nearst",
		"mongodb://db1/?heartbeatFrequencyMS=1",
		"mongodb://alice@db1/?authMechanism=PLAIN",
		"mongodb://db1,db2/?directConnection=true",
		"mongodb://alice:" + pw + "@db1/?replicaSet=x&directConnection=true&loadBalanced=true",
	} {
		t.Run(uri, func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, "", nil, "status", "--uri", uri, "--connect-timeout", "10m")
			if r.code != exitUsage || !strings.Contains(r.stderr, "invalid connection string") {
				t.Errorf("want exit 2 and \"invalid connection string\":\n%s", r)
			}
			if strings.Contains(r.stderr, pw) {
				t.Errorf("the password was printed:\n%s", r.stderr)
			}
			checkOneMessage(t, r)
		})
	}
	// Every command that connects checks it the same way.
	for _, line := range [][]string{
		{"run", "--key", "k", "--", "true"},
		{"release", "k", "--force"},
		{"doctor"},
		{"demo"},
	} {
		t.Run(line[0], func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, "", nil, args(line[:1], []string{"--uri", "mongodb://:27017", "--connect-timeout", "10m"}, line[1:])...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "invalid connection string") {
				t.Errorf("want exit 2 and \"invalid connection string\":\n%s", r)
			}
		})
	}
}

// The library's errors start with "mongolock: " too; the command prints
// the prefix once.
func TestErrorsHaveOnePrefix(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	// A document of the wrong shape: the library reports it, prefixed.
	if _, err := srv.Client(t).Database(srv.Database()).Collection("lock").InsertOne(testCtx(t),
		bson.D{{Key: "_id", Value: "bad-shape"}, {Key: "locked", Value: "yes"}}); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, "", nil, args([]string{"status", "bad-shape"}, flags)...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "wrong shape") {
		t.Errorf("want exit 1 and the document's problem:\n%s", r)
	}
	checkOneMessage(t, r)
}

// Messages never blank out the letters of a short password elsewhere in
// the text, and always hide the password itself.
func TestRedactSecret(t *testing.T) {
	t.Parallel()
	tests := []struct{ text, uri, want string }{
		{"unreachable at mongodb://a:b@h", "mongodb://a:b@h", "unreachable at mongodb://a:xxxxx@h"},
		{"user a pw hunter2 failed", "mongodb://a:hunter2@h/?x=1", "user a pw xxxxx failed"},
		{"escaped p%40ss and p@ss", "mongodb://a:p%40ss@h", "escaped xxxxx and xxxxx"},
		{"mistyped scheme a:pw@h", "mongo://a:pw@h", "mistyped scheme a:xxxxx@h"},
		{"no password here", "mongodb://h", "no password here"},
	}
	for _, tt := range tests {
		if got := redactSecret(tt.text, tt.uri); got != tt.want {
			t.Errorf("redactSecret(%q, %q) = %q, want %q", tt.text, tt.uri, got, tt.want)
		}
	}
}
