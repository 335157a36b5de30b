package mongolock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// keeper renews the kept-alive leases of one Client and watches every
// lease's deadline for suspends. One goroutine (started when the first
// such lease appears, ending when none is left) wakes when a lease is due,
// gathers every lease due soon, and renews them together: one unordered
// bulk write per expire period in use, so 10,000 leases cost one round trip
// per tick rather than 10,000. When fewer documents matched than leases
// were sent, one find tells which leases were lost and why; the others are
// unaffected.
//
// Go's timers and monotonic clock stand still while the machine is
// suspended, but the local clock a Client measures with (CLOCK_BOOTTIME on
// Linux) does not. So where the local clock counts suspends, the goroutine
// also wakes every suspendCheck while any lease has a deadline; when the
// local clock has run ahead of Go's monotonic clock since its last look (a
// suspend), it checks every lease's deadline at once, instead of leaving it
// to timers that are now late.
type keeper struct {
	c *Client

	mu      sync.Mutex
	leases  map[*Lease]struct{}
	running bool
	wake    chan struct{} // buffered; pokes the loop when a lease is added

	// The suspend watch's last look: set by add when it starts the loop,
	// then read and written by the loop only.
	lastLocal, lastMono time.Time
}

const (
	// suspendCheck is how often the suspend watch looks, at most.
	suspendCheck = 100 * time.Millisecond
	// suspendGap is how far the local clock must run ahead of Go's
	// monotonic clock between two looks to count as a suspend.
	suspendGap = 10 * time.Millisecond
)

// add starts renewing l if it is kept alive, and watching its deadline. A
// lease that is lost or released by then is not added: keep-alive never
// renews a lease after its deadline passed.
func (k *keeper) add(l *Lease) {
	k.mu.Lock()
	l.mu.Lock()
	watch := l.err == nil && l.state == leaseHeld &&
		(l.keepAlive && l.period > 0 || !l.deadline.IsZero() && k.c.cfg.countsSuspend)
	l.mu.Unlock()
	if !watch {
		k.mu.Unlock()
		return
	}
	k.leases[l] = struct{}{}
	start := !k.running
	if start {
		// The suspend watch's first look is now, not when the goroutine
		// gets to run: a suspend in between must not go unnoticed.
		k.lastLocal, k.lastMono = k.c.cfg.now(), k.c.cfg.mono()
	}
	k.running = true
	k.mu.Unlock()
	if start && !k.c.background(k.loop) {
		k.mu.Lock()
		k.running = false
		k.mu.Unlock()
	}
	k.poke()
}

// remove stops renewing and watching l; the loop ends when no lease is left.
func (k *keeper) remove(l *Lease) {
	k.mu.Lock()
	_, had := k.leases[l]
	delete(k.leases, l)
	last := had && len(k.leases) == 0
	k.mu.Unlock()
	if last {
		k.poke()
	}
}

// stop stops renewing and watching every lease (Close); the loop ends.
func (k *keeper) stop() {
	k.mu.Lock()
	clear(k.leases)
	k.mu.Unlock()
	k.poke()
}

func (k *keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// renewRetry is how soon a renewal that failed (server unreachable) is
// tried again, at most.
const renewRetry = 250 * time.Millisecond

func (k *keeper) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		k.checkSuspend()
		due, next, ok := k.due()
		if !ok {
			return // no lease left; add starts a new loop
		}
		if len(due) > 0 {
			k.renew(ctx, due)
			continue
		}
		if k.c.cfg.countsSuspend {
			next = min(next, suspendCheck)
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			k.mu.Lock()
			k.running = false
			k.mu.Unlock()
			return
		case <-k.wake:
		case <-timer.C:
		}
	}
}

// checkSuspend looks whether the local clock ran ahead of Go's monotonic
// clock since the last look (the machine was suspended), and if so checks
// every watched lease's deadline now.
func (k *keeper) checkSuspend() {
	if !k.c.cfg.countsSuspend {
		return
	}
	local, mono := k.c.cfg.now(), k.c.cfg.mono()
	gap := local.Sub(k.lastLocal) - mono.Sub(k.lastMono)
	k.lastLocal, k.lastMono = local, mono
	if gap < suspendGap {
		return
	}
	k.mu.Lock()
	leases := make([]*Lease, 0, len(k.leases))
	for l := range k.leases {
		leases = append(leases, l)
	}
	k.mu.Unlock()
	for _, l := range leases {
		l.expired() // lost if past its deadline; else its timer is set right again
	}
}

// due returns the kept-alive leases to renew now, and how long to sleep
// otherwise. A round starts when the earliest lease reaches its renewal
// time, and takes along every lease that would be due within half its
// interval: after one round, leases acquired at different times are in
// step and renewed together, one round per interval however many leases
// there are.
func (k *keeper) due() (due []*Lease, next time.Duration, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.leases) == 0 {
		k.running = false
		return nil, 0, false
	}
	now := k.c.cfg.now()
	next = time.Hour
	type waiting struct {
		l    *Lease
		wait time.Duration
		half time.Duration
	}
	all := make([]waiting, 0, len(k.leases))
	for l := range k.leases {
		l.mu.Lock()
		kept := l.keepAlive && l.period > 0 && l.state == leaseHeld && l.err == nil
		w := waiting{l, l.nextRenew.Sub(now), renewEvery(l.period) / 2}
		l.mu.Unlock()
		if !kept {
			continue
		}
		all = append(all, w)
		next = min(next, w.wait)
	}
	if next > 0 {
		return nil, next, true
	}
	for _, w := range all {
		if w.wait <= w.half {
			due = append(due, w.l)
		}
	}
	return due, 0, true
}

