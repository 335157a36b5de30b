package mongolock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/mongolock/mongolock"
)

// A semaphore: up to three holders at once, each with its own lease.
func ExampleLimit() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	var leases []*mongolock.Lease
	for i := range 3 {
		l, err := c.TryAcquire(ctx, "encoders", mongolock.Limit(3), mongolock.Owner(fmt.Sprintf("encoder-%d", i)))
		if err != nil {
			log.Fatal(err)
		}
		leases = append(leases, l)
	}
	_, err = c.TryAcquire(ctx, "encoders", mongolock.Limit(3))
	fmt.Println("a fourth is refused:", errors.Is(err, mongolock.ErrLocked))

	_, err = c.TryAcquire(ctx, "encoders", mongolock.Limit(5))
	var le *mongolock.LimitError
	fmt.Println("another limit:", errors.As(err, &le), le.Held, le.Asked)

	info, _ := c.Info(ctx, "encoders")
	fmt.Println("holders:", len(info.Holders()), "of", info.Limit)
	for _, l := range leases {
		_ = l.Release(ctx)
	}
	// Output:
	// a fourth is refused: true
	// another limit: true 3 5
	// holders: 3 of 3
}

// A readers–writer lock: readers share; a writer waits for them, and
// readers that come after it wait for the writer.
func ExampleShared() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	r1, _ := c.TryAcquire(ctx, "catalog", mongolock.Shared())
	r2, err := c.TryAcquire(ctx, "catalog", mongolock.Shared())
	fmt.Println("two readers:", err == nil)

	_, err = c.TryAcquire(ctx, "catalog")
	fmt.Println("a writer is refused while they read:", errors.Is(err, mongolock.ErrLocked))

	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	w, err := c.Acquire(ctx, "catalog", mongolock.Timeout(time.Second))
	fmt.Println("the writer, after them:", err == nil, w.Fence() > r2.Fence())
	_ = w.Release(ctx)
	// Output:
	// two readers: true
	// a writer is refused while they read: true
	// the writer, after them: true true
}

// Fair queueing: waiters that use Fair get the lock in arrival order.
func ExampleFair() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	holder, _ := c.TryAcquire(ctx, "deploy", mongolock.Fair())
	got := make(chan string, 2)
	for _, name := range []string{"first", "second"} {
		go func() {
			l, err := c.Acquire(ctx, "deploy", mongolock.Fair(), mongolock.Owner(name))
			if err != nil {
				log.Fatal(err)
			}
			got <- name
			_ = l.Release(ctx)
		}()
		for { // wait until it is queued
			info, _ := c.Info(ctx, "deploy")
			if w := info.Waiters(); len(w) > 0 && w[len(w)-1].Owner == name {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = holder.Release(ctx)
	fmt.Println(<-got, <-got)
	// Output:
	// first second
}

// Leader election: Campaign blocks until this candidate leads; the
// lease's fence is the term; Release resigns.
func ExampleClient_Election() {
	uri, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	e := c.Election("scheduler")
	l, err := e.Campaign(ctx, "10.0.0.7:8080")
	if err != nil {
		log.Fatal(err)
	}
	leader, _ := e.Leader(ctx)
	fmt.Println("leader:", leader.Value, "term is the fence:", leader.Term == l.Fence())

	_ = l.Release(ctx) // resign
	_, err = e.Leader(ctx)
	fmt.Println("after resigning:", errors.Is(err, mongolock.ErrNotFound))
	// Output:
	// leader: 10.0.0.7:8080 term is the fence: true
	// after resigning: true
}
