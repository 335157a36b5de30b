package mongolock

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
)

// Client takes and releases locks stored in one MongoDB collection. It is
// safe for concurrent use. Create it with Connect, New or NewFromCollection.
type Client struct {
	cfg   clientConfig
	store store
	clock *serverClock
	owned *mongo.Client // the connection Connect made, disconnected by Close

	// lastFence is the largest fence candidate this Client has proposed, so
	// its own candidates rise even if a clock refresh moves the estimate back.
	lastFence atomic.Int64
	closed    atomic.Bool   // set (under mu) by Close
	closing   chan struct{} // closed by Close: wakes waiting acquisitions

	mu      sync.Mutex
	held    *heldBook           // owner-named acquisitions made through this Client
	leases  map[*Lease]struct{} // live leases, released by Close
	ops     int                 // acquisitions in flight (beginOp, endOp)
	opsIdle chan struct{}       // closed when ops drops to 0 while Close waits

	keeper keeper   // renews kept-alive leases
	waits  waitRoom // in-process waiters, woken by releases

	// Background work (releases of abandoned acquisitions) runs under bgCtx
	// and is waited for by Close.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	bgMu     sync.Mutex
	bgClosed bool
}

// heldLock remembers the token of an owner-named acquisition, so that
// Release and Touch with the same owner act on that acquisition only.
type heldLock struct {
	owner   string
	token   string
	created time.Time     // server time it was taken (for MinHold)
	minHold time.Duration // MinHold
}

// Connect connects to the MongoDB deployment at uri and returns a Client
// that owns the connection; Close disconnects it. It checks that the server
// answers before returning, so an unreachable server is an error within
// ctx's deadline (or the driver's server selection timeout, 30s unless the
// URI's serverSelectionTimeoutMS says otherwise), and refused credentials
// are reported as an authentication failure. Errors never show the URI's
// password.
func Connect(ctx context.Context, uri string, opts ...Option) (*Client, error) {
	if uri == "" {
		return nil, argError("uri", "must not be empty (a MongoDB connection string such as mongodb://localhost:27017)")
	}
	copts := options.Client().ApplyURI(uri)
	if err := copts.Validate(); err != nil {
		return nil, fmt.Errorf("mongolock: connection string %s: %w", RedactURI(uri), redactErr(err, uri))
	}
	mc, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("mongolock: connecting to %s: %w", RedactURI(uri), redactErr(err, uri))
	}
	if err := mc.Ping(ctx, readpref.Primary()); err != nil {
		_ = mc.Disconnect(context.WithoutCancel(ctx))
		if isAuthError(err) {
			return nil, fmt.Errorf("mongolock: authentication to %s failed (wrong user, password or mechanism?): %w", RedactURI(uri), redactErr(err, uri))
		}
		return nil, fmt.Errorf("mongolock: server %s is unreachable: %w", RedactURI(uri), redactErr(ctxFail(ctx, err), uri))
	}
	c, err := New(mc, opts...)
	if err != nil {
		_ = mc.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	c.owned = mc
	return c, nil
}

// New returns a Client that uses the given driver client, with the lock
// collection WithDatabase/WithCollection (default mongolock.lock). Lock
// operations use the primary, write concern majority and read concern
// majority unless WithWriteConcern/WithReadConcern say otherwise. The caller
// keeps ownership of mc; Close does not disconnect it.
func New(mc *mongo.Client, opts ...Option) (*Client, error) {
	if mc == nil {
		return nil, argError("client", "must not be nil")
	}
	cfg, err := buildClientConfig(opts)
	if err != nil {
		return nil, err
	}
	copts := options.Collection().SetReadPreference(readpref.Primary())
	if cfg.writeConcern != nil {
		copts.SetWriteConcern(cfg.writeConcern)
	}
	if cfg.readConcern != nil {
		copts.SetReadConcern(cfg.readConcern)
	}
	return newClient(mc.Database(cfg.database).Collection(cfg.collection, copts), cfg), nil
}

