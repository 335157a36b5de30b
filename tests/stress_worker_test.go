package tests

// The stress harness's child process (TestStressWorker): its actors and
// what they record.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mongolock/mongolock"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driverevent "go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
)

// stressWorker is one child process's shared state.
type stressWorker struct {
	t      *testing.T
	name   string
	skew   time.Duration
	opts   []mongolock.Option
	mc     *mongo.Client
	c      *mongolock.Client
	mon    *tryLog
	stalls *stallMeter
	until  time.Time

	hmu  sync.Mutex
	hist *os.File

	lmu  sync.Mutex
	lost map[*mongolock.Lease]int64 // when watchLost saw each lease's Lost close
}

func (w *stressWorker) record(e hevent) {
	e.Proc = w.name
	b, _ := json.Marshal(e)
	w.hmu.Lock()
	_, _ = w.hist.Write(append(b, '\n')) // one write per line: a SIGKILL loses at most the line in flight
	w.hmu.Unlock()
}

func (w *stressWorker) problem(format string, a ...any) {
	w.record(hevent{Op: "problem", Why: fmt.Sprintf(format, a...)})
}

func now() int64 { return time.Now().UnixNano() }

// TestStressWorker is a child process of the harness, not a test.
func TestStressWorker(t *testing.T) {
	if os.Getenv(stressWorkerE) != "1" {
		t.Skip("child process of TestStress")
	}
	skew, _ := time.ParseDuration(os.Getenv("STRESS_SKEW"))
	goroutines, _ := strconv.Atoi(os.Getenv("STRESS_GOROUTINES"))
	untilNS, _ := strconv.ParseInt(os.Getenv("STRESS_UNTIL"), 10, 64)
	seed, _ := strconv.ParseUint(os.Getenv("STRESS_SEED"), 10, 64)

	w := &stressWorker{t: t, name: os.Getenv("STRESS_NAME"), skew: skew, until: time.Unix(0, untilNS), lost: map[*mongolock.Lease]int64{}}
	w.opts = []mongolock.Option{
		mongolock.WithDatabase(os.Getenv("STRESS_DB")), mongolock.WithRetryInterval(20 * time.Millisecond),
		mongolock.WithMaxClockError(stressMaxClockError),
		// Sample often, so that the nemesis's hello delays move the
		// estimates to the edges of their bounds.
		mongolock.WithClockRefresh(500 * time.Millisecond),
		mongolock.WithLocalClock(func() time.Time { return time.Now().Add(skew) }),
	}
	var err error
	w.hist, err = os.OpenFile(os.Getenv("STRESS_HISTORY"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.hist.Close()
	w.mon = newTryLog(w.record)
	w.mc, err = mongo.Connect(options.Client().ApplyURI(os.Getenv("STRESS_URI")).SetMonitor(w.mon.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.mc.Disconnect(context.Background())
	if w.c, err = mongolock.New(w.mc, w.opts...); err != nil {
		t.Fatal(err)
	}
	defer w.c.Close(context.Background())
	w.stalls = newStallMeter()
	defer w.stalls.stop()

	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(g, rand.New(rand.NewPCG(seed, uint64(g))))
		}()
	}
	wg.Wait()
}

// run is one goroutine's loop: it picks an actor at random until the run
// ends.
func (w *stressWorker) run(g int, rng *rand.Rand) {
	conn, err := net.Dial("unix", os.Getenv("STRESS_SOCK"))
	if err != nil {
		w.t.Error(err)
		return
	}
	defer conn.Close()
	res := &resourceConn{conn: conn, replies: bufio.NewScanner(conn)}
	for n := 0; time.Now().Before(w.until); n++ {
		key := pickStressKey(rng)
		if rng.IntN(3) == 0 {
			if rng.IntN(2) == 0 {
				w.fair(rng, res, fmt.Sprintf("%s-f-%d-%d", w.name, g, n))
			} else {
				w.recipe(rng, res, fmt.Sprintf("%s-r-%d-%d", w.name, g, n))
			}
			continue
		}
		if rng.IntN(20) == 0 {
			key = recipeKeys[rng.IntN(2)] // the Python-style worker and the others meet the recipes too
		}
		switch r := rng.IntN(100); {
		case r < 60:
			w.lease(rng, key, res)
		case r < 75:
			w.seed(rng, key, fmt.Sprintf("%s-seed-%d-%d", w.name, g, n))
		case r < 90:
			w.python(rng, key, fmt.Sprintf("py-%s-%d-%d", w.name, g, n))
		default:
			w.closer(rng, fmt.Sprintf("%s-closer-%d-%d", w.name, g, n))
		}
	}
}

// pickStressKey picks a key: mostly alpha and beta; gamma one time in ten;
// delta one time in ten too, but only in every other four-second window of
// the (shared) wall clock, so that it lies idle long enough between windows
// for the nemesis's Purge to delete it.
func pickStressKey(rng *rand.Rand) string {
	if rng.IntN(10) == 0 {
		if time.Now().Unix()/4%2 == 0 && rng.IntN(2) == 0 {
			return "delta"
		}
		return "gamma"
	}
	return stressKeys[rng.IntN(2)]
}

// resourceConn is a goroutine's connection to the fenced resource.
type resourceConn struct {
	conn    net.Conn
	replies *bufio.Scanner
}

func (r *resourceConn) write(key, token string, fence, sent int64) bool {
	return r.writeAs(key, token, fence, sent, "exclusive")
}

func (r *resourceConn) writeAs(key, token string, fence, sent int64, mode string) bool {
	fmt.Fprintf(r.conn, "%s %d %s %d %s\n", key, fence, token, sent, mode)
	return r.replies.Scan()
}

// recipe takes a semaphore holder's lease (Limit), a reader's (Shared), a
// writer's, or campaigns in an election, acts as lease does (promises
// checked against Lost and ExpiresAt, writes to the resource), and
// releases (resigns).
func (w *stressWorker) recipe(rng *rand.Rand, res *resourceConn, owner string) {
	ctx := context.Background()
	opts := []mongolock.LockOption{mongolock.Expire(stressExpire + time.Duration(rng.IntN(1000))*time.Microsecond), mongolock.Timeout(time.Second), mongolock.Owner(owner)}
	if rng.IntN(7) == 0 {
		opts = append(opts, mongolock.KeepAlive(false))
	}
	var key, kind, mode string
	switch rng.IntN(4) {
	case 0, 1:
		key, kind, mode = semKey, "entry", "entry"
		opts = append(opts, mongolock.Limit(stressLimit))
	case 2:
		key, kind, mode = rwKey, "reader", "reader"
		opts = append(opts, mongolock.Shared())
	default:
		key, kind, mode = rwKey, "writer", "exclusive"
	}
	if rng.IntN(4) == 0 {
		key, kind, mode = electKey, "leader", "exclusive"
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	call := now()
	var (
		l   *mongolock.Lease
		err error
	)
	if key == electKey {
		l, err = w.c.Election(electKey, opts[0], mongolock.Owner(owner)).Campaign(actx, owner)
	} else {
		l, err = w.c.Acquire(actx, key, opts...)
	}
	ret := now()
	cancel()
	if err != nil {
		if errors.Is(err, mongolock.ErrLimitMismatch) {
			w.problem("%s: %v", key, err)
		}
		w.record(hevent{Op: "acquire", Kind: kind, Key: key, Call: call, Return: ret})
		return
	}
	w.record(hevent{Op: "acquire", Kind: kind, Key: key, Token: l.Token(), Owner: l.Owner(), Call: call, Return: ret, OK: true, Fence: l.Fence(), Until: untilOf(l)})
	w.hold(rng, res, l, key, kind, mode)
}

// fair waits for the fair lock (Fair) — until a random Timeout, so that
// some waiters give up and leave the queue — and then acts as recipe does
// (promises checked against Lost and ExpiresAt, writes to the resource)
// and releases. When each waiter joined the queue, and left it, the
// command monitor records (tryLog): checkFair needs it.
func (w *stressWorker) fair(rng *rand.Rand, res *resourceConn, owner string) {
	opts := []mongolock.LockOption{mongolock.Fair(), mongolock.Owner(owner),
		mongolock.Expire(stressExpire + time.Duration(rng.IntN(1000))*time.Microsecond),
		mongolock.Timeout(300*time.Millisecond + time.Duration(rng.IntN(1700))*time.Millisecond)}
	if rng.IntN(7) == 0 {
		opts = append(opts, mongolock.KeepAlive(false))
	}
	actx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	call := now()
	l, err := w.c.Acquire(actx, fairKey, opts...)
	ret := now()
	cancel()
	if err != nil {
		w.record(hevent{Op: "acquire", Kind: "fair", Key: fairKey, Call: call, Return: ret})
		return
	}
	w.record(hevent{Op: "acquire", Kind: "fair", Key: fairKey, Token: l.Token(), Owner: l.Owner(), Call: call, Return: ret, OK: true, Fence: l.Fence(), Until: untilOf(l)})
	w.hold(rng, res, l, fairKey, "fair", "exclusive")
}

// hold acts as a holder of l (kind for the history, mode for the
// resource): one to three times it checks the contract — Lost open, before
// ExpiresAt — records the promise and writes to the resource; then it
// releases l.
func (w *stressWorker) hold(rng *rand.Rand, res *resourceConn, l *mongolock.Lease, key, kind, mode string) {
	defer w.watchLost(l)()
	for range 1 + rng.IntN(3) {
		at := now()
		select {
		case <-l.Lost():
		default:
			if until := untilOf(l); at < until {
				w.record(hevent{Op: "promise", Kind: kind, Key: key, Token: l.Token(), Fence: l.Fence(), At: at, Until: until})
				if !res.writeAs(key, l.Token(), l.Fence(), at, mode) {
					return
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
	}
	select {
	case <-l.Lost():
		w.record(hevent{Op: "lost", Key: key, Token: l.Token(), Return: w.lostAt(l), Expiry: untilOf(l), Why: fmt.Sprint(l.Err()), Stall: w.stalls.worst()})
	default:
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	call := now()
	w.record(hevent{Op: "releasing", Key: key, Token: l.Token(), Call: call})
	err := l.Release(rctx)
	ret := now()
	cancel()
	w.recordRelease(key, l.Token(), call, ret, err)
}

// lease takes a lease (kept alive, or now and then not), renews it by hand
// at random (racing keep-alive), writes to the resource only after checking
// that it may (Lost open, before ExpiresAt), and releases it.
func (w *stressWorker) lease(rng *rand.Rand, key string, res *resourceConn) {
	ctx := context.Background()
	// Expiries off the millisecond, so stored times are rounded.
	opts := []mongolock.LockOption{mongolock.Expire(stressExpire + time.Duration(rng.IntN(1000))*time.Microsecond), mongolock.Timeout(time.Second)}
	if rng.IntN(7) == 0 {
		opts = append(opts, mongolock.KeepAlive(false))
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	call := now()
	l, err := w.c.Acquire(actx, key, opts...)
	ret := now()
	cancel()
	if err != nil {
		w.record(hevent{Op: "acquire", Kind: "lease", Key: key, Call: call, Return: ret})
		return
	}
	w.record(hevent{Op: "acquire", Kind: "lease", Key: key, Token: l.Token(), Owner: l.Owner(), Call: call, Return: ret, OK: true, Fence: l.Fence(), Until: untilOf(l)})
	defer w.watchLost(l)()

	for range 1 + rng.IntN(3) {
		if rng.IntN(3) == 0 {
			d := 300*time.Millisecond + time.Duration(rng.IntN(1700))*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = l.Renew(rctx, d)
			cancel()
		}
		// The contract: act only while Lost is open and before ExpiresAt.
		at := now()
		select {
		case <-l.Lost():
		default:
			if until := untilOf(l); at < until {
				w.record(hevent{Op: "promise", Key: key, Token: l.Token(), Fence: l.Fence(), At: at, Until: until})
				if !res.write(key, l.Token(), l.Fence(), at) {
					return
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
	}
	select {
	case <-l.Lost():
		w.record(hevent{Op: "lost", Key: key, Token: l.Token(), Return: w.lostAt(l), Expiry: untilOf(l), Why: fmt.Sprint(l.Err()), Stall: w.stalls.worst()})
	default:
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	call = now()
	// Recorded before the call: if this process is killed while the
	// release is in flight, the holder had stopped acting all the same.
	w.record(hevent{Op: "releasing", Key: key, Token: l.Token(), Call: call})
	err = l.Release(rctx)
	ret = now()
	cancel()
	w.recordRelease(key, l.Token(), call, ret, err)
}

// recordRelease records a release: done or refused (for the model), or,
// when its outcome is unknown, only that the holder stopped acting. A
// refusal after an attempt whose reply was lost is marked Maybe: that
// attempt may have released the lock before someone else took it, which
// the library cannot tell apart from a takeover and says so (Lease.Release).
func (w *stressWorker) recordRelease(key, token string, call, ret int64, err error) {
	if err == nil || errors.Is(err, mongolock.ErrNotHeld) {
		maybe := err != nil && strings.Contains(err.Error(), "may have released it first")
		w.record(hevent{Op: "release", Key: key, Token: token, Call: call, Return: ret, OK: err == nil, Maybe: maybe})
		return
	}
	w.record(hevent{Op: "stop", Key: key, Token: token, Call: call, Return: ret, Why: err.Error()})
}

// untilOf is l's ExpiresAt in unix ns (the end of time if it never expires).
func untilOf(l *mongolock.Lease) int64 {
	e := l.ExpiresAt()
	if e.IsZero() {
		return math.MaxInt64
	}
	return e.UnixNano()
}

// seed takes the lock with the owner-named API, touches it now and then,
// and releases it.
func (w *stressWorker) seed(rng *rand.Rand, key, owner string) {
	ctx := context.Background()
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	call := now()
	ok, err := w.c.Lock(actx, key, owner, mongolock.Expire(stressExpire+time.Duration(rng.IntN(1000))*time.Microsecond), mongolock.Timeout(500*time.Millisecond))
	ret := now()
	cancel()
	if err != nil || !ok {
		return
	}
	token := w.mon.tokenOf(owner)
	w.record(hevent{Op: "acquire", Kind: "seed", Key: key, Token: token, Owner: owner, Call: call, Return: ret, OK: true})
	if rng.IntN(2) == 0 {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = w.c.Touch(tctx, key, owner, time.Duration(200+rng.IntN(800))*time.Millisecond)
		cancel()
	}
	time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	call = now()
	err = w.c.Release(rctx, key, owner)
	ret = now()
	cancel()
	w.recordRelease(key, token, call, ret, err)
}

// python takes the lock the way the Python package does (insert, or
// replace a released or expired document whole, dropping the fence; its
// own clock, here the test server's), holds it a moment and releases it
// (replacing the document whole again).
func (w *stressWorker) python(rng *rand.Rand, key, owner string) {
	coll := w.mc.Database(os.Getenv("STRESS_DB")).Collection(mongolock.DefaultCollection)
	token := "py:" + owner
	expire := 300*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	id := "py-" + owner
	call := now()
	w.record(hevent{Op: "try", ID: id, Key: key, Token: token, Owner: owner, Call: call})
	lockedAt := time.Now().UTC()
	expireAt := lockedAt.Add(expire)
	doc := bson.D{{Key: "locked", Value: true}, {Key: "owner", Value: owner}, {Key: "created", Value: lockedAt}, {Key: "expire", Value: expireAt}}
	_, err := coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: key}}, doc...))
	ok := err == nil
	if mongo.IsDuplicateKeyError(err) {
		var r *mongo.UpdateResult
		r, err = coll.ReplaceOne(ctx, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "_id", Value: key}, {Key: "locked", Value: false}},
			bson.D{{Key: "_id", Value: key}, {Key: "expire", Value: bson.D{{Key: "$lt", Value: lockedAt}}}},
		}}}, doc)
		ok = err == nil && r.MatchedCount == 1
	}
	ret := now()
	w.record(hevent{Op: "tried", ID: id, Return: ret, OK: ok, Maybe: err != nil})
	if !ok {
		return
	}
	// Stored expiries have milliseconds: the lock ends at the stored one.
	w.record(hevent{Op: "acquire", Kind: "py", Key: key, Token: token, Owner: owner, Call: call, Return: ret, OK: true,
		Until: expireAt.Truncate(time.Millisecond).UnixNano()})
	time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
	call = now()
	w.record(hevent{Op: "releasing", Key: key, Token: token, Call: call})
	err = coll.FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: key}, {Key: "owner", Value: owner}},
		bson.D{{Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil}}).Err()
	ret = now()
	switch {
	case err == nil:
		w.record(hevent{Op: "release", Key: key, Token: token, Call: call, Return: ret, OK: true})
	case errors.Is(err, mongo.ErrNoDocuments):
		w.record(hevent{Op: "release", Key: key, Token: token, Call: call, Return: ret})
	default:
		w.record(hevent{Op: "stop", Key: key, Token: token, Call: call, Return: ret, Why: err.Error()})
	}
}

