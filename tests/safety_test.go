package tests

// Tests for the safety holes found by using the library adversarially (one
// per scenario; TestMutantsAreCaught shows that each fails when its fix is
// taken out again).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// lockColl is the lock collection of srv's database, through a plain driver
// client (for writing documents the way other programs would).
func lockColl(t *testing.T, srv *mongolocktest.Server) *mongo.Collection {
	t.Helper()
	return srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection)
}

// storedDoc reads key's raw document.
func storedDoc(t *testing.T, coll *mongo.Collection, key string) bson.Raw {
	t.Helper()
	raw, err := coll.FindOne(testCtx(t), bson.D{{Key: "_id", Value: key}}).Raw()
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return raw
}

// TestExpiresAtBeforeStoredExpiry: BSON dates have milliseconds; the
// expiry the server compares with is what it stored. A lease's ExpiresAt,
// moved onto the server's clock with the client's own estimate and error
// bound, must never fall after the stored expiry (with truncation it did,
// by up to a millisecond, for most leases).
func TestExpiresAtBeforeStoredExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for i := range 20 {
		key := fmt.Sprintf("ms-%d", i)
		l, err := c.TryAcquire(ctx, key, mongolock.Expire(500*time.Millisecond+time.Duration(i)*37*time.Microsecond), mongolock.KeepAlive(false))
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		now, bound, err := c.ServerTime(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The server's clock at ExpiresAt is at most this.
		latest := now.Add(l.ExpiresAt().Sub(before) + bound)
		stored := mustInfo(t, c, key).Expire
		if latest.After(stored) {
			t.Errorf("lease %d: by the client's own bound the server may read %v at ExpiresAt, after the stored expiry %v", i, latest, stored)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFenceOverflow: a stored fence that cannot be raised without
// overflowing is a document of the wrong shape: refused, never changed,
// never handed out as a lease with a negative fence.
func TestFenceOverflow(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	coll := lockColl(t, srv)
	ctx := testCtx(t)
	for _, locked := range []bool{false, true} {
		key := fmt.Sprintf("max-%v", locked)
		doc := bson.D{{Key: "_id", Value: key}, {Key: "locked", Value: locked}, {Key: "fence", Value: int64(math.MaxInt64)}}
		if locked {
			doc = append(doc, bson.E{Key: "expire", Value: time.Unix(0, 0)})
		}
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		orig := storedDoc(t, coll, key)
		l, err := c.TryAcquire(ctx, key)
		if !errors.Is(err, mongolock.ErrInvalidDocument) {
			t.Fatalf("TryAcquire on a fence of MaxInt64 = %v, %v; want ErrInvalidDocument", l, err)
		}
		if _, err := c.Acquire(ctx, key, mongolock.Timeout(time.Minute)); !errors.Is(err, mongolock.ErrInvalidDocument) {
			t.Fatalf("Acquire on a fence of MaxInt64: %v; want ErrInvalidDocument at once", err)
		}
		if ok, _ := c.Lock(ctx, key, "o"); ok {
			t.Fatal("Lock took a lock whose fence would overflow")
		}
		if got := storedDoc(t, coll, key); string(got) != string(orig) {
			t.Fatalf("document changed:\n was %v\n now %v", orig, got)
		}
	}
	// Just below the limit still works, and the fence rises.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "high"}, {Key: "locked", Value: false}, {Key: "fence", Value: int64(1<<62 - 2)}}); err != nil {
		t.Fatal(err)
	}
	l, err := c.TryAcquire(ctx, "high")
	if err != nil || l.Fence() != 1<<62-1 {
		t.Fatalf("TryAcquire below the limit = %v, %v; want fence 2^62-1", l, err)
	}
}

// TestMinHoldReleaseLostReply: a MinHold release whose reply is lost is
// resent and succeeds; Do reports the job's success.
func TestMinHoldReleaseLostReply(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	l, err := c.TryAcquire(ctx, "k", mongolock.MinHold(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv.DropNextReply("update")
	if err := l.Release(ctx); err != nil {
		t.Fatalf("MinHold Release with its reply lost: %v", err)
	}
	if locked, err := c.IsLocked(ctx, "k"); !locked || err != nil {
		t.Fatalf("IsLocked during MinHold = %v, %v; want held", locked, err)
	}
	srv.DropNextReply("update")
	err = c.Do(ctx, "job", "worker", func(context.Context) error { return nil }, mongolock.MinHold(time.Minute))
	if err != nil {
		t.Fatalf("Do with MinHold whose release reply is lost: %v", err)
	}
	mustLock(t, c, "seed", "worker", mongolock.MinHold(time.Minute))
	srv.DropNextReply("update")
	if err := c.Release(ctx, "seed", "worker"); err != nil {
		t.Fatalf("owner-named MinHold Release with its reply lost: %v", err)
	}
}

// TestReleaseNeverReportsLost: a keep-alive renewal in flight while the
// holder releases finds the lock released, but a lease released by its
// holder is never reported lost. (The release's reply is held back, so
// that renewals run while it is in flight.)
func TestReleaseNeverReportsLost(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	for i := range 5 {
		l, err := c.TryAcquire(ctx, fmt.Sprintf("k%d", i), mongolock.Expire(150*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		srv.DelayNext(1, "update", 0, 300*time.Millisecond)
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		select {
		case <-l.Lost():
			t.Fatalf("round %d: Lost closed after a successful Release: %v", i, l.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if err := l.Err(); err != nil {
			t.Fatalf("round %d: Err() = %v after a successful Release", i, err)
		}
	}
}

// TestTouchAfterExpiry: an expired lock cannot be renewed, even if nobody
// took it over: its holder must assume it lost it.
func TestTouchAfterExpiry(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	mustLock(t, c, "k", "o", mongolock.Expire(100*time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	if err := c.Touch(ctx, "k", "o", time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Touch of an expired lock: %v; want ErrNotHeld", err)
	}
	if locked, err := c.IsLocked(ctx, "k"); locked || err != nil {
		t.Fatalf("IsLocked after the refused Touch = %v, %v; want expired", locked, err)
	}
	// Before expiry it works, and can shorten the expiry (the Python
	// package's touch).
	mustLock(t, c, "k2", "o", mongolock.Expire(time.Hour))
	if err := c.Touch(ctx, "k2", "o", time.Minute); err != nil {
		t.Fatal(err)
	}
	if until := time.Until(mustInfo(t, c, "k2").Expire); until > 2*time.Minute {
		t.Fatalf("Touch(1m) left the expiry %v away", until)
	}
}

// TestForceReleaseRetiresToken: after ForceRelease, the former holder can
// neither release nor renew: its token was retired with the lock.
func TestForceReleaseRetiresToken(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	admin := newClient(t, srv)
	ctx := testCtx(t)
	l, err := c.TryAcquire(ctx, "k", mongolock.Expire(time.Hour), mongolock.KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	mustLock(t, c, "seed", "o")
	for _, k := range []string{"k", "seed"} {
		if _, err := admin.ForceRelease(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Renew(ctx, time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Renew after ForceRelease: %v; want ErrNotHeld", err)
	}
	if err := l.Release(ctx); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Release after ForceRelease: %v; want ErrNotHeld", err)
	}
	if err := c.Release(ctx, "seed", "o"); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("owner-named Release after ForceRelease: %v; want ErrNotHeld", err)
	}
	if err := c.Touch(ctx, "seed", "o", time.Hour); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("owner-named Touch after ForceRelease: %v; want ErrNotHeld", err)
	}
}

// TestFirstClockSampleBoundedByEachContext: against a server that does not
// answer, a caller's wait for the server clock ends with its own context,
// not with another caller's first sample.
func TestFirstClockSampleBoundedByEachContext(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	srv.Pause()
	defer srv.Resume()
	long, cancelLong := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLong()
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, _ = c.Lock(long, "a", "o")
	}()
	time.Sleep(100 * time.Millisecond) // the first caller is sampling
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Lock(short, "b", "o")
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a call with a 500ms deadline took %v: it waited for another caller's clock sample", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a 500ms deadline against a paused server: %v; want its deadline", err)
	}
	cancelLong()
	<-firstDone
}

// TestClockResampledWhenUnusable: if the first samples were taken while
// round trips were slow, the estimate is unusable; once the network
// recovers, the next operation samples again instead of failing until the
// refresh interval passes.
func TestClockResampledWhenUnusable(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv, mongolock.WithMaxClockError(40*time.Millisecond))
	ctx := testCtx(t)
	srv.SetLatency(150 * time.Millisecond)
	if ok, err := c.Lock(ctx, "k", "o"); ok || err == nil {
		t.Fatalf("Lock with round trips too slow for the clock bound = %v, %v; want an error", ok, err)
	}
	srv.SetLatency(0)
	if ok, err := c.Lock(ctx, "k", "o"); !ok || err != nil {
		t.Fatalf("Lock once round trips are fast again = %v, %v; want the lock (a fresh sample)", ok, err)
	}
}

// TestCloseRacingAcquisitions: an acquisition in flight when Close runs
// does not leave a lock held: it gives the lock back and returns
// ErrClosed; a waiting acquisition ends with ErrClosed; Close returns once
// all that is done, and is bounded by its context.
func TestCloseRacingAcquisitions(t *testing.T) {
	t.Run("in flight", func(t *testing.T) {
		srv := mongolocktest.Start(t)
		c, err := mongolock.Connect(testCtx(t), srv.URI(), mongolock.WithDatabase(srv.Database()))
		if err != nil {
			t.Fatal(err)
		}
		check := newClient(t, srv)
		mustLock(t, c, "warm", "o") // the clock is sampled
		srv.SetLatency(300 * time.Millisecond)
		type result struct {
			l   *mongolock.Lease
			ok  bool
			err error
		}
		results := make(chan result, 3)
		go func() {
			l, err := c.TryAcquire(context.Background(), "lease", mongolock.Expire(time.Minute))
			results <- result{l: l, err: err}
		}()
		go func() {
			ok, err := c.Lock(context.Background(), "seed", "o")
			results <- result{ok: ok, err: err}
		}()
		go func() {
			l, err := c.TryAcquire(context.Background(), "forever")
			results <- result{l: l, err: err}
		}()
		time.Sleep(100 * time.Millisecond) // the requests are on their way
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		srv.SetLatency(0)
		for _, k := range []string{"lease", "seed", "forever"} {
			if locked, err := check.IsLocked(testCtx(t), k); locked || err != nil {
				t.Errorf("%s is held after Close returned (err %v)", k, err)
			}
		}
		for range 3 {
			r := <-results
			if !errors.Is(r.err, mongolock.ErrClosed) || r.l != nil || r.ok {
				t.Errorf("acquisition racing Close = %v, %v, %v; want ErrClosed", r.l, r.ok, r.err)
			}
		}
	})
	t.Run("waiting", func(t *testing.T) {
		srv := mongolocktest.Start(t)
		holder := newClient(t, srv)
		c, err := mongolock.Connect(testCtx(t), srv.URI(), mongolock.WithDatabase(srv.Database()))
		if err != nil {
			t.Fatal(err)
		}
		mustLock(t, holder, "k", "holder")
		done := make(chan error, 1)
		go func() {
			_, err := c.Acquire(context.Background(), "k")
			done <- err
		}()
		time.Sleep(200 * time.Millisecond)
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, mongolock.ErrClosed) {
				t.Fatalf("waiting Acquire after Close: %v; want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting Acquire did not end when its Client was closed")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		srv := mongolocktest.Start(t)
		c, err := mongolock.Connect(testCtx(t), srv.URI(), mongolock.WithDatabase(srv.Database()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.TryAcquire(testCtx(t), "held", mongolock.Expire(time.Minute)); err != nil {
			t.Fatal(err)
		}
		srv.Pause()
		defer srv.Resume()
		inflight, cancelInflight := context.WithCancel(context.Background())
		defer cancelInflight()
		go func() { _, _ = c.TryAcquire(inflight, "k") }()
		time.Sleep(100 * time.Millisecond)
		cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.Close(cctx)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Close against a paused server took %v; want it bounded by its 300ms context", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close that could not release: %v; want its context's error", err)
		}
		cancelInflight()
	})
}

// TestWrongShapeDocumentsNeverChanged: the operator calls (ForceRelease,
// Purge) leave documents of the wrong shape as they are, and a lock whose
// fence would overflow is one of them.
func TestWrongShapeDocumentsNeverChanged(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 10 * time.Millisecond
	c := newClient(t, srv, mongolock.WithMaxClockError(maxErr))
	coll := lockColl(t, srv)
	ctx := testCtx(t)
	old := time.Unix(0, 0)
	docs := map[string]bson.D{
		"owner-number":     {{Key: "locked", Value: true}, {Key: "owner", Value: 7}, {Key: "expire", Value: old}},
		"expire-string":    {{Key: "locked", Value: true}, {Key: "owner", Value: "x"}, {Key: "expire", Value: "tomorrow"}},
		"locked-missing":   {{Key: "owner", Value: "x"}, {Key: "expire", Value: old}},
		"token-number":     {{Key: "locked", Value: false}, {Key: "token", Value: 5}, {Key: "released", Value: old}},
		"fence-double":     {{Key: "locked", Value: false}, {Key: "fence", Value: 2.5}, {Key: "released", Value: old}},
		"fence-max":        {{Key: "locked", Value: false}, {Key: "fence", Value: int64(math.MaxInt64)}, {Key: "released", Value: old}},
		"created-number":   {{Key: "locked", Value: false}, {Key: "created", Value: 12}, {Key: "released", Value: old}},
		"locked-is-string": {{Key: "locked", Value: "no"}, {Key: "released", Value: old}},
	}
	orig := map[string]bson.Raw{}
	for k, d := range docs {
		if _, err := coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: k}}, d...)); err != nil {
			t.Fatal(err)
		}
		orig[k] = storedDoc(t, coll, k)
	}
	for k := range docs {
		if _, err := c.ForceRelease(ctx, k); !errors.Is(err, mongolock.ErrInvalidDocument) {
			t.Errorf("ForceRelease(%s): %v; want ErrInvalidDocument", k, err)
		}
	}
	time.Sleep(10 * maxErr)
	for range 2 { // the second Purge deletes what the first stamped
		if _, err := c.Purge(ctx, 3*maxErr); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * maxErr)
	}
	for k := range docs {
		raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: k}}).Raw()
		if err != nil {
			t.Errorf("%s: %v (Purge deleted a document of the wrong shape?)", k, err)
			continue
		}
		if string(raw) != string(orig[k]) {
			t.Errorf("%s changed:\n was %v\n now %v", k, orig[k], raw)
		}
	}
	_, err := mongolock.New(srv.Client(t), mongolock.WithMaxClockError(time.Duration(math.MaxInt64)))
	if !errors.Is(err, mongolock.ErrInvalidArgument) {
		t.Fatalf("WithMaxClockError(MaxInt64): %v; want ErrInvalidArgument", err)
	}
}