// renew renews due, grouped by expire period.
func (k *keeper) renew(ctx context.Context, due []*Lease) {
	groups := make(map[time.Duration][]*Lease)
	for _, l := range due {
		l.mu.Lock()
		d := l.period
		l.mu.Unlock()
		groups[d] = append(groups[d], l)
	}
	for d, group := range groups {
		k.renewGroup(ctx, d, group)
	}
}

func (k *keeper) renewGroup(ctx context.Context, d time.Duration, group []*Lease) {
	c := k.c
	// A lease whose deadline has passed is lost, whether or not its timer
	// has fired yet: it is never renewed afterwards. Give up on this round
	// when no lease in it can still be saved, so the loop never hangs on a
	// server that does not answer.
	latest := time.Duration(0)
	live := group[:0]
	for _, l := range group {
		if l.loseIfPast() {
			continue
		}
		live = append(live, l)
		l.mu.Lock()
		if left := l.deadline.Sub(c.cfg.now()); left > latest {
			latest = left
		}
		l.mu.Unlock()
	}
	group = live
	if len(group) == 0 {
		return
	}
	keys := make([]string, len(group))
	tokens := make([]string, len(group))
	multi := make([]bool, len(group))
	for i, l := range group {
		keys[i], tokens[i], multi[i] = l.key, l.token, l.multi
	}
	rctx, cancel := context.WithTimeout(ctx, max(latest, time.Millisecond))
	defer cancel()

	retryLater := func() {
		for _, l := range group {
			l.mu.Lock()
			l.nextRenew = c.cfg.now().Add(min(renewRetry, renewEvery(d)/4))
			l.mu.Unlock()
		}
	}
	now, err := c.clock.Now(rctx)
	if err != nil {
		retryLater()
		return
	}
	// From here on the server may hold the lock for these tokens past
	// what the leases know: if one is lost at its deadline, it gives the
	// lock back (giveBackLost). Marked before the send, not after a
	// failure, which ends with rctx at the very deadline.
	for _, l := range group {
		l.markUnsure()
	}
	expire, n, err := c.store.renewMany(rctx, keys, tokens, multi, now, d)
	if err != nil {
		// Also when the outcome is unknown: resending is harmless, as a
		// renewal never moves an expiry back.
		retryLater()
		return
	}
	if n == int64(len(group)) {
		for _, l := range group {
			_, _, _ = l.renewed(now, d, 0)
		}
		return
	}
	// Some did not match: find out which, and why.
	docs, err := c.store.findMany(rctx, keys)
	if err != nil {
		retryLater()
		return
	}
	for _, l := range group {
		doc := docs[l.key]
		if l.multi {
			k.entryFate(l, doc, now, d, expire)
			continue
		}
		switch {
		case doc == nil:
			l.lose(fmt.Errorf("%w: the document of %q was deleted", ErrLost, l.key))
		case doc.token != l.token && doc.Locked:
			l.lose(fmt.Errorf("%w: %q was taken over by %q", ErrLost, l.key, doc.Owner))
		case doc.token != l.token || !doc.Locked:
			l.lose(fmt.Errorf("%w: %q was released elsewhere", ErrLost, l.key))
		case doc.Expire.IsZero() || !doc.Expire.Before(expire):
			// Held, with an expiry at least the one this renewal wrote.
			_, _, _ = l.renewed(now, d, 0)
		default:
			l.lose(fmt.Errorf("%w: %q expired before it could be renewed", ErrLost, l.key))
		}
	}
}

// entryFate is renewGroup's verdict on a lease that is an entry of
// holders, from its document after a renewal that did not match them all.
func (k *keeper) entryFate(l *Lease, doc *lockDoc, now serverTime, d time.Duration, expire time.Time) {
	var e *holderEntry
	if doc != nil {
		e = doc.holders[l.token]
	}
	switch {
	case doc == nil:
		l.lose(fmt.Errorf("%w: the document of %q was deleted", ErrLost, l.key))
	case doc.kind == "" && doc.Locked:
		l.lose(fmt.Errorf("%w: %q was taken over by %q", ErrLost, l.key, doc.Owner))
	case e == nil || doc.kind == "":
		l.lose(fmt.Errorf("%w: %q was released elsewhere, or expired and was removed", ErrLost, l.key))
	case e.Expire.IsZero() || !e.Expire.Before(expire):
		_, _, _ = l.renewed(now, d, 0)
	default:
		l.lose(fmt.Errorf("%w: %q expired before it could be renewed", ErrLost, l.key))
	}
}

// untrack forgets a lease that was released or lost.
func (c *Client) untrack(l *Lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
	c.keeper.remove(l)
}
