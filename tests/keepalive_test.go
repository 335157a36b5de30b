package tests

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

// schedulingSlack is how late a test may see something happen that the
// library does at a given instant: the scheduling delay of a loaded
// machine (both cores busy, -race), far less than any period under test.
const schedulingSlack = 250 * time.Millisecond

func waitLost(t *testing.T, l *mongolock.Lease, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-l.Lost():
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("Lost() not closed within %v", within)
		return 0
	}
}

func notLost(t *testing.T, l *mongolock.Lease) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatalf("lease lost: %v", l.Err())
	default:
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v while held", err)
	}
}

// TestKeepAlive: a lease with a short expiry outlives it many times over
// while kept alive; with KeepAlive(false) it expires, another takes it,
// and Lost closes by the lease's own deadline.
func TestKeepAlive(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	other := newClient(t, srv, mongolock.WithRetryInterval(20*time.Millisecond))
	ctx := testCtx(t)

	kept, err := c.TryAcquire(ctx, "kept", mongolock.Expire(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // four expiry periods
	notLost(t, kept)
	if _, err := other.TryAcquire(ctx, "kept"); !errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("TryAcquire of a kept-alive lease after 4 periods: %v; want ErrLocked", err)
	}
	if until := time.Until(kept.ExpiresAt()); until <= 0 {
		t.Fatalf("ExpiresAt is %v in the past after keep-alive", -until)
	}

	called := time.Now()
	manual, err := c.TryAcquire(ctx, "manual", mongolock.Expire(500*time.Millisecond), mongolock.KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	until := manual.ExpiresAt()
	if !until.Before(called.Add(500 * time.Millisecond)) {
		t.Fatalf("ExpiresAt is %v after the call; the lease's expiry is 500ms", until.Sub(called))
	}
	waitLost(t, manual, 5*time.Second)
	if !errors.Is(manual.Err(), mongolock.ErrLost) || !strings.Contains(manual.Err().Error(), "not renewed") {
		t.Fatalf("Err() = %v; want ErrLost: not renewed", manual.Err())
	}
	// Lost closes at ExpiresAt; seeing it takes a scheduling delay, which
	// a loaded machine makes long.
	if late := time.Since(until); late > schedulingSlack {
		t.Fatalf("Lost seen %v after ExpiresAt", late)
	}
	if _, err := other.Acquire(ctx, "manual", mongolock.Timeout(5*time.Second)); err != nil {
		t.Fatalf("taking the expired lease: %v", err)
	}
	if err := manual.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Release of a lease taken over: %v; want ErrNotHeld", err)
	}
	if err := kept.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLostSignal: Lost closes, with the reason in Err, when another client
// changes the lock document, and when the server stops answering.
func TestLostSignal(t *testing.T) {
	const expire = 450 * time.Millisecond
	tests := []struct {
		name   string
		breaks func(t *testing.T, srv *mongolocktest.Server, admin *mongolock.Client, key string)
		reason string
	}{
		{"released elsewhere", func(t *testing.T, _ *mongolocktest.Server, admin *mongolock.Client, key string) {
			if _, err := admin.ForceRelease(testCtx(t), key); err != nil {
				t.Fatal(err)
			}
		}, "released elsewhere"},
		{"deleted", func(t *testing.T, srv *mongolocktest.Server, _ *mongolock.Client, key string) {
			coll := srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection)
			if _, err := coll.DeleteOne(testCtx(t), bson.D{{Key: "_id", Value: key}}); err != nil {
				t.Fatal(err)
			}
		}, "deleted"},
		{"taken over", func(t *testing.T, srv *mongolocktest.Server, _ *mongolock.Client, key string) {
			coll := srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection)
			_, err := coll.UpdateOne(testCtx(t), bson.D{{Key: "_id", Value: key}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: "usurper"}, {Key: "token", Value: "other"}}}})
			if err != nil {
				t.Fatal(err)
			}
		}, `taken over by "usurper"`},
		{"server paused", func(t *testing.T, srv *mongolocktest.Server, _ *mongolock.Client, _ string) {
			srv.Pause()
			t.Cleanup(srv.Resume)
		}, "not renewed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mongolocktest.Start(t)
			c := newClient(t, srv)
			admin := newClient(t, srv)
			l, err := c.TryAcquire(testCtx(t), "k", mongolock.Expire(expire))
			if err != nil {
				t.Fatal(err)
			}
			broke := time.Now()
			tt.breaks(t, srv, admin, "k")
			waitLost(t, l, 5*time.Second)
			seen := time.Now()
			// No renewal after the break extends the lease, so its
			// promise ends within one expiry of it, and Lost closes then
			// at the latest (seen after a scheduling delay).
			until := l.ExpiresAt()
			if until.After(broke.Add(expire)) {
				t.Fatalf("ExpiresAt is %v after the lock was lost; want within the %v expiry", until.Sub(broke), expire)
			}
			if late := seen.Sub(until); late > schedulingSlack {
				t.Fatalf("Lost seen %v after ExpiresAt", late)
			}
			if err := l.Err(); !errors.Is(err, mongolock.ErrLost) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Err() = %v; want ErrLost saying %q", err, tt.reason)
			}
		})
	}
}

