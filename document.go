package mongolock

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Field names of a lock document. The first five are the Python package's,
// so Python and Go workers on one collection exclude each other; the rest
// are this package's additions.
const (
	fieldKey      = "_id"      // the lock's key
	fieldLocked   = "locked"   // true while held
	fieldOwner    = "owner"    // holder's name, null when released
	fieldCreated  = "created"  // server time the holder took it, null when released
	fieldExpire   = "expire"   // server time it expires, null for never / released
	fieldToken    = "token"    // random per-acquisition token (this package)
	fieldFence    = "fence"    // fencing token of the latest acquisition (this package)
	fieldReleased = "released" // server time of the latest release (this package)
	fieldAcquired = "acquired" // server time of the latest write of a fence (this package)
	fieldSeen     = "seen"     // server time Purge first saw a document the Python package wrote
)

// maxFence bounds a stored fence: a larger one (no fence this package issues
// comes near it) would overflow when raised, so such a document has the
// wrong shape.
const maxFence = int64(1) << 62

// LockInfo describes a stored lock. Times are the database server's.
type LockInfo struct {
	Key     string    // the lock's key
	Locked  bool      // the stored locked flag; see Client.IsLocked for expiry
	Owner   string    // holder's name; "" when released
	Created time.Time // when the holder took it; zero when released
	Expire  time.Time // when it expires; zero if it never does (or is released)
	Fence   int64     // fencing token of the latest acquisition; 0 if none

	// InMinHold says its holder released it before its MinHold had passed:
	// it stays held until Expire, and nobody can renew it.
	InMinHold bool

	// The recipes (docs/DESIGN.md, "Beyond the mutex"). For a semaphore or
	// a shared lock, Locked, Owner ("*semaphore" or "*shared"), Created and
	// Expire are what the Python package sees (held until Expire, the
	// latest any holder may hold), and Holders lists the holders.
	Limit  int    // a semaphore's n (Limit); 0 if not a semaphore
	Shared bool   // held (or last held) by readers (Shared)
	Value  string // an election leader's value (Election.Campaign); "" if none

	recipe *recipeInfo // nil for an exclusive lock (so LockInfo stays comparable)
}

// recipeInfo is what LockInfo's methods Holders and Waiters return.
type recipeInfo struct {
	holders []Holder
	waiters []Waiter
}

// Holders returns the holders of a semaphore or a shared lock, by fence,
// expired ones (not yet removed) included; nil for an exclusive lock.
func (i *LockInfo) Holders() []Holder {
	if i.recipe == nil {
		return nil
	}
	return append([]Holder{}, i.recipe.holders...)
}

// Waiters returns the acquisitions waiting in a fair lock's queue, in
// arrival order, and a writer waiting for a shared lock's readers to leave.
func (i *LockInfo) Waiters() []Waiter {
	if i.recipe == nil {
		return nil
	}
	return append([]Waiter(nil), i.recipe.waiters...)
}

// heldAt reports whether the lock is held at server time t: by one holder,
// or by any holder of a semaphore or shared lock.
func (i *LockInfo) heldAt(t time.Time) bool {
	if !i.Locked {
		return false
	}
	if i.recipe != nil && i.recipe.holders != nil {
		for _, h := range i.recipe.holders {
			if h.Expire.IsZero() || h.Expire.After(t) {
				return true
			}
		}
		return false
	}
	return i.Expire.IsZero() || i.Expire.After(t)
}

// lockDoc is a decoded lock document: the public info plus the token.
type lockDoc struct {
	LockInfo
	token    string
	hasFence bool // a fence is stored (documents the Python package wrote have none)
	recipeDoc
}