// TestPurgeRespectsIdleFor: Purge deletes a released or expired document
// only once it has been idle for idleFor, by the server's clock — counted
// from the release, not from the acquisition.
func TestPurgeRespectsIdleFor(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 20 * time.Millisecond
	c := newClient(t, srv, mongolock.WithMaxClockError(maxErr))
	ctx := testCtx(t)
	const idle = 1500 * time.Millisecond
	long, err := c.TryAcquire(ctx, "held-long")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.TryAcquire(ctx, "released")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, "expired", mongolock.Expire(10*time.Millisecond), mongolock.KeepAlive(false)); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	time.Sleep(200 * time.Millisecond)
	if n, err := c.Purge(ctx, idle); n != 0 || err != nil {
		t.Fatalf("Purge(%v) %v after the release = %d, %v; want nothing deleted", idle, time.Since(released), n, err)
	}
	time.Sleep(idle - time.Since(released) + 100*time.Millisecond)
	// held-long was taken more than idleFor ago, but released just now.
	if err := long.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Purge(ctx, idle); n != 2 || err != nil {
		t.Fatalf("Purge(%v) %v after the releases = %d, %v; want the two idle ones deleted", idle, time.Since(released), n, err)
	}
	if _, err := c.Info(ctx, "held-long"); err != nil {
		t.Fatalf("Purge deleted a lock released a moment ago (it was taken long before): %v", err)
	}
}

