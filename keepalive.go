package mongolock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// keeper renews the kept-alive leases of one Client. One goroutine (started
// when the first such lease appears, ending when none is left) wakes when a
// lease is due, gathers every lease due soon, and renews them together: one
// unordered bulk write per expire period in use, so 10,000 leases cost one
// round trip per tick rather than 10,000. When fewer documents matched than
// leases were sent, one find tells which leases were lost and why; the
// others are unaffected.
type keeper struct {
	c *Client

	mu      sync.Mutex
	leases  map[*Lease]struct{}
	running bool
	wake    chan struct{} // buffered; pokes the loop when a lease is added
}

func (k *keeper) add(l *Lease) {
	k.mu.Lock()
	k.leases[l] = struct{}{}
	start := !k.running
	k.running = true
	k.mu.Unlock()
	if start {
		k.c.background(k.loop)
	}
	k.poke()
}

// remove stops renewing l; the loop ends when no lease is left.
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
		due, next, ok := k.due()
		if !ok {
			return // no lease left; add starts a new loop
		}
		if len(due) > 0 {
			k.renew(ctx, due)
			continue
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

// due returns the leases to renew now, and how long to sleep otherwise. A
// round starts when the earliest lease reaches its renewal time, and takes
// along every lease that would be due within half its interval: after one
// round, leases acquired at different times are in step and renewed
// together, one round per interval however many leases there are.
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
		w := waiting{l, l.nextRenew.Sub(now), renewEvery(l.expire) / 2}
		l.mu.Unlock()
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
		d := l.expire
		l.mu.Unlock()
		groups[d] = append(groups[d], l)
	}
	for d, group := range groups {
		k.renewGroup(ctx, d, group)
	}
}

func (k *keeper) renewGroup(ctx context.Context, d time.Duration, group []*Lease) {
	c := k.c
	// Give up on this round when no lease in it can still be saved (each
	// lease's own timer reports it lost at its deadline), so the loop never
	// hangs on a server that does not answer.
	latest := time.Duration(0)
	keys := make([]string, len(group))
	tokens := make([]string, len(group))
	for i, l := range group {
		l.mu.Lock()
		if left := l.deadline.Sub(c.cfg.now()); left > latest {
			latest = left
		}
		l.mu.Unlock()
		keys[i], tokens[i] = l.key, l.token
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
	n, err := c.store.renewMany(rctx, keys, tokens, now, d)
	if err != nil {
		retryLater()
		return
	}
	if n == int64(len(group)) {
		for _, l := range group {
			l.renewed(now, d)
		}
		return
	}
	// Some did not match: find out which, and why.
	docs, err := c.store.findMany(rctx, keys)
	if err != nil {
		retryLater()
		return
	}
	newExpire := now.at.Add(d).Truncate(time.Millisecond)
	for _, l := range group {
		doc := docs[l.key]
		switch {
		case doc == nil:
			l.lose(fmt.Errorf("%w: the document of %q was deleted", ErrLost, l.key))
		case doc.token != l.token && doc.Locked:
			l.lose(fmt.Errorf("%w: %q was taken over by %q", ErrLost, l.key, doc.Owner))
		case doc.token != l.token || !doc.Locked:
			l.lose(fmt.Errorf("%w: %q was released elsewhere", ErrLost, l.key))
		case doc.Expire.Equal(newExpire):
			l.renewed(now, d)
		default:
			l.lose(fmt.Errorf("%w: %q expired before it could be renewed", ErrLost, l.key))
		}
	}
}

// track registers a live lease with its Client: for Close, and for
// keep-alive when it has an expiry and keep-alive is on.
func (c *Client) track(l *Lease) {
	c.mu.Lock()
	c.leases[l] = struct{}{}
	c.mu.Unlock()
	if l.keepAlive && l.expire > 0 {
		c.keeper.add(l)
	}
}

func (c *Client) untrack(l *Lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
	c.keeper.remove(l)
}

// waitRoom lets waiters in this process sleep until a lease of the same
// Client releases the key, instead of until their next poll.
type waitRoom struct {
	mu    sync.Mutex
	rooms map[string]*room
}

type room struct {
	ch      chan struct{} // closed on release, then replaced
	waiters int
}

// enter returns a channel closed when key is next released through this
// Client; leave must be called when the waiter is done.
func (w *waitRoom) enter(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rooms[key]
	if r == nil {
		r = &room{ch: make(chan struct{})}
		w.rooms[key] = r
	}
	r.waiters++
	ch := r.ch
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if r.waiters--; r.waiters == 0 && w.rooms[key] == r {
			delete(w.rooms, key)
		}
	}
}

// notifyReleased wakes the waiters in this process for key.
func (c *Client) notifyReleased(key string) {
	w := &c.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.rooms[key]; r != nil {
		close(r.ch)
		r.ch = make(chan struct{})
	}
}