// decodeLock reads a stored lock document, checking every field this
// package relies on. A field of the wrong type is a *DocumentError, never a
// panic or a silently zero value.
func decodeLock(key string, raw bson.Raw) (*lockDoc, error) {
	d := &lockDoc{LockInfo: LockInfo{Key: key}}
	bad := func(field, problem string) error {
		return &DocumentError{Key: key, Field: field, Problem: problem}
	}
	if err := raw.Validate(); err != nil {
		return nil, bad(fieldKey, "is not valid BSON: "+err.Error())
	}
	if v, err := raw.LookupErr(fieldKey); err == nil {
		if s, ok := v.StringValueOK(); ok {
			d.Key = s
		}
	}

	v, err := raw.LookupErr(fieldLocked)
	if err != nil {
		return nil, bad(fieldLocked, "is missing")
	}
	locked, ok := v.BooleanOK()
	if !ok {
		return nil, bad(fieldLocked, "must be a boolean, is "+v.Type.String())
	}
	d.Locked = locked

	if d.Owner, err = optString(raw, fieldOwner); err != nil {
		return nil, bad(fieldOwner, err.Error())
	}
	if d.token, err = optString(raw, fieldToken); err != nil {
		return nil, bad(fieldToken, err.Error())
	}
	d.InMinHold = d.Locked && strings.HasSuffix(d.token, heldSuffix)
	if d.Created, err = optTime(raw, fieldCreated); err != nil {
		return nil, bad(fieldCreated, err.Error())
	}
	if d.Expire, err = optTime(raw, fieldExpire); err != nil {
		return nil, bad(fieldExpire, err.Error())
	}
	if d.Fence, d.hasFence, err = optFence(raw, fieldFence); err != nil {
		return nil, bad(fieldFence, err.Error())
	}
	return d, nil
}

func optString(raw bson.Raw, field string) (string, error) {
	v, err := raw.LookupErr(field)
	if err != nil || v.Type == bson.TypeNull {
		return "", nil
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", errors.New("must be a string or null, is " + v.Type.String())
	}
	return s, nil
}

func optTime(raw bson.Raw, field string) (time.Time, error) {
	v, err := raw.LookupErr(field)
	if err != nil || v.Type == bson.TypeNull {
		return time.Time{}, nil
	}
	ms, ok := v.DateTimeOK()
	if !ok {
		return time.Time{}, errors.New("must be a date or null, is " + v.Type.String())
	}
	return time.UnixMilli(ms).UTC(), nil
}

// optFence reads a fence: a 32- or 64-bit integer below maxFence, or
// null/missing (no fence). Other numbers are refused, as the write filters
// refuse them (shapeGuard): a filter cannot tell a whole double from another.
func optFence(raw bson.Raw, field string) (int64, bool, error) {
	v, err := raw.LookupErr(field)
	if err != nil || v.Type == bson.TypeNull {
		return 0, false, nil
	}
	switch v.Type {
	case bson.TypeInt64:
		if f := v.Int64(); f < maxFence {
			return f, true, nil
		}
		return 0, false, fmt.Errorf("is %d, at least 2^62: raising it would overflow", v.Int64())
	case bson.TypeInt32:
		return int64(v.Int32()), true, nil
	}
	return 0, false, errors.New("must be a 32- or 64-bit integer or null, is " + v.Type.String())
}

// Field names of the recipes (docs/DESIGN.md, "Beyond the mutex"): the
// holders of a semaphore or a shared lock, a writer waiting for readers,
// the waiters of a fair lock, an election's value.
const (
	fieldHolders = "holders" // token -> holder entry (semaphore, shared)
	fieldCount   = "count"   // how many entries holders has
	fieldLimit   = "limit"   // a semaphore's n
	fieldWriter  = "writer"  // a writer's intent: {token, owner, expire}
	fieldQueue   = "queue"   // token -> waiter entry (fair)
	fieldOrder   = "order"   // the waiters' tokens in arrival order (fair)
	fieldValue   = "value"   // {token, value}: an election leader's value

	// Fields of a holder entry (holders.<token>), a writer's intent and a
	// waiter entry (queue.<token>).
	entryOwner   = "owner"
	entryCreated = "created"
	entryExpire  = "expire"
	entryFence   = "fence"
	entryToken   = "token"
	entryValue   = "value"
)

// Markers stored as the token (and owner) of a document held by the
// holders of a semaphore or a shared lock. Acquisition tokens are hex, so
// no acquisition's token ever equals one: the exclusive lock's filters never
// take such a document for their own, and a Python worker sees it as held
// by "*semaphore" or "*shared".
const (
	markSemaphore = "*semaphore"
	markShared    = "*shared"
)