// TestKeepAliveSurvivesLostReplies: renewals whose replies are lost, and
// dropped connections, are retried; the lease is not lost.
func TestKeepAliveSurvivesLostReplies(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	l, err := c.TryAcquire(testCtx(t), "k", mongolock.Expire(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv.DropNextReply("update")
	time.Sleep(1200 * time.Millisecond)
	srv.DropConnections()
	time.Sleep(1200 * time.Millisecond)
	notLost(t, l)
	if err := l.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestDoCancelsOnLoss: fn's context is cancelled, with the lease's error as
// its cause, when the lock is lost, and Do reports it.
func TestDoCancelsOnLoss(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	admin := newClient(t, srv)
	ctx := testCtx(t)
	err := c.Do(ctx, "job", "worker", func(ctx context.Context) error {
		if _, err := admin.ForceRelease(testCtx(t), "job"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, mongolock.ErrLost) {
				return fmt.Errorf("cause %v; want ErrLost", cause)
			}
			return ctx.Err()
		case <-time.After(5 * time.Second):
			return errors.New("fn's context was not cancelled when the lock was lost")
		}
	}, mongolock.Expire(300*time.Millisecond))
	if !errors.Is(err, mongolock.ErrLost) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want fn's error and ErrLost", err)
	}
}

// TestInProcessHandOff: a waiter on the same Client is woken by the
// release itself, long before its next poll would have come.
func TestInProcessHandOff(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Second))
	ctx := testCtx(t)
	holder, err := c.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		if l, err := c.Acquire(ctx, "k"); err == nil {
			got <- time.Now()
			_ = l.Release(ctx)
		}
	}()
	// Let the waiter's backoff grow to about a second between polls.
	time.Sleep(1500 * time.Millisecond)
	released := time.Now()
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if lag := at.Sub(released); lag > 300*time.Millisecond {
			t.Fatalf("waiter took the lock %v after the release; want it woken at once", lag)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never got the lock")
	}
}

// TestWaitUntilHolderExpiry: a waiter sleeps until the holder's expiry when
// that comes before its next poll.
func TestWaitUntilHolderExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	waiter := newClient(t, srv, mongolock.WithRetryInterval(10*time.Second))
	ctx := testCtx(t)
	start := time.Now()
	if _, err := c.TryAcquire(ctx, "k", mongolock.Expire(1500*time.Millisecond), mongolock.KeepAlive(false)); err != nil {
		t.Fatal(err)
	}
	if _, err := waiter.Acquire(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// Polling alone (5ms doubling) would next try at about 2.5s.
	if took := time.Since(start); took < 1400*time.Millisecond || took > 2200*time.Millisecond {
		t.Fatalf("waiter got the lock after %v; want just after the 1.5s expiry", took)
	}
}

