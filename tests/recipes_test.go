package tests

// Tests of the recipes beyond the mutex: semaphores (Limit), readers–writer
// locks (Shared), fair queueing (Fair) and elections, through the public
// API and the test server's faults.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

func mustTry(t *testing.T, c *mongolock.Client, key string, opts ...mongolock.LockOption) *mongolock.Lease {
	t.Helper()
	l, err := c.TryAcquire(testCtx(t), key, opts...)
	if err != nil {
		t.Fatalf("TryAcquire(%q): %v", key, err)
	}
	return l
}

func wantLocked(t *testing.T, err error, what string) *mongolock.LockedError {
	t.Helper()
	var le *mongolock.LockedError
	if !errors.As(err, &le) || !errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("%s: %v; want a *LockedError matching ErrLocked", what, err)
	}
	if le.Owner == "" {
		t.Errorf("%s: the *LockedError names no holder: %v", what, err)
	}
	return le
}

// TestSemaphore: up to n holders at once, each with its own lease and a
// fence above every earlier one; the n+1st is refused with a *LockedError
// naming a holder; a release makes room.
func TestSemaphore(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	var leases []*mongolock.Lease
	var last int64
	for i := range 3 {
		l := mustTry(t, c, "pool", mongolock.Limit(3), mongolock.Owner(fmt.Sprintf("w%d", i)))
		if l.Fence() <= last {
			t.Fatalf("holder %d: fence %d, not above %d", i, l.Fence(), last)
		}
		last = l.Fence()
		leases = append(leases, l)
	}
	_, err := c.TryAcquire(ctx, "pool", mongolock.Limit(3))
	wantLocked(t, err, "a fourth holder of a semaphore of 3")

	info := mustInfo(t, c, "pool")
	if info.Limit != 3 || len(info.Holders()) != 3 || !info.Locked {
		t.Fatalf("Info = %+v, holders %+v; want a semaphore of 3 with 3 holders", info, info.Holders())
	}
	if locked, err := c.IsLocked(ctx, "pool"); !locked || err != nil {
		t.Fatalf("IsLocked = %v, %v", locked, err)
	}
	if err := leases[1].Release(ctx); err != nil {
		t.Fatal(err)
	}
	l := mustTry(t, c, "pool", mongolock.Limit(3))
	if l.Fence() <= last {
		t.Fatalf("fence %d after a release, not above %d", l.Fence(), last)
	}
	for _, l := range append(leases[:1], leases[2], l) {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	info = mustInfo(t, c, "pool")
	if info.Locked || len(info.Holders()) != 0 {
		t.Fatalf("after every release: %+v, holders %+v; want released", info, info.Holders())
	}
	// Released, it is free for an exclusive lock too.
	ex := mustTry(t, c, "pool")
	if ex.Fence() <= l.Fence() {
		t.Fatalf("exclusive fence %d after the semaphore's %d", ex.Fence(), l.Fence())
	}
}

// TestLimitMismatch: holders must agree on n. Asking with another limit
// while holders exist is a *LimitError naming both values, and the stored
// document is not touched; once the holders are gone, any limit works.
func TestLimitMismatch(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	coll := lockColl(t, srv)
	ctx := testCtx(t)
	a := mustTry(t, c, "k", mongolock.Limit(3), mongolock.Owner("a"))
	before := storedDoc(t, coll, "k")
	for _, tt := range []struct {
		name  string
		opts  []mongolock.LockOption
		asked int
	}{
		{"another n", []mongolock.LockOption{mongolock.Limit(4)}, 4},
		{"exclusive", nil, 1},
		{"Limit(1)", []mongolock.LockOption{mongolock.Limit(1)}, 1},
		{"shared", []mongolock.LockOption{mongolock.Shared()}, 0},
	} {
		for _, wait := range []bool{false, true} {
			var err error
			if wait {
				_, err = c.Acquire(ctx, "k", append(tt.opts, mongolock.Timeout(time.Second))...)
			} else {
				_, err = c.TryAcquire(ctx, "k", tt.opts...)
			}
			var le *mongolock.LimitError
			if !errors.As(err, &le) || !errors.Is(err, mongolock.ErrLimitMismatch) {
				t.Fatalf("%s (wait %v): %v; want a *LimitError", tt.name, wait, err)
			}
			if le.Held != 3 || le.Asked != tt.asked || le.Owner != "a" {
				t.Errorf("%s: %+v; want held 3, asked %d, owner a", tt.name, le, tt.asked)
			}
		}
	}
	if got := storedDoc(t, coll, "k"); !bytesEqual(got, before) {
		t.Fatalf("a refused acquisition changed the document:\nwas %v\nnow %v", before, got)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b := mustTry(t, c, "k", mongolock.Limit(5))
	if b.Fence() <= a.Fence() {
		t.Fatalf("fence %d after %d", b.Fence(), a.Fence())
	}
	// An exclusive holder (a writer, a Python worker) records no limit:
	// a semaphore waits for it, as a reader does.
	mustTry(t, c, "ex")
	_, err := c.TryAcquire(ctx, "ex", mongolock.Limit(2))
	wantLocked(t, err, "Limit(2) on an exclusive holder")
}

// TestSemaphoreExpiredStopsCounting: a holder that expired (its process
// died: no keep-alive) stops counting at once, judged on the server's
// clock: nobody has to clean up first.
func TestSemaphoreExpiredStopsCounting(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	dead := newClient(t, srv)
	ctx := testCtx(t)
	for i := range 2 {
		mustTry(t, dead, "k", mongolock.Limit(2), mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false), mongolock.Owner(fmt.Sprintf("dead%d", i)))
	}
	_, err := c.TryAcquire(ctx, "k", mongolock.Limit(2))
	wantLocked(t, err, "a semaphore of 2 with 2 live holders")
	time.Sleep(100*time.Millisecond + 2*time.Second/10) // past the expiry, plus the clock's error
	for i := range 2 {
		l, err := c.TryAcquire(ctx, "k", mongolock.Limit(2), mongolock.Owner(fmt.Sprintf("new%d", i)))
		if err != nil {
			t.Fatalf("TryAcquire %d after both holders expired: %v", i, err)
		}
		defer l.Release(ctx)
	}
	if n := len(mustInfo(t, c, "k").Holders()); n != 2 {
		t.Fatalf("%d entries; want 2 (the expired ones removed)", n)
	}
	// Dead readers do not keep a writer out either.
	for i := range 3 {
		mustTry(t, dead, "rw", mongolock.Shared(), mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false), mongolock.Owner(fmt.Sprintf("r%d", i)))
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := c.TryAcquire(ctx, "rw"); err != nil {
		t.Fatalf("writer after the readers expired: %v", err)
	}
}

// TestSharedLock: readers share, and exclude a writer; a waiting writer is
// not starved: readers that come after it queue behind it. Fences rise
// across readers and writers.
func TestSharedLock(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	ctx := testCtx(t)
	r1 := mustTry(t, c, "doc", mongolock.Shared(), mongolock.Owner("r1"))
	r2 := mustTry(t, c, "doc", mongolock.Shared(), mongolock.Owner("r2"))
	if r2.Fence() <= r1.Fence() {
		t.Fatalf("reader fences %d, %d", r1.Fence(), r2.Fence())
	}
	_, err := c.TryAcquire(ctx, "doc", mongolock.Owner("w"))
	wantLocked(t, err, "a writer while readers hold")

	type result struct {
		l   *mongolock.Lease
		err error
	}
	wrote := make(chan result, 1)
	go func() {
		l, err := c.Acquire(ctx, "doc", mongolock.Owner("writer"))
		wrote <- result{l, err}
	}()
	// Once the writer waits, new readers queue behind it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		late, err := c.TryAcquire(ctx, "doc", mongolock.Shared(), mongolock.Owner("late"))
		if err == nil {
			// Before the writer said it waits: fine, leave again.
			if err := late.Release(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			le := wantLocked(t, err, "a reader behind a waiting writer")
			if le.Owner == "writer" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("a reader was never queued behind the waiting writer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wrote:
		t.Fatalf("the writer got the lock while a reader held it: %v, %v", r.l, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := r2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := <-wrote
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	if w.l.Fence() <= r2.Fence() {
		t.Fatalf("writer fence %d, not above the readers' %d", w.l.Fence(), r2.Fence())
	}
	if _, err := c.TryAcquire(ctx, "doc", mongolock.Shared()); !errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("reader while the writer holds: %v; want ErrLocked", err)
	}
	if err := w.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r3 := mustTry(t, c, "doc", mongolock.Shared())
	if r3.Fence() <= w.l.Fence() {
		t.Fatalf("reader fence %d after the writer's %d", r3.Fence(), w.l.Fence())
	}
	if info := mustInfo(t, c, "doc"); !info.Shared || len(info.Waiters()) != 0 {
		t.Fatalf("Info = %+v, waiters %v; want shared, and no writer waiting any more", info, info.Waiters())
	}
}

// TestRecipesBadInput: options that do not go together, or out of range,
// are *ArgumentErrors naming the option, and touch nothing.
func TestRecipesBadInput(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for _, tt := range []struct {
		arg  string
		opts []mongolock.LockOption
	}{
		{"Limit", []mongolock.LockOption{mongolock.Limit(0)}},
		{"Limit", []mongolock.LockOption{mongolock.Limit(-2)}},
		{"Limit", []mongolock.LockOption{mongolock.Limit(1001)}},
		{"Shared", []mongolock.LockOption{mongolock.Shared(), mongolock.Limit(2)}},
		{"Fair", []mongolock.LockOption{mongolock.Fair(), mongolock.Limit(2)}},
		{"Fair", []mongolock.LockOption{mongolock.Fair(), mongolock.Shared()}},
		{"MinHold", []mongolock.LockOption{mongolock.Limit(2), mongolock.MinHold(time.Second)}},
		{"MinHold", []mongolock.LockOption{mongolock.Shared(), mongolock.MinHold(time.Second)}},
	} {
		for _, call := range []func() error{
			func() error { _, err := c.TryAcquire(ctx, "bad", tt.opts...); return err },
			func() error { _, err := c.Acquire(ctx, "bad", tt.opts...); return err },
			func() error {
				return c.Do(ctx, "bad", "o", func(context.Context) error { return nil }, tt.opts...)
			},
		} {
			var ae *mongolock.ArgumentError
			if err := call(); !errors.As(err, &ae) || ae.Arg != tt.arg {
				t.Errorf("%v: %v; want an *ArgumentError naming %s", tt.opts, err, tt.arg)
			}
		}
	}
	for _, o := range []mongolock.LockOption{mongolock.Limit(2), mongolock.Shared(), mongolock.Fair()} {
		if _, err := c.Lock(ctx, "bad", "o", o); !errors.Is(err, mongolock.ErrInvalidArgument) {
			t.Errorf("Lock with a recipe: %v; want ErrInvalidArgument", err)
		}
	}
	if _, err := c.Info(ctx, "bad"); !errors.Is(err, mongolock.ErrNotFound) {
		t.Fatalf("a refused call created the document: %v", err)
	}
}

// TestRecipesLostReplies: an acquisition or release of a holder entry
// whose reply is lost after the server applied it is resent, and the
// result is as if it had been sent once.
func TestRecipesLostReplies(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for _, opt := range []mongolock.LockOption{mongolock.Limit(2), mongolock.Shared()} {
		key := fmt.Sprintf("k-%p", opt)
		srv.DropNextReply("findAndModify")
		l, err := c.TryAcquire(ctx, key, opt)
		if err != nil {
			t.Fatalf("TryAcquire with its reply lost: %v", err)
		}
		if n := len(mustInfo(t, c, key).Holders()); n != 1 {
			t.Fatalf("%d holders after a resent acquisition; want 1", n)
		}
		other := mustTry(t, c, key, opt)
		if other.Fence() <= l.Fence() {
			t.Fatalf("fences %d then %d", l.Fence(), other.Fence())
		}
		srv.DropNextReply("update")
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release with its reply lost: %v", err)
		}
		if err := l.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("second Release: %v; want ErrNotHeld", err)
		}
		if n := len(mustInfo(t, c, key).Holders()); n != 1 {
			t.Fatalf("%d holders after a resent release; want 1", n)
		}
		if err := other.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if info := mustInfo(t, c, key); info.Locked {
			t.Fatalf("still locked after every release: %+v", info)
		}
	}
}

// TestRecipesKeepAlive: semaphore holders and readers are renewed by
// keep-alive (in the same bulk write as exclusive leases) and stay held
// well past their expiry; ForceRelease takes them all away, and they learn
// it at their next renewal.
func TestRecipesKeepAlive(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	sem := mustTry(t, c, "sem", mongolock.Limit(2), mongolock.Expire(300*time.Millisecond))
	rd := mustTry(t, c, "rd", mongolock.Shared(), mongolock.Expire(300*time.Millisecond))
	ex := mustTry(t, c, "ex", mongolock.Expire(300*time.Millisecond))
	time.Sleep(time.Second)
	for _, l := range []*mongolock.Lease{sem, rd, ex} {
		if err := l.Err(); err != nil {
			t.Fatalf("%s lost although kept alive: %v", l.Key(), err)
		}
		if err := l.Renew(ctx, 300*time.Millisecond); err != nil {
			t.Fatalf("%s: Renew: %v", l.Key(), err)
		}
	}
	// A period a loaded machine cannot miss, so that only ForceRelease
	// can take sem away (a lease lost at its expiry gives its entry back
	// itself, which would hide a ForceRelease that left it).
	if err := sem.Renew(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ForceRelease(ctx, "sem"); err != nil {
		t.Fatal(err)
	}
	if h := mustInfo(t, c, "sem").Holders(); len(h) != 0 {
		t.Fatalf("holders after ForceRelease: %+v; want none", h)
	}
	// The semaphore is free for two new holders, and once the document is
	// a semaphore's again, the old holder's entry does not come back.
	c2 := newClient(t, srv)
	for i := range 2 {
		if _, err := c2.TryAcquire(ctx, "sem", mongolock.Limit(2), mongolock.Expire(time.Minute)); err != nil {
			t.Fatalf("acquisition %d after ForceRelease: %v; want the semaphore (its old holder's entry must not count)", i+1, err)
		}
	}
	if err := sem.Renew(ctx, time.Minute); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Renew after ForceRelease: %v; want ErrNotHeld", err)
	}
	select {
	case <-sem.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("a force-released semaphore holder never saw Lost")
	}
	if !errors.Is(sem.Err(), mongolock.ErrLost) {
		t.Fatalf("Err = %v", sem.Err())
	}
	if err := sem.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Release after ForceRelease: %v; want ErrNotHeld", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if locked, err := c2.IsLocked(ctx, "rd"); locked || err != nil {
		t.Fatalf("a reader still holds after Close: %v, %v", locked, err)
	}
}

// TestSemaphoreContention: goroutines on several Clients contend for a
// semaphore of 3; a shared counter of holders never exceeds 3.
func TestSemaphoreContention(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	clients := []*mongolock.Client{
		newClient(t, srv, mongolock.WithRetryInterval(5*time.Millisecond)),
		newClient(t, srv, mongolock.WithRetryInterval(5*time.Millisecond)),
	}
	var (
		mu           sync.Mutex
		inside, most int
		wg           sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			c := clients[w%2]
			for range 5 {
				l, err := c.Acquire(ctx, "sem", mongolock.Limit(3), mongolock.Expire(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if most > 3 {
		t.Fatalf("%d holders at once in a semaphore of 3", most)
	}
	t.Logf("at most %d holders at once", most)
}

// TestElection: one leader at a time; Campaign blocks until it leads;
// Leader reads it; terms rise; resigning hands over; Observe delivers the
// leader and each change.
func TestElection(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	ctx := testCtx(t)
	e := c.Election("primary", mongolock.Expire(time.Minute))
	if _, err := e.Leader(ctx); !errors.Is(err, mongolock.ErrNotFound) {
		t.Fatalf("Leader before any campaign: %v; want ErrNotFound", err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	seen := e.Observe(octx)

	a, err := e.Campaign(ctx, "10.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.Leader(ctx)
	if err != nil || info.Value != "10.0.0.1:8080" || info.Term != a.Fence() || info.Owner != a.Owner() || info.Since.IsZero() {
		t.Fatalf("Leader = %+v, %v; want a's value, term %d", info, err, a.Fence())
	}
	if got := <-seen; got != info {
		t.Fatalf("Observe delivered %+v first; want %+v", got, info)
	}

	bCtx, bCancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Election("primary").Campaign(bCtx, "b")
	bCancel()
	if le := wantLocked(t, err, "a second candidate's campaign ended by its context"); le.Owner != a.Owner() {
		t.Fatalf("names %q; want the leader", le.Owner)
	}
	led := make(chan *mongolock.Lease, 1)
	go func() {
		l, err := c.Election("primary").Campaign(ctx, "10.0.0.2:8080")
		if err != nil {
			t.Error(err)
		}
		led <- l
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Release(ctx); err != nil { // resign
		t.Fatal(err)
	}
	b := <-led
	if b == nil {
		t.FailNow()
	}
	if b.Fence() <= a.Fence() {
		t.Fatalf("term %d after %d", b.Fence(), a.Fence())
	}
	for got := range seen {
		if got.Owner == "" {
			continue // a moment without a leader
		}
		if got.Value != "10.0.0.2:8080" || got.Term != b.Fence() {
			t.Fatalf("Observe delivered %+v; want b's term %d", got, b.Fence())
		}
		break
	}
	stop()
	for range seen { // closed once ctx ends
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, mongolock.ErrNotFound) {
		t.Fatalf("Leader after the last resigned: %v; want ErrNotFound", err)
	}

	// Bad input.
	for _, bad := range []*mongolock.Election{c.Election(""), c.Election("x", mongolock.Limit(2)), c.Election("x", mongolock.MinHold(time.Second))} {
		if _, err := bad.Campaign(ctx, "v"); !errors.Is(err, mongolock.ErrInvalidArgument) {
			t.Errorf("Campaign: %v; want ErrInvalidArgument", err)
		}
	}
	if _, err := e.Campaign(ctx, string([]byte{0xff})); !errors.Is(err, mongolock.ErrInvalidArgument) {
		t.Errorf("Campaign with a value that is not UTF-8: %v", err)
	}
	if _, ok := <-c.Election("").Observe(ctx); ok {
		t.Error("Observe of a bad name delivered")
	}
}

// TestFairOrder: waiters that use Fair get the lock in the order they
// arrived, whatever their retry timing; a waiter that died (its heartbeat
// ran out) does not block the queue.
func TestFairOrder(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	holderC := newClient(t, srv)
	first := mustTry(t, holderC, "q", mongolock.Fair(), mongolock.Owner("first"))

	// A waiter that died at the head of the queue: its heartbeat runs out
	// 300ms from now.
	coll := lockColl(t, srv)
	now, _, err := holderC.ServerTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "q"}}, bson.D{
		{Key: "$push", Value: bson.D{{Key: "order", Value: "dead"}}},
		{Key: "$set", Value: bson.D{{Key: "queue.dead", Value: bson.D{{Key: "owner", Value: "dead"}, {Key: "expire", Value: now.Add(300 * time.Millisecond)}}}}},
	}); err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	// Waiters on Clients that poll at very different rates arrive in turn.
	for i, retry := range []time.Duration{100 * time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond, 5 * time.Millisecond} {
		c := newClient(t, srv, mongolock.WithRetryInterval(retry))
		name := fmt.Sprintf("w%d", i)
		wg.Go(func() {
			l, err := c.Acquire(ctx, "q", mongolock.Fair(), mongolock.Owner(name))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			if err := l.Release(ctx); err != nil {
				t.Error(err)
			}
		})
		// Wait until it is queued, so that arrival order is known.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			queued := false
			for _, w := range mustInfo(t, holderC, "q").Waiters() {
				queued = queued || w.Owner == name
			}
			if queued {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never queued: %+v", i, mustInfo(t, holderC, "q").Waiters())
			}
		}
	}
	// A non-fair TryAcquire while the holder holds is refused as usual;
	// a fair one is refused while others wait even when the lock is free.
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if want := []string{"w0", "w1", "w2", "w3"}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("fair waiters got the lock in the order %v; want %v", order, want)
	}
	if w := mustInfo(t, holderC, "q").Waiters(); len(w) != 0 {
		t.Fatalf("waiters left in the queue: %+v", w)
	}
}

// TestFairTryAcquireRespectsQueue: a one-attempt fair acquisition does not
// jump a queue of live waiters, and a waiter that gives up leaves it.
func TestFairTryAcquireRespectsQueue(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(5*time.Millisecond))
	ctx := testCtx(t)
	h := mustTry(t, c, "q", mongolock.Fair())
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(wctx, "q", mongolock.Fair(), mongolock.Owner("gives-up"))
	wantLocked(t, err, "a fair waiter whose context ended")
	if w := mustInfo(t, c, "q").Waiters(); len(w) != 0 {
		t.Fatalf("a waiter that gave up is still queued: %+v", w)
	}
	go func() {
		_, _ = c.Acquire(ctx, "q", mongolock.Fair(), mongolock.Owner("waiter"), mongolock.Timeout(3*time.Second))
	}()
	for deadline := time.Now().Add(10 * time.Second); len(mustInfo(t, c, "q").Waiters()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never queued")
		}
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The waiter is served first; TryAcquire with Fair meanwhile is refused.
	if l, err := c.TryAcquire(ctx, "q", mongolock.Fair()); err == nil {
		if info := mustInfo(t, c, "q"); len(info.Waiters()) > 0 {
			t.Fatalf("a fair TryAcquire jumped the queue: %+v", info.Waiters())
		}
		_ = l.Release(ctx)
	}
}

// TestFairTryAcquireSkipsDeadWaiters: a fair acquisition that does not
// wait (TryAcquire, or Do without Timeout) is not refused because of
// waiters whose heartbeats ran out — they are dropped, as a waiting one
// drops them — but still yields to live waiters. (Found by the stress
// harness: a waiter killed when nobody else was waiting blocked every
// fair TryAcquire until a waiting acquisition came.)
func TestFairTryAcquireSkipsDeadWaiters(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	coll := lockColl(t, srv)
	queue := func(key, name string, heartbeat time.Duration) {
		t.Helper()
		now, _, err := c.ServerTime(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{
			{Key: "$push", Value: bson.D{{Key: "order", Value: name}}},
			{Key: "$set", Value: bson.D{{Key: "queue." + name, Value: bson.D{{Key: "owner", Value: name}, {Key: "expire", Value: now.Add(heartbeat)}}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, try := range []struct {
		name string
		take func(key string) error // takes key and releases it
	}{
		{"TryAcquire", func(key string) error {
			l, err := c.TryAcquire(ctx, key, mongolock.Fair())
			if err == nil {
				err = l.Release(ctx)
			}
			return err
		}},
		{"Do without Timeout", func(key string) error {
			return c.Do(ctx, key, "", func(context.Context) error { return nil }, mongolock.Fair())
		}},
	} {
		t.Run(try.name, func(t *testing.T) {
			key := "q-" + strings.ReplaceAll(try.name, " ", "-")
			if err := mustTry(t, c, key, mongolock.Fair()).Release(ctx); err != nil {
				t.Fatal(err)
			}
			queue(key, "dead", -time.Minute)
			if err := try.take(key); err != nil {
				t.Fatalf("with only a dead waiter queued: %v", err)
			}
			if w := mustInfo(t, c, key).Waiters(); len(w) != 0 {
				t.Errorf("waiters left: %+v", w)
			}
			queue(key, "dead", -time.Minute)
			queue(key, "live", time.Minute)
			err := try.take(key)
			if !errors.Is(err, mongolock.ErrLocked) {
				t.Fatalf("with a live waiter behind a dead one: %v; want ErrLocked", err)
			}
			if w := mustInfo(t, c, key).Waiters(); len(w) != 1 || w[0].Owner != "live" {
				t.Errorf("waiters: %+v; want the live one", w)
			}
		})
	}
}

// TestEntryAfterExclusiveTakeover: once every holder of a semaphore or a
// shared lock surely expired and an exclusive acquisition (a writer) took
// the document, the expired holders' entries, still in it, give them
// nothing: a late release does not free the writer's lock, and an
// acquisition that was finishing (its fence raise) fails instead of
// joining the writer. (Found by the stress harness: a reader whose entry
// expired while it waited out a clock error raised its fence into a
// writer's document, held a lease beside the writer, and its release then
// freed the writer's lock to two more writers.)
func TestEntryAfterExclusiveTakeover(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for _, kind := range []struct {
		name string
		opt  mongolock.LockOption
	}{{"reader", mongolock.Shared()}, {"semaphore holder", mongolock.Limit(2)}} {
		t.Run(kind.name+"'s late release", func(t *testing.T) {
			key := "release-" + strings.ReplaceAll(kind.name, " ", "-")
			stale := mustTry(t, c, key, kind.opt, mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false))
			time.Sleep(100*time.Millisecond + 2*time.Second/10)
			w := mustTry(t, c, key, mongolock.Owner("writer"))
			if err := stale.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
				t.Errorf("the expired holder's Release: %v; want ErrNotHeld", err)
			}
			if info := mustInfo(t, c, key); !info.Locked || info.Owner != "writer" {
				t.Fatalf("after the expired holder's Release: locked %v by %q; want held by the writer", info.Locked, info.Owner)
			}
			if l, err := c.TryAcquire(ctx, key); err == nil {
				t.Fatalf("another acquisition took the writer's lock (fence %d)", l.Fence())
			}
			if err := w.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(kind.name+"'s acquisition finishing late", func(t *testing.T) {
			// A document the Python package wrote has no fence, so the
			// acquisition waits out a clock error (1s) before raising its
			// fence; its 100ms entry expires meanwhile, and a writer takes
			// the document.
			key := "finish-" + strings.ReplaceAll(kind.name, " ", "-")
			if _, err := lockColl(t, srv).InsertOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "locked", Value: false},
				{Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil}}); err != nil {
				t.Fatal(err)
			}
			type result struct {
				l   *mongolock.Lease
				err error
			}
			done := make(chan result, 1)
			go func() {
				l, err := c.TryAcquire(ctx, key, kind.opt, mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false))
				done <- result{l, err}
			}()
			time.Sleep(100*time.Millisecond + 2*time.Second/10)
			w, err := newClient(t, srv).TryAcquire(ctx, key, mongolock.Owner("writer"))
			if err != nil {
				t.Fatalf("the writer, once the entry surely expired: %v (the acquisition did not wait as this test needs)", err)
			}
			r := <-done
			if r.err == nil {
				t.Fatalf("the %s's acquisition succeeded (fence %d) while the writer (fence %d) holds the lock", kind.name, r.l.Fence(), w.Fence())
			}
			if !errors.Is(r.err, mongolock.ErrLost) {
				t.Errorf("the %s's acquisition: %v; want ErrLost (taken over before its fence was raised)", kind.name, r.err)
			}
			if info := mustInfo(t, c, key); !info.Locked || info.Owner != "writer" {
				t.Fatalf("locked %v by %q; want held by the writer", info.Locked, info.Owner)
			}
		})
	}
}

// TestEntryRenewAfterExpiry: a semaphore holder or reader that expired
// cannot renew, even if nobody took its place: it must assume it lost.
func TestEntryRenewAfterExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for _, opt := range []mongolock.LockOption{mongolock.Limit(2), mongolock.Shared()} {
		key := fmt.Sprintf("k-%p", opt)
		l := mustTry(t, c, key, opt, mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false))
		time.Sleep(100*time.Millisecond + 2*time.Second/10)
		if err := l.Renew(ctx, time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("Renew of an expired entry: %v; want ErrNotHeld", err)
		}
		if locked, err := c.IsLocked(ctx, key); locked || err != nil {
			t.Fatalf("IsLocked after the refused renewal = %v, %v; want expired", locked, err)
		}
	}
}

// TestRecipesPython: a worker that speaks the Python package's queries on
// the same collection sees a semaphore's or a shared lock's document as
// held (by "*semaphore" or "*shared", until the last moment any holder may
// hold it) and is refused; once the last holder released it takes it, and
// the next Go holder's fence is still above every earlier one.
func TestRecipesPython(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	py := pythonWorker{coll: lockColl(t, srv), owner: "py-worker"}
	for _, tt := range []struct {
		mark string
		opt  mongolock.LockOption
	}{{"*semaphore", mongolock.Limit(3)}, {"*shared", mongolock.Shared()}} {
		key := "py" + tt.mark
		a := mustTry(t, c, key, tt.opt)
		b := mustTry(t, c, key, tt.opt)
		if ok, err := py.lock(ctx, key, time.Minute); ok || err != nil {
			t.Fatalf("Python lock on a document with 2 holders = %v, %v; want refused", ok, err)
		}
		raw := storedDoc(t, py.coll, key)
		if raw.Lookup("locked").Boolean() != true || raw.Lookup("owner").StringValue() != tt.mark {
			t.Fatalf("what Python reads: %v; want locked by %q", raw, tt.mark)
		}
		if exp := raw.Lookup("expire").Time(); exp.Before(time.Now().Add(20 * time.Second)) {
			t.Fatalf("expire %v: want at least the holders' (30s)", exp)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := py.lock(ctx, key, time.Minute); ok || err != nil {
			t.Fatalf("Python lock with one holder left = %v, %v; want refused", ok, err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := py.lock(ctx, key, time.Minute); !ok || err != nil {
			t.Fatalf("Python lock after the last holder released = %v, %v; want taken", ok, err)
		}
		if _, err := c.TryAcquire(ctx, key, tt.opt); !errors.Is(err, mongolock.ErrLocked) {
			t.Fatalf("Go holder while Python holds: %v; want ErrLocked", err)
		}
		if err := py.release(ctx, key); err != nil {
			t.Fatal(err)
		}
		l := mustTry(t, c, key, tt.opt)
		if l.Fence() <= b.Fence() {
			t.Fatalf("fence %d after Python, not above %d", l.Fence(), b.Fence())
		}
	}
}
