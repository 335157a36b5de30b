package mongolock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// maxAttempts bounds how often one operation is sent when its outcome is
// unknown (see outcomeUnknown: after a network error, a timeout, a write
// concern error or a step-down, the write may have been applied). Resends
// reuse the acquisition's token, which makes them idempotent: see
// store.acquire and store.release.
const maxAttempts = 3

// abandonTimeout bounds the best-effort release of an acquisition whose
// outcome stayed unknown, so that a lost reply does not leak the lock.
const abandonTimeout = 5 * time.Second

// acquisition is a lock this process took: what it needs to release, renew
// and fence it.
type acquisition struct {
	key, owner, token string
	fence             int64
	expire            time.Duration // 0: never expires
	created           time.Time     // server time written as created
	sent              time.Time     // local reading just before the winning request was sent
	deadline          time.Time     // local reading after which it may be lost; zero: never
	multi             bool          // an entry of holders (a semaphore's or a reader's), not the whole lock
}

// waitMode says what an acquisition does while the lock is held elsewhere.
type waitMode int

const (
	waitTimeout waitMode = iota // retry until Timeout passes; no Timeout: one attempt
	waitForever                 // retry until Timeout passes; no Timeout: until ctx ends
	waitNever                   // one attempt, whatever Timeout says
)