// farFuture is the document-level expiry of a semaphore or shared lock one
// of whose holders never expires: the Python package and the exclusive lock
// read it as "held", and $max keeps it above every holder's expiry.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)

// maxEntries bounds the entries of holders and of queue (and so a
// semaphore's n), so that a document never grows without bound: at about
// 150 bytes an entry, 1,000 entries are 150 KB, far below MongoDB's 16 MB.
const maxEntries = 1000

// Holder is one holder of a semaphore or of a shared (reader) lock.
type Holder struct {
	Owner   string    // the holder's name
	Created time.Time // when it took the lock (server time)
	Expire  time.Time // when it expires (server time); zero if never
	Fence   int64     // its fencing token
}

// Waiter is one acquisition waiting for a fair lock, or a writer waiting
// for a shared lock's readers to leave.
type Waiter struct {
	Owner  string    // the waiter's name
	Expire time.Time // when its heartbeat runs out (server time)
}

// holderEntry is one entry of holders.
type holderEntry struct {
	Holder
	token string
}

// recipeDoc is what a document holds beyond the exclusive lock's fields.
type recipeDoc struct {
	kind    string                  // markSemaphore, markShared or "" (exclusive)
	holders map[string]*holderEntry // by token
	count   int64                   // the stored count of holders
	limit   int64                   // the stored limit
	writer  *holderEntry            // a writer's intent (Holder.Expire: its heartbeat)
	queue   map[string]*holderEntry // fair waiters by token
	order   []string                // fair waiters' tokens in arrival order
	value   *holderEntry            // the election value: token and Holder.Owner = the value
}

// decodeDoc reads a stored document whole: the lock's fields (decodeLock)
// and the recipes' (decodeRecipe).
func decodeDoc(key string, raw bson.Raw) (*lockDoc, error) {
	d, err := decodeLock(key, raw)
	if err != nil {
		return nil, err
	}
	if err := decodeRecipe(d, raw); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeRecipe reads the recipes' fields into d, checking their types as
// recipeGuard does; a field of the wrong type is a *DocumentError.
func decodeRecipe(d *lockDoc, raw bson.Raw) error {
	bad := func(field, problem string) error {
		return &DocumentError{Key: d.Key, Field: field, Problem: problem}
	}
	switch d.token {
	case markSemaphore, markShared:
		d.kind = d.token
	}
	var err error
	if d.count, err = optInt(raw, fieldCount); err != nil {
		return bad(fieldCount, err.Error())
	}
	if d.limit, err = optInt(raw, fieldLimit); err != nil {
		return bad(fieldLimit, err.Error())
	}
	if d.holders, err = optEntries(raw, fieldHolders); err != nil {
		return bad(fieldHolders, err.Error())
	}
	if d.queue, err = optEntries(raw, fieldQueue); err != nil {
		return bad(fieldQueue, err.Error())
	}
	if v, lerr := raw.LookupErr(fieldWriter); lerr == nil && v.Type != bson.TypeNull {
		doc, ok := v.DocumentOK()
		if !ok {
			return bad(fieldWriter, "must be a document or null, is "+v.Type.String())
		}
		if d.writer, err = decodeEntry(doc); err != nil {
			return bad(fieldWriter, err.Error())
		}
		if d.writer.token, err = optString(doc, entryToken); err != nil {
			return bad(fieldWriter, "token "+err.Error())
		}
	}
	if v, lerr := raw.LookupErr(fieldValue); lerr == nil && v.Type != bson.TypeNull {
		doc, ok := v.DocumentOK()
		if !ok {
			return bad(fieldValue, "must be a document or null, is "+v.Type.String())
		}
		e := &holderEntry{}
		if e.token, err = optString(doc, entryToken); err == nil {
			e.Owner, err = optString(doc, entryValue)
		}
		if err != nil {
			return bad(fieldValue, err.Error())
		}
		d.value = e
	}
	if v, lerr := raw.LookupErr(fieldOrder); lerr == nil && v.Type != bson.TypeNull {
		arr, ok := v.ArrayOK()
		if !ok {
			return bad(fieldOrder, "must be an array, is "+v.Type.String())
		}
		vals, verr := arr.Values()
		if verr != nil {
			return bad(fieldOrder, verr.Error())
		}
		for _, x := range vals {
			s, ok := x.StringValueOK()
			if !ok {
				return bad(fieldOrder, "must hold strings, holds a "+x.Type.String())
			}
			d.order = append(d.order, s)
		}
	}
	d.fillInfo()
	return nil
}

// fillInfo sets the public view of the recipe fields.
func (d *lockDoc) fillInfo() {
	r := &recipeInfo{}
	if d.kind != "" {
		d.Shared = d.kind == markShared
		if d.kind == markSemaphore {
			d.Limit = int(d.limit)
		}
		r.holders = make([]Holder, 0, len(d.holders))
		for _, h := range d.holders {
			r.holders = append(r.holders, h.Holder)
		}
		sort.Slice(r.holders, func(i, j int) bool { return r.holders[i].Fence < r.holders[j].Fence })
		if d.Expire.Equal(farFuture) {
			d.Expire = time.Time{}
		}
	}
	if d.value != nil && d.value.token == d.token && d.token != "" {
		d.Value = d.value.Owner
	}
	for _, t := range d.order {
		if q := d.queue[t]; q != nil {
			r.waiters = append(r.waiters, Waiter{Owner: q.Owner, Expire: q.Expire})
		}
	}
	if d.writer != nil && d.kind == markShared {
		r.waiters = append(r.waiters, Waiter{Owner: d.writer.Owner, Expire: d.writer.Expire})
	}
	if r.holders != nil || r.waiters != nil {
		d.recipe = r
	}
}

func optInt(raw bson.Raw, field string) (int64, error) {
	v, err := raw.LookupErr(field)
	if err != nil || v.Type == bson.TypeNull {
		return 0, nil
	}
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), nil
	case bson.TypeInt64:
		return v.Int64(), nil
	}
	return 0, errors.New("must be a 32- or 64-bit integer or null, is " + v.Type.String())
}

