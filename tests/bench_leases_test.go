package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// BenchmarkHandOff measures the time from a Release returning to the next
// holder's Acquire returning, for a waiter on the same Client (woken by the
// release) and on another Client (woken by its own polling, as a waiter in
// another process is). rtt-ms is one raw findOneAndUpdate round trip,
// measured in the same run: the in-process target is rtt + 1ms.
//
// Run: go test -run '^$' -bench HandOff -benchtime 300x .
func BenchmarkHandOff(b *testing.B) {
	for _, tc := range []struct {
		name     string
		separate bool
	}{{"SameClient", false}, {"OtherClient", true}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := mongolocktest.Start(b)
			holderC := newClient(b, srv)
			waiterC := holderC
			if tc.separate {
				waiterC = newClient(b, srv)
			}
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				l, err := holderC.TryAcquire(ctx, "handoff")
				if err != nil {
					b.Fatal(err)
				}
				got := make(chan time.Time, 1)
				go func() {
					w, err := waiterC.Acquire(ctx, "handoff")
					got <- time.Now()
					if err == nil {
						_ = w.Release(ctx)
					}
				}()
				time.Sleep(3 * time.Millisecond) // the waiter is waiting
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
				released := time.Now()
				lat = append(lat, (<-got).Sub(released))
				// Let the waiter's release finish before the next round.
				for {
					if locked, _ := holderC.IsLocked(ctx, "handoff"); !locked {
						break
					}
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
			b.ReportMetric(ms(rawRoundTrip(b, srv)), "rtt-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// rawRoundTrip is the median of 50 raw findOneAndUpdate round trips.
func rawRoundTrip(b *testing.B, srv *mongolocktest.Server) time.Duration {
	coll := srv.Client(b).Database(srv.Database()).Collection("rtt",
		options.Collection().SetWriteConcern(writeconcern.Majority()))
	var d []time.Duration
	for i := 0; i < 50; i++ {
		t := time.Now()
		err := coll.FindOneAndUpdate(context.Background(), bson.D{{Key: "_id", Value: "rtt"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "i", Value: i}}}}, options.FindOneAndUpdate().SetUpsert(true)).Err()
		if err != nil && err != mongo.ErrNoDocuments {
			b.Fatal(err)
		}
		d = append(d, time.Since(t))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// manyLeases is how many leases BenchmarkManyLeases holds.
var manyLeases = 10000

// BenchmarkManyLeases holds 10,000 kept-alive leases on one Client and
// reports the commands keep-alive sends per renewal tick (roundtrips/tick)
// and the heap held per lease (bytes/lease).
//
// Run: go test -run '^$' -bench ManyLeases -benchtime 1x .
func BenchmarkManyLeases(b *testing.B) {
	n := manyLeases
	const expire = 12 * time.Second // renewed every 4s
	srv := mongolocktest.Start(b)
	c := newClient(b, srv)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		leases := make([]*mongolock.Lease, n)
		var wg sync.WaitGroup
		var next atomic.Int64
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := int(next.Add(1)) - 1
					if j >= n {
						return
					}
					l, err := c.TryAcquire(ctx, fmt.Sprintf("lease-%05d", j), mongolock.Expire(expire))
					if err != nil {
						b.Error(err)
						return
					}
					leases[j] = l
				}
			}()
		}
		wg.Wait()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/lease")

		srv.ResetCommandCounts()
		const ticks = 2
		time.Sleep(ticks * expire / 3)
		b.ReportMetric(float64(srv.CommandCount("update")+srv.CommandCount("find"))/ticks, "roundtrips/tick")
		lost := 0
		for _, l := range leases {
			if l.Err() != nil {
				lost++
			}
		}
		b.ReportMetric(float64(lost), "lost")
		for _, l := range leases {
			_ = l.Release(ctx)
		}
	}
}

// BenchmarkThroughput runs 32 goroutines, each taking and releasing random
// keys out of 10,000 with TryAcquire + Release, against the same number of
// goroutines doing two raw findOneAndUpdate round trips on the same keys.
// ratio is the library's cycles per second divided by the raw driver's.
//
// Run: go test -run '^$' -bench Throughput -benchtime 10s .
func BenchmarkThroughput(b *testing.B) {
	const keys, workers = 10000, 32
	srv := mongolocktest.Start(b)
	c := newClient(b, srv)
	raw := srv.Client(b).Database(srv.Database()).Collection("raw",
		options.Collection().SetWriteConcern(writeconcern.Majority()))
	ctx := context.Background()
	// Both collections hold 10,000 documents, as a busy lock collection does.
	var docs []any
	for i := 0; i < keys; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("k%05d", i)}, {Key: "locked", Value: false}})
	}
	if _, err := raw.InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Collection().InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	run := func(d time.Duration, cycle func(key string, i int) error) float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(stop); i++ {
					if err := cycle(fmt.Sprintf("k%05d", rand.N(keys)), i); err != nil {
						continue // contended: another worker holds that key
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / d.Seconds()
	}
	lib := func(key string, _ int) error {
		l, err := c.TryAcquire(ctx, key, mongolock.Owner("bench"), mongolock.KeepAlive(false))
		if err != nil {
			return err
		}
		return l.Release(ctx)
	}
	floor := func(key string, i int) error {
		return floorCycleKey(ctx, raw, key, i)
	}
	d := time.Duration(b.N) * time.Second / 10
	if d < time.Second {
		d = time.Second
	}
	b.ResetTimer()
	libRate := run(d, lib)
	rawRate := run(d, floor)
	b.StopTimer()
	b.ReportMetric(libRate, "lib-cycles/s")
	b.ReportMetric(rawRate, "raw-cycles/s")
	b.ReportMetric(libRate/rawRate, "ratio")
}