// acquire takes key for owner, waiting as mode says. It returns errHeld if
// the lock stayed held by another acquisition. The caller must have called
// beginOp (so that Close waits for it) and registers the acquisition with
// register.
func (c *Client) acquire(ctx context.Context, key, owner string, cfg lockConfig, mode waitMode) (*acquisition, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	if err := validOwner(owner); err != nil {
		return nil, err
	}
	token := newToken()
	var timer <-chan time.Time
	if cfg.timeout > 0 && mode != waitNever {
		t := time.NewTimer(cfg.timeout)
		defer t.Stop()
		timer = t.C
	}
	var (
		timedOut bool
		backoff  = min(firstBackoff, c.cfg.retryInterval)
		expiry   time.Time // local reading when the holder's lock surely expired; zero: unknown
		holder   *lockDoc  // the holder as last read; nil: unknown
		sleep    = time.NewTimer(time.Hour)
		st       waitState
		looking  = cfg.multi() || cfg.fair // a recipe: read the lock after every refusal (look)
		cleaned  bool                      // a one-attempt acquisition already tried again after look
	)
	defer sleep.Stop()
	for {
		// Enter the wait room before the attempt, so a release between the
		// attempt and the sleep is not missed.
		released, leave := c.waits.enter(key)
		acq, err := c.attempt(ctx, key, owner, token, cfg)
		if err == nil && cfg.managed && !acq.deadline.IsZero() && !c.cfg.now().Before(acq.deadline) {
			// The reply came back after the lease's own deadline (the
			// server or the network stalled): the lock may already be
			// someone else's, and a lease promises its holder otherwise.
			// (Lock, like the Python package, has no such promise: a lock
			// taken with a tiny Expire is simply short-lived.) Give it
			// back and treat the attempt as failed; later attempts use a
			// new token, so the give-back can never free them.
			c.abandonAs(ctx, key, token, cfg.multi())
			acq, err = nil, errExpiredOnArrival
		}
		if errors.Is(err, errExpiredOnArrival) {
			// Given back: later attempts use a new token, so the
			// give-back can never free them.
			c.afterGaveUp(ctx, key, token, &st)
			st = waitState{}
			token = newToken()
		}
		waiting := !timedOut && mode != waitNever && !(mode == waitTimeout && timer == nil)
		if errors.Is(err, errHeld) && looking && (waiting || !cleaned) {
			doc, again, exp, lerr := c.look(ctx, key, owner, token, cfg, waiting, &st)
			if lerr != nil {
				leave()
				c.afterGaveUp(ctx, key, token, &st)
				if ctx.Err() != nil { // refused, then ctx ended the wait
					return nil, newLockedError(key, holder, ctx.Err())
				}
				return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, lerr)
			}
			if doc != nil {
				now, _ := c.clock.Now(ctx)
				holder, expiry = holderOf(doc, now, cfg.shared), exp
			}
			if again && (waiting || !cleaned) {
				cleaned = !waiting
				leave()
				continue
			}
			if !waiting {
				err = &heldError{doc: holder}
			}
		}
		retryable := errors.Is(err, errHeld) || errors.Is(err, errExpiredOnArrival)
		if !retryable || !waiting {
			leave()
			switch {
			case err == nil:
				c.afterAcquired(ctx, key, token, &st)
			case errors.Is(err, errHeld):
				c.afterGaveUp(ctx, key, token, &st)
				return nil, err
			case errors.Is(err, errExpiredOnArrival):
				return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, err)
			case ctx.Err() != nil && holder != nil:
				// ctx ended a wait while an attempt was in flight (it gave
				// back whatever it may have taken): as when it ends the
				// sleep, a *LockedError naming the holder.
				c.afterGaveUp(ctx, key, token, &st)
				return nil, newLockedError(key, holder, ctx.Err())
			default:
				c.afterGaveUp(ctx, key, token, &st)
			}
			return acq, err
		}
		// Held. Sleep a jittered backoff that doubles up to the retry
		// interval, or until the holder's expiry if that comes sooner, or
		// until a release through this Client wakes us.
		if !looking && (expiry.IsZero() || !c.cfg.now().Before(expiry)) {
			var err error
			if holder, expiry, err = c.holderExpiry(ctx, key); err != nil {
				leave()
				return nil, fmt.Errorf("mongolock: waiting for lock %q: %w", key, err)
			}
			if holder != nil && holder.kind != "" {
				// A semaphore's or readers' document: a writer waits
				// for the readers (and says so), the rest disagree.
				looking = true
				leave()
				continue
			}
		}
		d := jitter(backoff)
		if !expiry.IsZero() {
			if untilExpiry := expiry.Sub(c.cfg.now()); untilExpiry < d {
				d = max(untilExpiry, 0)
			}
		}
		backoff = min(2*backoff, c.cfg.retryInterval)
		sleep.Reset(d)
		select {
		case <-ctx.Done():
			// Still held: a *LockedError naming the holder (as when a
			// Timeout ends the wait), matching ctx's error too.
			leave()
			c.afterGaveUp(ctx, key, token, &st)
			return nil, newLockedError(key, holder, ctx.Err())
		case <-c.closing:
			leave()
			c.afterGaveUp(ctx, key, token, &st)
			return nil, fmt.Errorf("mongolock: waiting for lock %q: %w", key, ErrClosed)
		case <-timer:
			timedOut = true // one last attempt at the deadline
		case <-released:
		case <-sleep.C:
		}
		leave()
		if !sleep.Stop() {
			select {
			case <-sleep.C:
			default:
			}
		}
	}
}

// errExpiredOnArrival reports an acquisition whose reply arrived after the
// lease's own local deadline; it was given back.
var errExpiredOnArrival = fmt.Errorf("%w: the server's reply arrived after the lease had expired (it was given back)", ErrLost)

// firstBackoff is a waiter's first sleep; it doubles up to the retry
// interval.
const firstBackoff = 5 * time.Millisecond

// holderExpiry reads the current holder of key and returns it (nil if
// unknown) and the local reading after which its lock has surely expired
// on the server's clock (its expiry plus the clock estimate's error), or
// zero if that is not known (never expires, gone, or unreadable). A
// document of the wrong shape is an error: no acquisition can ever take
// it, so waiting for it is pointless.
func (c *Client) holderExpiry(ctx context.Context, key string) (*lockDoc, time.Time, error) {
	d, err := c.store.find(ctx, key)
	if errors.Is(err, ErrInvalidDocument) {
		return nil, time.Time{}, err
	}
	if err != nil || !d.Locked {
		return nil, time.Time{}, nil
	}
	if d.kind != "" {
		return d, time.Time{}, nil
	}
	if d.Expire.IsZero() {
		return d, time.Time{}, nil
	}
	now, err := c.clock.Now(ctx)
	if err != nil {
		return d, time.Time{}, nil
	}
	return d, now.local.Add(d.Expire.Sub(now.at) + now.err + time.Millisecond), nil
}

