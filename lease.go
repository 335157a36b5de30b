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
	c         *Client
	key       string
	owner     string
	token     string
	fence     int64
	created   time.Time     // server time written as created (for MinHold)
	minHold   time.Duration // MinHold
	keepAlive bool

	lost chan struct{} // closed by lose

	mu        sync.Mutex
	expire    time.Duration // current expire period; 0: never expires
	deadline  time.Time     // local reading after which it may be lost; zero: never
	nextRenew time.Time     // local reading when keep-alive renews it next
	timer     *time.Timer   // calls lose at deadline
	released  bool
	err       error         // why it was lost
	lostAt    time.Time     // local reading when it was lost
	onLost    []func(error) // called once when it is lost
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
	cfg.managed = true
	acq, err := c.acquire(ctx, key, owner, cfg, mode)
	if errors.Is(err, errHeld) {
		return nil, c.lockedError(ctx, key)
	}
	if err != nil {
		return nil, err
	}
	l := &Lease{
		c: c, key: acq.key, owner: acq.owner, token: acq.token, fence: acq.fence,
		created: acq.created, minHold: cfg.minHold,
		keepAlive: cfg.keepAlive == nil || *cfg.keepAlive,
		lost:      make(chan struct{}),
		expire:    acq.expire,
		deadline:  acq.deadline,
	}
	if l.expire > 0 {
		l.mu.Lock() // the timer may fire at once; lose waits for this
		l.nextRenew = acq.sent.Add(renewEvery(l.expire))
		l.timer = time.AfterFunc(l.deadline.Sub(c.cfg.now()), func() {
			l.lose(fmt.Errorf("%w: %q was not renewed before it expired", ErrLost, l.key))
		})
		l.mu.Unlock()
	}
	c.track(l)
	return l, nil
}

// renewEvery is how often keep-alive renews a lease of the given period.
func renewEvery(expire time.Duration) time.Duration { return expire / 3 }

// lose marks the lease lost for the reason err (once), closes Lost and
// stops its keep-alive.
func (l *Lease) lose(err error) {
	l.mu.Lock()
	if l.err != nil || l.released {
		l.mu.Unlock()
		return
	}
	l.err = err
	l.lostAt = l.c.cfg.now()
	if l.timer != nil {
		l.timer.Stop()
	}
	callbacks := l.onLost
	l.onLost = nil
	l.mu.Unlock()
	close(l.lost)
	l.c.untrack(l)
	for _, f := range callbacks {
		f(err)
	}
}

// whenLost registers f to be called (once) if the lease is lost.
func (l *Lease) whenLost(f func(error)) {
	l.mu.Lock()
	if err := l.err; err != nil {
		l.mu.Unlock()
		f(err)
		return
	}
	l.onLost = append(l.onLost, f)
	l.mu.Unlock()
}

// renewed records a successful renewal judged at now for period d.
func (l *Lease) renewed(now serverTime, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || l.released {
		return
	}
	l.expire = d
	l.deadline = localDeadline(now, d)
	l.nextRenew = now.local.Add(renewEvery(d))
	if l.timer != nil {
		l.timer.Reset(l.deadline.Sub(l.c.cfg.now()))
	} else {
		l.timer = time.AfterFunc(l.deadline.Sub(l.c.cfg.now()), func() {
			l.lose(fmt.Errorf("%w: %q was not renewed before it expired", ErrLost, l.key))
		})
	}
}

// ended marks the lease released (not lost) and stops its timer.
func (l *Lease) ended() {
	l.mu.Lock()
	l.released = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.onLost = nil
	l.mu.Unlock()
	l.c.untrack(l)
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

// Renew extends the lease to expire d from now (server time); keep-alive
// goes on with period d. It returns an error matching ErrNotHeld if the
// lease was released, or expired before the renewal reached the server, or
// was taken over, and the lease's Err (matching ErrLost) once it is lost.
func (l *Lease) Renew(ctx context.Context, d time.Duration) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	if err := validExpire("d", d); err != nil {
		return err
	}
	l.mu.Lock()
	released, lostErr := l.released, l.err
	l.mu.Unlock()
	switch {
	case released:
		return fmt.Errorf("mongolock: renewing %q: %w (released)", l.key, ErrNotHeld)
	case lostErr != nil:
		return fmt.Errorf("mongolock: renewing %q: %w (%w)", l.key, ErrNotHeld, lostErr)
	}
	now, err := l.c.renew(ctx, l.key, holder{token: l.token}, d)
	if err != nil {
		return fmt.Errorf("mongolock: renewing %q: %w", l.key, err)
	}
	l.renewed(now, d)
	return nil
}

// Release releases the lease (with MinHold, it stays held until the
// minimum has passed, and then is free; it can no longer be renewed). It
// returns an error matching ErrNotHeld if the lease had already been
// released, or had expired and been taken over (then this holder's
// critical section was not exclusive to the end). A release whose reply is
// lost is retried with the same token, so it cannot leak the lock; if by
// then another acquisition holds it, Release reports ErrNotHeld, as it
// cannot tell whether its first attempt got there first.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	return l.release(ctx)
}

func (l *Lease) release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return fmt.Errorf("mongolock: releasing %q: %w (already released)", l.key, ErrNotHeld)
	}
	l.mu.Unlock()
	ok, unknown, err := l.c.releaseToken(ctx, l.key, l.token, l.created, l.minHold)
	if err != nil {
		return fmt.Errorf("mongolock: releasing %q: %w", l.key, err)
	}
	l.ended()
	if !ok {
		return fmt.Errorf("mongolock: releasing %q: %w (%s)", l.key, ErrNotHeld, notHeldWhy(unknown))
	}
	return nil
}

// notHeldWhy explains a release that matched nothing. After an attempt
// whose outcome was unknown, the first attempt may have released the lock
// before someone else took it; that cannot be told apart from a lease taken
// over before the release, so the release reports ErrNotHeld either way
// (the conservative answer: the lock is not this holder's now, and may not
// have been exclusive to the end).
func notHeldWhy(unknown bool) string {
	if unknown {
		return "it is held by another acquisition now; an earlier attempt whose reply was lost may have released it first"
	}
	return "it expired and was taken over"
}

// Lost returns a channel that is closed when the lease is known lost: taken
// over by another holder after it expired, deleted, released elsewhere, or
// not renewed before its expiry (judged on the local monotonic clock against
// the server-time expiry less the clock margin, so it closes even if the
// server never answers). Err then says why. Release does not close it.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns nil while the lease is held (or after it was released), and an
// error matching ErrLost, saying why, once Lost is closed.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