// NewFromCollection returns a Client that keeps its locks in coll, with
// coll's own read preference and read and write concerns. The caller keeps
// ownership of the connection.
func NewFromCollection(coll *mongo.Collection, opts ...Option) (*Client, error) {
	if coll == nil {
		return nil, argError("collection", "must not be nil")
	}
	cfg, err := buildClientConfig(opts)
	if err != nil {
		return nil, err
	}
	return newClient(coll, cfg), nil
}

func buildClientConfig(opts []Option) (clientConfig, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return cfg, cfg.validate()
}

func newClient(coll *mongo.Collection, cfg clientConfig) *Client {
	c := &Client{cfg: cfg, store: store{coll: coll}, held: newHeldBook(maxHeldKeys), leases: make(map[*Lease]struct{}), closing: make(chan struct{})}
	c.keeper = keeper{c: c, leases: make(map[*Lease]struct{}), wake: make(chan struct{}, 1)}
	c.waits = waitRoom{rooms: make(map[string]*room)}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.clock = &serverClock{
		hello:   c.store.serverLocalTime,
		now:     cfg.now,
		refresh: cfg.clockRefresh,
		maxErr:  cfg.maxClockError,
	}
	return c
}

// Collection returns the collection that holds the locks.
func (c *Client) Collection() *mongo.Collection { return c.store.coll }

// Close releases the leases this Client holds, stops its keep-alive and
// every other goroutine it started, and, if Connect created its connection,
// disconnects it. Acquisitions still in flight when Close is called are
// waited for; one that takes the lock during or after Close gives it back
// and returns ErrClosed, and waiting acquisitions end with ErrClosed. So
// when Close returns nil, no lease taken through this Client is held. All of
// it is bounded by ctx: if ctx ends first, Close stops waiting, cancels the
// Client's background work and returns an error matching ctx's. Locks
// taken with the owner-named Lock before Close stay held until they are
// released or expire, as in the Python package. Close is safe to call more
// than once; later calls return nil.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	close(c.closing)
	var idle chan struct{}
	if c.ops > 0 {
		idle = make(chan struct{})
		c.opsIdle = idle
	}
	c.mu.Unlock()

	var errs []error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("mongolock: closing: acquisitions still in flight: %w", ctx.Err()))
		}
	}
	if err := c.releaseAll(ctx); err != nil {
		errs = append(errs, err)
	}
	c.keeper.stop() // whatever is left (a release that failed) is not renewed
	c.bgMu.Lock()
	c.bgClosed = true
	c.bgMu.Unlock()
	done := make(chan struct{})
	go func() { c.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.bgCancel()
		<-done
		errs = append(errs, fmt.Errorf("mongolock: closing: background releases cut short: %w", ctx.Err()))
	}
	c.bgCancel()
	if c.owned != nil {
		if err := c.owned.Disconnect(ctx); err != nil {
			errs = append(errs, fmt.Errorf("mongolock: disconnecting: %w", err))
		}
	}
	return errors.Join(errs...)
}

// beginOp registers an acquisition in flight, which Close waits for; it
// fails with ErrClosed once Close has begun. endOp ends it.
func (c *Client) beginOp() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	c.ops++
	return nil
}

func (c *Client) endOp() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops--
	if c.ops == 0 && c.opsIdle != nil {
		close(c.opsIdle)
		c.opsIdle = nil
	}
}

