package mongolock

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestHeldBook(t *testing.T) {
	tests := []struct {
		name    string
		puts    []string // keys recorded in this order
		limit   int
		want    []string // remembered
		wantNot []string // forgotten
	}{
		{"under the limit", []string{"a", "b"}, 3, []string{"a", "b"}, nil},
		{"oldest forgotten first", []string{"a", "b", "c", "d"}, 3, []string{"b", "c", "d"}, []string{"a"}},
		{"a recorded key is recent again", []string{"a", "b", "c", "a", "d"}, 3, []string{"a", "c", "d"}, []string{"b"}},
		{"limit one", []string{"a", "b"}, 1, []string{"b"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newHeldBook(tt.limit)
			for i, k := range tt.puts {
				b.put(k, heldLock{owner: "o", token: fmt.Sprint(i)})
			}
			for _, k := range tt.want {
				if _, ok := b.get(k); !ok {
					t.Errorf("%q forgotten; want remembered", k)
				}
			}
			for _, k := range tt.wantNot {
				if _, ok := b.get(k); ok {
					t.Errorf("%q remembered; want forgotten", k)
				}
			}
			if b.len() != len(tt.want) {
				t.Errorf("len = %d; want %d", b.len(), len(tt.want))
			}
		})
	}
	t.Run("the last put wins", func(t *testing.T) {
		b := newHeldBook(2)
		b.put("a", heldLock{owner: "o", token: "1"})
		b.put("a", heldLock{owner: "o"})
		if h, _ := b.get("a"); h.token != "" || b.len() != 1 {
			t.Fatalf("get = %+v, len %d; want the released entry, len 1", h, b.len())
		}
	})
}

// TestOwnerNamedBookkeepingIsBounded: a Client that locks and releases many
// distinct keys through the owner-named API remembers only the most recent
// ones. A recent key keeps the same-name protection (a same-named worker's
// takeover is not released); a key forgotten long ago falls back to the
// Python package's owner-name match, like a key the Client never locked.
func TestOwnerNamedBookkeepingIsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := testClient(t)
	connect := func() *Client {
		c, err := New(first.Collection().Database().Client(), WithDatabase(first.Collection().Database().Name()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	worker1, worker2 := connect(), connect()
	worker1.held = newHeldBook(3)

	lock := func(c *Client, key string, opts ...LockOption) {
		t.Helper()
		if ok, err := c.Lock(ctx, key, "worker", opts...); err != nil || !ok {
			t.Fatalf("Lock(%q) = %v, %v", key, ok, err)
		}
	}
	// worker1 takes "old" and "recent" with a short expiry; worker2, with the
	// same owner name, takes both over once they have expired.
	lock(worker1, "old", Expire(300*time.Millisecond))
	for i := range 5 {
		key := fmt.Sprintf("k%d", i)
		lock(worker1, key)
		if err := worker1.Release(ctx, key, "worker"); err != nil {
			t.Fatal(err)
		}
	}
	lock(worker1, "recent", Expire(300*time.Millisecond))
	if n := worker1.held.len(); n != 3 {
		t.Fatalf("worker1 remembers %d keys; want 3", n)
	}
	time.Sleep(time.Second)
	lock(worker2, "old", Expire(time.Minute))
	lock(worker2, "recent", Expire(time.Minute))

	if err := worker1.Release(ctx, "recent", "worker"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("worker1.Release(recent) = %v; want ErrNotHeld (worker2 holds it)", err)
	}
	if info, _ := worker1.Info(ctx, "recent"); !info.Locked {
		t.Fatal("worker1 released worker2's lock on a key it remembers")
	}
	if err := worker1.Release(ctx, "old", "worker"); err != nil {
		t.Fatalf("worker1.Release(old) = %v; want the owner-name match of a forgotten key", err)
	}
	if info, _ := worker1.Info(ctx, "old"); info.Locked {
		t.Fatal("a forgotten key did not fall back to the owner-name match")
	}
}
