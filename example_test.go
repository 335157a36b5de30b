package mongolock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock"
)

// exampleServer gives an example the URI of a server with no locks in it
// (the one this package's tests share, see testserver_test.go). In a
// program, use your deployment's connection string instead.
func exampleServer() (string, func()) {
	uri, err := mongolock.TestServerURI()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	mc, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		log.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	for _, db := range []string{mongolock.DefaultDatabase, "ops"} {
		if err := mc.Database(db).Drop(ctx); err != nil {
			log.Fatal(err)
		}
	}
	return uri, func() {}
}

// Connect owns its connection; Close releases the Client's leases and
// disconnects.
func ExampleConnect() {
	uri, stop := exampleServer() // your deployment: "mongodb://db1,db2,db3/?replicaSet=rs0"
	defer stop()
	ctx := context.Background()

	c, err := mongolock.Connect(ctx, uri, mongolock.WithDatabase("ops"), mongolock.WithCollection("locks"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	ok, err := c.Lock(ctx, "nightly-report", "worker-1")
	fmt.Println(ok, err, c.Collection().Name())
	// Output:
	// true <nil> locks
}

// New uses a driver client you already have; Close leaves it connected.
func ExampleNew() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	mc, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		log.Fatal(err)
	}
	defer mc.Disconnect(ctx)

	c, err := mongolock.New(mc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	l, err := c.TryAcquire(ctx, "shard-7")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held until about 30s from now:", time.Until(l.ExpiresAt()) > 25*time.Second)
	_ = l.Release(ctx)
	// Output:
	// held until about 30s from now: true
}

// store is a resource protected by a lock: it remembers the highest fence
// it has seen and refuses writes that carry a lower one, so a holder that
// was paused past its lease cannot overwrite its successor's work.
type store struct {
	mu    sync.Mutex
	fence int64
	value string
}

func (s *store) write(fence int64, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence < s.fence {
		return fmt.Errorf("stale fence %d, the resource has seen %d", fence, s.fence)
	}
	s.fence, s.value = fence, value
	return nil
}

// A lease holder acts only while Lost is open and before ExpiresAt, and
// passes its Fence along with every write, so that the resource can refuse
// a holder that was superseded.
func ExampleLease_Fence() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	var res store

	old, err := c.TryAcquire(ctx, "report", mongolock.Expire(time.Second), mongolock.KeepAlive(false))
	if err != nil {
		log.Fatal(err)
	}
	select {
	case <-old.Lost():
		fmt.Println("lost:", old.Err())
	default:
		if time.Now().Before(old.ExpiresAt()) {
			fmt.Println("first write:", res.write(old.Fence(), "draft"))
		}
	}

	// The old holder stalls past its lease; another takes the lock over.
	next, err := c.Acquire(ctx, "report", mongolock.Timeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new holder writes:", res.write(next.Fence(), "final"))
	<-old.Lost()
	fmt.Println("old holder sees Lost:", errors.Is(old.Err(), mongolock.ErrLost))
	fmt.Println("a late write of the old holder is refused:", res.write(old.Fence(), "draft 2") != nil)
	_ = next.Release(ctx)
	// Output:
	// first write: <nil>
	// new holder writes: <nil>
	// old holder sees Lost: true
	// a late write of the old holder is refused: true
}

// Renew extends a lease and makes the new period the one keep-alive goes on
// with.
func ExampleLease_Renew() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	l, err := c.TryAcquire(ctx, "import", mongolock.Expire(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	// The job turns out to need longer.
	if err := l.Renew(ctx, time.Hour); err != nil {
		log.Fatal(err)
	}
	fmt.Println("held for about an hour:", time.Until(l.ExpiresAt()) > 59*time.Minute)
	_ = l.Release(ctx)
	// Output:
	// held for about an hour: true
}

// Purge deletes lock documents that have been idle for a while; held locks
// are never touched.
func ExampleClient_Purge() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	// A small clock bound, for the example: Purge's idleFor must be at
	// least three times it.
	c, err := mongolock.Connect(ctx, uri, mongolock.WithMaxClockError(20*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	done, err := c.TryAcquire(ctx, "job-1")
	if err != nil {
		log.Fatal(err)
	}
	_ = done.Release(ctx)
	running, err := c.TryAcquire(ctx, "job-2")
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	n, err := c.Purge(ctx, 100*time.Millisecond)
	fmt.Println("purged:", n, err)
	_, err = c.Info(ctx, "job-2")
	fmt.Println("the held lock is still there:", err == nil)
	_ = running.Release(ctx)
	// Output:
	// purged: 1 <nil>
	// the held lock is still there: true
}

// The owner-named API kept from the Python package.
func ExampleClient_Lock() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	ok, err := c.Lock(ctx, "nightly-report", "worker-1", mongolock.Expire(time.Minute))
	fmt.Println("worker-1 got it:", ok, err)

	ok, err = c.Lock(ctx, "nightly-report", "worker-2")
	fmt.Println("worker-2 got it:", ok, err)

	err = c.Release(ctx, "nightly-report", "worker-1")
	fmt.Println("released:", err)

	ok, err = c.Lock(ctx, "nightly-report", "worker-2", mongolock.Timeout(time.Second))
	fmt.Println("worker-2 got it:", ok, err)
	// Output:
	// worker-1 got it: true <nil>
	// worker-2 got it: false <nil>
	// released: <nil>
	// worker-2 got it: true <nil>
}

// Do runs a function while holding the lock and releases it afterwards.
func ExampleClient_Do() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	err = c.Do(ctx, "migrate", "deployer-a", func(ctx context.Context) error {
		fmt.Println("deployer-a migrates")

		// Meanwhile another deployer finds the lock taken.
		err := c.Do(ctx, "migrate", "deployer-b", func(context.Context) error { return nil })
		var locked *mongolock.LockedError
		if errors.As(err, &locked) {
			fmt.Println("deployer-b: locked by", locked.Owner)
		}
		return nil
	}, mongolock.Expire(10*time.Minute))
	fmt.Println("done:", err)
	// Output:
	// deployer-a migrates
	// deployer-b: locked by deployer-a
	// done: <nil>
}

// A Lease carries a fencing token that rises with every acquisition; a
// resource that remembers the highest fence it has seen can refuse writes
// from a holder whose lease was superseded.
func ExampleClient_TryAcquire() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	first, err := c.TryAcquire(ctx, "shard-7", mongolock.Owner("indexer"), mongolock.Expire(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("owner:", first.Owner(), "token length:", len(first.Token()))

	_, err = c.TryAcquire(ctx, "shard-7")
	fmt.Println("second attempt locked:", errors.Is(err, mongolock.ErrLocked))

	if err := first.Release(ctx); err != nil {
		log.Fatal(err)
	}
	second, err := c.TryAcquire(ctx, "shard-7")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fence rose:", second.Fence() > first.Fence())
	_ = second.Release(ctx)
	// Output:
	// owner: indexer token length: 32
	// second attempt locked: true
	// fence rose: true
}

// Acquire waits for the lock, bounded by Timeout or the context.
func ExampleClient_Acquire() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	holder, err := c.Acquire(ctx, "leader", mongolock.Expire(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Acquire(ctx, "leader", mongolock.Timeout(200*time.Millisecond))
	fmt.Println("timed out:", errors.Is(err, mongolock.ErrLocked))

	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = holder.Release(ctx)
	}()
	next, err := c.Acquire(ctx, "leader")
	fmt.Println("acquired after release:", err == nil && next.Fence() > holder.Fence())
	// Output:
	// timed out: true
	// acquired after release: true
}
