package tests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// The Python package's own test suite, ported case by case.

func TestSeedSuite(t *testing.T) {
	srv := mongolocktest.Start(t)
	n := 0
	fresh := func(t *testing.T) (*mongolock.Client, string) {
		n++
		return newClient(t, srv), "key-" + strings.ReplaceAll(t.Name(), "/", "-")
	}

	t.Run("locked successfully", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner")
		if info := mustInfo(t, c, key); !info.Locked || info.Owner != "owner" || info.Fence <= 0 {
			t.Fatalf("info = %+v; want locked by owner with a fence", info)
		}
	})

	t.Run("locked successfully second time", func(t *testing.T) {
		c, key := fresh(t)
		ctx := testCtx(t)
		mustLock(t, c, key, "owner")
		if err := c.Release(ctx, key, "owner"); err != nil {
			t.Fatal(err)
		}
		mustLock(t, c, key, "owner")
	})

	t.Run("lock already locked", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "another_one")
		ok, err := c.Lock(testCtx(t), key, "owner")
		if err != nil || ok {
			t.Fatalf("Lock on a held lock = %v, %v; want false, nil", ok, err)
		}
		if info := mustInfo(t, c, key); info.Owner != "another_one" {
			t.Fatalf("owner = %q after a failed Lock; want another_one", info.Owner)
		}
	})

	t.Run("not reentrant", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner")
		if ok, err := c.Lock(testCtx(t), key, "owner"); err != nil || ok {
			t.Fatalf("second Lock by the same owner = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("lock stolen after expiry by a waiter", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner", mongolock.Expire(100*time.Millisecond))
		start := time.Now()
		ok, err := c.Lock(testCtx(t), key, "thief", mongolock.Timeout(10*time.Second))
		if err != nil || !ok {
			t.Fatalf("waiting Lock = %v, %v; want true, nil", ok, err)
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Fatalf("waited %v for a lock that expires after 100ms", waited)
		}
		if info := mustInfo(t, c, key); info.Owner != "thief" {
			t.Fatalf("owner = %q; want thief", info.Owner)
		}
	})

	t.Run("timeout passes while held", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner")
		start := time.Now()
		ok, err := c.Lock(testCtx(t), key, "other", mongolock.Timeout(300*time.Millisecond))
		if err != nil || ok {
			t.Fatalf("Lock with timeout on a lock held forever = %v, %v; want false, nil", ok, err)
		}
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Fatalf("gave up after %v; want at least the 300ms timeout", waited)
		}
	})

	t.Run("release", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner")
		if err := c.Release(testCtx(t), key, "owner"); err != nil {
			t.Fatal(err)
		}
		info := mustInfo(t, c, key)
		if info.Locked || info.Owner != "" || !info.Created.IsZero() || !info.Expire.IsZero() {
			t.Fatalf("info after release = %+v; want the released shape", info)
		}
		if locked, err := c.IsLocked(testCtx(t), key); err != nil || locked {
			t.Fatalf("IsLocked after release = %v, %v", locked, err)
		}
	})

	t.Run("another owner cannot release", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "another_one")
		other := newClient(t, srv)
		err := other.Release(testCtx(t), key, "owner")
		if !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("Release by another owner: %v; want ErrNotHeld", err)
		}
		if info := mustInfo(t, c, key); !info.Locked || info.Owner != "another_one" {
			t.Fatalf("info = %+v; want still locked by another_one", info)
		}
	})

	t.Run("releasing an absent lock creates nothing", func(t *testing.T) {
		c, key := fresh(t)
		err := c.Release(testCtx(t), key, "owner")
		if !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("Release of an absent lock: %v; want ErrNotHeld", err)
		}
		if _, err := c.Info(testCtx(t), key); !errors.Is(err, mongolock.ErrNotFound) {
			t.Fatalf("Info after releasing an absent lock: %v; want ErrNotFound", err)
		}
	})

	t.Run("inside Do the lock is held", func(t *testing.T) {
		c, key := fresh(t)
		if _, err := c.Info(testCtx(t), key); !errors.Is(err, mongolock.ErrNotFound) {
			t.Fatalf("Info before: %v; want ErrNotFound", err)
		}
		ran := false
		err := c.Do(testCtx(t), key, "owner", func(ctx context.Context) error {
			ran = true
			info := mustInfo(t, c, key)
			if !info.Locked || info.Owner != "owner" {
				t.Errorf("inside Do: %+v; want locked by owner", info)
			}
			return nil
		})
		if err != nil || !ran {
			t.Fatalf("Do = %v, ran = %v", err, ran)
		}
		if info := mustInfo(t, c, key); info.Locked {
			t.Fatalf("after Do: %+v; want released", info)
		}
	})

	t.Run("Do on a held lock names the holder", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "holder-name", mongolock.Expire(time.Hour))
		ran := false
		err := c.Do(testCtx(t), key, "owner", func(ctx context.Context) error { ran = true; return nil })
		var le *mongolock.LockedError
		if !errors.Is(err, mongolock.ErrLocked) || !errors.As(err, &le) {
			t.Fatalf("Do on a held lock: %v; want a *LockedError", err)
		}
		if ran || le.Owner != "holder-name" || le.Key != key || le.Since.IsZero() || le.Expires.IsZero() {
			t.Fatalf("ran = %v, LockedError = %+v; want holder-name with since and expires", ran, le)
		}
		if !strings.Contains(err.Error(), "holder-name") {
			t.Fatalf("message %q does not name the holder", err)
		}
	})

	t.Run("touch moves expire later", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "owner", mongolock.Expire(time.Second))
		before := mustInfo(t, c, key).Expire
		if err := c.Touch(testCtx(t), key, "owner", time.Minute); err != nil {
			t.Fatal(err)
		}
		after := mustInfo(t, c, key).Expire
		if !after.After(before.Add(50 * time.Second)) {
			t.Fatalf("expire %v -> %v; want about a minute later", before, after)
		}
	})

	t.Run("touch by another owner", func(t *testing.T) {
		c, key := fresh(t)
		mustLock(t, c, key, "another_one", mongolock.Expire(time.Second))
		before := mustInfo(t, c, key)
		other := newClient(t, srv)
		if err := other.Touch(testCtx(t), key, "owner", time.Minute); !errors.Is(err, mongolock.ErrNotHeld) {
			t.Fatalf("Touch by another owner: %v; want ErrNotHeld", err)
		}
		if after := mustInfo(t, c, key); *after != *before {
			t.Fatalf("Touch by another owner changed the lock: %+v -> %+v", before, after)
		}
	})

	t.Run("Do releases when fn fails", func(t *testing.T) {
		c, key := fresh(t)
		boom := errors.New("boom")
		err := c.Do(testCtx(t), key, "owner", func(ctx context.Context) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Do = %v; want fn's error", err)
		}
		if info := mustInfo(t, c, key); info.Locked {
			t.Fatalf("after a failing fn: %+v; want released", info)
		}
	})

	t.Run("Do releases when fn panics and re-panics", func(t *testing.T) {
		c, key := fresh(t)
		func() {
			defer func() {
				if p := recover(); p != "kaboom" {
					t.Fatalf("recovered %v; want the fn's panic", p)
				}
			}()
			_ = c.Do(testCtx(t), key, "owner", func(ctx context.Context) error { panic("kaboom") })
		}()
		if info := mustInfo(t, c, key); info.Locked {
			t.Fatalf("after a panicking fn: %+v; want released", info)
		}
	})

	t.Run("built from a collection", func(t *testing.T) {
		mc := srv.Client(t)
		coll := mc.Database(srv.Database()).Collection("custom_locks")
		c, err := mongolock.NewFromCollection(coll)
		if err != nil {
			t.Fatal(err)
		}
		mustLock(t, c, "key", "owner")
		var doc bson.M
		if err := coll.FindOne(testCtx(t), bson.D{{Key: "_id", Value: "key"}}).Decode(&doc); err != nil {
			t.Fatalf("lock document not in the given collection: %v", err)
		}
		if doc["owner"] != "owner" || doc["locked"] != true {
			t.Fatalf("stored %v", doc)
		}
	})

	t.Run("built from a driver client with database and collection", func(t *testing.T) {
		mc := srv.Client(t)
		c, err := mongolock.New(mc, mongolock.WithDatabase(srv.Database()), mongolock.WithCollection("other"))
		if err != nil {
			t.Fatal(err)
		}
		mustLock(t, c, "key", "owner")
		if c.Collection().Name() != "other" || c.Collection().Database().Name() != srv.Database() {
			t.Fatalf("collection %s.%s", c.Collection().Database().Name(), c.Collection().Name())
		}
		n, err := mc.Database(srv.Database()).Collection("other").CountDocuments(testCtx(t), bson.D{})
		if err != nil || n != 1 {
			t.Fatalf("documents in the named collection: %d, %v", n, err)
		}
	})
}

func TestIsLocked(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	mustLock(t, c, "forever", "owner")
	mustLock(t, c, "expired", "owner", mongolock.Expire(time.Millisecond))
	mustLock(t, c, "live", "owner", mongolock.Expire(time.Hour))
	time.Sleep(20 * time.Millisecond)

	tests := []struct {
		key  string
		want bool
	}{
		{"absent", false},
		{"forever", true},
		{"expired", false},
		{"live", true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := c.IsLocked(ctx, tt.key)
			if err != nil || got != tt.want {
				t.Fatalf("IsLocked(%q) = %v, %v; want %v", tt.key, got, err, tt.want)
			}
		})
	}
}
