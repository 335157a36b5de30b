package mongolocktest

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/internal/embedded"
)

func TestProxyableHost(t *testing.T) {
	t.Parallel()

	tests := []struct {
		uri, host string
		ok        bool
	}{
		{"mongodb://localhost", "localhost:27017", true},
		{"mongodb://127.0.0.1:27018/?directConnection=true", "127.0.0.1:27018", true},
		{"mongodb://user:pw@db.example:27017/admin?authSource=admin", "db.example:27017", true},
		{"mongodb://[::1]:27017/", "[::1]:27017", true},
		{"mongodb://a:27017,b:27017/?replicaSet=rs0", "", false},
		{"mongodb://localhost/?tls=true", "", false},
		{"mongodb://localhost/?ssl=true", "", false},
		{"mongodb://localhost/?loadBalanced=true", "", false},
		{"mongodb+srv://cluster.example.net/", "", false},
		{"mongodb://%2Ftmp%2Fmongodb-27017.sock", "", false},
		{"postgres://localhost", "", false},
	}

	for _, tc := range tests {
		host, reason := proxyableHost(tc.uri)
		if ok := reason == ""; ok != tc.ok || host != tc.host {
			t.Errorf("proxyableHost(%q) = %q, %q; want %q, ok=%v", tc.uri, host, reason, tc.host, tc.ok)
		}
	}
}

func TestReplaceHost(t *testing.T) {
	t.Parallel()

	tests := []struct{ uri, want string }{
		{"mongodb://localhost", "mongodb://127.0.0.1:1/?directConnection=true"},
		{"mongodb://u:p@h:27017/admin?w=majority", "mongodb://u:p@127.0.0.1:1/admin?directConnection=true&w=majority"},
		{"mongodb://h/?directConnection=false", "mongodb://127.0.0.1:1/?directConnection=true"},
	}

	for _, tc := range tests {
		got, err := replaceHost(tc.uri, "127.0.0.1:1")
		if err != nil || got != tc.want {
			t.Errorf("replaceHost(%q) = %q, %v; want %q", tc.uri, got, err, tc.want)
		}
	}
}

func TestFaultsSkipWithoutProxy(t *testing.T) {
	t.Parallel()

	faults := map[string]func(s *Server){
		"SetLatency":         func(s *Server) { s.SetLatency(time.Second) },
		"Pause":              func(s *Server) { s.Pause() },
		"Resume":             func(s *Server) { s.Resume() },
		"DropConnections":    func(s *Server) { s.DropConnections() },
		"DropReplies":        func(s *Server) { s.DropReplies(1, nil) },
		"DropNextReply":      func(s *Server) { s.DropNextReply("ping") },
		"ResetFaults":        func(s *Server) { s.ResetFaults() },
		"CommandCount":       func(s *Server) { s.CommandCount("ping") },
		"ResetCommandCounts": func(s *Server) { s.ResetCommandCounts() },
	}

	for name, f := range faults {
		var sub *testing.T
		t.Run(name, func(t *testing.T) {
			sub = t
			s := &Server{tb: t, uri: "mongodb+srv://example/", noFaults: "test reason"}
			if s.CanInjectFaults() {
				t.Error("CanInjectFaults() = true without a proxy")
			}
			f(s)
			t.Error("not skipped")
		})
		if !sub.Skipped() {
			t.Errorf("%s did not skip the test", name)
		}
	}
}

func TestEnvLogger(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "1": true, "debug": true} {
		t.Setenv(EnvLog, v)
		if got := envLogger() != nil; got != want {
			t.Errorf("%s=%q: logger = %v, want %v", EnvLog, v, got, want)
		}
	}
}

// TestStartInMemory checks that Start's server keeps its data in memory
// unless WithDataDir is given.
func TestStartInMemory(t *testing.T) {
	if os.Getenv(EnvURI) != "" {
		t.Skip("the server is " + EnvURI)
	}

	if dir := Start(t).embedded.Dir(); dir != "" {
		t.Errorf("default server's data directory is %q, want none (in memory)", dir)
	}
	want := t.TempDir()
	if dir := Start(t, WithDataDir(want)).embedded.Dir(); dir != want {
		t.Errorf("WithDataDir(%q): data directory %q", want, dir)
	}
}

// TestExternalURI uses MONGOLOCK_TEST_URI pointing at an embedded FerretDB
// started here, as if it were an external server.
func TestExternalURI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})

	t.Setenv(EnvURI, srv.URI())

	var db string
	t.Run("use", func(t *testing.T) {
		s := Start(t)
		db = s.Database()

		if s.Embedded() || s.DirectURI() != "" {
			t.Errorf("Embedded() = %v, DirectURI() = %q with %s", s.Embedded(), s.DirectURI(), EnvURI)
		}
		if !s.CanInjectFaults() || s.URI() == srv.URI() || !strings.Contains(s.URI(), "directConnection=true") {
			t.Fatalf("URI() = %q: want a proxy in front of %s", s.URI(), srv.URI())
		}
		if s.proxy.Upstream() != srv.Proxy().Addr() {
			t.Errorf("proxy upstream = %s, want %s", s.proxy.Upstream(), srv.Proxy().Addr())
		}

		coll := s.Client(t).Database(db).Collection("c")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
			t.Fatal(err)
		}

		s.DropNextReply("insert")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); !mongo.IsNetworkError(err) {
			t.Fatalf("insert with a dropped reply: %v, want a network error", err)
		}
		if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 2 {
			t.Fatalf("CountDocuments = %d, %v; want 2", n, err)
		}
	})

	// The database was dropped at the end of the subtest.
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()

	names, err := c.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if db == "" || slices.Contains(names, db) {
		t.Errorf("database %q still exists after cleanup: %v", db, names)
	}
}
