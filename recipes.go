package mongolock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds the recipes' part of the acquisition state machine
// (docs/DESIGN.md, "Beyond the mutex"): which query an attempt sends, how a
// holder entry's fence is raised, and what a waiting acquisition does when
// the lock is held by a semaphore's or a shared lock's holders, by readers
// it must wait for as a writer, or by fair waiters queued ahead of it.

// send sends one attempt's query: the exclusive lock's, or a recipe's.
func (c *Client) send(ctx context.Context, key, owner, token string, now serverTime, cfg lockConfig, fence int64) (*lockDoc, error) {
	switch {
	case cfg.multi():
		return c.store.acquireEntry(ctx, key, owner, token, now, cfg.expire, fence, cfg.mark(), cfg.limit)
	case cfg.fair:
		return c.store.acquireFair(ctx, key, owner, token, now, cfg.expire, fence)
	case cfg.value != nil:
		return c.store.acquireValue(ctx, key, owner, token, now, cfg.expire, fence, *cfg.value)
	}
	return c.store.acquire(ctx, key, owner, token, now, cfg.expire, fence)
}

// raiseEntryFence raises the fence of token's entry to at least floor and
// above the document's fence as it is when the raise lands: other holders
// may have joined with higher fences since this one's first write, and a
// fence must be above every fence written before it (so that fences rise in
// the order the acquisitions completed, and no two holders share one). It
// returns the fence, or ok false if the entry is gone.
func (c *Client) raiseEntryFence(ctx context.Context, key, token string, floor int64, renew time.Time) (int64, bool, error) {
	for {
		before, ok, err := c.store.raiseEntryFence(ctx, key, token, floor, renew)
		if err != nil || !ok {
			return 0, ok, err
		}
		if before < floor {
			return floor, true, nil
		}
		floor = before + 1
	}
}

// heldError is errHeld with the document read to explain it.
type heldError struct{ doc *lockDoc }

func (e *heldError) Error() string        { return errHeld.Error() }
func (e *heldError) Is(target error) bool { return target == errHeld }

// waitHeartbeat is how long a fair waiter's place in the queue, or a
// writer's intent, lasts without being refreshed: each wait refreshes it
// (at least every retry interval, jittered), so a waiter that died is
// dropped within this long.
func (c *Client) waitHeartbeat() time.Duration {
	return max(2*time.Second, 20*c.cfg.retryInterval)
}

// waitState is what a waiting recipe acquisition keeps between attempts.
type waitState struct {
	wroteIntent bool // a writer's intent was recorded for this token
	queued      bool // this token is in the fair queue
}

// look reads the lock after an attempt was refused, for an acquisition
// that is a recipe or that found a recipe's document, and does what the
// recipe asks: removes holder entries and fair waiters that surely
// expired (then again is true: try again at once), records or refreshes a
// writer's intent or this waiter's place in the fair queue, and reports a
// *LimitError when the holders asked for another limit. It returns the
// document read and the local reading when a holder's expiry surely passes
// (zero: unknown).
func (c *Client) look(ctx context.Context, key, owner, token string, cfg lockConfig, waiting bool, st *waitState) (doc *lockDoc, again bool, expiry time.Time, err error) {
	now, err := c.clock.Now(ctx)
	if err != nil {
		return nil, false, time.Time{}, err
	}
	if cfg.fair && waiting {
		doc, err = c.store.enqueue(ctx, key, owner, token, storedTime(now.at.Add(c.waitHeartbeat())))
		if err == nil && doc != nil {
			st.queued = true
		}
	}
	if doc == nil && err == nil {
		doc, err = c.store.find(ctx, key)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, true, time.Time{}, nil // deleted meanwhile: try again
	case err != nil:
		return nil, false, time.Time{}, err
	}
	untilExpiry := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return now.local.Add(t.Sub(now.at) + now.err + time.Millisecond)
	}
	live, dead := doc.liveHolders(now)
	asked := 1
	switch {
	case cfg.shared:
		asked = 0
	case cfg.limit > 1:
		asked = cfg.limit
	}
	if doc.kind != "" && len(live) > 0 {
		held := 0
		if doc.kind == markSemaphore {
			held = int(doc.limit)
		}
		// A reader finding readers, or a semaphore finding one of its n,
		// waits; a writer finding readers waits (and says so: new readers
		// queue behind it). Anything else disagrees.
		if held != asked && !(asked == 1 && held == 0) {
			return doc, false, time.Time{}, &LimitError{Key: key, Held: held, Asked: asked, Owner: live[0].Owner}
		}
	}
	if doc.kind != "" && len(dead) > 0 {
		tokens := make([]string, len(dead))
		for i, h := range dead {
			tokens[i] = h.token
		}
		if err := c.store.removeExpired(ctx, key, tokens, now); err != nil {
			return doc, false, time.Time{}, err
		}
		return doc, true, time.Time{}, nil
	}
	if cfg.fair && len(doc.order) > 0 {
		// Waiters ahead whose heartbeat surely ran out are dropped, also
		// by an acquisition that does not wait (it is not queued: every
		// waiter is ahead of it), which then tries once more.
		var expired []string
		for _, t := range doc.order {
			if t == token {
				break
			}
			if q := doc.queue[t]; q == nil || q.Expire.Before(now.earliest()) {
				expired = append(expired, t)
			}
		}
		if len(expired) > 0 {
			if err := c.store.dequeue(ctx, key, expired, now, true); err != nil {
				return doc, false, time.Time{}, err
			}
			return doc, true, time.Time{}, nil
		}
	}
	if cfg.shared && doc.kind == markShared && doc.writer != nil && !doc.writer.Expire.Before(now.earliest()) {
		return doc, false, time.Time{}, nil // queued behind a writer: poll
	}
	if cfg.fair && waiting && (len(doc.order) == 0 || doc.order[0] != token) && doc.Locked {
		return doc, false, untilExpiry(doc.Expire), nil
	}
	if cfg.fair && waiting && len(doc.order) > 0 && doc.order[0] != token {
		return doc, false, time.Time{}, nil // waiters ahead: poll
	}
	switch {
	case doc.kind == markShared && asked == 1 && len(live) > 0:
		if waiting {
			mine, err := c.store.markWriter(ctx, key, owner, token, now, c.waitHeartbeat())
			if err != nil {
				return doc, false, time.Time{}, err
			}
			st.wroteIntent = st.wroteIntent || mine
		}
		// The readers leave by the latest of their expiries, at the latest.
		var last time.Time
		for _, h := range live {
			if h.Expire.IsZero() {
				return doc, false, time.Time{}, nil
			}
			if h.Expire.After(last) {
				last = h.Expire
			}
		}
		return doc, false, untilExpiry(last), nil
	case doc.kind != "" && len(live) > 0:
		// A slot frees when the soonest holder expires.
		var first time.Time
		for _, h := range live {
			if !h.Expire.IsZero() && (first.IsZero() || h.Expire.Before(first)) {
				first = h.Expire
			}
		}
		if cfg.shared && doc.writer != nil && !doc.writer.Expire.Before(now.earliest()) {
			first = time.Time{} // waiting behind a writer: poll
		}
		return doc, false, untilExpiry(first), nil
	case doc.kind != "":
		return doc, true, time.Time{}, nil // every holder gone meanwhile
	}
	if !doc.Locked {
		return doc, true, time.Time{}, nil
	}
	return doc, false, untilExpiry(doc.Expire), nil
}