// closer makes a Client of its own, starts a few acquisitions, and closes
// the Client while they are in flight. Leases handed out are released by
// Close; an acquisition that lands during Close gives the lock back. Once
// Close returns nil, nothing it took may be held — checked for every
// acquisition that sent a single request (a resent one may still be on its
// way and land later: the network's delay, documented).
func (w *stressWorker) closer(rng *rand.Rand, owner string) {
	c, err := mongolock.New(w.mc, w.opts...)
	if err != nil {
		w.problem("New: %v", err)
		return
	}
	type result struct {
		key, owner string
		l          *mongolock.Lease
		call, ret  int64
		until      int64
	}
	k := 1 + rng.IntN(3)
	results := make([]result, k)
	var wg sync.WaitGroup
	for i := range k {
		results[i] = result{key: pickStressKey(rng), owner: fmt.Sprintf("%s-%d", owner, i)}
		opts := []mongolock.LockOption{mongolock.Owner(results[i].owner), mongolock.Expire(stressExpire), mongolock.Timeout(200 * time.Millisecond)}
		if rng.IntN(5) == 0 {
			// A fair waiter that Close makes give up (and leave the queue).
			results[i].key, opts = fairKey, append(opts, mongolock.Fair())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			r.call = now()
			l, err := c.Acquire(ctx, r.key, opts...)
			r.ret = now()
			if err == nil {
				r.l, r.until = l, untilOf(l)
			}
		}()
	}
	time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	call := now()
	cerr := c.Close(ctx)
	ret := now()
	cancel()
	wg.Wait()
	for _, r := range results {
		if r.l == nil {
			continue
		}
		w.record(hevent{Op: "acquire", Kind: "closer", Key: r.key, Token: r.l.Token(), Owner: r.owner, Call: r.call, Return: r.ret, OK: true, Fence: r.l.Fence(), Until: r.until})
		// The holder stopped acting when Close was called. Close does not
		// say whether its release of this lease matched (an operator may
		// have force-released it, or it may have been lost, before): it
		// promises only that nothing is held once it returned nil, which
		// is checked below. So this is no release for the model.
		w.record(hevent{Op: "stop", Key: r.key, Token: r.l.Token(), Call: call, Return: ret, Why: fmt.Sprintf("closed (%v)", cerr)})
	}
	if cerr != nil {
		return
	}
	coll := w.mc.Database(os.Getenv("STRESS_DB")).Collection(mongolock.DefaultCollection)
	for _, r := range results {
		if w.mon.triesOf(r.owner) != 1 {
			continue
		}
		qctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		raw, err := coll.FindOne(qctx, bson.D{{Key: "_id", Value: r.key}, {Key: "owner", Value: r.owner}, {Key: "locked", Value: true}}).Raw()
		cancel()
		if err == nil {
			w.problem("key %q is held by %q after its Client's Close returned nil: %v", r.key, r.owner, raw)
		}
	}
}