// TestPurgeKeepsGivenBackAcquisitions: an acquisition whose replies were
// all lost is given back; the document then says when (server time), and
// Purge keeps it for idleFor like any other release. (It used to store no
// time, which Purge read as "released by the Python package" and deleted at
// once, so the next fence could come out lower.)
func TestPurgeKeepsGivenBackAcquisitions(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 20 * time.Millisecond
	c := newClient(t, srv, mongolock.WithMaxClockError(maxErr))
	ctx := testCtx(t)
	mustLock(t, c, "warm", "o")
	srv.DropReplies(3, func(cmd string) bool { return cmd == "findAndModify" })
	if _, err := c.TryAcquire(ctx, "k", mongolock.Expire(time.Minute)); err == nil {
		t.Fatal("TryAcquire with every reply lost succeeded")
	}
	info := mustInfo(t, c, "k")
	if info.Locked {
		t.Fatalf("the failed acquisition was not given back: %+v", info)
	}
	if n, err := c.Purge(ctx, time.Hour); n != 0 || err != nil {
		t.Fatalf("Purge(1h) right after the give-back = %d, %v; want nothing deleted", n, err)
	}
	if _, err := c.Info(ctx, "k"); err != nil {
		t.Fatalf("the given-back document is gone: %v", err)
	}
}

