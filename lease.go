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
	multi     bool // an entry of holders (Limit, Shared), not the whole lock

	lost chan struct{} // closed by lose

	mu         sync.Mutex
	period     time.Duration // expire period keep-alive renews with; 0: never expires
	deadline   time.Time     // local reading until which it is surely held; zero: never expires
	nextRenew  time.Time     // local reading when keep-alive renews it next
	timer      *time.Timer   // calls lose at deadline
	state      leaseState
	err        error     // why it was lost
	pendingErr error     // a loss noticed while a release was in flight
	lostAt     time.Time // local reading when it was lost
	// unsure: a renewal was sent, so the server may keep the lock for
	// this token past deadline (an applied renewal whose reply was lost,
	// or that was delayed past the deadline, wrote an expiry the lease
	// never learned of); a loss at the deadline then gives the lock back.
	unsure bool
	onLost []func(error) // called once when it is lost
}

// leaseState is where a lease is in its life. A lease that is lost (err
// set) is still in leaseHeld until released: its holder may still release
// it, which frees the lock sooner if nobody took it over.
type leaseState int

const (
	leaseHeld      leaseState = iota
	leaseReleasing            // Release in flight: a loss noticed now is kept until it is known whether the release succeeded
	leaseReleased             // released by its holder: never reported lost
)

// Acquire takes the lock key, waiting while another owner holds it: until
// it gets the lock, or until Timeout passes or ctx ends — then the error is
// a *LockedError naming the holder, matching ErrLocked (and ctx's error,
// if ctx ended the wait). Options: Expire (default DefaultLeaseExpire,
// kept alive) or NeverExpire, Timeout, Owner (default: a generated unique
// name), KeepAlive, MinHold.
func (c *Client) Acquire(ctx context.Context, key string, opts ...LockOption) (*Lease, error) {
	return c.acquireOpts(ctx, key, opts, waitForever)
}

// TryAcquire makes one attempt to take the lock key. If another owner holds
// it, the error is a *LockedError naming the holder, matching ErrLocked.
// Options as for Acquire, but Timeout, which it has no use for, is refused.
func (c *Client) TryAcquire(ctx context.Context, key string, opts ...LockOption) (*Lease, error) {
	return c.acquireOpts(ctx, key, opts, waitNever)
}

func (c *Client) acquireOpts(ctx context.Context, key string, opts []LockOption, mode waitMode) (*Lease, error) {
	cfg, err := buildLockConfig(opts)
	if err != nil {
		return nil, err
	}
	if mode == waitNever && cfg.timeoutSet {
		return nil, argError("Timeout", "is for Acquire; TryAcquire makes one attempt")
	}
	if cfg.value != nil {
		return nil, argError("value", "is for Election.Campaign")
	}
	if !cfg.expireSet && !cfg.never {
		cfg.expire = DefaultLeaseExpire
	}
	owner := cfg.owner
	if !cfg.ownerSet {
		owner = newOwner()
	}
	return c.acquireLease(ctx, key, owner, cfg, mode)
}

func (c *Client) acquireLease(ctx context.Context, key, owner string, cfg lockConfig, mode waitMode) (*Lease, error) {
	if err := c.beginOp(); err != nil {
		return nil, err
	}
	defer c.endOp()
	cfg.managed = true
	acq, err := c.acquire(ctx, key, owner, cfg, mode)
	if errors.Is(err, errHeld) {
		return nil, c.lockedError(ctx, key, err)
	}
	if err != nil {
		return nil, err
	}
	l := &Lease{
		c: c, key: acq.key, owner: acq.owner, token: acq.token, fence: acq.fence,
		created: acq.created, minHold: cfg.minHold,
		keepAlive: cfg.keepAlive == nil || *cfg.keepAlive,
		multi:     acq.multi,
		lost:      make(chan struct{}),
		period:    acq.expire,
		deadline:  acq.deadline,
	}
	if l.period > 0 {
		l.nextRenew = acq.sent.Add(renewEvery(l.period))
	}
	if err := c.register(ctx, acq, func() { c.leases[l] = struct{}{} }); err != nil {
		return nil, err
	}
	// Registered first, then watched: a lease whose deadline passes at
	// once is lost before keep-alive could ever renew it.
	c.keeper.add(l)
	l.mu.Lock()
	l.armTimer()
	l.mu.Unlock()
	return l, nil
}

// renewEvery is how often keep-alive renews a lease of the given period.
func renewEvery(expire time.Duration) time.Duration { return expire / 3 }

// armTimer sets the timer that reports the lease lost at its deadline.
// Called with l.mu held.
func (l *Lease) armTimer() {
	if l.deadline.IsZero() || l.err != nil || l.state == leaseReleased {
		return
	}
	wait := l.deadline.Sub(l.c.cfg.now())
	if l.timer != nil {
		l.timer.Reset(wait)
		return
	}
	l.timer = time.AfterFunc(wait, l.expired)
}