// TestMinHold: a release before MinHold has passed leaves the lock held
// (and unrenewable) until then; after it, the lock is free.
func TestMinHold(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	other := newClient(t, srv, mongolock.WithRetryInterval(20*time.Millisecond))
	ctx := testCtx(t)
	start := time.Now()
	l, err := c.TryAcquire(ctx, "cron", mongolock.MinHold(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.TryAcquire(ctx, "cron"); !errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("TryAcquire right after a MinHold release: %v; want ErrLocked", err)
	}
	if info := mustInfo(t, c, "cron"); !info.InMinHold || !info.Locked {
		t.Fatalf("Info during the minimum hold: %+v; want Locked and InMinHold", info)
	}
	if err := l.Renew(ctx, time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Renew after a MinHold release: %v; want ErrNotHeld", err)
	}
	if _, err := other.Acquire(ctx, "cron", mongolock.Timeout(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 950*time.Millisecond {
		t.Fatalf("lock free after %v; MinHold was 1s", took)
	}

	// A release after MinHold has passed frees the lock at once.
	l2, err := c.TryAcquire(ctx, "late", mongolock.MinHold(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.TryAcquire(ctx, "late"); err != nil {
		t.Fatalf("TryAcquire after MinHold passed: %v", err)
	}

	// The owner-named API honours it too.
	mustLock(t, c, "seed", "o", mongolock.MinHold(time.Hour))
	if err := c.Release(ctx, "seed", "o"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := other.Lock(ctx, "seed", "p"); ok {
		t.Fatal("Lock succeeded within MinHold of an owner-named release")
	}
}

// TestManyLeasesRenewInBatches: one Client keeping many leases alive sends
// a few commands per tick, not one per lease, and one lease's loss does not
// touch the others.
func TestManyLeasesRenewInBatches(t *testing.T) {
	const n = 100
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	admin := newClient(t, srv)
	ctx := testCtx(t)
	leases := make([]*mongolock.Lease, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.TryAcquire(ctx, fmt.Sprintf("many-%03d", i), mongolock.Expire(3*time.Second))
			leases[i] = l
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.ResetCommandCounts()
	if _, err := admin.ForceRelease(ctx, "many-007"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // four renewal periods
	updates := srv.CommandCount("update")
	if updates > 20 {
		t.Fatalf("%d update commands in four renewal periods for %d leases; want batches", updates, n)
	}
	if updates < 3 {
		for i, l := range leases {
			if l.Err() != nil {
				t.Logf("lease %d: %v", i, l.Err())
				break
			}
		}
		t.Fatalf("only %d update commands in four renewal periods; keep-alive is not running", updates)
	}
	for i, l := range leases {
		if i == 7 {
			if !errors.Is(l.Err(), mongolock.ErrLost) {
				t.Fatalf("force-released lease: Err() = %v; want ErrLost", l.Err())
			}
			continue
		}
		notLost(t, l)
	}
	t.Logf("%d leases kept alive for 4s with %d update commands", n, updates)
}

// TestCloseReleasesLeases: Close releases the leases it holds and stops
// keep-alive (goroutine leaks are checked by TestMain).
func TestCloseReleasesLeases(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	c, err := mongolock.Connect(ctx, srv.URI(), mongolock.WithDatabase(srv.Database()))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, err := c.TryAcquire(ctx, k, mongolock.Expire(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.TryAcquire(ctx, "forever", mongolock.NeverExpire()); err != nil {
		t.Fatal(err)
	}
	mustLock(t, c, "seed", "owner")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, "x"); !errors.Is(err, mongolock.ErrClosed) {
		t.Fatalf("TryAcquire after Close: %v; want ErrClosed", err)
	}
	check := newClient(t, srv)
	for _, k := range []string{"a", "b", "c", "forever"} {
		if locked, err := check.IsLocked(ctx, k); locked || err != nil {
			t.Fatalf("%s after Close: locked=%v err=%v; want released", k, locked, err)
		}
	}
	if locked, _ := check.IsLocked(ctx, "seed"); !locked {
		t.Fatal("Close released an owner-named Lock; those stay held as in the Python package")
	}
}

// TestPurge deletes idle documents only, and fences keep rising after it.
func TestPurge(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 20 * time.Millisecond
	c := newClient(t, srv, mongolock.WithMaxClockError(maxErr))
	ctx := testCtx(t)
	const idle = 3 * maxErr
	if _, err := c.Purge(ctx, idle-time.Millisecond); !errors.Is(err, mongolock.ErrInvalidArgument) {
		t.Fatalf("Purge with idleFor below three times the clock bound: %v; want ErrInvalidArgument", err)
	}
	var lastFence int64
	for _, k := range []string{"released", "expired", "held", "held-forever"} {
		opts := []mongolock.LockOption{mongolock.KeepAlive(false)}
		switch k {
		case "expired":
			opts = append(opts, mongolock.Expire(30*time.Millisecond))
		case "held":
			opts = append(opts, mongolock.Expire(time.Hour))
		case "held-forever":
			opts = append(opts, mongolock.NeverExpire())
		}
		l, err := c.TryAcquire(ctx, k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if k == "released" {
			lastFence = l.Fence()
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(idle + 50*time.Millisecond)
	n, err := c.Purge(ctx, idle)
	if err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2 (released and expired)", n, err)
	}
	for k, want := range map[string]bool{"released": false, "expired": false, "held": true, "held-forever": true} {
		_, err := c.Info(ctx, k)
		if exists := err == nil; exists != want {
			t.Fatalf("%s exists=%v after Purge (err %v); want %v", k, exists, err, want)
		}
	}
	l, err := newClient(t, srv).TryAcquire(ctx, "released")
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() <= lastFence {
		t.Fatalf("fence %d after Purge; the purged lock had %d", l.Fence(), lastFence)
	}
}
