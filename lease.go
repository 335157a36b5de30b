package mongolock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Lease is one acquisition of a lock, identified by a random 128-bit token:
// only this Lease can renew or release it, whatever owner name others use.
// It is safe for concurrent use.
type Lease struct {
	c     *Client
	key   string
	owner string
	token string
	fence int64

	mu       sync.Mutex
	deadline time.Time // local reading after which it may be lost; zero: never
	released bool
}

// Acquire takes the lock key, waiting while another owner holds it: until
// it gets the lock, until Timeout passes (a *LockedError naming the holder,
// matching ErrLocked), or until ctx ends (ctx's error, wrapped). Options:
// Expire, Timeout, Owner (default: a generated unique name).
func (c *Client) Acquire(ctx context.Context, key string, opts ...LockOption) (*Lease, error) {
	return c.acquireOpts(ctx, key, opts, waitForever)
}

// TryAcquire makes one attempt to take the lock key. If another owner holds
// it, the error is a *LockedError naming the holder, matching ErrLocked.
// Options as for Acquire; Timeout is ignored.
func (c *Client) TryAcquire(ctx context.Context, key string, opts ...LockOption) (*Lease, error) {
	return c.acquireOpts(ctx, key, opts, waitNever)
}

func (c *Client) acquireOpts(ctx context.Context, key string, opts []LockOption, mode waitMode) (*Lease, error) {
	cfg, err := buildLockConfig(opts)
	if err != nil {
		return nil, err
	}
	owner := cfg.owner
	if !cfg.ownerSet {
		owner = newOwner()
	}
	return c.acquireLease(ctx, key, owner, cfg, mode)
}

func (c *Client) acquireLease(ctx context.Context, key, owner string, cfg lockConfig, mode waitMode) (*Lease, error) {
	acq, err := c.acquire(ctx, key, owner, cfg, mode)
	if errors.Is(err, errHeld) {
		return nil, c.lockedError(ctx, key)
	}
	if err != nil {
		return nil, err
	}
	return &Lease{c: c, key: acq.key, owner: acq.owner, token: acq.token, fence: acq.fence, deadline: acq.deadline}, nil
}

// Key returns the lock's key.
func (l *Lease) Key() string { return l.key }

// Owner returns the owner name recorded in the lock document.
func (l *Lease) Owner() string { return l.owner }

// Token returns the acquisition's random token (32 hex digits).
func (l *Lease) Token() string { return l.token }

// Fence returns the fencing token: it is greater than the fence of every
// earlier acquisition of the same key, by any client of this package. Pass
// it to the resource the lock protects, which should reject any write that
// carries a fence lower than one it has already seen.
func (l *Lease) Fence() int64 { return l.fence }

// ExpiresAt returns the local time until which the lease is surely held
// (the server-time expiry translated to this machine's monotonic clock,
// less the clock estimate's error bound), or the zero time if the lock
// never expires. Compare it with time.Now, or use time.Until.
func (l *Lease) ExpiresAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Renew extends the lease to expire d from now (server time). It returns an
// error matching ErrNotHeld if the lease was released, or expired before
// the renewal reached the server, or was taken over.
func (l *Lease) Renew(ctx context.Context, d time.Duration) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	if err := validExpire("d", d); err != nil {
		return err
	}
	l.mu.Lock()
	released := l.released
	l.mu.Unlock()
	if released {
		return fmt.Errorf("mongolock: renewing %q: %w (released)", l.key, ErrNotHeld)
	}
	now, err := l.c.renew(ctx, l.key, holder{token: l.token}, d)
	if err != nil {
		return fmt.Errorf("mongolock: renewing %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.deadline = localDeadline(now, d)
	l.mu.Unlock()
	return nil
}

// Release releases the lease. It returns an error matching ErrNotHeld if the
// lease had already been released, or had expired and been taken over
// (then this holder's critical section was not exclusive to the end). A
// release whose reply is lost is retried with the same token, so it cannot
// leak the lock.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return fmt.Errorf("mongolock: releasing %q: %w (already released)", l.key, ErrNotHeld)
	}
	l.mu.Unlock()
	ok, unknown, err := l.c.retry(ctx, func(ctx context.Context) (bool, error) {
		return l.c.store.release(ctx, l.key, holder{token: l.token})
	})
	if err != nil {
		return fmt.Errorf("mongolock: releasing %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.released = true
	l.mu.Unlock()
	if !ok && !unknown {
		return fmt.Errorf("mongolock: releasing %q: %w (it expired and was taken over)", l.key, ErrNotHeld)
	}
	return nil
}
