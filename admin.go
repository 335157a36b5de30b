package mongolock

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// This file holds operations for operators and tools rather than workers:
// listing locks and clearing a lock whatever its holder.

// List returns the stored locks whose keys start with prefix (all locks if
// prefix is ""), sorted by key. A stored document of the wrong shape makes
// List fail with an error matching ErrInvalidDocument that names its key.
func (c *Client) List(ctx context.Context, prefix string) ([]LockInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if len(prefix) > maxKeyBytes {
		return nil, argError("prefix", "must be at most %d bytes, got %d", maxKeyBytes, len(prefix))
	}
	docs, err := c.store.list(ctx, "^"+regexp.QuoteMeta(prefix))
	if err != nil {
		return nil, fmt.Errorf("mongolock: listing locks: %w", err)
	}
	out := make([]LockInfo, len(docs))
	for i, d := range docs {
		out[i] = d.LockInfo
	}
	return out, nil
}

// ForceRelease releases the lock key whoever holds it, and returns the lock
// as it was before (so a tool can say what it cleared). It is for operators
// clearing a lock whose holder is gone: the holder, if alive, is not told
// until its next renewal fails, and its Release and Renew then return
// ErrNotHeld. ErrNotFound if there is no such lock; a document of the wrong
// shape is reported (ErrInvalidDocument) and left as it is.
func (c *Client) ForceRelease(ctx context.Context, key string) (*LockInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if err := validKey(key); err != nil {
		return nil, err
	}
	var before *lockDoc
	_, _, err := c.retry(ctx, func(ctx context.Context) (bool, error) {
		var err error
		before, err = c.store.forceRelease(ctx, key)
		return before != nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("mongolock: force-releasing %q: %w", key, err)
	}
	c.notifyReleased(key)
	return &before.LockInfo, nil
}

// purgeMargin is how many times WithMaxClockError a document must have been
// idle before Purge may delete it, so that the next fence of its key is
// still above every earlier one (docs/DESIGN.md, "Fencing"): a fence is at
// most one of them ahead of the server's clock when it is written, and the
// first fence of a new document at most two behind.
const purgeMargin = 3

// Purge deletes the lock documents that have been released or expired
// for longer than idleFor (server time) and returns how many it deleted. A
// lock that is held, or a document of the wrong shape, is never touched.
// idleFor must be at least three times WithMaxClockError, which is what keeps
// fences rising across the deletion, provided every Client using the
// collection has a WithMaxClockError no larger (docs/DESIGN.md,
// "Fencing"). Documents the Python package wrote carry no time this
// package can trust: Purge first stamps them with the server's time, and a
// later Purge deletes them once they have been idle for idleFor since.
// Purge takes two round trips.
func (c *Client) Purge(ctx context.Context, idleFor time.Duration) (int64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	if min := purgeMargin * c.cfg.maxClockError; idleFor < min {
		return 0, argError("idleFor", "must be at least %d times WithMaxClockError (%v) so that fences keep rising, got %v", purgeMargin, min, idleFor)
	}
	now, err := c.clock.Now(ctx)
	if err != nil {
		return 0, err
	}
	if err := c.store.markSeen(ctx); err != nil {
		return 0, fmt.Errorf("mongolock: purging idle locks: %w", err)
	}
	cutoff := now.earliest().Add(-idleFor)
	n, err := c.store.purge(ctx, cutoff, cutoff)
	if err != nil {
		return n, fmt.Errorf("mongolock: purging idle locks: %w", err)
	}
	return n, nil
}

// ServerTime returns this Client's estimate of the database server's clock
// now and the bound on its error (the estimate is within ±bound of the
// server's clock). It is the clock every expiry decision uses; it samples
// the server only when its estimate is older than WithClockRefresh.
func (c *Client) ServerTime(ctx context.Context) (now time.Time, bound time.Duration, err error) {
	if err := c.checkOpen(); err != nil {
		return time.Time{}, 0, err
	}
	t, err := c.clock.Now(ctx)
	if err != nil {
		return time.Time{}, 0, err
	}
	return t.at, t.err, nil
}