// TestPurgePythonReleased: documents the Python package wrote carry no
// time this package can trust. Purge stamps them first and deletes them on
// a later call, once idleFor has passed since the stamp.
func TestPurgePythonReleased(t *testing.T) {
	srv := mongolocktest.Start(t)
	const maxErr = 20 * time.Millisecond
	c := newClient(t, srv, mongolock.WithMaxClockError(maxErr))
	ctx := testCtx(t)
	py := pythonWorker{coll: lockColl(t, srv), owner: "py"}
	if ok, err := py.lock(ctx, "k", 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := py.release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if ok, err := py.lock(ctx, "expired", time.Millisecond); !ok || err != nil {
		t.Fatal(ok, err)
	}
	time.Sleep(10 * maxErr)
	if n, err := c.Purge(ctx, 3*maxErr); n != 0 || err != nil {
		t.Fatalf("first Purge = %d, %v; want the Python documents stamped, not deleted", n, err)
	}
	time.Sleep(10 * maxErr)
	if n, err := c.Purge(ctx, 3*maxErr); n != 2 || err != nil {
		t.Fatalf("second Purge = %d, %v; want both Python documents deleted", n, err)
	}
}

// TestRenewBoundsEveryRenewal: Renew(d) makes d the lease's period, also
// for a lease that had none, and keep-alive goes on with it.
func TestRenewBoundsEveryRenewal(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	l, err := c.TryAcquire(ctx, "forever", mongolock.NeverExpire())
	if err != nil {
		t.Fatal(err)
	}
	if !l.ExpiresAt().IsZero() {
		t.Fatalf("a lease without expiry has ExpiresAt %v", l.ExpiresAt())
	}
	if err := l.Renew(ctx, 600*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if until := time.Until(l.ExpiresAt()); until <= 0 || until > 600*time.Millisecond {
		t.Fatalf("after Renew(600ms) ExpiresAt is %v away", until)
	}
	time.Sleep(2 * time.Second) // three periods: kept alive with the new period
	notLost(t, l)
	if until := time.Until(mustInfo(t, c, "forever").Expire); until <= 0 || until > time.Second {
		t.Fatalf("stored expiry %v away; want kept alive with the 600ms period", until)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// raceLog collects, for an exclusion check, when each lease's holder may
// act (from its acquisition to the first of ExpiresAt, Lost or release)
// and when each acquisition returned.
type raceLog struct {
	mu   sync.Mutex
	errs []string
}

func (r *raceLog) add(format string, a ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// heldUntil is the instant until which l's holder may act, as seen now:
// ExpiresAt, or now if Lost has closed.
func heldUntil(l *mongolock.Lease) time.Time {
	select {
	case <-l.Lost():
		return time.Now()
	default:
	}
	if e := l.ExpiresAt(); !e.IsZero() {
		return e
	}
	return time.Now().Add(time.Hour)
}

// checkTakeover fails if taker acquired key (returning at took) while the
// holder of l could still act.
func checkTakeover(t *testing.T, l *mongolock.Lease, took time.Time, what string) {
	t.Helper()
	if until := heldUntil(l); took.Before(until) {
		t.Fatalf("%s: another client acquired the lock at %s while its holder may act until %s (%v later)",
			what, took.Format("15:04:05.000000"), until.Format("15:04:05.000000"), until.Sub(took))
	}
}

var _ = strings.Contains

// edgeClient connects a Client whose server-clock estimate sits at one
// edge of its error bound, by d/2: ahead when the hello requests of its
// samples are delayed by d (the server reads its clock late in the round
// trip), behind when their replies are (early in it).
func edgeClient(t *testing.T, srv *mongolocktest.Server, ahead bool, d time.Duration, opts ...mongolock.Option) *mongolock.Client {
	t.Helper()
	if ahead {
		srv.SetDelay("hello", d, 0)
	} else {
		srv.SetDelay("hello", 0, d)
	}
	defer srv.SetDelay("hello", 0, 0)
	c := newClient(t, srv, opts...)
	now, bound, err := c.ServerTime(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server's clock is this machine's: check the estimate really
	// is at the edge asked for, or the test proves nothing.
	off := now.Sub(time.Now())
	if ahead && off < d/4 || !ahead && off > -d/4 || bound < d/4 {
		t.Fatalf("estimate off by %v with bound %v; wanted it %v by about %v", off, bound, map[bool]string{true: "ahead", false: "behind"}[ahead], d/2)
	}
	return c
}

// TestClockEdgesExclusion: the holder's estimate sits at the back edge of
// its bound and the taker's at the front edge (hundreds of milliseconds
// each, inside WithMaxClockError). The taker must not get the lock before
// the holder's ExpiresAt: the holder's deadline allows for its own error,
// and the taker judges expiry against the earliest the server's clock can
// read, not its estimate.
func TestClockEdgesExclusion(t *testing.T) {
	srv := mongolocktest.Start(t)
	const d = 300 * time.Millisecond
	holder := edgeClient(t, srv, false, d)
	taker := edgeClient(t, srv, true, d, mongolock.WithRetryInterval(5*time.Millisecond))
	ctx := testCtx(t)
	for i := range 3 {
		key := fmt.Sprintf("k%d", i)
		l, err := holder.TryAcquire(ctx, key, mongolock.Expire(time.Second), mongolock.KeepAlive(false))
		if err != nil {
			t.Fatal(err)
		}
		until := l.ExpiresAt()
		if _, err := taker.Acquire(ctx, key, mongolock.Timeout(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		took := time.Now()
		if took.Before(until) {
			t.Fatalf("round %d: the taker got the lock %v before the holder's ExpiresAt", i, until.Sub(took))
		}
	}
}

// TestRenewRacingKeepAlive: the holder's Renew(1h) is applied first but its
// reply is slow; keep-alive renewals with the old 900ms period are applied
// after it and answered first. The lease must not believe it holds the lock
// for an hour while the server lets it expire in a second.
func TestRenewRacingKeepAlive(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	other := newClient(t, srv, mongolock.WithRetryInterval(10*time.Millisecond))
	ctx := testCtx(t)
	l, err := c.TryAcquire(ctx, "k", mongolock.Expire(900*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	renewed := make(chan error, 1)
	srv.DelayNext(1, "update", 0, 1500*time.Millisecond)
	go func() { renewed <- l.Renew(ctx, time.Hour) }()
	if err := <-renewed; err != nil {
		t.Fatalf("Renew: %v", err)
	}
	// The lease now says an hour. Whoever takes the lock must do so only
	// after the lease was lost or its ExpiresAt passed.
	_, err = other.Acquire(ctx, "k", mongolock.Timeout(3*time.Second))
	took := time.Now()
	switch {
	case errors.Is(err, mongolock.ErrLocked):
		if until := time.Until(l.ExpiresAt()); until < 50*time.Minute {
			t.Fatalf("after Renew(1h) ExpiresAt is only %v away", until)
		}
	case err != nil:
		t.Fatal(err)
	default:
		checkTakeover(t, l, took, "after Renew(1h) raced keep-alive")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestUnknownOutcomes: after an error that leaves it unknown whether the
// server applied a write (a write concern error, a step-down, a shutdown),
// the operation is resent with the same token; if it still cannot be
// confirmed, the lock is given back rather than left held under a token
// nobody has.
func TestUnknownOutcomes(t *testing.T) {
	failures := []struct {
		name string
		f    mongolocktest.Failure
	}{
		{"writeConcernError applied", mongolocktest.WriteConcernErrorApplied},
		{"writeConcernError not applied", mongolocktest.WriteConcernErrorNotApplied},
		{"unsatisfiable writeConcernError", mongolocktest.Failure{Code: 100, CodeName: "UnsatisfiableWriteConcern", WriteConcern: true, Applied: true}},
		{"NotWritablePrimary before", mongolocktest.NotWritablePrimaryBefore},
		{"NotWritablePrimary after", mongolocktest.NotWritablePrimaryAfter},
		{"PrimarySteppedDown after", mongolocktest.PrimarySteppedDownAfter},
		{"InterruptedAtShutdown after", mongolocktest.InterruptedAtShutdownAfter},
		{"retryable label", mongolocktest.Failure{Code: 9999, CodeName: "Made up", Applied: true, Labels: []string{"RetryableWriteError"}}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			srv := mongolocktest.Start(t)
			c := newClient(t, srv)
			check := newClient(t, srv)
			ctx := testCtx(t)
			mustLock(t, c, "warm", "o")

			// Once: resent, confirmed.
			srv.FailNext(1, "findAndModify", tt.f)
			if ok, err := c.Lock(ctx, "lock", "o"); !ok || err != nil {
				t.Fatalf("Lock after one %s = %v, %v; want true", tt.name, ok, err)
			}
			srv.FailNext(1, "update", tt.f)
			if err := c.Release(ctx, "lock", "o"); err != nil {
				t.Fatalf("Release after one %s: %v", tt.name, err)
			}
			srv.FailNext(1, "findAndModify", tt.f)
			l, err := c.TryAcquire(ctx, "lease", mongolock.Expire(time.Minute))
			if err != nil {
				t.Fatalf("TryAcquire after one %s: %v", tt.name, err)
			}
			srv.FailNext(1, "update", tt.f)
			if err := l.Renew(ctx, time.Hour); err != nil {
				t.Fatalf("Renew after one %s: %v", tt.name, err)
			}
			if until := time.Until(mustInfo(t, c, "lease").Expire); until < 50*time.Minute {
				t.Fatalf("after Renew(1h) the stored expiry is %v away", until)
			}
			srv.FailNext(1, "update", tt.f)
			if err := l.Release(ctx); err != nil {
				t.Fatalf("lease Release after one %s: %v", tt.name, err)
			}
			for _, k := range []string{"lock", "lease"} {
				if locked, err := check.IsLocked(ctx, k); locked || err != nil {
					t.Fatalf("%s held after its release (err %v)", k, err)
				}
			}

			// Every attempt: the call fails, and the lock is not left held.
			srv.FailNext(3, "findAndModify", tt.f)
			if ok, err := c.Lock(ctx, "never", "o"); ok || err == nil {
				t.Fatalf("Lock with every attempt failing (%s) = %v, %v; want an error", tt.name, ok, err)
			}
			waitFree(t, check, "never")
			srv.FailNext(3, "update", tt.f)
			mustLock(t, c, "stuck", "o")
			if err := c.Release(ctx, "stuck", "o"); err == nil {
				t.Fatalf("Release with every attempt failing (%s) reported success", tt.name)
			}
			waitFree(t, check, "stuck")
		})
	}
}

// waitFree waits (up to the give-back's bound) until key is not held.
func waitFree(t *testing.T, c *mongolock.Client, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		locked, err := c.IsLocked(testCtx(t), key)
		if err == nil && !locked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still held (err %v): the unconfirmed write was not given back", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// purgeAtMinimum calls c.Purge with the smallest idleFor it accepts (a
// multiple of step) until it deletes something, and returns that idleFor:
// the test then checks that the rule Purge enforces is enough.
func purgeAtMinimum(t *testing.T, c *mongolock.Client, step time.Duration) time.Duration {
	t.Helper()
	idle := step
	for {
		n, err := c.Purge(testCtx(t), idle)
		switch {
		case errors.Is(err, mongolock.ErrInvalidArgument):
			idle += step
			continue
		case err != nil:
			t.Fatal(err)
		case n > 0:
			return idle
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFencesAcrossPythonPurgeForceRelease: fences rise across a Python
// worker's acquisition (which drops the fence), across ForceRelease and
// Purge, and across a given-back acquisition, with every Go client's
// estimate at an edge of its bound (the writer of a stamp ahead, the next
// acquirer behind).
func TestFencesAcrossPythonPurgeForceRelease(t *testing.T) {
	srv := mongolocktest.Start(t)
	const (
		d      = 450 * time.Millisecond // estimates off by about 225ms
		maxErr = 300 * time.Millisecond
		idle   = 3 * maxErr
	)
	opt := mongolock.WithMaxClockError(maxErr)
	ahead := edgeClient(t, srv, true, d, opt)
	behind := edgeClient(t, srv, false, d, opt)
	py := pythonWorker{coll: lockColl(t, srv), owner: "py"}
	ctx := testCtx(t)

	t.Run("python in between", func(t *testing.T) {
		a, err := ahead.TryAcquire(ctx, "py")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := py.lock(ctx, "py", 0); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := py.release(ctx, "py"); err != nil {
			t.Fatal(err)
		}
		b, err := behind.TryAcquire(ctx, "py")
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Fatalf("fence %d after a Python acquisition; the Go lease before it had %d", b.Fence(), a.Fence())
		}
	})
	t.Run("python, then a purge", func(t *testing.T) {
		// A fence after a Python acquisition is well ahead of the clock;
		// Purge's margin covers it.
		if ok, err := py.lock(ctx, "pp", 0); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := py.release(ctx, "pp"); err != nil {
			t.Fatal(err)
		}
		a, err := ahead.TryAcquire(ctx, "pp")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		purgeAtMinimum(t, behind, maxErr)
		b, err := behind.TryAcquire(ctx, "pp")
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Fatalf("fence %d after the purge; the lease before it (after a Python one) had %d", b.Fence(), a.Fence())
		}
	})
	t.Run("force-released and purged", func(t *testing.T) {
		a, err := ahead.TryAcquire(ctx, "fr", mongolock.Expire(time.Minute), mongolock.KeepAlive(false))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := behind.ForceRelease(ctx, "fr"); err != nil {
			t.Fatal(err)
		}
		released := time.Now()
		if minIdle := purgeAtMinimum(t, newClient(t, srv, opt), maxErr); time.Since(released) < minIdle {
			t.Fatalf("Purge(%v) deleted the document %v after its ForceRelease", minIdle, time.Since(released))
		}
		b, err := behind.TryAcquire(ctx, "fr")
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Fatalf("fence %d after the purge; the lease before it had %d", b.Fence(), a.Fence())
		}
	})
	t.Run("python, then a lost reply", func(t *testing.T) {
		// The resent acquisition finds its own first attempt: what that
		// one found (here, a Python document) is unknown.
		a, err := ahead.TryAcquire(ctx, "pl")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := py.lock(ctx, "pl", 0); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := py.release(ctx, "pl"); err != nil {
			t.Fatal(err)
		}
		srv.DropNextReply("findAndModify")
		b, err := behind.TryAcquire(ctx, "pl")
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Fatalf("fence %d after a Python acquisition and a lost reply; the Go lease before had %d", b.Fence(), a.Fence())
		}
	})
	t.Run("a slow insert after a purge", func(t *testing.T) {
		// The acquisition is sent before Purge deletes the document and
		// lands after: its candidate, taken before sending, is old.
		a, err := ahead.TryAcquire(ctx, "si")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		srv.DelayNext(1, "findAndModify", 3*time.Second, 0)
		got := make(chan *mongolock.Lease, 1)
		go func() {
			b, err := behind.TryAcquire(ctx, "si")
			if err != nil {
				t.Error(err)
			}
			got <- b
		}()
		purgeAtMinimum(t, newClient(t, srv, opt), maxErr)
		b := <-got
		if b != nil && b.Fence() <= a.Fence() {
			t.Fatalf("fence %d from an acquisition that landed after a purge; the lease before had %d", b.Fence(), a.Fence())
		}
	})
	t.Run("given back, then purged", func(t *testing.T) {
		a, err := ahead.TryAcquire(ctx, "gb")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		srv.DropReplies(3, func(cmd string) bool { return cmd == "findAndModify" })
		if _, err := ahead.TryAcquire(ctx, "gb"); err == nil {
			t.Fatal("TryAcquire with every reply lost succeeded")
		}
		n, err := behind.Purge(ctx, idle)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("Purge(%v) right after a give-back deleted %d documents", idle, n)
		}
		b, err := behind.TryAcquire(ctx, "gb")
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Fatalf("fence %d after a given-back acquisition and Purge; the lease before had %d", b.Fence(), a.Fence())
		}
	})
}

// TestLostAfterAppliedRenewal: a keep-alive renewal that the server applies
// but whose reply comes after the lease's deadline moves the stored expiry
// past what the lease knows. The lease is lost at its deadline (its holder
// stops), and the lock must not stay held under its token: it is given
// back, and once Close returns nil it is free — for the exclusive lock, a
// semaphore's entry and a reader's entry alike.
func TestLostAfterAppliedRenewal(t *testing.T) {
	for _, tt := range []struct {
		name  string
		opts  []mongolock.LockOption
		probe []mongolock.LockOption // another Client's acquisition that the lease excludes
	}{
		{"exclusive", nil, nil},
		{"semaphore entry", []mongolock.LockOption{mongolock.Limit(1)}, []mongolock.LockOption{mongolock.Limit(1)}},
		{"reader", []mongolock.LockOption{mongolock.Shared()}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := mongolocktest.Start(t)
			if !srv.CanInjectFaults() {
				t.Skip("needs the embedded server's fault injection")
			}
			c, other := newClient(t, srv), newClient(t, srv)
			const period = 2 * time.Second
			l, err := c.TryAcquire(testCtx(t), "k", append([]mongolock.LockOption{mongolock.Expire(period)}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			// The first renewal (a third of the period in) is applied at
			// once; its reply comes after the deadline.
			srv.DelayNext(1, "update", 0, 2*period)
			select {
			case <-l.Lost():
			case <-time.After(4 * period):
				t.Fatal("the lease was not lost although no renewal's reply came before its deadline")
			}
			// The late renewal wrote an expiry two thirds of a period past
			// the deadline: without the give-back, the lock is still held.
			p := freeAfterClose(t, c, other, "k", tt.probe...)
			if p.Fence() <= l.Fence() {
				t.Errorf("fence %d after the lost lease's %d; want it higher", p.Fence(), l.Fence())
			}
		})
	}
}

// TestRenewReplyAfterDeadline: a user's Renew that the server applies but
// whose reply comes after the lease's deadline does not report success for
// a lease that was lost meanwhile: it returns ErrNotHeld, Err says the lease
// was lost, and the lock, which the renewal kept held on the server, is
// given back (free for another Client once Close returned).
func TestRenewReplyAfterDeadline(t *testing.T) {
	srv := mongolocktest.Start(t)
	if !srv.CanInjectFaults() {
		t.Skip("needs the embedded server's fault injection")
	}
	c, other := newClient(t, srv), newClient(t, srv)
	l, err := c.TryAcquire(testCtx(t), "k", mongolock.Expire(time.Second), mongolock.KeepAlive(false))
	if err != nil {
		t.Fatal(err)
	}
	srv.DelayNext(1, "update", 0, 3*time.Second)
	err = l.Renew(testCtx(t), time.Minute)
	if !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("Renew whose reply came after the deadline = %v; want ErrNotHeld", err)
	}
	if !errors.Is(l.Err(), mongolock.ErrLost) {
		t.Fatalf("Err = %v; want ErrLost", l.Err())
	}
	freeAfterClose(t, c, other, "k")
}

// freeAfterClose closes c, which took key in a lease that was lost, and
// requires that another Client (other) can then take key with probe: a
// lost lease leaves nothing held once its Client's Close returned nil.
func freeAfterClose(t *testing.T, c, other *mongolock.Client, key string, probe ...mongolock.LockOption) *mongolock.Lease {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l, err := other.TryAcquire(testCtx(t), key, append([]mongolock.LockOption{mongolock.Expire(time.Minute)}, probe...)...)
	if err != nil {
		t.Fatalf("after the lease was lost and its Client closed, %q is still held: %v", key, err)
	}
	return l
}
