package mongolock

import (
	"errors"
	"fmt"
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
}

// heldAt reports whether the lock is held at server time t.
func (i *LockInfo) heldAt(t time.Time) bool {
	return i.Locked && (i.Expire.IsZero() || i.Expire.After(t))
}

// lockDoc is a decoded lock document: the public info plus the token.
type lockDoc struct {
	LockInfo
	token    string
	hasFence bool // a fence is stored (documents the Python package wrote have none)
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