// watchLost notes when l's Lost channel closes (within a scheduling
// delay, which checkLost allows for) until stop is called, for lostAt.
func (w *stressWorker) watchLost(l *mongolock.Lease) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-l.Lost():
			t := now()
			w.lmu.Lock()
			w.lost[l] = t
			w.lmu.Unlock()
		case <-done:
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		w.lmu.Lock()
		delete(w.lost, l)
		w.lmu.Unlock()
	}
}

// lostAt is when watchLost saw l's Lost channel close, in real unix ns
// (called once Lost was seen closed, so the watcher is about to note it).
func (w *stressWorker) lostAt(l *mongolock.Lease) int64 {
	for range 1000 {
		w.lmu.Lock()
		t, ok := w.lost[l]
		w.lmu.Unlock()
		if ok {
			return t
		}
		time.Sleep(time.Millisecond)
	}
	return math.MaxInt64
}

// tryLog records, through the driver's command monitor, every
// findAndModify the library sends that is one try of an acquisition (see
// store.acquire): a "try" line before it is sent and a "tried" line with
// its outcome — taken, refused (a duplicate key: the lock is held, nothing
// was written), or unknown (any other failure, or a write concern error:
// it may have been applied). A try cut short by SIGKILL has no "tried"
// line. It also remembers, per owner name, how many tries were sent and
// the token of the last one taken.
//
// For the fair lock it records when each waiter joined the queue and left
// it: an "enqueue" line for each findAndModify that queues a token (or
// refreshes its place: store.enqueue), with the heartbeat it writes, and
// an "enqueued" line with its outcome — applied (the document returned
// has the token queued), not applied (no document matched), or unknown;
// a "dequeue" line for each statement of an update that takes a token out
// of the queue (store.dequeue: the waiter itself giving up, or another
// removing it as dead), and a "dequeued" line when the update returned.
type tryLog struct {
	record func(hevent)

	mu       sync.Mutex
	tries    map[string]int    // owner -> tries sent
	tokens   map[string]string // owner -> token of its last try taken
	inflight map[int64]logged  // request ID -> what it is, until it ends
}

