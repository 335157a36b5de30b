package mongolock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mongolock/mongolock/mongolocktest"
)

// jumpClock is a local clock that can be moved ahead at once, as
// CLOCK_BOOTTIME is after a suspend, while Go's monotonic clock (and so
// every timer) stood still.
type jumpClock struct{ ahead atomic.Int64 }

func (j *jumpClock) now() time.Time { return time.Now().Add(time.Duration(j.ahead.Load())) }

func (j *jumpClock) suspend(d time.Duration) { j.ahead.Add(int64(d)) }

// TestSuspendedPastExpiry: a process resumed after its leases expired
// sees them lost before it can act as their holder — Err and ExpiresAt say
// so at once, Lost closes within the suspend watch's period — and keep-alive
// does not renew them.
func TestSuspendedPastExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	var clock jumpClock
	c := connectSkewed(t, srv, 0, withLocalClock(clock.now))
	ctx := ctxFor(t)
	kept, err := c.TryAcquire(ctx, "kept", Expire(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	manual, err := c.TryAcquire(ctx, "manual", Expire(3*time.Second), KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	clock.suspend(time.Hour)
	for _, l := range []*Lease{kept, manual} {
		if until := time.Until(l.ExpiresAt()); until > 0 {
			t.Errorf("%s: ExpiresAt is %v ahead after an hour's suspend", l.Key(), until)
		}
		if err := l.Err(); !errors.Is(err, ErrLost) {
			t.Errorf("%s: Err() = %v right after an hour's suspend; want ErrLost", l.Key(), err)
		}
		select {
		case <-l.Lost():
		case <-time.After(2 * time.Second):
			t.Errorf("%s: Lost not closed within 2s of the resume", l.Key())
		}
	}
}

// TestSuspendWatchClosesLost: without anyone calling Err, the suspend watch
// closes Lost soon after the resume (Go's timers would wait out the
// remaining time as if no time had passed).
func TestSuspendWatchClosesLost(t *testing.T) {
	srv := mongolocktest.Start(t)
	var clock jumpClock
	c := connectSkewed(t, srv, 0, withLocalClock(clock.now))
	l, err := c.TryAcquire(ctxFor(t), "k", Expire(5*time.Second), KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	clock.suspend(10 * time.Second)
	select {
	case <-l.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("Lost not closed within 2s after a suspend past the lease's expiry")
	}
}

// TestServerClockAcrossSuspend: the server-clock estimate advances with the
// local clock, which counts a suspend, so it is right after the resume; the
// estimate is then stale, and the next use samples again.
func TestServerClockAcrossSuspend(t *testing.T) {
	var (
		mu     sync.Mutex
		server = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		local  = time.Unix(1000, 0)
		hellos int
	)
	advance := func(d time.Duration) {
		mu.Lock()
		server, local = server.Add(d), local.Add(d)
		mu.Unlock()
	}
	sc := &serverClock{
		hello: func(context.Context) (time.Time, error) {
			mu.Lock()
			defer mu.Unlock()
			hellos++
			return server.Truncate(time.Millisecond), nil
		},
		now:     func() time.Time { mu.Lock(); defer mu.Unlock(); return local },
		refresh: 30 * time.Second,
		maxErr:  time.Second,
	}
	ctx := context.Background()
	if _, err := sc.Now(ctx); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour) // suspended for an hour: both clocks moved
	before := hellos
	est, err := sc.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := est.at.Sub(server); d > est.err || -d > est.err {
		t.Fatalf("estimate after a suspend off by %v (bound %v)", d, est.err)
	}
	if hellos == before {
		t.Fatal("an estimate an hour old was used without sampling again")
	}
}

// TestKeepAliveNeverRenewsPastDeadline: a lease whose deadline passed
// before keep-alive got to it — between acquisition and registration, or
// while keep-alive was busy — is never added or renewed, only lost.
func TestKeepAliveNeverRenewsPastDeadline(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := connectSkewed(t, srv, 0)
	ctx := ctxFor(t)
	l, err := c.TryAcquire(ctx, "k", Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	// Its deadline has passed (as if the process stalled), but no timer
	// has noticed yet.
	l.mu.Lock()
	l.deadline = c.cfg.now().Add(-time.Millisecond)
	l.mu.Unlock()
	c.keeper.renewGroup(ctx, time.Minute, []*Lease{l})
	if !errors.Is(l.Err(), ErrLost) {
		t.Fatalf("Err() = %v; want ErrLost", l.Err())
	}
	after, err := c.Info(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Expire.Equal(info.Expire) {
		t.Fatalf("a lease past its deadline was renewed: expiry %v -> %v", info.Expire, after.Expire)
	}
	c.keeper.add(l)
	c.keeper.mu.Lock()
	_, added := c.keeper.leases[l]
	c.keeper.mu.Unlock()
	if added {
		t.Fatal("keep-alive took on a lease that was already lost")
	}
}
