package tests

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// commandLog counts the commands a driver client sends, as its command
// monitor sees them (one CommandStartedEvent per command on the wire; the
// driver's connection handshakes and its server-monitoring heartbeats are
// not reported to a command monitor).
type commandLog struct {
	mu     sync.Mutex
	counts map[string]int
	// updates holds, for every update command, the time it was started
	// and the number of statements it carried.
	updates []updateCmd
}

type updateCmd struct {
	at         time.Time
	statements int
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.counts == nil {
			l.counts = make(map[string]int)
		}
		l.counts[e.CommandName]++
		if e.CommandName == "update" {
			n := 0
			// The statements may travel in a document sequence (OP_MSG
			// kind 1); the driver folds them back into the event's command.
			if arr, err := e.Command.LookupErr("updates"); err == nil {
				if vals, err := arr.Array().Values(); err == nil {
					n = len(vals)
				}
			}
			l.updates = append(l.updates, updateCmd{at: time.Now(), statements: n})
		}
	}}
}

// take returns the counts since the last take (or reset) and resets them.
func (l *commandLog) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = nil
	l.updates = nil
	if c == nil {
		c = map[string]int{}
	}
	return c
}

func (l *commandLog) updatesSince(t time.Time) []updateCmd {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []updateCmd
	for _, u := range l.updates {
		if !u.at.Before(t) {
			out = append(out, u)
		}
	}
	return out
}

