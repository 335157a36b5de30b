package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// The uncontended benchmarks interleave, iteration by iteration, one cycle
// of the library (acquire + release) with the floor it is measured
// against: two raw driver findOneAndUpdate round trips on the same server,
// through the same proxy, with the same write concern. They report:
//
//	ns/op         the library's cycle
//	floor-ns/op   the two raw round trips
//	ratio         ns/op divided by floor-ns/op (target: <= 1.10)
//	roundtrips/op commands the library sent per cycle, counted at the proxy
//	              (hello samples of the server clock included)
//
// Run: go test -run '^$' -bench Uncontended -benchtime 3000x .

func BenchmarkUncontended(b *testing.B) {
	srv := mongolocktest.Start(b)
	c := newClient(b, srv)
	raw := srv.Client(b).Database(srv.Database()).Collection("floor",
		options.Collection().SetWriteConcern(writeconcern.Majority()).
			SetReadConcern(readconcern.Majority()).SetReadPreference(readpref.Primary()))
	ctx := context.Background()

	cycles := []struct {
		name string
		run  func(i int) error
	}{
		{"LockRelease", func(i int) error {
			ok, err := c.Lock(ctx, "bench", "owner", mongolock.Expire(time.Minute))
			if err != nil || !ok {
				return fmt.Errorf("Lock = %v, %v", ok, err)
			}
			return c.Release(ctx, "bench", "owner")
		}},
		{"TryAcquireRelease", func(i int) error {
			l, err := c.TryAcquire(ctx, "bench", mongolock.Owner("owner"), mongolock.Expire(time.Minute))
			if err != nil {
				return err
			}
			return l.Release(ctx)
		}},
	}
	for _, cy := range cycles {
		b.Run(cy.name, func(b *testing.B) {
			// Warm both paths (connections, clock sample) before measuring.
			for i := 0; i < 20; i++ {
				if err := cy.run(i); err != nil {
					b.Fatal(err)
				}
				if err := floorCycle(ctx, raw, i); err != nil {
					b.Fatal(err)
				}
			}
			srv.ResetCommandCounts()
			var lib, floor time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Alternate which goes first, so neither pays for the
				// other's after-effects (WAL checkpoints, GC) more often.
				lib1, floor1, err := timeBoth(i%2 == 0,
					func() error { return cy.run(i) },
					func() error { return floorCycle(ctx, raw, i) })
				if err != nil {
					b.Fatal(err)
				}
				lib += lib1
				floor += floor1
			}
			b.StopTimer()
			libCmds := srv.CommandCount("findAndModify") + srv.CommandCount("update") + srv.CommandCount("hello") -
				2*int64(b.N) // the floor's two findAndModify per iteration
			b.ReportMetric(float64(lib.Nanoseconds())/float64(b.N), "lib-ns/op")
			b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
			b.ReportMetric(float64(lib)/float64(floor), "ratio")
			b.ReportMetric(float64(libCmds)/float64(b.N), "roundtrips/op")
		})
	}
}

// timeBoth runs lib and floor, lib first if libFirst, and times each.
func timeBoth(libFirst bool, lib, floor func() error) (libD, floorD time.Duration, err error) {
	timed := func(f func() error, d *time.Duration) {
		if err != nil {
			return
		}
		t := time.Now()
		err = f()
		*d = time.Since(t)
	}
	if libFirst {
		timed(lib, &libD)
		timed(floor, &floorD)
	} else {
		timed(floor, &floorD)
		timed(lib, &libD)
	}
	return libD, floorD, err
}

// floorCycle is the raw driver's equivalent of an acquire and a release:
// two findOneAndUpdate round trips that write the same fields a lock
// document has (so both sides pay the server the same for the data), with
// the simplest filter, no checks and no decoding.
func floorCycle(ctx context.Context, coll *mongo.Collection, i int) error {
	return floorCycleKey(ctx, coll, "floor", i)
}

func floorCycleKey(ctx context.Context, coll *mongo.Collection, key string, i int) error {
	now := time.Now()
	opts := options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before)
	err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: key}},
		bson.D{
			{Key: "$set", Value: bson.D{
				{Key: "locked", Value: true}, {Key: "owner", Value: "owner"}, {Key: "created", Value: now},
				{Key: "expire", Value: now.Add(time.Minute)}, {Key: "token", Value: fmt.Sprintf("%032x", i)},
			}},
			{Key: "$max", Value: bson.D{{Key: "fence", Value: now.UnixMicro()}}},
		}, opts).Err()
	if err != nil && err != mongo.ErrNoDocuments {
		return err
	}
	return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: key}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil},
		}}}).Err()
}