// logged is a command tryLog recorded the start of.
type logged struct {
	op           string // "try", "enqueue" or "dequeue"
	owner, token string // a try's; an enqueue's token
}

func newTryLog(record func(hevent)) *tryLog {
	return &tryLog{record: record, tries: map[string]int{}, tokens: map[string]string{}, inflight: map[int64]logged{}}
}

func (m *tryLog) tokenOf(owner string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[owner]
}

func (m *tryLog) triesOf(owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tries[owner]
}

func (m *tryLog) monitor() *driverevent.CommandMonitor {
	id := func(n int64) string { return strconv.FormatInt(n, 10) }
	return &driverevent.CommandMonitor{
		Started: func(_ context.Context, e *driverevent.CommandStartedEvent) {
			switch e.CommandName {
			case "findAndModify":
				m.startedFindAndModify(e)
			case "update":
				m.startedUpdate(e)
			}
		},
		Succeeded: func(_ context.Context, e *driverevent.CommandSucceededEvent) {
			m.mu.Lock()
			c, ok := m.inflight[e.RequestID]
			delete(m.inflight, e.RequestID)
			if ok && c.op == "try" {
				m.tokens[c.owner] = c.token
			}
			m.mu.Unlock()
			if !ok {
				return
			}
			_, wce := e.Reply.Lookup("writeConcernError").DocumentOK()
			switch c.op {
			case "try":
				m.record(hevent{Op: "tried", ID: id(e.RequestID), Return: now(), OK: !wce, Maybe: wce})
			case "enqueue":
				applied := false
				if order, ok := e.Reply.Lookup("value", "order").ArrayOK(); ok {
					vals, _ := order.Values()
					for _, v := range vals {
						applied = applied || v.StringValue() == c.token
					}
				}
				m.record(hevent{Op: "enqueued", ID: id(e.RequestID), Return: now(), OK: applied && !wce, Maybe: wce})
			case "dequeue":
				n, _ := e.Reply.Lookup("n").AsInt64OK()
				m.record(hevent{Op: "dequeued", ID: id(e.RequestID), Return: now(), OK: n > 0, Maybe: wce})
			}
		},
		Failed: func(_ context.Context, e *driverevent.CommandFailedEvent) {
			m.mu.Lock()
			c, ok := m.inflight[e.RequestID]
			delete(m.inflight, e.RequestID)
			m.mu.Unlock()
			switch {
			case !ok:
			case c.op == "try":
				var de driver.Error
				refused := errors.As(e.Failure, &de) && de.Code == 11000
				m.record(hevent{Op: "tried", ID: id(e.RequestID), Return: now(), Maybe: !refused})
			default:
				m.record(hevent{Op: c.op + "d", ID: id(e.RequestID), Return: now(), Maybe: true})
			}
		},
	}
}

