package measure_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	lock "github.com/square/mongo-lock"

	"github.com/mongolock/mongolock/bench/measure"
	"github.com/mongolock/mongolock/mongolocktest"
)

func setup(tb testing.TB) *measure.Env {
	tb.Helper()
	srv := mongolocktest.Start(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	e, err := measure.Setup(ctx, srv.URI(), srv.Database())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// TestPeerRoundTrips counts, with each driver's command monitor, the
// commands of one acquire + release cycle of each library.
//
//	cd bench && go test -run TestPeerRoundTrips -v ./measure
func TestPeerRoundTrips(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if e.IndexErr != nil {
		t.Errorf("square/mongo-lock CreateIndexes: %v", e.IndexErr)
	}

	check := func(name string, c *measure.Counter, want map[string]int, op func() error) error {
		t.Helper()
		c.Take()
		err := op()
		got := c.Take()
		t.Logf("%-52s %v (err: %v)", name+":", got, err)
		if want != nil && !maps.Equal(got, want) {
			t.Errorf("%s sent %v, want %v", name, got, want)
		}
		return err
	}

	// This library: TryAcquire + Lease.Release = 2.
	var l interface{ Release(context.Context) error }
	if err := check("mongolock TryAcquire", e.V2, map[string]int{"findAndModify": 1}, func() (err error) {
		l, err = e.OursAcquire(ctx, "rt")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := check("mongolock Lease.Release", e.V2, map[string]int{"update": 1}, func() error {
		return l.Release(ctx)
	}); err != nil {
		t.Fatal(err)
	}

	// square/mongo-lock: XLock = 1.
	var id string
	if err := check("square XLock", e.V1, map[string]int{"findAndModify": 1}, func() (err error) {
		id, err = e.SquareAcquire(ctx, "rt")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Exclusive: a second XLock on the held resource is refused (by the
	// unique index on "resource", which CreateIndexes made).
	if err := check("square XLock on a held resource", e.V1, map[string]int{"findAndModify": 1}, func() error {
		_, err := e.SquareAcquire(ctx, "rt")
		return err
	}); !errors.Is(err, lock.ErrAlreadyLocked) {
		t.Errorf("second XLock: %v, want ErrAlreadyLocked", err)
	}

	// square's Unlock = Status (aggregate) + xUnlock (findAndModify) = 2 on
	// MongoDB. FerretDB 1.x does not implement $filter, so the aggregation
	// fails there and Unlock releases nothing.
	err := check("square Unlock", e.V1, nil, func() error { return e.SquareUnlock(ctx, id) })
	if err == nil {
		// A server that runs it (MONGOLOCK_TEST_URI=MongoDB): expect 2.
		t.Log("square Unlock succeeded on this server")
		return
	}
	t.Logf("square Unlock fails on this server (expected on FerretDB 1.x): %v", err)
	if err := check("square xUnlock query (the 2nd half of Unlock)", e.V1, map[string]int{"findAndModify": 1}, func() error {
		return e.SquareRelease(ctx, "rt", id)
	}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPeer measures, interleaved on one server, the latency of one
// acquisition (this library's TryAcquire vs square/mongo-lock's XLock)
// and of an acquire + release cycle (TryAcquire + Lease.Release; XLock +
// the xUnlock query; the raw driver's two findOneAndUpdate).
//
//	cd bench && go test -run '^$' -bench Peer -benchtime 1000x ./measure
func BenchmarkPeer(b *testing.B) {
	e := setup(b)
	b.ResetTimer()
	r, err := e.MeasureLatency(context.Background(), b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{
		{"ours-acquire", r.OursAcquire}, {"square-acquire", r.SquareAcquire},
		{"ours-cycle", r.OursCycle}, {"square-cycle", r.SquareCycle}, {"raw-cycle", r.RawCycle},
	} {
		d := slices.Sorted(slices.Values(s.d))
		b.ReportMetric(ms(d[len(d)/2]), s.name+"-p50-ms")
		b.ReportMetric(ms(d[len(d)*99/100]), s.name+"-p99-ms")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
