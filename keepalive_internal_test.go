package mongolock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestKeepAliveNeverRenewsPastDeadline: a lease whose deadline passed
// before keep-alive got to it — between acquisition and registration, or
// while keep-alive was busy — is never added or renewed, only lost.
func TestKeepAliveNeverRenewsPastDeadline(t *testing.T) {
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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
