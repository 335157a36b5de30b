package tests

import (
	"context"
	"errors"
	"github.com/mongolock/mongolock"
	"testing"
	"time"

	"github.com/mongolock/mongolock/mongolocktest"
)

func connectSkewed(t *testing.T, srv *mongolocktest.Server, skew time.Duration, opts ...mongolock.Option) *mongolock.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts = append([]mongolock.Option{
		mongolock.WithDatabase(srv.Database()),
		mongolock.WithRetryInterval(10 * time.Millisecond),
		mongolock.WithLocalClock(func() time.Time { return time.Now().Add(skew) }),
	}, opts...)
	c, err := mongolock.Connect(ctx, srv.URI(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestClockAheadDoesNotSteal: a worker whose wall clock is an hour ahead
// must not take a lock that is live by the server's clock.
func TestClockAheadDoesNotSteal(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := ctxFor(t)
	holder := connectSkewed(t, srv, 0)
	ahead := connectSkewed(t, srv, time.Hour)

	if ok, err := holder.Lock(ctx, "k", "holder", mongolock.Expire(3*time.Second)); !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}
	if ok, err := ahead.Lock(ctx, "k", "ahead", mongolock.Timeout(500*time.Millisecond)); ok || err != nil {
		t.Fatalf("worker an hour ahead: Lock = %v, %v; want false (the lock is live)", ok, err)
	}
	if locked, err := ahead.IsLocked(ctx, "k"); !locked || err != nil {
		t.Fatalf("worker an hour ahead: IsLocked = %v, %v; want true", locked, err)
	}
	info, err := ahead.Info(ctx, "k")
	if err != nil || info.Owner != "holder" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	// The times the skewed worker writes are server times too.
	l, err := ahead.TryAcquire(ctx, "other", mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	mine, err := ahead.Info(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if d := mine.Created.Sub(info.Created); d < 0 || d > 10*time.Second {
		t.Fatalf("created %v by the skewed worker vs %v by the holder: not server time", mine.Created, info.Created)
	}
	if time.Until(l.ExpiresAt().Add(-time.Hour)) > time.Minute {
		t.Fatalf("lease deadline %v is not a minute from the worker's own (skewed) clock", l.ExpiresAt())
	}
}

// TestClockBehindTakesExpiredLock: a worker whose wall clock is an hour
// behind still takes an expired lock as soon as its server-time expiry
// passes, and not before.
func TestClockBehindTakesExpiredLock(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := ctxFor(t)
	holder := connectSkewed(t, srv, 0)
	behind := connectSkewed(t, srv, -time.Hour)

	const expire = 400 * time.Millisecond
	locked := time.Now()
	if ok, err := holder.Lock(ctx, "k", "holder", mongolock.Expire(expire)); !ok || err != nil {
		t.Fatalf("Lock: %v %v", ok, err)
	}
	ok, err := behind.Lock(ctx, "k", "behind", mongolock.Timeout(10*time.Second))
	took := time.Since(locked)
	if !ok || err != nil {
		t.Fatalf("worker an hour behind: Lock = %v, %v; want true once the lock expired", ok, err)
	}
	if took < expire-50*time.Millisecond {
		t.Fatalf("took the lock after %v, before its %v expiry", took, expire)
	}
	if took > expire+3*time.Second {
		t.Fatalf("took the lock only after %v; its expiry was %v", took, expire)
	}
}

// TestCronDrift is the seed README's "Lock simply doesn't work" scenario,
// in the form where client clocks decide: the machines' clocks differ, the
// first machine takes the job's lock for its period (Expire) and a second
// machine, whose clock is ahead, tries right away. Judged on client clocks
// (the Python package), the second sees the lock as expired and runs the
// job again; judged on the server's clock it does not.
func TestCronDrift(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := ctxFor(t)
	machine1 := connectSkewed(t, srv, -5*time.Second)
	machine2 := connectSkewed(t, srv, 5*time.Second)

	if ok, err := machine1.Lock(ctx, "TaskA", "machine1", mongolock.Expire(6*time.Second)); !ok || err != nil {
		t.Fatalf("machine1 Lock: %v %v", ok, err)
	}
	for i := 0; i < 3; i++ {
		if ok, err := machine2.Lock(ctx, "TaskA", "machine2"); ok || err != nil {
			t.Fatalf("machine2 (clock 10s ahead of machine1) took TaskA's live lock: %v %v", ok, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServerClockEstimate(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := connectSkewed(t, srv, 3*time.Hour)
	ctx := ctxFor(t)
	now, bound, err := c.ServerTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The test server runs on this machine, so the server's clock is this
	// machine's real clock: the estimate must be within its bound of it.
	real := time.Now()
	if d := now.Sub(real); d > bound+50*time.Millisecond || d < -bound-50*time.Millisecond {
		t.Fatalf("estimate off by %v with bound %v (skewed local clock leaked in?)", d, bound)
	}
	if bound <= 0 || bound > 100*time.Millisecond {
		t.Fatalf("error bound %v", bound)
	}
}

func TestClockErrorBoundEnforced(t *testing.T) {
	srv := mongolocktest.Start(t)
	srv.SetLatency(30 * time.Millisecond)
	c := connectSkewed(t, srv, 0, mongolock.WithMaxClockError(5*time.Millisecond))
	ok, err := c.Lock(ctxFor(t), "k", "o", mongolock.Expire(time.Second))
	if ok || err == nil {
		t.Fatalf("Lock with round trips too slow for the clock bound = %v, %v; want an error", ok, err)
	}
	if errors.Is(err, mongolock.ErrLocked) {
		t.Fatalf("error %v should say the clock bound is exceeded", err)
	}
}

// TestCronDriftMinHold is the seed README's cron scenario end to end: the
// machines' clocks differ by 10s; machine1's job takes the lock, finishes
// in a moment and releases; machine2's schedule fires a few seconds later
// (here: at once, the worst case). With MinHold covering the schedule's
// spread, machine2 does not run the job again.
func TestCronDriftMinHold(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := ctxFor(t)
	machine1 := connectSkewed(t, srv, -5*time.Second)
	machine2 := connectSkewed(t, srv, 5*time.Second)
	runs := 0
	job := func(context.Context) error { runs++; time.Sleep(50 * time.Millisecond); return nil }

	if err := machine1.Do(ctx, "TaskA", "machine1", job, mongolock.MinHold(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	err := machine2.Do(ctx, "TaskA", "machine2", job, mongolock.MinHold(1500*time.Millisecond))
	if !errors.Is(err, mongolock.ErrLocked) || runs != 1 {
		t.Fatalf("machine2 right after machine1's fast run: %v (runs %d); want ErrLocked and one run", err, runs)
	}
	time.Sleep(1600 * time.Millisecond)
	if err := machine2.Do(ctx, "TaskA", "machine2", job); err != nil || runs != 2 {
		t.Fatalf("machine2's next period: %v (runs %d); want it to run", err, runs)
	}
}
