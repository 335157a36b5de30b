package mongolock

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// Defaults, in one place.
const (
	// DefaultDatabase is the database that holds the lock collection unless
	// WithDatabase says otherwise (the same default as the Python package).
	DefaultDatabase = "mongolock"
	// DefaultCollection is the lock collection's name unless WithCollection
	// says otherwise.
	DefaultCollection = "lock"
	// DefaultLeaseExpire is the expiry of a lease taken by Acquire or
	// TryAcquire without Expire or NeverExpire. It is kept alive, so it
	// lasts as long as its holder runs; a holder that crashes frees the lock
	// within this long.
	DefaultLeaseExpire = 30 * time.Second
	// DefaultRetryInterval is how long a waiting Lock, Acquire or Do sleeps
	// between attempts (the Python package's step).
	DefaultRetryInterval = 100 * time.Millisecond
	// DefaultClockRefresh is how often the server clock is sampled again.
	DefaultClockRefresh = 30 * time.Second
	// DefaultMaxClockError is the largest error bound of the server clock
	// estimate this package accepts before it refuses to judge expiry.
	DefaultMaxClockError = time.Second

	// maxMaxClockError bounds WithMaxClockError: a larger bound is no
	// clock at all, and margins derived from it must not overflow.
	maxMaxClockError = time.Hour

	maxKeyBytes   = 1024
	maxOwnerBytes = 512
)

// Option configures a Client.
type Option func(*clientConfig)

type clientConfig struct {
	database      string
	collection    string
	retryInterval time.Duration
	clockRefresh  time.Duration
	maxClockError time.Duration
	writeConcern  *writeconcern.WriteConcern
	readConcern   *readconcern.ReadConcern
	now           func() time.Time // the local clock: elapsed time, suspend included where the platform can tell
	mono          func() time.Time // Go's monotonic clock, to notice a suspend by comparing it with now
	countsSuspend bool             // now counts suspended time and mono does not: watch for suspends
}

func defaultClientConfig() clientConfig {
	now, countsSuspend := defaultLocalClock()
	return clientConfig{
		database:      DefaultDatabase,
		collection:    DefaultCollection,
		retryInterval: DefaultRetryInterval,
		clockRefresh:  DefaultClockRefresh,
		maxClockError: DefaultMaxClockError,
		writeConcern:  writeconcern.Majority(),
		readConcern:   readconcern.Majority(),
		now:           now,
		mono:          time.Now,
		countsSuspend: countsSuspend,
	}
}

func (c *clientConfig) validate() error {
	switch {
	case c.database == "":
		return argError("WithDatabase", "must not be empty")
	case c.collection == "":
		return argError("WithCollection", "must not be empty")
	case c.retryInterval <= 0:
		return argError("WithRetryInterval", "must be positive, got %v", c.retryInterval)
	case c.clockRefresh <= 0:
		return argError("WithClockRefresh", "must be positive, got %v", c.clockRefresh)
	case c.maxClockError <= 0:
		return argError("WithMaxClockError", "must be positive, got %v", c.maxClockError)
	case c.maxClockError > maxMaxClockError:
		return argError("WithMaxClockError", "must be at most %v, got %v", maxMaxClockError, c.maxClockError)
	case c.now == nil:
		return argError("WithLocalClock", "must not be nil")
	}
	return nil
}

// WithDatabase sets the database that holds the lock collection (default
// "mongolock"). NewFromCollection ignores it.
func WithDatabase(name string) Option { return func(c *clientConfig) { c.database = name } }

// WithCollection sets the lock collection's name (default "lock").
// NewFromCollection ignores it.
func WithCollection(name string) Option { return func(c *clientConfig) { c.collection = name } }

// WithRetryInterval sets how long a waiting acquisition sleeps between
// attempts (default 100ms).
func WithRetryInterval(d time.Duration) Option {
	return func(c *clientConfig) { c.retryInterval = d }
}

