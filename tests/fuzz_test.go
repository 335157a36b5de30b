package tests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// validKey and validOwner are the documented rules for keys and owner
// names, the fuzzer's ground truth.
func validKey(key string) bool { return key != "" && len(key) <= 1024 && utf8.ValidString(key) }

func validOwner(owner string) bool {
	return owner != "" && len(owner) <= 512 && utf8.ValidString(owner)
}

// argErr checks that err is an *ArgumentError matching ErrInvalidArgument
// with a non-empty Arg and Rule.
func argErr(t *testing.T, what string, err error) {
	t.Helper()
	var ae *mongolock.ArgumentError
	if !errors.Is(err, mongolock.ErrInvalidArgument) || !errors.As(err, &ae) || ae.Arg == "" || ae.Rule == "" {
		t.Fatalf("%s: %v (%T); want an *ArgumentError naming the argument and the rule", what, err, err)
	}
}

// FuzzLockServer takes and releases locks with fuzzed keys, owners and
// expiry periods on a real server (the embedded one, started once for the
// whole run). Properties: nothing panics; an invalid key, owner or expiry
// is refused with an *ArgumentError matching ErrInvalidArgument, by Lock
// and by Release, and never takes a lock; a valid one takes the lock, which
// Release then frees (a second Release is mongolock.ErrNotHeld); and a lock held by
// another mongolock.Client (victim) is never changed by anything this mongolock.Client does
// with another owner name. (With the victim's own key and owner name, the
// owner-name fallback of Release for a key this mongolock.Client never acquired
// would free it, as documented; that input is skipped.)
func FuzzLockServer(f *testing.F) {
	srv := mongolocktest.Start(f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	f.Cleanup(cancel)
	connect := func() *mongolock.Client {
		c, err := mongolock.Connect(ctx, srv.URI(), mongolock.WithDatabase(srv.Database()))
		if err != nil {
			f.Fatalf("Connect: %v", err)
		}
		f.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	holder, fuzzed := connect(), connect()
	const victimKey, victimOwner = "victim", "holder"
	if ok, err := holder.Lock(ctx, victimKey, victimOwner, mongolock.Expire(24*time.Hour)); !ok || err != nil {
		f.Fatalf("Lock(victim) = %v, %v", ok, err)
	}
	victim, err := holder.Info(ctx, victimKey)
	if err != nil {
		f.Fatalf("Info(victim): %v", err)
	}

	f.Add("nightly-report", "worker-1", int64(time.Minute))
	f.Add(victimKey, "not-"+victimOwner, int64(time.Hour))
	f.Add("", "worker-1", int64(time.Minute))
	f.Add("k", "", int64(time.Minute))
	f.Add("k\xff", "o", int64(time.Minute))
	f.Add("k", "o", int64(time.Microsecond))
	f.Add("ключ/with spaces.$and{dots}", "владелец", int64(time.Hour))
	f.Add(strings.Repeat("k", 1025), "o", int64(time.Minute))

	f.Fuzz(func(t *testing.T, key, owner string, expire int64) {
		if key == victimKey && owner == victimOwner {
			// A mongolock.Client that never acquired a key releases it by owner
			// name (holderFor: the Python package's semantics), so this
			// Release would rightly free the victim.
			t.Skip("the victim's own key and owner name")
		}
		d := time.Duration(expire)
		valid := validKey(key) && validOwner(owner) && d >= time.Millisecond
		octx, ocancel := context.WithTimeout(ctx, 20*time.Second)
		defer ocancel()

		ok, err := fuzzed.Lock(octx, key, owner, mongolock.Expire(d))
		switch {
		case !valid:
			if ok || err == nil {
				t.Fatalf("Lock(%q, %q, Expire(%v)) = %v, %v; want an invalid-argument error", key, owner, d, ok, err)
			}
			argErr(t, "Lock", err)
		case err != nil:
			t.Fatalf("Lock(%q, %q, Expire(%v)): %v", key, owner, d, err)
		case key == victimKey:
			if ok {
				t.Fatalf("Lock(%q, %q) took the lock another mongolock.Client holds", key, owner)
			}
		case !ok:
			t.Fatalf("Lock(%q, %q, Expire(%v)) = false: a lock of this mongolock.Client was left held", key, owner, d)
		}

		err = fuzzed.Release(octx, key, owner)
		switch {
		case !validKey(key) || !validOwner(owner):
			argErr(t, "Release", err)
		case ok && (err == nil || (d < 10*time.Second && errors.Is(err, mongolock.ErrNotHeld))):
			// Released (or, with a short expiry, already expired).
		case ok:
			t.Fatalf("Release(%q, %q) after Lock: %v", key, owner, err)
		case !errors.Is(err, mongolock.ErrNotHeld):
			t.Fatalf("Release(%q, %q) of a lock it does not hold = %v, want mongolock.ErrNotHeld", key, owner, err)
		}
		if ok {
			if err := fuzzed.Release(octx, key, owner); !errors.Is(err, mongolock.ErrNotHeld) {
				t.Fatalf("second Release(%q, %q) = %v, want mongolock.ErrNotHeld", key, owner, err)
			}
		}

		now, err := holder.Info(octx, victimKey)
		if err != nil {
			t.Fatalf("Info(victim): %v", err)
		}
		if *now != *victim {
			t.Fatalf("the victim lock changed after Lock/Release(%q, %q, %v):\nwas %+v\nnow %+v", key, owner, d, victim, now)
		}
	})
}
