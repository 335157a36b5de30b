package mongolocktest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/mongolocktest"
)

// contention is the outcome of one run of the lock probe.
type contention struct {
	acquisitions int64 // successful acquisitions seen by the clients
	fence        int64 // final value of the document's fence counter
	maxHolders   int32 // most clients that believed they held the lock at once
}

// contend runs the probe from TEST-SERVER.md: goroutines clients try
// attempts times each to take a lease on one document with a conditional
// upsert, hold it briefly, and release it. When stopOnOverlap is set, it
// stops as soon as two holders overlap.
func contend(t *testing.T, client *mongo.Client, db string, goroutines, attempts int, stopOnOverlap bool) contention {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	coll := client.Database(db).Collection(fmt.Sprintf("locks_%d", time.Now().UnixNano()))
	const key = "k"

	var (
		holders, maxHolders atomic.Int32
		acquisitions        atomic.Int64
		wg                  sync.WaitGroup
	)

	for g := range goroutines {
		me := fmt.Sprintf("owner-%d", g)

		wg.Go(func() {
			for range attempts {
				if ctx.Err() != nil {
					return
				}

				now := time.Now()
				filter := bson.D{
					{Key: "_id", Value: key},
					{Key: "$or", Value: bson.A{
						bson.D{{Key: "expire", Value: bson.D{{Key: "$lt", Value: now}}}},
						bson.D{{Key: "owner", Value: me}},
					}},
				}
				update := bson.D{
					{Key: "$set", Value: bson.D{{Key: "owner", Value: me}, {Key: "expire", Value: now.Add(time.Hour)}}},
					{Key: "$inc", Value: bson.D{{Key: "fence", Value: 1}}},
				}
				err := coll.FindOneAndUpdate(ctx, filter, update,
					options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Err()
				switch {
				case mongo.IsDuplicateKeyError(err):
					continue // held by another owner: the upsert collided with it
				case err != nil:
					if ctx.Err() == nil {
						t.Errorf("acquire: %v", err)
					}
					return
				}

				acquisitions.Add(1)
				n := holders.Add(1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				if n > 1 && stopOnOverlap {
					cancel()
				}

				time.Sleep(time.Millisecond)
				holders.Add(-1)

				_, err = coll.UpdateOne(ctx,
					bson.D{{Key: "_id", Value: key}, {Key: "owner", Value: me}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}, {Key: "expire", Value: time.Unix(0, 0)}}}})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("release: %v", err)
					}
					return
				}
			}
		})
	}
	wg.Wait()

	var doc struct{ Fence int64 }
	readCtx, readCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer readCancel()
	if err := coll.FindOne(readCtx, bson.D{{Key: "_id", Value: key}}).Decode(&doc); err != nil {
		t.Fatalf("read fence: %v", err)
	}

	return contention{
		acquisitions: acquisitions.Load(),
		fence:        doc.Fence,
		maxHolders:   maxHolders.Load(),
	}
}

// TestAtomicity documents why the proxy exists: FerretDB 1.x executes
// findAndModify as a read followed by a write, so two clients can both
// "acquire" a lease directly, while through the serializing proxy at most
// one can.
func TestAtomicity(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	if !s.Embedded() {
		t.Skip("the atomicity demonstration needs the embedded FerretDB")
	}

	const goroutines, attempts = 16, 40

	t.Run("direct", func(t *testing.T) {
		t.Parallel()

		direct, err := mongo.Connect(options.Client().ApplyURI(s.DirectURI()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })

		const rounds = 5
		for round := 1; round <= rounds; round++ {
			res := contend(t, direct, s.Database(), goroutines, attempts, true)
			t.Logf("round %d: %d acquisitions, fence %d, at most %d holders at once",
				round, res.acquisitions, res.fence, res.maxHolders)
			if res.maxHolders > 1 {
				return // FerretDB let two clients hold the lease at once
			}
		}
		t.Errorf("no overlapping holders in %d rounds directly on FerretDB; "+
			"has findAndModify become atomic (see TEST-SERVER.md)?", rounds)
	})

	t.Run("proxy", func(t *testing.T) {
		t.Parallel()

		start := time.Now()
		res := contend(t, s.Client(t), s.Database(), goroutines, attempts, false)
		t.Logf("%d acquisitions, fence %d, at most %d holders at once, in %v",
			res.acquisitions, res.fence, res.maxHolders, time.Since(start))

		if res.maxHolders != 1 {
			t.Errorf("at most %d holders at once through the proxy, want 1", res.maxHolders)
		}
		if res.acquisitions != res.fence {
			t.Errorf("%d acquisitions but fence %d through the proxy: lost updates", res.acquisitions, res.fence)
		}
	})
}