// attempt makes one attempt to take key. An attempt whose outcome is
// unknown is resent with the same token; if the outcome stays unknown, the
// lock is released by token (best effort) so it cannot leak.
func (c *Client) attempt(ctx context.Context, key, owner, token string, cfg lockConfig) (*acquisition, error) {
	multi := cfg.multi()
	abandon := func(ctx context.Context, key, token string) { c.abandonAs(ctx, key, token, multi) }
	unknown := false
	for n := 1; ; n++ {
		now, err := c.clock.Now(ctx)
		if err != nil {
			if unknown {
				abandon(ctx, key, token)
			}
			return nil, err
		}
		fence := c.fenceCandidate(now)
		before, err := c.send(ctx, key, owner, token, now, cfg, fence)
		switch {
		case err == nil:
			return c.settle(ctx, key, owner, token, now, cfg, fence, before, false)
		case errors.Is(err, errHeld) && unknown && multi:
			// A resend of an entry is refused when an earlier attempt
			// added it: look whether it did.
			d, ferr := c.store.find(ctx, key)
			switch {
			case ferr == nil && d.holders[token] != nil:
				return c.settle(ctx, key, owner, token, now, cfg, fence, d, true)
			case ferr != nil && !errors.Is(ferr, ErrNotFound):
				abandon(ctx, key, token)
				return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, ferr)
			}
			return nil, errHeld
		case errors.Is(err, errHeld):
			return nil, errHeld
		case errors.Is(err, ErrInvalidDocument):
			// The write matched (the filter admits only documents of the
			// shape decodeLock accepts), so this cannot happen; should it,
			// the lock is ours and must not be kept on a document we
			// cannot read.
			abandon(ctx, key, token)
			return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, err)
		case outcomeUnknown(err) && n < maxAttempts && ctx.Err() == nil:
			unknown = true
			continue
		}
		if unknown || outcomeUnknown(err) {
			abandon(ctx, key, token)
		}
		return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, err)
	}
}