// holderOf is who a *LockedError names for doc: its holder, or for a
// semaphore or a shared lock the live holder that expires last (the one
// waiting is longest for), or, for a reader, the writer it queues behind.
func holderOf(doc *lockDoc, now serverTime, reader bool) *lockDoc {
	if doc == nil || doc.kind == "" {
		return doc
	}
	if w := doc.writer; reader && w != nil && !w.Expire.Before(now.earliest()) {
		named := *doc
		named.Owner, named.Created, named.Expire = w.Owner, time.Time{}, w.Expire
		return &named
	}
	live, _ := doc.liveHolders(now)
	named := *doc
	named.Owner, named.Created, named.Expire = "", time.Time{}, time.Time{}
	for _, h := range live {
		if named.Owner == "" || h.Expire.IsZero() || (!named.Expire.IsZero() && h.Expire.After(named.Expire)) {
			named.Owner, named.Created, named.Expire = h.Owner, h.Created, h.Expire
		}
	}
	if named.Owner == "" && doc.writer != nil {
		named.Owner, named.Expire = doc.writer.Owner, doc.writer.Expire
	}
	return &named
}

// afterAcquired finishes a waiting recipe acquisition that got the lock:
// a writer drops its intent, so readers need not wait for its heartbeat to
// run out. Best effort: an intent left behind expires by itself.
func (c *Client) afterAcquired(ctx context.Context, key, token string, st *waitState) {
	if st.wroteIntent {
		_ = c.store.clearWriter(ctx, key, token)
	}
}

// afterGaveUp ends a waiting recipe acquisition that did not get the lock:
// it leaves the fair queue and drops a writer's intent. Best effort: a
// heartbeat left behind expires by itself.
func (c *Client) afterGaveUp(ctx context.Context, key, token string, st *waitState) {
	if !st.queued && !st.wroteIntent {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if st.queued {
		if now, err := c.clock.Now(ctx); err == nil {
			_ = c.store.dequeue(ctx, key, []string{token}, now, false)
		}
	}
	if st.wroteIntent {
		_ = c.store.clearWriter(ctx, key, token)
	}
}

// releaseEntry releases a holder entry (a semaphore's or a reader's
// lease), resending it while its outcome is unknown. When no entry is
// removed, a read tells why: the entry is still there (on MongoDB, another
// release changed count between the two updates of removeEntries: send
// again), or it is gone. Gone after an attempt whose outcome was unknown
// counts as released when the lease was still surely held (before its
// deadline) when the release began: then nobody else could have removed
// the entry as expired, so the earlier attempt did (or a force-release
// did, which the release then comes before).
func (c *Client) releaseEntry(ctx context.Context, key, token string, surelyHeld bool) (ok, unknown bool, err error) {
	for range maxAttempts {
		var u bool
		ok, u, err = c.retry(ctx, func(ctx context.Context) (bool, error) {
			return c.store.releaseEntry(ctx, key, token)
		})
		unknown = unknown || u
		if err != nil {
			if outcomeUnknown(err) {
				c.giveBack(ctx, func(ctx context.Context) (bool, error) { return c.store.releaseEntry(ctx, key, token) })
				return false, true, fmt.Errorf("%w (the release goes on in the background)", err)
			}
			return false, unknown, err
		}
		if ok {
			break
		}
		d, ferr := c.store.find(ctx, key)
		if ferr == nil && d.kind != "" && d.holders[token] != nil {
			continue // still there: a release raced between the two updates
		}
		ok = unknown && surelyHeld
		break
	}
	if ok {
		c.notifyReleased(key)
	}
	return ok, unknown, nil
}

// renewAs renews a lease: its entry of holders, or the whole lock.
func (c *Client) renewAs(ctx context.Context, key, token string, multi bool, now serverTime, d time.Duration) (time.Time, bool, error) {
	if multi {
		return c.store.renewEntry(ctx, key, token, now, d)
	}
	return c.store.renewLease(ctx, key, token, now, d)
}