// optEntries reads a map of entries keyed by token.
func optEntries(raw bson.Raw, field string) (map[string]*holderEntry, error) {
	v, err := raw.LookupErr(field)
	if err != nil || v.Type == bson.TypeNull {
		return nil, nil
	}
	doc, ok := v.DocumentOK()
	if !ok {
		return nil, errors.New("must be a document, is " + v.Type.String())
	}
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*holderEntry, len(elems))
	for _, el := range elems {
		sub, ok := el.Value().DocumentOK()
		if !ok {
			return nil, fmt.Errorf("entry %q must be a document, is %s", el.Key(), el.Value().Type)
		}
		e, err := decodeEntry(sub)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", el.Key(), err)
		}
		e.token = el.Key()
		out[e.token] = e
	}
	return out, nil
}

func decodeEntry(raw bson.Raw) (*holderEntry, error) {
	e := &holderEntry{}
	var err error
	if e.Owner, err = optString(raw, entryOwner); err != nil {
		return nil, errors.New("owner " + err.Error())
	}
	if e.Created, err = optTime(raw, entryCreated); err != nil {
		return nil, errors.New("created " + err.Error())
	}
	if e.Expire, err = optTime(raw, entryExpire); err != nil {
		return nil, errors.New("expire " + err.Error())
	}
	if e.Fence, _, err = optFence(raw, entryFence); err != nil {
		return nil, errors.New("fence " + err.Error())
	}
	return e, nil
}

// liveHolders returns the holders that may still hold at now: their expiry
// is not surely past (null, or not before the earliest the server's clock
// can read). The others are surely expired.
func (d *lockDoc) liveHolders(now serverTime) (live, dead []*holderEntry) {
	for _, h := range d.holders {
		if h.Expire.IsZero() || !h.Expire.Before(now.earliest()) {
			live = append(live, h)
		} else {
			dead = append(dead, h)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Fence < live[j].Fence })
	sort.Slice(dead, func(i, j int) bool { return dead[i].token < dead[j].token })
	return live, dead
}