// startedFindAndModify records a try of an acquisition, or a fair
// waiter's enqueue.
func (m *tryLog) startedFindAndModify(e *driverevent.CommandStartedEvent) {
	id := strconv.FormatInt(e.RequestID, 10)
	key, _ := e.Command.Lookup("query", "_id").StringValueOK()
	if token, ok := e.Command.Lookup("update", "$addToSet", "order").StringValueOK(); ok {
		// store.enqueue: the heartbeat is queue.<token>.expire.
		hb, _ := e.Command.Lookup("update", "$set", "queue."+token, "expire").DateTimeOK()
		m.mu.Lock()
		m.inflight[e.RequestID] = logged{op: "enqueue", token: token}
		m.mu.Unlock()
		m.record(hevent{Op: "enqueue", ID: id, Key: key, Token: token, Call: now(), Heartbeat: hb * int64(time.Millisecond)})
		return
	}
	token, _ := e.Command.Lookup("update", "$set", "token").StringValueOK()
	owner, _ := e.Command.Lookup("update", "$set", "owner").StringValueOK()
	if token == "*semaphore" || token == "*shared" { // the marks of a semaphore and a shared lock
		// A holder entry: its token is in the path it sets.
		if set, ok := e.Command.Lookup("update", "$set").DocumentOK(); ok {
			if elems, err := set.Elements(); err == nil {
				for _, el := range elems {
					if t, ok := strings.CutPrefix(el.Key(), "holders."); ok {
						token = t
						owner, _ = el.Value().Document().Lookup("owner").StringValueOK()
					}
				}
			}
		}
	}
	kind := ""
	if _, ok := e.Command.Lookup("update", "$pull", "order").StringValueOK(); ok {
		kind = "fair" // store.acquireFair: it leaves the queue as it takes the lock
	}
	m.mu.Lock()
	m.tries[owner]++
	m.inflight[e.RequestID] = logged{op: "try", owner: owner, token: token}
	m.mu.Unlock()
	m.record(hevent{Op: "try", ID: id, Key: key, Token: token, Owner: owner, Kind: kind, Call: now()})
}