// expired is the deadline timer's function: it reports the lease lost if
// its deadline has passed on the local clock, and otherwise sets the timer
// again (a renewal moved the deadline, or the timer fired early).
func (l *Lease) expired() {
	if !l.loseIfPast() {
		l.mu.Lock()
		l.armTimer()
		l.mu.Unlock()
	}
}

// loseIfPast reports the lease lost, and returns true, if its deadline has
// passed on the local clock.
func (l *Lease) loseIfPast() bool {
	l.mu.Lock()
	passed := l.err == nil && l.state != leaseReleased && !l.deadline.IsZero() && !l.c.cfg.now().Before(l.deadline)
	giveBack := passed && l.unsure && l.state == leaseHeld
	if giveBack {
		l.unsure = false
	}
	l.mu.Unlock()
	if giveBack {
		// Handed to the Client before lose untracks the lease, so that
		// Close either still finds the lease to release or waits for this.
		l.giveBackLost()
	}
	if passed {
		l.lose(fmt.Errorf("%w: %q was not renewed before it expired", ErrLost, l.key))
	}
	return passed
}

// markUnsure records that a renewal of the lease is being sent: it may be
// applied without the lease learning of it.
func (l *Lease) markUnsure() {
	l.mu.Lock()
	l.unsure = true
	l.mu.Unlock()
}

// giveBackLost releases, by token and in the background, a lease lost at
// its deadline after a renewal was sent. A renewal whose reply was lost, or
// that is still on its way, may have
// been applied — even after the deadline, if it was delayed on its way —
// and moved the stored expiry past what the lease knew: the lock would stay
// held under a token its holder has given up on, for up to one period, and
// past Close. The release matches only this token, so it cannot free a
// lock someone else took meanwhile; with MinHold it keeps the lock held
// until the minimum has passed, as Release does. Close waits for it.
func (l *Lease) giveBackLost() {
	c, key, token, multi, created, minHold := l.c, l.key, l.token, l.multi, l.created, l.minHold
	c.background(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
		defer cancel()
		if multi {
			_, _, _ = c.releaseEntry(ctx, key, token, false)
			return
		}
		_, _, _ = c.releaseToken(ctx, key, token, created, minHold)
	})
}

// lose marks the lease lost for the reason err (once), closes Lost and
// stops its keep-alive. While a release is in flight the loss is kept
// back: a lease released by its holder is never reported lost.
func (l *Lease) lose(err error) {
	l.mu.Lock()
	switch {
	case l.err != nil || l.state == leaseReleased:
		l.mu.Unlock()
		return
	case l.state == leaseReleasing:
		if l.pendingErr == nil {
			l.pendingErr = err
		}
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

// renewed records a renewal the server applied: it wrote an expiry at
// least d after now. Renewals may be applied in another order than their
// replies arrive, but each one leaves the stored expiry at least where it
// put it ($max), so the deadline only moves later: the latest deadline any
// applied renewal allows. If period is not zero, it becomes the lease's
// period (Renew); keep-alive renewals leave the period alone. held is false,
// and nothing changes, if the lease was lost or released meanwhile (the
// renewal's reply came too late): err then says why.
func (l *Lease) renewed(now serverTime, d, period time.Duration) (held, startKeepAlive bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.err != nil:
		return false, false, l.err
	case l.state != leaseHeld:
		return false, false, errors.New("released")
	}
	held = true
	if period > 0 {
		startKeepAlive = l.period == 0 && l.keepAlive
		l.period = period
	}
	if dl := localDeadline(now, d); l.deadline.IsZero() || dl.After(l.deadline) {
		l.deadline = dl
	}
	l.nextRenew = now.local.Add(renewEvery(l.period))
	l.armTimer()
	return held, startKeepAlive, nil
}

// beginRelease claims the lease for a release (the holder's or Close's).
// It reports false if it is released or being released already.
func (l *Lease) beginRelease() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != leaseHeld {
		return false
	}
	l.state = leaseReleasing
	return true
}

