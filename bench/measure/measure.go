// Package measure runs the side-by-side measurements of this library
// (github.com/mongolock/mongolock) and github.com/square/mongo-lock on one
// embedded server (FerretDB 1.x on SQLite behind the serializing proxy, the
// same server the root module's tests and benchmarks use).
//
// This library uses the MongoDB Go driver v2, square/mongo-lock the v1
// driver; each gets its own driver client, with a command monitor, on the
// same server and database.
package measure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	lock "github.com/square/mongo-lock"
	bson1 "go.mongodb.org/mongo-driver/bson"
	event1 "go.mongodb.org/mongo-driver/event"
	mongo1 "go.mongodb.org/mongo-driver/mongo"
	options1 "go.mongodb.org/mongo-driver/mongo/options"
	writeconcern1 "go.mongodb.org/mongo-driver/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/internal/embedded"
)

// StartServer starts the embedded server (FerretDB on SQLite in a
// temporary directory, behind the serializing proxy). Close it when done.
func StartServer(ctx context.Context) (*embedded.Server, error) {
	return embedded.Start(ctx, embedded.Config{})
}

// Counter counts the commands a driver client sends, by command name, as
// its command monitor reports them.
type Counter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *Counter) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	c.counts[name]++
}

// Take returns the counts since the last Take and resets them.
func (c *Counter) Take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.counts
	c.counts = nil
	if m == nil {
		m = map[string]int{}
	}
	return m
}

// Env is the two libraries, each on its own monitored driver client, on
// one server and database.
type Env struct {
	V2, V1       *Counter
	mc2          *mongo.Client
	mc1          *mongo1.Client
	Ours         *mongolock.Client
	Square       *lock.Client
	SquareColl   *mongo1.Collection
	Raw          *mongo.Collection // for the raw driver floor (v2)
	IndexErr     error             // square's CreateIndexes, nil if it succeeded
	ownerCounter atomic.Int64
}

// Setup connects both libraries to db on the server at uri. Both use
// write concern majority (this library's default; square/mongo-lock uses
// the collection it is given, which is given majority here too).
func Setup(ctx context.Context, uri, db string) (*Env, error) {
	e := &Env{V2: &Counter{}, V1: &Counter{}}
	var err error
	e.mc2, err = mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(&event.CommandMonitor{
		Started: func(_ context.Context, ev *event.CommandStartedEvent) { e.V2.add(ev.CommandName) },
	}))
	if err != nil {
		return nil, err
	}
	e.mc1, err = mongo1.Connect(ctx, options1.Client().ApplyURI(uri).SetMonitor(&event1.CommandMonitor{
		Started: func(_ context.Context, ev *event1.CommandStartedEvent) { e.V1.add(ev.CommandName) },
	}))
	if err != nil {
		return nil, err
	}
	e.Ours, err = mongolock.New(e.mc2, mongolock.WithDatabase(db))
	if err != nil {
		return nil, err
	}
	e.SquareColl = e.mc1.Database(db).Collection("square",
		options1.Collection().SetWriteConcern(writeconcern1.New(writeconcern1.WMajority())))
	e.Square = lock.NewClient(e.SquareColl)
	// The unique index on "resource" is what makes XLock exclusive: without
	// it, XLock on a held resource upserts a second document.
	e.IndexErr = e.Square.CreateIndexes(ctx)
	e.Raw = e.mc2.Database(db).Collection("raw", options.Collection().SetWriteConcern(writeconcern.Majority()))
	// Warm both: connections, this library's server-clock sample.
	for i := 0; i < 5; i++ {
		if err := e.OursCycle(ctx, "warm"); err != nil {
			return nil, err
		}
		if err := e.SquareCycle(ctx, "warm"); err != nil {
			return nil, err
		}
		if err := RawCycle(ctx, e.Raw, "warm", i); err != nil {
			return nil, err
		}
	}
	e.V1.Take()
	e.V2.Take()
	return e, nil
}

// Close closes both clients.
func (e *Env) Close(ctx context.Context) {
	if e.Ours != nil {
		_ = e.Ours.Close(ctx)
	}
	if e.mc2 != nil {
		_ = e.mc2.Disconnect(ctx)
	}
	if e.mc1 != nil {
		_ = e.mc1.Disconnect(ctx)
	}
}

// OursAcquire is this library's TryAcquire (one findAndModify).
func (e *Env) OursAcquire(ctx context.Context, key string) (*mongolock.Lease, error) {
	return e.Ours.TryAcquire(ctx, key, mongolock.Owner("bench"), mongolock.KeepAlive(false))
}

// OursCycle is TryAcquire + Lease.Release.
func (e *Env) OursCycle(ctx context.Context, key string) error {
	l, err := e.OursAcquire(ctx, key)
	if err != nil {
		return err
	}
	return l.Release(ctx)
}

// SquareAcquire is square/mongo-lock's XLock (one findAndModify). The lock
// id is returned for the release.
func (e *Env) SquareAcquire(ctx context.Context, resource string) (string, error) {
	id := fmt.Sprintf("bench-%d", e.ownerCounter.Add(1))
	return id, e.Square.XLock(ctx, resource, id, lock.LockDetails{Owner: "bench", TTL: 60})
}

