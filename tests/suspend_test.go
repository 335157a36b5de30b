package tests

import (
	"errors"
	"github.com/mongolock/mongolock"
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
	c := connectSkewed(t, srv, 0, mongolock.WithLocalClock(clock.now))
	ctx := ctxFor(t)
	kept, err := c.TryAcquire(ctx, "kept", mongolock.Expire(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	manual, err := c.TryAcquire(ctx, "manual", mongolock.Expire(3*time.Second), mongolock.KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	clock.suspend(time.Hour)
	for _, l := range []*mongolock.Lease{kept, manual} {
		if until := time.Until(l.ExpiresAt()); until > 0 {
			t.Errorf("%s: ExpiresAt is %v ahead after an hour's suspend", l.Key(), until)
		}
		if err := l.Err(); !errors.Is(err, mongolock.ErrLost) {
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
	c := connectSkewed(t, srv, 0, mongolock.WithLocalClock(clock.now))
	l, err := c.TryAcquire(ctxFor(t), "k", mongolock.Expire(5*time.Second), mongolock.KeepAlive(false))
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
