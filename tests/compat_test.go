package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// pythonWorker sends exactly the queries of the Python package mongolock
// (MongoLock.lock, _try_get_lock and release), with its own clock.
type pythonWorker struct {
	coll  *mongo.Collection
	owner string
}

func (p pythonWorker) lock(ctx context.Context, key string, expire time.Duration) (bool, error) {
	now := time.Now().UTC()
	var exp any
	if expire > 0 {
		exp = now.Add(expire)
	}
	_, err := p.coll.InsertOne(ctx, bson.D{
		{Key: "_id", Value: key}, {Key: "locked", Value: true}, {Key: "owner", Value: p.owner},
		{Key: "created", Value: now}, {Key: "expire", Value: exp},
	})
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, err
	}
	res, err := p.coll.ReplaceOne(ctx,
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "_id", Value: key}, {Key: "locked", Value: false}},
			bson.D{{Key: "_id", Value: key}, {Key: "expire", Value: bson.D{{Key: "$lt", Value: now}}}},
		}}},
		bson.D{{Key: "locked", Value: true}, {Key: "owner", Value: p.owner}, {Key: "created", Value: now}, {Key: "expire", Value: exp}})
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}

func (p pythonWorker) release(ctx context.Context, key string) error {
	err := p.coll.FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: key}, {Key: "owner", Value: p.owner}},
		bson.D{{Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	return err
}

// TestPythonCompatibility: a worker that speaks the Python package's
// queries and a Go worker exclude each other on one collection, both ways.
func TestPythonCompatibility(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	goc := newClient(t, srv)
	py := pythonWorker{coll: srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection), owner: "py-worker"}

	t.Run("go holds, python waits", func(t *testing.T) {
		mustLock(t, goc, "a", "go-worker")
		if ok, err := py.lock(ctx, "a", 0); ok || err != nil {
			t.Fatalf("python lock on a Go-held lock = %v, %v; want false", ok, err)
		}
		if err := py.release(ctx, "a"); err != nil { // releases nothing: not its owner name
			t.Fatal(err)
		}
		if info := mustInfo(t, goc, "a"); !info.Locked || info.Owner != "go-worker" {
			t.Fatalf("after python's release of a lock it does not hold: %+v", info)
		}
		if err := goc.Release(ctx, "a", "go-worker"); err != nil {
			t.Fatal(err)
		}
		if ok, err := py.lock(ctx, "a", 0); !ok || err != nil {
			t.Fatalf("python lock after Go released = %v, %v; want true", ok, err)
		}
	})

	t.Run("python holds, go waits", func(t *testing.T) {
		if ok, err := py.lock(ctx, "b", time.Hour); !ok || err != nil {
			t.Fatalf("python lock = %v, %v", ok, err)
		}
		if ok, err := goc.Lock(ctx, "b", "go-worker"); ok || err != nil {
			t.Fatalf("Go Lock on a python-held lock = %v, %v; want false", ok, err)
		}
		_, err := goc.TryAcquire(ctx, "b")
		var le *mongolock.LockedError
		if !errors.As(err, &le) || le.Owner != "py-worker" {
			t.Fatalf("TryAcquire: %v; want *LockedError naming py-worker", err)
		}
		if locked, err := goc.IsLocked(ctx, "b"); !locked || err != nil {
			t.Fatalf("IsLocked = %v, %v", locked, err)
		}
		if err := py.release(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		l, err := goc.TryAcquire(ctx, "b")
		if err != nil {
			t.Fatalf("Go TryAcquire after python released: %v", err)
		}
		if l.Fence() <= 0 {
			t.Fatalf("fence %d", l.Fence())
		}
	})

	t.Run("expiry both ways", func(t *testing.T) {
		if ok, err := py.lock(ctx, "c", 50*time.Millisecond); !ok || err != nil {
			t.Fatalf("python lock = %v, %v", ok, err)
		}
		ok, err := goc.Lock(ctx, "c", "go-worker", mongolock.Timeout(5*time.Second), mongolock.Expire(50*time.Millisecond))
		if !ok || err != nil {
			t.Fatalf("Go taking over the expired python lock = %v, %v", ok, err)
		}
		time.Sleep(100 * time.Millisecond)
		if ok, err := py.lock(ctx, "c", time.Hour); !ok || err != nil {
			t.Fatalf("python taking over the expired Go lock = %v, %v", ok, err)
		}
		if ok, err := goc.Lock(ctx, "c", "go-worker"); ok || err != nil {
			t.Fatalf("Go Lock on the python-held lock = %v, %v; want false", ok, err)
		}
		// Go's lock was taken over: its release is refused, python keeps it.
		if err := goc.Release(ctx, "c", "go-worker"); !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("Go release after python took over: %v; want ErrNotHeld", err)
		}
		if info := mustInfo(t, goc, "c"); info.Owner != "py-worker" {
			t.Fatalf("owner %q; want py-worker", info.Owner)
		}
	})

	t.Run("a lock that never expires is never stolen", func(t *testing.T) {
		mustLock(t, goc, "d", "go-worker")
		if ok, err := py.lock(ctx, "d", 0); ok || err != nil {
			t.Fatalf("python lock on a Go lock without expiry = %v, %v; want false", ok, err)
		}
	})
}
