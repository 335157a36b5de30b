package embedded

// These tests cover the mongolock patches in internal/third_party/ferretdb
// that concern SQLite's storage (see its README.md).

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestWALBounded checks that the write-ahead log of a database in files
// stays bounded under the lock workload: a conditional findAndModify and an
// update of one document, over and over. Upstream FerretDB wrote each
// document while the query that had read it was still open; the checkpoint
// after every commit could then never complete, the WAL was never restarted,
// and it grew by about 8 KB per write, for ever (and every commit ran a
// checkpoint over all of it). SQLite checkpoints once the WAL holds 1,000
// pages (about 4 MB), so it must stay near that.
func TestWALBounded(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	s := start(t, Config{Dir: dir})
	coll := connect(t, s.URI()).Database("wal").Collection("locks")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const cycles = 800 // 1,600 writes: about 13 MB of WAL without the patch
	for i := range cycles {
		err := coll.FindOneAndUpdate(ctx,
			bson.D{{Key: "_id", Value: "k"}, {Key: "$or", Value: bson.A{
				bson.D{{Key: "locked", Value: false}}, bson.D{{Key: "locked", Value: bson.D{{Key: "$exists", Value: false}}}},
			}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "locked", Value: true}, {Key: "owner", Value: "me"}}},
				{Key: "$inc", Value: bson.D{{Key: "fence", Value: 1}}}},
			options.FindOneAndUpdate().SetUpsert(true)).Err()
		if err != nil && i > 0 {
			t.Fatalf("cycle %d: findAndModify: %v", i, err)
		}
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "owner", Value: "me"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "locked", Value: false}, {Key: "owner", Value: nil}}}}); err != nil {
			t.Fatalf("cycle %d: update: %v", i, err)
		}
	}

	fi, err := os.Stat(filepath.Join(dir, "wal.sqlite-wal"))
	if err != nil {
		t.Fatal(err)
	}
	const limit = 6 << 20
	if fi.Size() > limit {
		t.Errorf("WAL is %d bytes after %d lock cycles, want at most %d: checkpoints do not complete", fi.Size(), cycles, limit)
	}
}

// TestInMemory checks that an in-memory server works through the proxy and
// directly, on several databases, and writes no file.
func TestInMemory(t *testing.T) {
	t.Parallel()

	s := start(t, Config{InMemory: true})
	if s.Dir() != "" {
		t.Errorf("Dir() = %q, want \"\" in memory", s.Dir())
	}
	ctx := context.Background()

	db := "inmemory_" + randomName(t)
	coll := connect(t, s.URI()).Database(db).Collection("c")
	for i := range 3 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := connect(t, s.URI()).Database(db+"_other").Collection("c").InsertOne(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	n, err := connect(t, s.DirectURI()).Database(db).Collection("c").CountDocuments(ctx, bson.D{})
	if err != nil || n != 3 {
		t.Fatalf("CountDocuments = %d, %v; want 3", n, err)
	}

	// The URL's path only names the databases (see memorySQLiteURL).
	for _, name := range []string{db, db + "_other"} {
		if _, err := os.Stat(filepath.Join(os.TempDir(), name+".sqlite")); !os.IsNotExist(err) {
			t.Errorf("database %s has a file: %v", name, err)
		}
	}
}

// TestInMemoryOpenCursor checks that writes go through while a client keeps
// a cursor open. An in-memory database has a single SQLite connection;
// upstream FerretDB held it for as long as a query's iterator was open, so
// the write (and, behind the serializing proxy, every later request) waited
// for ever. The patched copy reads a query's rows before it releases the
// connection (see the FerretDB README).
func TestInMemoryOpenCursor(t *testing.T) {
	t.Parallel()

	s := start(t, Config{InMemory: true})
	coll := connect(t, s.URI()).Database("cursor").Collection("c")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const n = 10
	for i := range n {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "v", Value: 0}}); err != nil {
			t.Fatal(err)
		}
	}

	// No sort: FerretDB would read all rows to sort them.
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(context.Background())
	if !cur.Next(ctx) {
		t.Fatalf("first document: %v", cur.Err())
	}

	// Writes while the cursor is open, then the rest of the cursor (getMore).
	if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 5}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}}).Err(); err != nil {
		t.Fatalf("findAndModify while a cursor is open: %v", err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 6}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
		t.Fatalf("update while a cursor is open: %v", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: n}}); err != nil {
		t.Fatalf("insert while a cursor is open: %v", err)
	}

	got := 1
	for cur.Next(ctx) {
		got++
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	if got < n {
		t.Errorf("cursor returned %d documents, want at least the %d that existed when it was opened", got, n)
	}
}

// TestInMemoryWithDir checks that InMemory and Dir are not both accepted.
func TestInMemoryWithDir(t *testing.T) {
	t.Parallel()

	if s, err := Start(context.Background(), Config{InMemory: true, Dir: t.TempDir()}); err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Start accepted both InMemory and Dir")
	}
}

// randomName returns a name unique to this test run.
func randomName(t *testing.T) string {
	t.Helper()

	return strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_") + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// TestDropAndRecreate checks that the statements FerretDB keeps prepared
// (see the FerretDB README) still work after their collection is dropped
// and created again under the same name, in both storage modes.
func TestDropAndRecreate(t *testing.T) {
	t.Parallel()

	for _, cfg := range []Config{{InMemory: true}, {Dir: t.TempDir()}} {
		s := start(t, cfg)
		db := connect(t, s.URI()).Database("recreate")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		for round := range 3 {
			coll := db.Collection("c")
			for i := range 3 {
				err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "k"}},
					bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
					options.FindOneAndUpdate().SetUpsert(true)).Err()
				if err != nil && i > 0 {
					t.Fatalf("InMemory=%v round %d: findAndModify: %v", cfg.InMemory, round, err)
				}
			}
			var doc struct{ N int }
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "k"}}).Decode(&doc); err != nil || doc.N != 3 {
				t.Fatalf("InMemory=%v round %d: n = %d, %v; want 3", cfg.InMemory, round, doc.N, err)
			}
			drop := func(ctx context.Context) error { return coll.Drop(ctx) }
			if round%2 == 1 {
				drop = db.Drop
			}
			if err := drop(ctx); err != nil {
				t.Fatalf("InMemory=%v round %d: drop: %v", cfg.InMemory, round, err)
			}
		}
	}
}

// BenchmarkStartInsertClose measures what each test that starts a server of its
// own pays: Start, a first insert through the proxy, and Close, for a server
// in memory and for one in files (in a directory created for each).
//
// Run: go test -run '^$' -bench StartInsertClose -benchtime 200x ./internal/embedded/
func BenchmarkStartInsertClose(b *testing.B) {
	for _, mode := range []string{"memory", "files"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				cfg := Config{InMemory: true}
				if mode == "files" {
					cfg = Config{Dir: b.TempDir()}
				}
				s, err := Start(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Database("db").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
					b.Fatal(err)
				}
				if err := c.Disconnect(ctx); err != nil {
					b.Fatal(err)
				}
				if err := s.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