// SquareRelease releases an exclusive lock with exactly the query of
// square/mongo-lock's unexported xUnlock (one findAndModify). Its public
// Unlock first runs Status (an aggregation with $filter, which FerretDB
// 1.x rejects) to find the resources of the lock id, and then xUnlock for
// each: so on MongoDB a release is 2 round trips, of which this is the
// second.
func (e *Env) SquareRelease(ctx context.Context, resource, id string) error {
	res := e.SquareColl.FindOneAndUpdate(ctx,
		bson1.M{"resource": resource, "exclusive.lockId": id},
		bson1.M{"$set": bson1.M{"exclusive": bson1.M{
			"lockId": nil, "owner": nil, "host": nil, "comment": nil,
			"createdAt": nil, "renewedAt": nil, "expiresAt": nil, "acquired": false,
		}}},
		options1.FindOneAndUpdate().SetReturnDocument(options1.After))
	return res.Err()
}

// SquareCycle is XLock + the xUnlock query (see SquareRelease).
func (e *Env) SquareCycle(ctx context.Context, resource string) error {
	id, err := e.SquareAcquire(ctx, resource)
	if err != nil {
		return err
	}
	return e.SquareRelease(ctx, resource, id)
}

// SquareUnlock is square/mongo-lock's public Unlock.
func (e *Env) SquareUnlock(ctx context.Context, id string) error {
	_, err := e.Square.Unlock(ctx, id)
	return err
}

// RawCycle is the raw driver floor of a cycle: two findOneAndUpdate round
// trips by _id writing the fields of a lock document (as the root module's
// floorCycle).
func RawCycle(ctx context.Context, coll *mongo.Collection, key string, i int) error {
	now := time.Now()
	err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: key}},
		bson.D{
			{Key: "$set", Value: bson.D{
				{Key: "locked", Value: true}, {Key: "owner", Value: "owner"}, {Key: "created", Value: now},
				{Key: "expire", Value: now.Add(time.Minute)}, {Key: "token", Value: fmt.Sprintf("%032x", i)},
			}},
			{Key: "$max", Value: bson.D{{Key: "fence", Value: now.UnixMicro()}}},
		}, options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before)).Err()
	if err != nil && err != mongo.ErrNoDocuments {
		return err
	}
	return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: key}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil},
		}}}).Err()
}

// Latencies holds samples in the order taken.
type Latencies struct {
	OursAcquire, SquareAcquire []time.Duration // one acquisition each
	OursCycle, SquareCycle     []time.Duration // acquire + release
	RawCycle                   []time.Duration // two raw findOneAndUpdate
}

// MeasureLatency takes n samples of each, interleaved round by round in an
// order that rotates, so that no side pays for another's after-effects
// (SQLite checkpoints, GC) more often. Releases after the timed
// acquisitions are not timed.
func (e *Env) MeasureLatency(ctx context.Context, n int) (*Latencies, error) {
	var r Latencies
	timed := func(dst *[]time.Duration, f func() error) error {
		t := time.Now()
		err := f()
		*dst = append(*dst, time.Since(t))
		return err
	}
	steps := []func(i int) error{
		func(int) error {
			var l *mongolock.Lease
			if err := timed(&r.OursAcquire, func() (err error) { l, err = e.OursAcquire(ctx, "lat-ours"); return err }); err != nil {
				return err
			}
			return l.Release(ctx)
		},
		func(int) error {
			var id string
			if err := timed(&r.SquareAcquire, func() (err error) { id, err = e.SquareAcquire(ctx, "lat-square"); return err }); err != nil {
				return err
			}
			return e.SquareRelease(ctx, "lat-square", id)
		},
		func(int) error {
			return timed(&r.OursCycle, func() error { return e.OursCycle(ctx, "cyc-ours") })
		},
		func(int) error {
			return timed(&r.SquareCycle, func() error { return e.SquareCycle(ctx, "cyc-square") })
		},
		func(i int) error {
			return timed(&r.RawCycle, func() error { return RawCycle(ctx, e.Raw, "cyc-raw", i) })
		},
	}
	for i := 0; i < n; i++ {
		for j := range steps {
			if err := steps[(i+j)%len(steps)](i); err != nil {
				return nil, err
			}
		}
	}
	return &r, nil
}

// Throughput runs workers goroutines doing cycle on random keys out of
// keys for d, and returns completed cycles per second. A cycle that fails
// (the key was held by another worker) is not counted.
func Throughput(ctx context.Context, workers, keys int, d time.Duration, cycle func(key string, i int) error) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				if cycle(fmt.Sprintf("k%05d", rand.N(keys)), i) == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// Seed inserts keys released lock documents into this library's
// collection and the raw collection, as BenchmarkThroughput does.
func (e *Env) Seed(ctx context.Context, keys int) error {
	var docs []any
	for i := 0; i < keys; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("k%05d", i)}, {Key: "locked", Value: false}})
	}
	if _, err := e.Raw.InsertMany(ctx, docs); err != nil {
		return err
	}
	_, err := e.Ours.Collection().InsertMany(ctx, docs)
	return err
}
