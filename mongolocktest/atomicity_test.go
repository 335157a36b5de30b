package mongolocktest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/internal/atomicity"
	"github.com/mongolock/mongolock/mongolocktest"
)

// contention is the outcome of one run of the lock probe.
type contention struct {
	acquisitions int64 // successful acquisitions seen by the clients
	fence        int64 // final value of the document's fence counter
	maxHolders   int32 // most clients that believed they held the lock at once
}

// contend runs the probe from TEST-SERVER.md (internal/atomicity): goroutines
// clients try attempts times each to take a lease on one document with a
// conditional upsert, hold it briefly, and release it. When stopOnOverlap is
// set, it stops as soon as two holders overlap.
func contend(t *testing.T, client *mongo.Client, db string, goroutines, attempts int, stopOnOverlap bool) contention {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	coll := client.Database(db).Collection(fmt.Sprintf("locks_%d", time.Now().UnixNano()))
	r, err := atomicity.Round(ctx, coll, "k", atomicity.Config{
		Goroutines: goroutines, Attempts: attempts, Hold: time.Millisecond, StopOnOverlap: stopOnOverlap,
	})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return contention{acquisitions: r.Acquisitions, fence: r.Fence, maxHolders: r.MaxHolders}
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