// settle finishes an acquisition by making sure its fence is above every
// fence the key had before (docs/DESIGN.md, "Fencing"). The fence written
// with the acquisition (the candidate, an estimate of the server's clock)
// stands when the document held a fence below it. Otherwise a second, rare,
// round trip raises it:
//
//   - to one more than the stored fence, when that was not below the
//     candidate (the previous holder's estimate ran ahead of ours);
//   - to a fresh estimate, when the document was created by this
//     acquisition (new, or deleted by Purge) but the reply took longer than
//     WithMaxClockError: the candidate, taken before the request was sent,
//     may then be too old to bound the fences before the deletion;
//   - when the document had no fence (the Python package wrote it, and its
//     writes drop the fence), or an earlier attempt of this acquisition
//     whose reply was lost took the lock (so what it found is unknown): to
//     an estimate taken once the server's clock has surely passed, by
//     WithMaxClockError, the latest it could have read when the write was
//     applied. Every fence this package issued before was at most
//     WithMaxClockError ahead of the server's clock when it was written, so
//     the new one is above them all. This waits about WithMaxClockError,
//     holding the lock, and renews the lock's expiry with the raise.
//
// An acquisition taken over while its fence is raised fails with
// errExpiredOnArrival (its lock was given back).
func (c *Client) settle(ctx context.Context, key, owner, token string, now serverTime, cfg lockConfig, fence int64, before *lockDoc, own bool) (*acquisition, error) {
	expire, multi := cfg.expire, cfg.multi()
	slow := c.cfg.now().Sub(now.local) > c.cfg.maxClockError
	var (
		floor int64 // the fence must be at least this
		fresh bool  // ... and at least a fresh estimate
		wait  bool  // ... taken after the server's clock passed the write by WithMaxClockError
	)
	switch {
	case before == nil:
		fresh = slow
	case own, before.token == token:
		floor, wait = before.Fence+1, true
	case !before.hasFence:
		wait = true
	default:
		floor = before.Fence + 1
	}
	raisedAt := now // the estimate the expiry is written with
	var renew time.Time
	if fresh || wait {
		later, err := c.clock.Now(ctx)
		if err == nil && wait {
			later, err = c.waitPast(ctx, later.latest().Add(c.cfg.maxClockError))
		}
		if err != nil {
			c.abandonAs(ctx, key, token, multi)
			return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, err)
		}
		floor = max(floor, c.fenceCandidate(later))
		if wait && expire > 0 {
			raisedAt, renew = later, storedTime(later.at.Add(expire))
		}
	}
	if floor > fence {
		var stored int64
		ok, _, err := c.retry(ctx, func(ctx context.Context) (bool, error) {
			var (
				ok  bool
				err error
			)
			if multi {
				stored, ok, err = c.raiseEntryFence(ctx, key, token, floor, renew)
				return ok, err
			}
			stored, ok, err = c.store.raiseFence(ctx, key, token, floor, renew)
			return ok, err
		})
		if err != nil || !ok {
			c.abandonAs(ctx, key, token, multi)
			if err == nil {
				err = fmt.Errorf("%w: it was taken over before its fence was raised", errExpiredOnArrival)
			}
			return nil, fmt.Errorf("mongolock: acquiring %q: %w", key, err)
		}
		fence = stored
	}
	c.noteFence(fence)
	return &acquisition{
		key: key, owner: owner, token: token, fence: fence, expire: expire,
		created: now.at, sent: raisedAt.local, deadline: localDeadline(raisedAt, expire),
		multi: multi,
	}, nil
}

// waitPast waits until the earliest the server's clock can read is at
// least t, and returns the estimate then.
func (c *Client) waitPast(ctx context.Context, t time.Time) (serverTime, error) {
	for {
		now, err := c.clock.Now(ctx)
		if err != nil {
			return now, err
		}
		left := t.Sub(now.earliest())
		if left <= 0 {
			return now, nil
		}
		timer := time.NewTimer(left)
		select {
		case <-ctx.Done():
			timer.Stop()
			return now, ctx.Err()
		case <-timer.C:
		}
	}
}

// localDeadline is the local reading until which a lock written with expiry
// now.at+expire (rounded up to the millisecond) is surely still valid: the
// server cannot have passed the stored expiry before then, allowing for
// the estimate's error and for drift over the lease.
func localDeadline(now serverTime, expire time.Duration) time.Time {
	if expire == 0 {
		return time.Time{}
	}
	margin := now.err + time.Duration(float64(expire)*maxDrift)
	return now.local.Add(expire - margin)
}

// fenceCandidate proposes a fence: the estimated server time in
// microseconds, and above every candidate this Client proposed before.
func (c *Client) fenceCandidate(now serverTime) int64 {
	f := now.at.UnixMicro()
	for {
		last := c.lastFence.Load()
		if f <= last {
			f = last + 1
		}
		if c.lastFence.CompareAndSwap(last, f) {
			return f
		}
	}
}

func (c *Client) noteFence(f int64) {
	for {
		last := c.lastFence.Load()
		if f <= last || c.lastFence.CompareAndSwap(last, f) {
			return
		}
	}
}

// abandon releases, by token and best effort, an acquisition whose outcome
// is unknown or that could not be completed.
func (c *Client) abandon(ctx context.Context, key, token string) {
	c.giveBack(ctx, func(ctx context.Context) (bool, error) {
		return c.store.release(ctx, key, holder{token: token})
	})
}

