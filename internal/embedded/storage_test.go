package embedded

// These tests cover the mongolock patches in internal/third_party/ferretdb
// that concern SQLite's storage (see its README.md).

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
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
