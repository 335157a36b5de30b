package mongolock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds the owner-named API kept from the Python package:
// Lock, Release, Touch, Info, IsLocked and Do.

// Lock takes the lock key for owner and reports whether it got it; false
// with a nil error means another owner holds it. Without Expire the lock
// never expires; without Timeout Lock makes one attempt, and with
// Timeout(d) it keeps trying (every WithRetryInterval) for up to d. Locks are
// not reentrant: the same owner locking again gets false.
//
// The acquisition's token is remembered by this Client, so Release and
// Touch with the same key and owner act on this acquisition only, never on
// one another worker with the same owner name made later.
func (c *Client) Lock(ctx context.Context, key, owner string, opts ...LockOption) (bool, error) {
	cfg, err := buildLockConfig(opts)
	if err != nil {
		return false, err
	}
	switch {
	case cfg.ownerSet:
		return false, argError("Owner", "is for Acquire and TryAcquire; Lock takes the owner as an argument")
	case cfg.keepAlive != nil:
		return false, argError("KeepAlive", "is for leases; Lock's acquisitions are never kept alive (use Touch, or Acquire or Do)")
	case cfg.multi() || cfg.fair:
		return false, argError("Limit, Shared and Fair", "are for Acquire, TryAcquire and Do; Lock takes an exclusive lock")
	}
	if err := c.beginOp(); err != nil {
		return false, err
	}
	defer c.endOp()
	acq, err := c.acquire(ctx, key, owner, cfg, waitTimeout)
	if errors.Is(err, errHeld) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = c.register(ctx, acq, func() {
		c.held.put(key, heldLock{owner: owner, token: acq.token, created: acq.created, minHold: cfg.minHold})
	})
	return err == nil, err
}

// holderFor picks what Release and Touch match on: the token of this
// Client's acquisition of key, or the owner name if this Client never
// acquired key (or acquired it so long ago, maxHeldKeys other keys since,
// that it no longer remembers). If this Client acquired key for another owner, or already
// released it, the owner does not hold it through this Client.
func (c *Client) holderFor(key, owner string) (holder, heldLock, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.held.get(key)
	switch {
	case !ok:
		return holder{owner: owner}, h, nil
	case h.owner != owner || h.token == "":
		return holder{}, h, fmt.Errorf("%w: %q by %q through this client", ErrNotHeld, key, owner)
	}
	return holder{token: h.token}, h, nil
}

// forget marks this Client's acquisition of key as ended; the key stays
// known so that the owner-name fallback never applies to it again.
func (c *Client) forget(key, token string) {
	c.mu.Lock()
	if h, ok := c.held.get(key); ok && h.token == token {
		c.held.put(key, heldLock{owner: h.owner})
	}
	c.mu.Unlock()
}

func (c *Client) checkKeyOwner(key, owner string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := validKey(key); err != nil {
		return err
	}
	return validOwner(owner)
}

// Release releases the lock key held by owner. It returns an error matching
// ErrNotHeld if owner does not hold it (released already, never taken, or
// taken over by another acquisition after it expired). Releasing a lock that
// does not exist creates no document.
func (c *Client) Release(ctx context.Context, key, owner string) error {
	if err := c.checkKeyOwner(key, owner); err != nil {
		return err
	}
	h, hl, err := c.holderFor(key, owner)
	if err != nil {
		return err
	}
	var ok, unknown bool
	if h.token != "" {
		ok, unknown, err = c.releaseToken(ctx, key, h.token, hl.created, hl.minHold)
	} else {
		ok, unknown, err = c.retry(ctx, func(ctx context.Context) (bool, error) {
			return c.store.release(ctx, key, h)
		})
		if err == nil && ok {
			c.notifyReleased(key)
		}
	}
	if err != nil {
		return fmt.Errorf("mongolock: releasing %q: %w", key, err)
	}
	if h.token != "" {
		c.forget(key, h.token)
	}
	if !ok {
		return fmt.Errorf("%w: %q by %q (%s)", ErrNotHeld, key, owner, notHeldWhy(unknown))
	}
	return nil
}

// Touch renews the lock key held by owner: it will now expire expire from
// now (server time), also if it was taken without Expire, and also if that
// is sooner than before (as in the Python package). It returns an error
// matching ErrNotHeld if owner does not hold it or it has expired (even if
// nobody took it over since).
func (c *Client) Touch(ctx context.Context, key, owner string, expire time.Duration) error {
	if err := c.checkKeyOwner(key, owner); err != nil {
		return err
	}
	if err := validExpire("expire", expire); err != nil {
		return err
	}
	h, _, err := c.holderFor(key, owner)
	if err != nil {
		return err
	}
	ok, _, err := c.retry(ctx, func(ctx context.Context) (bool, error) {
		now, err := c.clock.Now(ctx)
		if err != nil {
			return false, err
		}
		return c.store.touch(ctx, key, h, now, expire)
	})
	switch {
	case err != nil:
		return fmt.Errorf("mongolock: touching %q by %q: %w", key, owner, err)
	case !ok:
		return fmt.Errorf("mongolock: touching %q by %q: %w", key, owner, ErrNotHeld)
	}
	return nil
}

// Info returns the stored state of lock key, or an error matching
// ErrNotFound if there is none. A stored document of the wrong shape is an
// error matching ErrInvalidDocument.
func (c *Client) Info(ctx context.Context, key string) (*LockInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if err := validKey(key); err != nil {
		return nil, err
	}
	d, err := c.store.find(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("mongolock: reading lock %q: %w", key, err)
	}
	return &d.LockInfo, nil
}

// IsLocked reports whether lock key is held now: it exists, is locked, and
// has not expired by the server's clock.
func (c *Client) IsLocked(ctx context.Context, key string) (bool, error) {
	info, err := c.Info(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	now, err := c.clock.Now(ctx)
	if err != nil {
		return false, err
	}
	return info.heldAt(now.at), nil
}

// doReleaseTimeout bounds the release Do makes after fn returns, which runs
// even when ctx has been cancelled.
const doReleaseTimeout = 10 * time.Second

// Do runs fn while holding lock key for owner (a generated unique name if
// owner is "") and releases the lock when fn returns, also when fn returns
// an error or panics (the panic continues after the release). If the lock is held by another owner (after Timeout,
// if given), Do returns a *LockedError naming the holder, matching
// ErrLocked. With Expire, the lock is kept alive while fn runs (unless
// KeepAlive(false)), and fn's ctx is cancelled, with the lease's error as
// its cause, as soon as the lock is known lost; Do's error then matches
// ErrLost as well as carrying fn's error.
func (c *Client) Do(ctx context.Context, key, owner string, fn func(ctx context.Context) error, opts ...LockOption) (err error) {
	if fn == nil {
		return argError("fn", "must not be nil")
	}
	cfg, err := buildLockConfig(opts)
	if err != nil {
		return err
	}
	if cfg.ownerSet {
		return argError("Owner", "is for Acquire and TryAcquire; Do takes the owner as an argument")
	}
	if owner == "" {
		owner = newOwner()
	}
	l, err := c.acquireLease(ctx, key, owner, cfg, waitTimeout)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l.whenLost(cancel)
	defer func() {
		if lost := l.Err(); lost != nil {
			err = errors.Join(err, lost)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), doReleaseTimeout)
		defer cancel()
		if rerr := l.release(rctx); rerr != nil && l.Err() == nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn(fctx)
}
