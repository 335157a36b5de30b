package mongolock

import (
	"context"
	"sync"
	"testing"
	"time"
)

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
