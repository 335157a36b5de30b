package mongolock

import "sync"

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