// register records a finished acquisition with the Client (keep is called
// with c.mu held), unless Close has begun: then the lock is given back and
// register returns ErrClosed, so that nothing taken through a closed
// Client stays held.
func (c *Client) register(ctx context.Context, acq *acquisition, keep func()) error {
	c.mu.Lock()
	if !c.closed.Load() {
		keep()
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	c.abandonAs(ctx, acq.key, acq.token, acq.multi)
	return fmt.Errorf("mongolock: acquiring %q: %w (the lock was given back)", acq.key, ErrClosed)
}

// releaseAll releases every live lease: those without MinHold in one
// round trip, the others one by one (they need their own expiry, or are
// entries of a semaphore's or shared lock's holders).
func (c *Client) releaseAll(ctx context.Context) error {
	c.mu.Lock()
	leases := make([]*Lease, 0, len(c.leases))
	for l := range c.leases {
		leases = append(leases, l)
	}
	c.mu.Unlock()
	var (
		keys, tokens []string
		plain        []*Lease
		errs         []error
	)
	for _, l := range leases {
		if l.minHold > 0 || l.multi {
			if err := l.release(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
				errs = append(errs, err)
			}
			continue
		}
		if l.beginRelease() {
			keys, tokens, plain = append(keys, l.key), append(tokens, l.token), append(plain, l)
		}
	}
	if len(plain) > 0 {
		write := func(ctx context.Context) (bool, error) {
			return true, c.store.releaseMany(ctx, keys, tokens)
		}
		_, _, err := c.retry(ctx, write)
		if err != nil {
			// Go on in the background, which Close waits for next.
			c.giveBack(ctx, write)
			errs = append(errs, fmt.Errorf("mongolock: closing: releasing %d leases: %w", len(plain), err))
		}
		for _, l := range plain {
			l.endRelease(true)
			c.notifyReleased(l.key)
		}
	}
	return errors.Join(errs...)
}

// background runs fn in a goroutine that Close waits for; fn's ctx ends
// when Close gives up waiting. It reports false, and runs nothing, once
// Close has stopped accepting background work.
func (c *Client) background(fn func(ctx context.Context)) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgClosed {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		fn(c.bgCtx)
	}()
	return true
}

func (c *Client) checkOpen() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// RedactURI returns uri with any password replaced by "xxxxx", for logs and
// error messages. A string that does not parse as a URI is replaced whole.
func RedactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparseable connection string)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	// A mistyped URI (say "mongodb//user:pw@host") has no user info for
	// net/url, but the password is still there: hide anything shaped like
	// user:password@ as well.
	return userInfoPattern.ReplaceAllString(u.String(), "${1}:xxxxx@")
}

var userInfoPattern = regexp.MustCompile(`([^:/@\s]*):[^@\s/]+@`)

// redactErr makes sure an error from the driver does not carry uri's
// password in its text. A password of a few characters is hidden only where
// it stands as one (user:password@, or alone between separators): hiding
// every occurrence of a short string would mangle the message without
// protecting anything more.
func redactErr(err error, uri string) error {
	u, perr := url.Parse(uri)
	if perr != nil || u.User == nil {
		return err
	}
	if pw, has := u.User.Password(); has && pw != "" {
		secrets := []string{pw}
		if esc := url.QueryEscape(pw); esc != pw {
			secrets = append(secrets, esc)
		}
		if esc := url.PathEscape(pw); esc != pw {
			secrets = append(secrets, esc)
		}
		return &redactedError{err: err, secrets: secrets}
	}
	return err
}

// isAuthError reports whether err is the server's or the driver's refusal
// of the credentials.
func isAuthError(err error) bool {
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.Code == 18 || ce.Name == "AuthenticationFailed") {
		return true
	}
	var ae *auth.Error
	return errors.As(err, &ae)
}

type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		if len(s) >= minRedactAnywhere {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			continue
		}
		// Short: only where it stands as a word of its own.
		msg = regexp.MustCompile(`(^|[^A-Za-z0-9])`+regexp.QuoteMeta(s)+`($|[^A-Za-z0-9])`).ReplaceAllString(msg, "${1}xxxxx${2}")
	}
	return msg
}

// minRedactAnywhere is the shortest password hidden wherever it occurs in
// an error message; a shorter one is hidden where it stands as a word.
const minRedactAnywhere = 4

func (e *redactedError) Unwrap() error { return e.err }
