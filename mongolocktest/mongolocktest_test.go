package mongolocktest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/mongolocktest"
)

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)

	return ctx
}

func TestStart(t *testing.T) {
	t.Parallel()

	s1 := mongolocktest.Start(t)
	s2 := mongolocktest.Start(t)

	if !strings.HasPrefix(s1.Database(), "mongolocktest_") || s1.Database() == s2.Database() {
		t.Errorf("databases %q and %q: want distinct mongolocktest_ names", s1.Database(), s2.Database())
	}
	if !strings.Contains(s1.URI(), "directConnection=true") {
		t.Errorf("URI() = %q, want directConnection=true", s1.URI())
	}
	if s1.Embedded() != (s1.DirectURI() != "") {
		t.Errorf("Embedded() = %v but DirectURI() = %q", s1.Embedded(), s1.DirectURI())
	}

	ctx := ctxTimeout(t, 30*time.Second)
	for _, s := range []*mongolocktest.Server{s1, s2} {
		c := s.Client(t)
		if err := c.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}

		coll := c.Database(s.Database()).Collection("c")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: s.Database()}}); err != nil {
			t.Fatal(err)
		}
	}

	// The databases are separate.
	n, err := s1.Client(t).Database(s1.Database()).Collection("c").CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Errorf("CountDocuments = %d, %v; want 1", n, err)
	}
}

// TestWithDataDir checks that WithDataDir keeps the data in SQLite files in
// the given directory.
func TestWithDataDir(t *testing.T) {
	t.Parallel()
	if os.Getenv(mongolocktest.EnvURI) != "" {
		t.Skip("WithDataDir has no effect with " + mongolocktest.EnvURI)
	}

	dir := t.TempDir()
	s := mongolocktest.Start(t, mongolocktest.WithDataDir(dir))

	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := s.Client(t).Database(s.Database()).Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, s.Database()+".sqlite")); err != nil {
		t.Errorf("no database file in the data directory: %v", err)
	}
}

func TestCommandCount(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	if !s.CanInjectFaults() {
		t.Skip("no proxy")
	}
	c := s.Client(t)
	ctx := ctxTimeout(t, 30*time.Second)

	if err := c.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s.ResetCommandCounts()

	for range 3 {
		if err := c.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.CommandCount("ping"); n != 3 {
		t.Errorf("CommandCount(ping) = %d, want 3", n)
	}
	if n := s.CommandCount("PING"); n != 3 {
		t.Errorf("CommandCount(PING) = %d, want 3", n)
	}
}

// pingTime returns how long one ping takes.
func pingTime(t *testing.T, c *mongo.Client) time.Duration {
	t.Helper()

	start := time.Now()
	if err := c.Ping(ctxTimeout(t, 30*time.Second), nil); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestSetLatency(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	c := s.Client(t)

	pingTime(t, c) // connect
	baseline := time.Hour
	for range 3 {
		baseline = min(baseline, pingTime(t, c))
	}

	const latency = 200 * time.Millisecond
	s.SetLatency(latency)
	if d := pingTime(t, c); d < latency || d < baseline+latency/2 {
		t.Errorf("ping with %v latency took %v (baseline %v)", latency, d, baseline)
	}

	s.SetLatency(0)
	if d := pingTime(t, c); d >= latency {
		t.Errorf("ping after removing latency took %v (baseline %v)", d, baseline)
	}
}

func TestPause(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	c := s.Client(t)
	pingTime(t, c)

	s.Pause()
	err := c.Ping(ctxTimeout(t, 200*time.Millisecond), nil)
	if err == nil {
		t.Fatal("ping succeeded while paused")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("ping while paused: %v", err)
	}

	s.Resume()
	pingTime(t, c)
}

func TestDropConnections(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	c := s.Client(t)
	pingTime(t, c)

	// An operation in flight: held by the latency when the connections go.
	s.SetLatency(5 * time.Second)
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(context.Background(), nil) }()
	time.Sleep(100 * time.Millisecond)

	s.DropConnections()
	start := time.Now()
	err := <-errc
	if !mongo.IsNetworkError(err) {
		t.Fatalf("in-flight ping: %v, want a network error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("in-flight ping failed only after %v", d)
	}

	// The client recovers on new connections.
	s.SetLatency(0)
	pingTime(t, c)

	// The next operation on a dropped (pooled) connection fails too.
	s.DropConnections()
	if err := c.Ping(ctxTimeout(t, 10*time.Second), nil); !mongo.IsNetworkError(err) {
		t.Fatalf("ping on a dropped connection: %v, want a network error", err)
	}
	pingTime(t, c)
}

func TestDropNextReply(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	ctx := ctxTimeout(t, 30*time.Second)

	// The embedded FerretDB is a standalone server, on which the driver does
	// not retry writes; a replica set (MONGOLOCK_TEST_URI) would retry once.
	client := s.Client(t, options.Client().SetRetryWrites(false))
	coll := client.Database(s.Database()).Collection("c")

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "n", Value: 0}}); err != nil {
		t.Fatal(err)
	}

	s.DropNextReply("findAndModify")
	err := coll.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: "k"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
	).Err()
	if !mongo.IsNetworkError(err) {
		t.Fatalf("findOneAndUpdate with a dropped reply: %v, want a network error", err)
	}

	// The write was applied, once.
	var doc struct{ N int }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "k"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.N != 1 {
		t.Errorf("n = %d after the lost reply, want 1 (applied once)", doc.N)
	}

	// Only the next one: the following findOneAndUpdate gets its reply.
	err = coll.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: "k"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After),
	).Decode(&doc)
	if err != nil || doc.N != 2 {
		t.Errorf("second findOneAndUpdate: n = %d, %v; want 2", doc.N, err)
	}

	// DropReplies with a matcher, for several commands.
	s.DropReplies(2, func(cmd string) bool { return cmd == "update" || cmd == "insert" })
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: true}}}}); !mongo.IsNetworkError(err) {
		t.Errorf("updateOne with a dropped reply: %v, want a network error", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "j"}}); !mongo.IsNetworkError(err) {
		t.Errorf("insertOne with a dropped reply: %v, want a network error", err)
	}
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "_id", Value: "k"}, {Key: "u", Value: true}},
		bson.D{{Key: "_id", Value: "j"}},
	}}})
	if err != nil || n != 2 {
		t.Errorf("documents written with lost replies: %d, %v; want 2", n, err)
	}
}

// TestClientCleanupResetsFaults checks that a test ending while the proxy is
// paused does not hang in the client's cleanup.
func TestClientCleanupResetsFaults(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)

	t.Run("paused", func(t *testing.T) {
		c := s.Client(t)
		pingTime(t, c)
		s.Pause()
	})

	pingTime(t, s.Client(t))
}
