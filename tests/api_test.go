package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// TestLeaseDefaultExpiry: a lease taken without Expire expires after
// DefaultLeaseExpire unless kept alive — so a crashed holder does not keep
// it for ever — and NeverExpire asks for one that never does. The
// owner-named Lock and Do keep the Python package's "no Expire, no
// expiry".
func TestLeaseDefaultExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	l, err := c.TryAcquire(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if until := time.Until(mustInfo(t, c, "default").Expire); until <= 0 || until > mongolock.DefaultLeaseExpire {
		t.Fatalf("a lease without Expire expires in %v; want within DefaultLeaseExpire (%v)", until, mongolock.DefaultLeaseExpire)
	}
	if until := time.Until(l.ExpiresAt()); until <= 0 || until > mongolock.DefaultLeaseExpire {
		t.Fatalf("ExpiresAt is %v away", until)
	}
	never, err := c.TryAcquire(ctx, "never", mongolock.NeverExpire())
	if err != nil {
		t.Fatal(err)
	}
	if !mustInfo(t, c, "never").Expire.IsZero() || !never.ExpiresAt().IsZero() {
		t.Fatalf("a NeverExpire lease has an expiry: %v", mustInfo(t, c, "never").Expire)
	}
	mustLock(t, c, "seed", "o")
	if !mustInfo(t, c, "seed").Expire.IsZero() {
		t.Fatal("Lock without Expire set an expiry")
	}
	err = c.Do(ctx, "do", "o", func(ctx context.Context) error {
		if !mustInfo(t, c, "do").Expire.IsZero() {
			t.Error("Do without Expire set an expiry")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDoGeneratesOwner: Do with an empty owner generates one, as Acquire
// does.
func TestDoGeneratesOwner(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	err := c.Do(testCtx(t), "k", "", func(context.Context) error {
		if owner := mustInfo(t, c, "k").Owner; owner == "" {
			t.Error("Do with an empty owner recorded no owner")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWaitEndedByContextNamesHolder: a wait that ends because ctx ended
// while the lock was held is a *LockedError naming the holder, matching
// both ErrLocked and ctx's error — as a Timeout's is.
func TestWaitEndedByContextNamesHolder(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	holder, err := c.TryAcquire(testCtx(t), "k", mongolock.Owner("the-holder"))
	if err != nil {
		t.Fatal(err)
	}
	waits := []struct {
		name string
		wait func(ctx context.Context) error
	}{
		{"Acquire", func(ctx context.Context) error { _, err := c.Acquire(ctx, "k"); return err }},
		{"Lock", func(ctx context.Context) error {
			_, err := c.Lock(ctx, "k", "o", mongolock.Timeout(time.Hour))
			return err
		}},
		{"Do", func(ctx context.Context) error {
			return c.Do(ctx, "k", "o", func(context.Context) error { return nil }, mongolock.Timeout(time.Hour))
		}},
	}
	for _, w := range waits {
		t.Run(w.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
			defer cancel()
			err := w.wait(ctx)
			var le *mongolock.LockedError
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, mongolock.ErrLocked) || !errors.As(err, &le) {
				t.Fatalf("%s ended by its context: %v; want a *LockedError matching ErrLocked and the context's error", w.name, err)
			}
			if le.Owner != "the-holder" || le.Created.IsZero() || le.Expire.IsZero() {
				t.Fatalf("LockedError %+v; want the holder named, with Created and Expire", le)
			}
			if !le.Since.Equal(le.Created) || !le.Expires.Equal(le.Expire) {
				t.Fatalf("the deprecated Since/Expires (%v, %v) differ from Created/Expire", le.Since, le.Expires)
			}
		})
	}
	_ = holder.Release(testCtx(t))
}