func formatCounts(m map[string]int) string {
	var parts []string
	total := 0
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
		total += m[k]
	}
	if len(parts) == 0 {
		return "0 commands"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// TestRoundTrips counts, with the driver's command monitor, the commands
// (round trips) the library sends for each operation, and fails if any
// count rises. Run with -v to see the counts:
//
//	go test -run TestRoundTrips -v .
func TestRoundTrips(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	var log commandLog
	mc := srv.Client(t, options.Client().SetMonitor(log.monitor()))
	c, err := mongolock.New(mc, mongolock.WithDatabase(srv.Database()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	// The driver connects lazily and its handshake is not a monitored
	// command: nothing has been sent through the monitor yet.
	if err := mc.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); got["ping"] != 1 || len(got) != 1 {
		t.Errorf("connecting and one ping: %s; want only ping×1 (handshake hellos are not monitored)", formatCounts(got))
	}

	check := func(name string, want map[string]int, op func() error) {
		t.Helper()
		log.take()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := log.take()
		t.Logf("%-46s %s", name+":", formatCounts(got))
		if !maps.Equal(got, want) {
			t.Errorf("%s sent %s; want %s", name, formatCounts(got), formatCounts(want))
		}
	}

	// The first operation of a Client samples the server clock (3 hellos).
	check("first operation (Lock, cold clock)", map[string]int{"hello": 3, "findAndModify": 1}, func() error {
		ok, err := c.Lock(ctx, "warm", "w")
		if !ok && err == nil {
			err = errors.New("not acquired")
		}
		return err
	})
	check("Client.Release", map[string]int{"update": 1}, func() error {
		return c.Release(ctx, "warm", "w")
	})

	check("Lock, uncontended", map[string]int{"findAndModify": 1}, func() error {
		ok, err := c.Lock(ctx, "a", "owner-a", mongolock.Expire(time.Minute))
		if !ok && err == nil {
			err = errors.New("not acquired")
		}
		return err
	})
	check("Client.Release", map[string]int{"update": 1}, func() error {
		return c.Release(ctx, "a", "owner-a")
	})

	var l *mongolock.Lease
	check("TryAcquire, uncontended", map[string]int{"findAndModify": 1}, func() error {
		var err error
		l, err = c.TryAcquire(ctx, "b", mongolock.Expire(time.Minute), mongolock.KeepAlive(false))
		return err
	})
	check("Lease.Renew", map[string]int{"update": 1}, func() error {
		return l.Renew(ctx, time.Minute)
	})
	check("Lock on a held key (false)", map[string]int{"findAndModify": 1}, func() error {
		ok, err := c.Lock(ctx, "b", "other")
		if ok {
			return errors.New("acquired a held key")
		}
		return err
	})
	check("TryAcquire on a held key (*LockedError)", map[string]int{"findAndModify": 1, "find": 1}, func() error {
		_, err := c.TryAcquire(ctx, "b", mongolock.Owner("other"))
		var locked *mongolock.LockedError
		if !errors.As(err, &locked) {
			return fmt.Errorf("err = %v, want a *LockedError", err)
		}
		return nil
	})
	check("Lease.Release", map[string]int{"update": 1}, func() error {
		return l.Release(ctx)
	})

	// The recipes: one round trip in the common case too.
	for _, r := range []struct {
		name string
		opts []mongolock.LockOption
	}{
		{"semaphore (Limit(3), another holder in)", []mongolock.LockOption{mongolock.Limit(3)}},
		{"reader (Shared, another reader in)", []mongolock.LockOption{mongolock.Shared()}},
		{"fair (Fair)", []mongolock.LockOption{mongolock.Fair()}},
	} {
		key := "r-" + r.name
		opts := append([]mongolock.LockOption{mongolock.Expire(time.Minute), mongolock.KeepAlive(false)}, r.opts...)
		if len(r.opts) > 0 && r.name != "fair (Fair)" {
			if _, err := c.TryAcquire(ctx, key, opts...); err != nil {
				t.Fatal(err)
			}
		}
		var l *mongolock.Lease
		check("TryAcquire, "+r.name, map[string]int{"findAndModify": 1}, func() error {
			var err error
			l, err = c.TryAcquire(ctx, key, opts...)
			return err
		})
		check("Lease.Renew, "+r.name, map[string]int{"update": 1}, func() error { return l.Renew(ctx, time.Minute) })
		check("Lease.Release, "+r.name, map[string]int{"update": 1}, func() error { return l.Release(ctx) })
	}
	e := c.Election("rt-election", mongolock.KeepAlive(false))
	var leader *mongolock.Lease
	check("Election.Campaign, uncontended", map[string]int{"findAndModify": 1}, func() error {
		var err error
		leader, err = e.Campaign(ctx, "v")
		return err
	})
	check("Election.Leader", map[string]int{"find": 1}, func() error { _, err := e.Leader(ctx); return err })
	check("resign (Lease.Release)", map[string]int{"update": 1}, func() error { return leader.Release(ctx) })

	t.Run("KeepAlive", func(t *testing.T) { testKeepAliveRoundTrips(t, srv) })
}

// testKeepAliveRoundTrips holds up to 2,000 kept-alive leases on one Client
// and checks that one renewal tick is one update command carrying every
// lease. (The driver splits a bulk write only above 100,000 statements or
// 48 MB, so the count does not depend on the number of leases below that;
// BenchmarkManyLeases measures 10,000.) It takes as many leases as it can
// in a quarter of a second — some hundreds on an idle machine, far fewer
// under -race or load, where the embedded server is many times slower, and
// slower still per renewal than per acquisition — so that every lease is
// taken before the first renewal is due and a tick costs the server well
// under the renewal interval.
func testKeepAliveRoundTrips(t *testing.T, srv *mongolocktest.Server) {
	const (
		maxLeases  = 2000
		expire     = 6 * time.Second
		interval   = expire / 3
		acquireFor = 250 * time.Millisecond
	)
	ctx := testCtx(t)
	var log commandLog
	mc := srv.Client(t, options.Client().SetMonitor(log.monitor()))
	c, err := mongolock.New(mc, mongolock.WithDatabase(srv.Database()), mongolock.WithCollection("keepalive"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	start := time.Now()
	leases := make([]*mongolock.Lease, maxLeases)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < acquireFor {
				j := int(next.Add(1)) - 1
				if j >= maxLeases {
					return
				}
				l, err := c.TryAcquire(ctx, fmt.Sprintf("lease-%04d", j), mongolock.Expire(expire))
				if err != nil {
					t.Error(err)
					return
				}
				leases[j] = l
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	acquired := time.Now()
	leases = slices.DeleteFunc(leases, func(l *mongolock.Lease) bool { return l == nil })
	n := len(leases)
	if n < 10 {
		t.Skipf("only %d leases acquired in %v: the server is too slow for this check", n, acquireFor)
	}
	t.Logf("acquired %d leases (Expire %v, renewed every %v) in %v", n, expire, interval, acquired.Sub(start).Round(time.Millisecond))

	// Leases taken at different times fall into step within a few ticks:
	// wait for a tick that renews all of them, then watch one interval.
	deadline := time.Now().Add(4 * interval)
	var aligned time.Time
	for aligned.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no renewal tick carried all %d leases within %v: %+v", n, 4*interval, log.updatesSince(acquired))
		}
		time.Sleep(50 * time.Millisecond)
		for _, u := range log.updatesSince(acquired) {
			if u.statements == n {
				aligned = u.at
			}
		}
	}
	log.take()
	// Watch the next two ticks, however late a loaded machine makes them:
	// every command sent meanwhile must be one of them, each carrying
	// every lease, one renewal interval apart (not one command per lease,
	// nor several per tick).
	deadline = time.Now().Add(4 * interval)
	var ups []updateCmd
	for len(ups) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("keep-alive sent %d renewal ticks in %v after the aligned one; want 2", len(ups), 4*interval)
		}
		time.Sleep(50 * time.Millisecond)
		ups = log.updatesSince(aligned.Add(time.Nanosecond))
	}
	got := log.take()
	t.Logf("keep-alive of %d leases, over two renewal intervals (%v each): %s", n, interval, formatCounts(got))
	if want := map[string]int{"update": len(ups)}; !maps.Equal(got, want) {
		t.Errorf("keep-alive of %d leases sent %s over %d ticks; want %s", n, formatCounts(got), len(ups), formatCounts(want))
	}
	prev := aligned
	for _, u := range ups {
		t.Logf("renewal tick %v after the previous one: one update command with %d statements", u.at.Sub(prev).Round(time.Millisecond), u.statements)
		if u.statements != n {
			t.Errorf("a renewal tick carried %d statements; want all %d leases", u.statements, n)
		}
		if gap := u.at.Sub(prev); gap < interval/2 {
			t.Errorf("renewal ticks %v apart; want one per interval (%v)", gap, interval)
		}
		prev = u.at
	}
	lost := 0
	for _, l := range leases {
		if l.Err() != nil {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d leases lost", lost, n)
	}
}
