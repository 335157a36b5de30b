package mongolock

import "container/list"

// maxHeldKeys bounds how many keys a Client remembers owner-named
// acquisitions of (see heldBook): about 250 bytes each with 20-byte keys,
// so at most about 17 MB however many distinct keys a long-running process
// locks.
const maxHeldKeys = 1 << 16

// heldBook remembers, per key, the owner-named acquisition made through a
// Client (owner and token), and after its release that the Client did
// acquire the key (so the owner-name fallback never applies to it). It
// keeps the limit most recently recorded keys; a key forgotten beyond that
// falls back, like a key the Client never locked, to the Python package's
// owner-name match. Callers hold the Client's mutex.
type heldBook struct {
	limit int
	keys  map[string]*list.Element // key -> element of order, Value *heldEntry
	order *list.List               // least recently recorded first
}

type heldEntry struct {
	key string
	heldLock
}

func newHeldBook(limit int) *heldBook {
	return &heldBook{limit: limit, keys: make(map[string]*list.Element), order: list.New()}
}

// get returns what the book remembers of key.
func (b *heldBook) get(key string) (heldLock, bool) {
	e, ok := b.keys[key]
	if !ok {
		return heldLock{}, false
	}
	return e.Value.(*heldEntry).heldLock, true
}

// put records h for key as its most recent entry, and forgets the least
// recently recorded keys beyond the limit.
func (b *heldBook) put(key string, h heldLock) {
	if e, ok := b.keys[key]; ok {
		e.Value.(*heldEntry).heldLock = h
		b.order.MoveToBack(e)
		return
	}
	b.keys[key] = b.order.PushBack(&heldEntry{key: key, heldLock: h})
	for b.order.Len() > b.limit {
		oldest := b.order.Front()
		b.order.Remove(oldest)
		delete(b.keys, oldest.Value.(*heldEntry).key)
	}
}

// len is how many keys the book remembers.
func (b *heldBook) len() int { return b.order.Len() }
