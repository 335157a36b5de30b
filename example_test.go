package mongolock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/internal/embedded"
)

// exampleServer starts the embedded test server for an example and returns
// its URI and a function that stops it. In a program, use your deployment's
// connection string instead.
func exampleServer() (string, func()) {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	return srv.URI(), func() { _ = srv.Close(ctx) }
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
