package tests

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

func TestLeaseBasics(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)

	l, err := c.TryAcquire(ctx, "job", mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if l.Key() != "job" || l.Owner() == "" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(l.Token()) {
		t.Fatalf("lease key %q owner %q token %q", l.Key(), l.Owner(), l.Token())
	}
	if until := time.Until(l.ExpiresAt()); until <= 50*time.Second || until > time.Minute {
		t.Fatalf("ExpiresAt is %v from now; want just under a minute", until)
	}
	info := mustInfo(t, c, "job")
	if info.Owner != l.Owner() || info.Fence != l.Fence() || !info.Locked {
		t.Fatalf("stored %+v; lease owner %q fence %d", info, l.Owner(), l.Fence())
	}

	_, err = c.TryAcquire(ctx, "job")
	var le *mongolock.LockedError
	if !errors.As(err, &le) || le.Owner != l.Owner() {
		t.Fatalf("TryAcquire on a held lock: %v; want *LockedError naming %q", err, l.Owner())
	}

	if err := l.Renew(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if until := time.Until(l.ExpiresAt()); until < 59*time.Minute {
		t.Fatalf("after Renew(1h) ExpiresAt is %v away", until)
	}
	if got := mustInfo(t, c, "job").Expire; got.Before(info.Expire.Add(50 * time.Minute)) {
		t.Fatalf("stored expire %v; want about an hour after %v", got, info.Created)
	}

	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("second Release: %v; want ErrNotHeld", err)
	}
	if err := l.Renew(ctx, time.Minute); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Renew after Release: %v; want ErrNotHeld", err)
	}

	// Generated owners are unique; a given owner is recorded.
	a, err := c.TryAcquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.TryAcquire(ctx, "b", mongolock.Owner("named"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Owner() == b.Owner() || b.Owner() != "named" || a.Token() == b.Token() {
		t.Fatalf("owners %q %q tokens %q %q", a.Owner(), b.Owner(), a.Token(), b.Token())
	}
}

// TestAcquireWaits checks that Acquire waits for the holder and that its
// Timeout ends the wait with a *LockedError.
func TestAcquireWaits(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	ctx := testCtx(t)

	first, err := c.Acquire(ctx, "k", mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Acquire(ctx, "k", mongolock.Timeout(200*time.Millisecond))
	if !errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("Acquire with Timeout on a held lock: %v; want ErrLocked", err)
	}

	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = first.Release(ctx)
	}()
	second, err := c.Acquire(ctx, "k")
	if err != nil {
		t.Fatalf("Acquire after the holder released: %v", err)
	}
	if second.Fence() <= first.Fence() {
		t.Fatalf("fence %d after %d; want greater", second.Fence(), first.Fence())
	}

	cctx, cancel := testCtxCancel(t, 100*time.Millisecond)
	defer cancel()
	_, err = c.Acquire(cctx, "k")
	if !errors.Is(err, cctx.Err()) || cctx.Err() == nil {
		t.Fatalf("Acquire ended by ctx: %v; want the context's error", err)
	}
}

// TestSameNameWorkers is the seed README's "Lock stealing and releasing"
// sequence: worker1 and worker2 share the name "worker"; worker1's lock
// expires, worker2 takes it over, and worker1 then releases. With the
// Python package that freed worker2's lock for worker3. Here worker1's
// Release is ErrNotHeld and worker2 keeps the lock.
func TestSameNameWorkers(t *testing.T) {
	srv := mongolocktest.Start(t)
	worker1 := newClient(t, srv)
	worker2 := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	worker3 := newClient(t, srv)
	ctx := testCtx(t)

	mustLock(t, worker1, "task", "worker", mongolock.Expire(150*time.Millisecond))
	ok, err := worker2.Lock(ctx, "task", "worker", mongolock.Timeout(5*time.Second), mongolock.Expire(time.Hour))
	if err != nil || !ok {
		t.Fatalf("worker2 taking over the expired lock: %v, %v", ok, err)
	}
	if err := worker1.Release(ctx, "task", "worker"); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("worker1's Release of the lock worker2 now holds: %v; want ErrNotHeld", err)
	}
	if err := worker1.Touch(ctx, "task", "worker", time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("worker1's Touch: %v; want ErrNotHeld", err)
	}
	if ok, err := worker3.Lock(ctx, "task", "worker3"); err != nil || ok {
		t.Fatalf("worker3's Lock while worker2 holds it: %v, %v; want false", ok, err)
	}
	if info := mustInfo(t, worker2, "task"); !info.Locked || info.Owner != "worker" {
		t.Fatalf("info %+v; want still held", info)
	}
	// worker2 itself can release it.
	if err := worker2.Release(ctx, "task", "worker"); err != nil {
		t.Fatalf("worker2's Release: %v", err)
	}
	// And a second Release by worker2 is ErrNotHeld, never a release of
	// whatever a same-name worker holds by then.
	mustLock(t, worker1, "task", "worker")
	if err := worker2.Release(ctx, "task", "worker"); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("worker2's second Release after worker1 re-took the lock: %v; want ErrNotHeld", err)
	}
	if info := mustInfo(t, worker1, "task"); !info.Locked {
		t.Fatal("worker2's stale Release freed worker1's lock")
	}
}

// TestSameNameLeases: two leases with one owner name cannot release or
// renew each other's acquisition.
func TestSameNameLeases(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	ctx := testCtx(t)
	old, err := c.TryAcquire(ctx, "k", mongolock.Owner("same"), mongolock.Expire(100*time.Millisecond), mongolock.KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := c.Acquire(ctx, "k", mongolock.Owner("same"), mongolock.Expire(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Renew(ctx, time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("stale lease Renew: %v; want ErrNotHeld", err)
	}
	if err := old.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("stale lease Release: %v; want ErrNotHeld", err)
	}
	if info := mustInfo(t, c, "k"); !info.Locked || info.Fence != cur.Fence() {
		t.Fatalf("info %+v; want held by the current lease (fence %d)", info, cur.Fence())
	}
}

// TestFenceIncreases checks that fences rise with every acquisition across
// clients, through expiry take-overs, and after an idle document is deleted.
// (Deletion keeps fences rising once the document has been idle for more
// than twice the clients' MaxClockError: see docs/DESIGN.md.)
func TestFenceIncreases(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 25 * time.Millisecond
	clients := []*mongolock.Client{
		newClient(t, srv, mongolock.WithMaxClockError(maxErr)),
		newClient(t, srv, mongolock.WithMaxClockError(maxErr)),
		newClient(t, srv, mongolock.WithMaxClockError(maxErr)),
	}
	coll := srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection)
	ctx := testCtx(t)
	var last int64
	for i := 0; i < 30; i++ {
		c := clients[i%len(clients)]
		l, err := c.Acquire(ctx, "fenced", mongolock.Expire(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence() <= last {
			t.Fatalf("acquisition %d: fence %d after %d", i, l.Fence(), last)
		}
		last = l.Fence()
		switch i % 3 {
		case 0:
			err = l.Release(ctx)
		case 1:
			// Expire it in place, as if the holder died long ago.
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "fenced"}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "expire", Value: time.Unix(0, 0)}}}})
		case 2:
			// Delete the idle document.
			if err = l.Release(ctx); err == nil {
				time.Sleep(2*maxErr + 10*time.Millisecond)
				_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "fenced"}})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