// endRelease ends a release. If it happened (or goes on in the
// background), the lease is released for good: its timer and keep-alive
// stop and it is never reported lost. If not, the lease is held again and a
// loss noticed meanwhile is reported now.
func (l *Lease) endRelease(released bool) {
	l.mu.Lock()
	if !released {
		l.state = leaseHeld
		pending := l.pendingErr
		l.pendingErr = nil
		l.mu.Unlock()
		if pending != nil {
			l.lose(pending)
		}
		return
	}
	l.state = leaseReleased
	l.pendingErr = nil
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

// ExpiresAt returns the time, on this machine's clock (compare it with
// time.Now, or use time.Until), until which the lease is surely held: the
// server-time expiry of the last renewal the server applied, translated to
// the local clock, less the clock estimate's error bound. It is the zero
// time if the lock never expires. Act as the holder only before it (and
// while Lost is open). It is computed at each call, so it stays right after
// the machine was suspended (on Linux); a value kept across a suspend does
// not.
func (l *Lease) ExpiresAt() time.Time {
	l.mu.Lock()
	deadline := l.deadline
	l.mu.Unlock()
	if deadline.IsZero() {
		return time.Time{}
	}
	return time.Now().Add(deadline.Sub(l.c.cfg.now()))
}

// Renew extends the lease to expire d from now (server time), and makes d
// its period: keep-alive (unless KeepAlive(false)) goes on renewing it with
// d, also if the lease had no expiry before. The stored expiry never moves
// earlier: after a longer period, a shorter d takes effect once the longer
// expiry has run out (Release frees the lock at once). Renew returns an
// error matching ErrNotHeld if the lease was released, or expired before
// the renewal reached the server, or was taken over — then the lease is
// lost, and Err says why — and also if the renewal was applied but its
// reply came after the lease's deadline: the lease was lost then, and gives
// the lock back (see Lost).
func (l *Lease) Renew(ctx context.Context, d time.Duration) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	if err := validExpire("d", d); err != nil {
		return err
	}
	l.mu.Lock()
	state, lostErr := l.state, l.err
	l.mu.Unlock()
	switch {
	case state != leaseHeld:
		return fmt.Errorf("mongolock: renewing %q: %w (released)", l.key, ErrNotHeld)
	case lostErr != nil:
		return fmt.Errorf("mongolock: renewing %q: %w (%w)", l.key, ErrNotHeld, lostErr)
	}
	var now serverTime
	l.markUnsure() // see renewGroup
	ok, _, err := l.c.retry(ctx, func(ctx context.Context) (bool, error) {
		var err error
		if now, err = l.c.clock.Now(ctx); err != nil {
			return false, err
		}
		_, ok, err := l.c.renewAs(ctx, l.key, l.token, l.multi, now, d)
		return ok, err
	})
	if err != nil {
		return fmt.Errorf("mongolock: renewing %q: %w", l.key, err)
	}
	if !ok {
		err := fmt.Errorf("%w: %q was taken over, released elsewhere or expired before it could be renewed", ErrLost, l.key)
		l.lose(err)
		return fmt.Errorf("mongolock: renewing %q: %w (%w)", l.key, ErrNotHeld, err)
	}
	held, start, why := l.renewed(now, d, d)
	if !held {
		// Applied, but its reply came after the lease was lost (at its
		// deadline: the lock is being given back) or released.
		return fmt.Errorf("mongolock: renewing %q: %w (%w)", l.key, ErrNotHeld, why)
	}
	if start {
		l.c.keeper.add(l)
	}
	return nil
}

// Release releases the lease (with MinHold, it stays held until the
// minimum has passed, and then is free; it can no longer be renewed). It
// returns an error matching ErrNotHeld if the lease had already been
// released, or had expired and been taken over (then this holder's
// critical section was not exclusive to the end). A release whose reply is
// lost is resent with the same token, so it cannot leak the lock; if by
// then another acquisition holds it, Release reports ErrNotHeld, as it
// cannot tell whether its first attempt got there first. If the server
// cannot confirm the release within ctx, Release returns that error and
// goes on releasing in the background (until Close, or a few seconds); the
// lease is released either way. Once Release is called, Lost never closes.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.c.checkOpen(); err != nil {
		return err
	}
	return l.release(ctx)
}

func (l *Lease) release(ctx context.Context) error {
	if !l.beginRelease() {
		return fmt.Errorf("mongolock: releasing %q: %w (already released)", l.key, ErrNotHeld)
	}
	var (
		ok, unknown bool
		err         error
	)
	if l.multi {
		l.mu.Lock()
		surelyHeld := l.err == nil && (l.deadline.IsZero() || l.c.cfg.now().Before(l.deadline))
		l.mu.Unlock()
		ok, unknown, err = l.c.releaseEntry(ctx, l.key, l.token, surelyHeld)
	} else {
		ok, unknown, err = l.c.releaseToken(ctx, l.key, l.token, l.created, l.minHold)
	}
	if err != nil {
		l.endRelease(unknown)
		return fmt.Errorf("mongolock: releasing %q: %w", l.key, err)
	}
	l.endRelease(true)
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
	return "it expired and was taken over, or was released elsewhere"
}

// Lost returns a channel that is closed when the lease is known lost: taken
// over by another holder after it expired, deleted, released elsewhere, or
// not renewed before its expiry (judged on the local clock against the
// server-time expiry less the clock margin, so it closes even if the server
// never answers). Err then says why. Release does not close it. A lease
// lost at its expiry after a renewal of it was sent gives its lock back, by
// token and in the background (Close waits for that): the renewal may have
// been applied without its reply arriving, and would otherwise leave the
// lock held under a token nobody uses.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns nil while the lease is held (or after it was released), and an
// error matching ErrLost, saying why, once it is lost. It checks the
// lease's deadline itself, so after a suspend it reports the loss even
// before Lost has caught up.
func (l *Lease) Err() error {
	l.loseIfPast()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