// abandonAs is abandon for an acquisition that is an entry of holders
// (multi) or the whole lock.
func (c *Client) abandonAs(ctx context.Context, key, token string, multi bool) {
	if !multi {
		c.abandon(ctx, key, token)
		return
	}
	c.giveBack(ctx, func(ctx context.Context) (bool, error) {
		return c.store.releaseEntry(ctx, key, token)
	})
}

// giveBack runs write, a release whose outcome must be made sure of. It
// tries within the caller's ctx if that is still live; otherwise, or if
// that does not settle it, it hands the write to a goroutine owned by the
// Client (bounded by abandonTimeout and stopped by Close), so the caller
// gets its error without waiting for a server that does not answer. Once
// the Client is closing, it tries here instead, bounded by abandonTimeout.
func (c *Client) giveBack(ctx context.Context, write func(context.Context) (bool, error)) {
	run := func(ctx context.Context) error {
		_, _, err := c.retry(ctx, write)
		return err
	}
	if ctx.Err() == nil && run(ctx) == nil {
		return
	}
	bounded := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
		defer cancel()
		_ = run(ctx)
	}
	if !c.background(bounded) {
		bounded(context.WithoutCancel(ctx))
	}
}

// releaseToken releases the acquisition token of key. With minHold, a
// release before created+minHold (server time) instead leaves the lock held
// until then, under a token nobody has, so nobody can renew it. Waiters in
// this process are woken when the lock is actually free. If the outcome
// stays unknown after the resends, the release goes on in the background
// (giveBack) and the error says so.
func (c *Client) releaseToken(ctx context.Context, key, token string, created time.Time, minHold time.Duration) (ok, unknown bool, err error) {
	now, err := c.clock.Now(ctx)
	if err != nil {
		return false, false, err
	}
	holdUntil := created.Add(minHold)
	held := minHold > 0 && now.earliest().Before(holdUntil)
	write := func(ctx context.Context) (bool, error) {
		if held {
			return c.store.releaseHeld(ctx, key, token, holdUntil)
		}
		return c.store.release(ctx, key, holder{token: token})
	}
	ok, unknown, err = c.retry(ctx, write)
	if err != nil && outcomeUnknown(err) {
		c.giveBack(ctx, write)
		return false, true, fmt.Errorf("%w (the release goes on in the background)", err)
	}
	if err == nil && !held {
		c.notifyReleased(key)
	}
	return ok, unknown, err
}

// retry runs op, resending it while its outcome is unknown, up to
// maxAttempts times. It returns op's last answer and whether any attempt
// ended with an unknown outcome.
func (c *Client) retry(ctx context.Context, op func(context.Context) (bool, error)) (ok, unknown bool, err error) {
	for n := 1; ; n++ {
		ok, err = op(ctx)
		if err == nil || !outcomeUnknown(err) || n >= maxAttempts || ctx.Err() != nil {
			return ok, unknown, err
		}
		unknown = true
	}
}

// lockedError describes who holds key, for a *LockedError: from the
// document the acquisition read already (err a *heldError), or read now.
// An exclusive acquisition that finds a semaphore's holders gets a
// *LimitError.
func (c *Client) lockedError(ctx context.Context, key string, err error) error {
	var he *heldError
	if errors.As(err, &he) && he.doc != nil {
		return newLockedError(key, he.doc, nil)
	}
	d, err := c.store.find(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return newLockedError(key, nil, nil)
	case err != nil:
		return fmt.Errorf("mongolock: reading lock %q: %w", key, err)
	}
	if d.kind != "" {
		now, err := c.clock.Now(ctx)
		if err != nil {
			return newLockedError(key, nil, nil)
		}
		named := holderOf(d, now, false)
		if d.kind == markSemaphore && named.Owner != "" {
			return fmt.Errorf("mongolock: acquiring %q: %w", key, &LimitError{Key: key, Held: int(d.limit), Asked: 1, Owner: named.Owner})
		}
		d = named
	}
	return newLockedError(key, d, nil)
}

// jitter spreads waiters' retries over [d/2, 3d/2), so that waiters that
// started together do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}