// startedUpdate records the statements of an update that take a token out
// of a fair queue ($pull from order): the waiter's own (its filter names
// it in order) or another's, removing it as dead (its filter is on the
// token's heartbeat).
func (m *tryLog) startedUpdate(e *driverevent.CommandStartedEvent) {
	updates, ok := e.Command.Lookup("updates").ArrayOK()
	if !ok {
		return
	}
	stmts, _ := updates.Values()
	var dequeues []hevent
	for _, st := range stmts {
		doc, ok := st.DocumentOK()
		if !ok {
			continue
		}
		token, ok := doc.Lookup("u", "$pull", "order").StringValueOK()
		if !ok {
			continue
		}
		q := doc.Lookup("q").Document()
		key, _ := q.Lookup("_id").StringValueOK()
		kind := "self"
		if strings.Contains(q.String(), `"queue.`+token+`.expire"`) {
			kind = "expired"
		}
		dequeues = append(dequeues, hevent{Op: "dequeue", ID: strconv.FormatInt(e.RequestID, 10), Key: key, Token: token, Kind: kind})
	}
	if len(dequeues) == 0 {
		return
	}
	m.mu.Lock()
	m.inflight[e.RequestID] = logged{op: "dequeue"}
	m.mu.Unlock()
	call := now()
	for _, d := range dequeues {
		d.Call = call
		m.record(d)
	}
}

// stallMeter measures how late this process's goroutines get scheduled: a
// goroutine sleeps 5ms at a time and records by how much it overslept.
type stallMeter struct {
	mu    sync.Mutex
	marks []stall
	done  chan struct{}
	wg    sync.WaitGroup
}

type stall struct {
	at    time.Time
	extra time.Duration
}

func newStallMeter() *stallMeter {
	m := &stallMeter{done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			t := time.Now()
			select {
			case <-m.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if extra := time.Since(t) - 5*time.Millisecond; extra > 2*time.Millisecond {
				m.mu.Lock()
				m.marks = append(m.marks, stall{time.Now(), extra})
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// worst is the longest stall in the last two seconds, in ns.
func (m *stallMeter) worst() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	for _, s := range m.marks {
		if time.Since(s.at) < 2*time.Second && s.extra > w {
			w = s.extra
		}
	}
	return int64(w)
}

func (m *stallMeter) stop() { close(m.done); m.wg.Wait() }
