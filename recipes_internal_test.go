package mongolock

import (
	"context"
	"testing"
	"time"
)

// TestEntryRenewAfterExpiryQuery: the server refuses to renew a holder
// entry that has expired, even if nobody took its place — whatever the
// lease believes (a lease whose local deadline has passed never sends the
// renewal; this sends it anyway, as a lease whose clock estimate ran
// behind would).
func TestEntryRenewAfterExpiryQuery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testClient(t)
	for _, opt := range []LockOption{Limit(2), Shared()} {
		l, err := c.TryAcquire(ctx, "k", opt, Expire(100*time.Millisecond), KeepAlive(false))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100*time.Millisecond + 2*time.Second/10)
		now, err := c.clock.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.renewAs(ctx, "k", l.token, true, now, time.Hour); ok || err != nil {
			t.Fatalf("renewal of an expired entry = %v, %v; want refused", ok, err)
		}
		_ = l.Release(ctx)
	}
}
