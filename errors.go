package mongolock

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error this package returns that has one of these
// meanings matches it with errors.Is.
var (
	// ErrLocked means the lock is held by someone else. The error returned is a
	// *LockedError that says by whom.
	ErrLocked = errors.New("mongolock: lock is held by another owner")

	// ErrNotHeld means the caller does not hold the lock it tried to release
	// or renew: it was never taken, was released, expired, or was taken over
	// by another holder after expiry.
	ErrNotHeld = errors.New("mongolock: lock is not held by this owner")

	// ErrNotFound means there is no lock document for the key.
	ErrNotFound = errors.New("mongolock: no such lock")

	// ErrInvalidArgument means an argument broke a rule. The error returned is
	// an *ArgumentError that names the argument and the rule.
	ErrInvalidArgument = errors.New("mongolock: invalid argument")

	// ErrInvalidDocument means a stored lock document does not have the shape
	// this package writes (for example, expire is a string). The error
	// returned is a *DocumentError. The document is left as it was.
	ErrInvalidDocument = errors.New("mongolock: stored lock document has the wrong shape")

	// ErrLost means a lease was lost while its holder thought it held it:
	// it expired before it could be renewed, or was taken over, deleted or
	// released elsewhere. Lease.Err returns it, wrapped with the reason.
	ErrLost = errors.New("mongolock: lock lost")

	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("mongolock: client is closed")

	// ErrLimitMismatch means an acquisition asked for another kind of lock
	// than the holders of a semaphore have (another Limit, Shared, or an
	// exclusive lock), or a semaphore of a shared lock's readers. The error
	// returned is a *LimitError naming both. (An exclusive holder records no
	// limit: a semaphore waits for it, as a reader does.)
	ErrLimitMismatch = errors.New("mongolock: holders of the lock asked for another limit")
)

// LimitError reports an acquisition that asked for another limit than the
// lock's holders: all holders of a key must agree on it. A limit of 1 is
// the exclusive lock (or a writer), 0 a shared (reader) lock, n > 1 a
// semaphore of n. It matches ErrLimitMismatch.
type LimitError struct {
	Key   string // the lock's key
	Held  int    // the holders' limit
	Asked int    // the limit this acquisition asked for
	Owner string // one of the holders
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("mongolock: lock %q is held as %s (by %q and maybe others); this acquisition asked for %s",
		e.Key, limitName(e.Held), e.Owner, limitName(e.Asked))
}

// Is reports whether target is ErrLimitMismatch.
func (e *LimitError) Is(target error) bool { return target == ErrLimitMismatch }

func limitName(n int) string {
	switch n {
	case 0:
		return "a shared (reader) lock"
	case 1:
		return "an exclusive lock (limit 1)"
	}
	return fmt.Sprintf("a semaphore of %d (limit %d)", n, n)
}

// LockedError reports a lock held by someone else. It matches ErrLocked,
// and, when the wait for the lock ended because its context did, that
// context's error too (errors.Is(err, context.DeadlineExceeded)).
type LockedError struct {
	Key     string    // the lock's key
	Owner   string    // the holder's owner name ("" if unknown)
	Created time.Time // when the holder took it (server time; zero if unknown)
	Expire  time.Time // when it expires (server time; zero if never or unknown)

	// Deprecated: Since is Created, kept for code written before the names
	// were made the same as LockInfo's.
	Since time.Time
	// Deprecated: Expires is Expire, kept for code written before the
	// names were made the same as LockInfo's.
	Expires time.Time

	cause error // the context's error, if a context ended the wait
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("mongolock: lock %q is held", e.Key)
	if e.Owner != "" {
		msg += fmt.Sprintf(" by %q", e.Owner)
	}
	if !e.Created.IsZero() {
		msg += " since " + e.Created.UTC().Format(time.RFC3339Nano)
	}
	if e.Expire.IsZero() {
		msg += ", never expires"
	} else {
		msg += ", expires " + e.Expire.UTC().Format(time.RFC3339Nano)
	}
	if e.cause != nil {
		msg += " (stopped waiting: " + e.cause.Error() + ")"
	}
	return msg
}

// Is reports whether target is ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Unwrap returns the context's error when a context ended the wait, nil
// otherwise.
func (e *LockedError) Unwrap() error { return e.cause }

// newLockedError describes the holder d of key (nil: unknown) for a
// *LockedError; cause is the context's error if one ended the wait.
func newLockedError(key string, d *lockDoc, cause error) *LockedError {
	e := &LockedError{Key: key, cause: cause}
	if d != nil {
		e.Owner, e.Created, e.Expire = d.Owner, d.Created, d.Expire
		e.Since, e.Expires = d.Created, d.Expire
	}
	return e
}

// ArgumentError reports an argument that broke a rule. It matches
// ErrInvalidArgument.
type ArgumentError struct {
	Arg  string // the argument's name, e.g. "key" or "Expire"
	Rule string // the rule it broke, e.g. "must not be empty"
}

func (e *ArgumentError) Error() string {
	return fmt.Sprintf("mongolock: invalid argument %s: %s", e.Arg, e.Rule)
}

// Is reports whether target is ErrInvalidArgument.
func (e *ArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

func argError(arg, rule string, a ...any) error {
	return &ArgumentError{Arg: arg, Rule: fmt.Sprintf(rule, a...)}
}

// DocumentError reports a stored lock document of the wrong shape. It
// matches ErrInvalidDocument.
type DocumentError struct {
	Key     string // the lock's key
	Field   string // the offending field
	Problem string // what is wrong with it
}

func (e *DocumentError) Error() string {
	return fmt.Sprintf("mongolock: stored lock document %q has the wrong shape: field %q %s", e.Key, e.Field, e.Problem)
}

// Is reports whether target is ErrInvalidDocument.
func (e *DocumentError) Is(target error) bool { return target == ErrInvalidDocument }