// WithClockRefresh sets how often the server clock estimate is refreshed
// with a new hello sample (default 30s).
func WithClockRefresh(d time.Duration) Option {
	return func(c *clientConfig) { c.clockRefresh = d }
}

// WithMaxClockError sets the largest error bound of the server clock
// estimate that is accepted (default 1s). Operations that judge expiry fail
// when no sample that good can be had.
func WithMaxClockError(d time.Duration) Option {
	return func(c *clientConfig) { c.maxClockError = d }
}

// WithWriteConcern sets the write concern of lock operations (default
// majority). Connect and New only; NewFromCollection keeps the collection's.
func WithWriteConcern(wc *writeconcern.WriteConcern) Option {
	return func(c *clientConfig) { c.writeConcern = wc }
}

// WithReadConcern sets the read concern of lock reads (default majority).
// Connect and New only; NewFromCollection keeps the collection's.
func WithReadConcern(rc *readconcern.ReadConcern) Option {
	return func(c *clientConfig) { c.readConcern = rc }
}

// WithLocalClock replaces the clock the Client measures elapsed time with
// (by default CLOCK_BOOTTIME on Linux, which keeps counting while the
// machine is suspended, and Go's monotonic clock elsewhere). It is for
// tests: the Client only ever subtracts its readings, so a clock an hour
// off changes nothing, and one that jumps ahead while Go's monotonic clock
// does not (time.Now().Add(jump)) simulates a suspend, which the Client
// then notices within 100ms, as it would on Linux. now must never go back.
func WithLocalClock(now func() time.Time) Option {
	return func(c *clientConfig) { c.now, c.countsSuspend = now, true }
}

// LockOption configures one acquisition (Lock, Acquire, TryAcquire, Do).
type LockOption func(*lockConfig)

type lockConfig struct {
	expire     time.Duration // 0: never expires
	expireSet  bool
	never      bool          // NeverExpire
	timeout    time.Duration // 0: one attempt
	timeoutSet bool
	owner      string
	ownerSet   bool
	keepAlive  *bool
	minHold    time.Duration
	managed    bool // a Lease (Acquire, TryAcquire, Do): never handed out past its deadline
	limit      int  // Limit; 0: not given (exclusive)
	limitGiven bool
	shared     bool    // Shared
	fair       bool    // Fair
	value      *string // an election's value (Campaign)
}

// multi reports whether the acquisition holds an entry of holders (a
// semaphore of more than one, or a reader) rather than the whole lock.
func (c *lockConfig) limitSet() bool { return c.limitGiven }

func (c *lockConfig) multi() bool { return c.limit > 1 || c.shared }

// mark is the marker of the document kind the acquisition needs.
func (c *lockConfig) mark() string {
	if c.shared {
		return markShared
	}
	return markSemaphore
}

// Expire makes the lock expire d after it is taken (judged on the database
// server's clock), after which another owner may take it; leases are kept
// alive (KeepAlive), so they expire only if their holder stops renewing.
// Without Expire, a lease (Acquire, TryAcquire) expires after
// DefaultLeaseExpire, and a lock taken with Lock or Do never expires, as in
// the Python package. d must be at least a millisecond.
func Expire(d time.Duration) LockOption {
	return func(c *lockConfig) { c.expire, c.expireSet = d, true }
}

// NeverExpire makes a lease (Acquire, TryAcquire) that never expires: it is
// held until released, also if its holder crashes — then only ForceRelease
// frees it. Without it, a lease expires after DefaultLeaseExpire unless
// kept alive. It cannot be combined with Expire. Lock and Do take locks
// that never expire unless given Expire anyway.
func NeverExpire() LockOption {
	return func(c *lockConfig) { c.never = true }
}

// Timeout makes the acquisition keep trying for up to d while the lock is
// held by another owner. Without Timeout (or with 0), Lock and Do make one
// attempt and Acquire waits until ctx ends. TryAcquire, which makes one
// attempt, refuses it.
func Timeout(d time.Duration) LockOption {
	return func(c *lockConfig) { c.timeout, c.timeoutSet = d, true }
}

