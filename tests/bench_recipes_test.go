package tests

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// BenchmarkRecipes measures, for each recipe beside the exclusive lock,
// the latency of an uncontended acquisition and of acquire + release on
// the embedded server, and the round trips each sends (commands counted
// at the proxy):
//
//	go test -run '^$' -bench Recipes -benchtime 500x .
func BenchmarkRecipes(b *testing.B) {
	srv := mongolocktest.Start(b)
	ctx := context.Background()
	c, err := mongolock.Connect(ctx, srv.URI(), mongolock.WithDatabase(srv.Database()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	others := map[string]int{"semaphore": 2, "shared": 2} // other holders present during the cycle
	for _, r := range []struct {
		name string
		opts []mongolock.LockOption
	}{
		{"exclusive", nil},
		{"semaphore", []mongolock.LockOption{mongolock.Limit(5)}},
		{"shared", []mongolock.LockOption{mongolock.Shared()}},
		{"fair", []mongolock.LockOption{mongolock.Fair()}},
	} {
		b.Run(r.name, func(b *testing.B) {
			key := "bench-" + r.name
			opts := append([]mongolock.LockOption{mongolock.Expire(time.Minute), mongolock.KeepAlive(false)}, r.opts...)
			for range others[r.name] {
				l, err := c.TryAcquire(ctx, key, opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Release(ctx)
			}
			if _, _, err := c.ServerTime(ctx); err != nil { // warm the clock
				b.Fatal(err)
			}
			srv.ResetCommandCounts()
			acq := make([]time.Duration, 0, b.N)
			cyc := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				l, err := c.TryAcquire(ctx, key, opts...)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
				acq, cyc = append(acq, t1.Sub(t0)), append(cyc, time.Since(t0))
			}
			b.StopTimer()
			rt := srv.CommandCount("findAndModify") + srv.CommandCount("update") + srv.CommandCount("find") + srv.CommandCount("hello")
			b.ReportMetric(float64(rt)/float64(b.N), "roundtrips/cycle")
			reportPercentilesAs(b, "acquire", acq)
			reportPercentilesAs(b, "cycle", cyc)
		})
	}
}

func reportPercentilesAs(b *testing.B, what string, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), what+"-p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), what+"-p99-ms")
}

// BenchmarkFairness measures how evenly waiters are served, with and
// without Fair: workers on Clients with different retry intervals (as
// processes on machines near and far would poll) contend for one lock,
// each holding it 2ms per acquisition, for a few seconds. It reports the
// fewest and the most acquisitions any worker made, and the longest any
// acquisition waited:
//
//	go test -run '^$' -bench Fairness -benchtime 1x .
func BenchmarkFairness(b *testing.B) {
	srv := mongolocktest.Start(b)
	ctx := context.Background()
	const workers = 6
	for _, fair := range []bool{false, true} {
		b.Run(fmt.Sprintf("fair=%v", fair), func(b *testing.B) {
			for range b.N {
				var (
					mu      sync.Mutex
					counts  = make([]int, workers)
					longest time.Duration
					wg      sync.WaitGroup
				)
				until := time.Now().Add(3 * time.Second)
				for w := range workers {
					// Half the workers poll 10 times as often as the others.
					retry := 5 * time.Millisecond
					if w%2 == 1 {
						retry = 50 * time.Millisecond
					}
					c, err := mongolock.Connect(ctx, srv.URI(), mongolock.WithDatabase(srv.Database()), mongolock.WithRetryInterval(retry))
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close(ctx)
					opts := []mongolock.LockOption{mongolock.Expire(10 * time.Second), mongolock.KeepAlive(false)}
					if fair {
						opts = append(opts, mongolock.Fair())
					}
					wg.Go(func() {
						for time.Now().Before(until) {
							t0 := time.Now()
							l, err := c.Acquire(ctx, fmt.Sprintf("fairness-%v", fair), opts...)
							if err != nil {
								b.Error(err)
								return
							}
							waited := time.Since(t0)
							time.Sleep(2 * time.Millisecond)
							_ = l.Release(ctx)
							mu.Lock()
							counts[w]++
							longest = max(longest, waited)
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(slices.Min(counts)), "fewest-acquisitions")
				b.ReportMetric(float64(slices.Max(counts)), "most-acquisitions")
				b.ReportMetric(ms(longest), "longest-wait-ms")
				b.Logf("fair=%v: acquisitions per worker %v (even workers poll every 5ms, odd every 50ms); longest wait %v", fair, counts, longest.Round(time.Millisecond))
			}
		})
	}
}