// Owner sets the owner name recorded in the lock document for Acquire and
// TryAcquire. Without it a unique name (host, pid, random) is generated.
// Lock and Do, which take the owner as an argument, refuse it.
func Owner(name string) LockOption {
	return func(c *lockConfig) { c.owner, c.ownerSet = name, true }
}

// KeepAlive says whether a lease that expires is renewed automatically
// (about every third of its expire period) until it is released. The
// default is true for Acquire, TryAcquire and Do. Lock's acquisitions are
// never renewed automatically (use Touch), as in the Python package: Lock
// refuses KeepAlive.
func KeepAlive(on bool) LockOption {
	return func(c *lockConfig) { c.keepAlive = &on }
}

// MinHold makes a release that comes less than d after the lock was taken
// leave it held until d has passed (server time): a job that finishes fast
// on one machine is then not run again by another machine whose schedule
// fires a little later. The lock is released at that point, not renewed, so
// nobody can extend it.
func MinHold(d time.Duration) LockOption {
	return func(c *lockConfig) { c.minHold = d }
}

// Limit makes the lock a semaphore: up to n holders may hold key at once,
// each with a Lease of its own (token, fence, expiry, keep-alive). A holder
// that expired stops counting at once (judged on the server's clock). Every
// acquisition of key must ask for the same n: one that asks for another
// while holders exist fails with a *LimitError naming both. Limit(1) is the
// exclusive lock. n must be between 1 and 1000. For Acquire, TryAcquire and
// Do; it cannot be combined with Shared, Fair or MinHold.
func Limit(n int) LockOption {
	return func(c *lockConfig) { c.limit, c.limitGiven = n, true }
}

// Shared takes a shared (reader) lease: readers share key with each other
// and exclude writers (acquisitions without Shared). A writer that waits is
// not starved by a stream of readers: readers that come after it wait until
// it has held the lock. Fences rise across readers and writers. For
// Acquire, TryAcquire and Do; it cannot be combined with Limit, Fair or
// MinHold.
func Shared() LockOption {
	return func(c *lockConfig) { c.shared = true }
}

// Fair makes a waiting acquisition of an exclusive lock queue for it: the
// waiters that use Fair get the lock in the order they arrived. Each waiter
// keeps its place with a heartbeat, so one that dies is dropped from the
// queue within a few seconds (the larger of 2s and 20 retry intervals). An
// acquisition without Fair (or the Python package) does not look at the
// queue. For Acquire, TryAcquire and Do; it cannot be combined with Limit
// or Shared.
func Fair() LockOption {
	return func(c *lockConfig) { c.fair = true }
}

func buildLockConfig(opts []LockOption) (lockConfig, error) {
	var c lockConfig
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.expireSet {
		if err := validExpire("Expire", c.expire); err != nil {
			return c, err
		}
		if c.never {
			return c, argError("NeverExpire", "cannot be combined with Expire(%v)", c.expire)
		}
	}
	if c.minHold < 0 {
		return c, argError("MinHold", "must not be negative, got %v", c.minHold)
	}
	if c.timeout < 0 {
		return c, argError("Timeout", "must not be negative, got %v", c.timeout)
	}
	if c.ownerSet {
		if err := validOwner(c.owner); err != nil {
			return c, err
		}
	}
	switch {
	case c.limit < 0 || c.limit > maxEntries:
		return c, argError("Limit", "must be between 1 and %d, got %d", maxEntries, c.limit)
	case c.limit == 0 && c.limitSet():
		return c, argError("Limit", "must be between 1 and %d, got 0", maxEntries)
	case c.shared && c.limit > 1:
		return c, argError("Shared", "cannot be combined with Limit(%d): readers are not counted", c.limit)
	case c.fair && c.multi():
		return c, argError("Fair", "is for exclusive locks; it cannot be combined with Limit or Shared")
	case c.minHold > 0 && c.multi():
		return c, argError("MinHold", "is for exclusive locks; it cannot be combined with Limit or Shared")
	}
	return c, nil
}
