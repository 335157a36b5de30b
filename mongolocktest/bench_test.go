package mongolocktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// BenchmarkLockRelease measures what a user's test pays for a lock on the
// test server: a Client.Lock then a Client.Release (one client, one key,
// sequential), against the floor of the same server, a ping, measured in
// the same run. Each iteration runs one cycle and one ping, alternating
// which goes first. It reports, for the default server (in memory) and for
// one that keeps its data in files (WithDataDir, as `mongolock devserver
// --data` does):
//
//	cycles/s     Lock+Release cycles per second
//	cycle-ns     one cycle
//	ping-ns      one ping (client.Ping)
//	pings/cycle  cycle-ns divided by ping-ns
//
// Speed is reported as that ratio, never asserted: absolute times depend on
// the machine.
//
// Run: go test -run '^$' -bench LockRelease -benchtime 5000x ./mongolocktest/
func BenchmarkLockRelease(b *testing.B) {
	modes := []struct {
		name string
		opts func(b *testing.B) []mongolocktest.Option
	}{
		{"memory", func(*testing.B) []mongolocktest.Option { return nil }},
		{"files", func(b *testing.B) []mongolocktest.Option {
			return []mongolocktest.Option{mongolocktest.WithDataDir(b.TempDir())}
		}},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			srv := mongolocktest.Start(b, m.opts(b)...)
			client := srv.Client(b)
			c, err := mongolock.New(client, mongolock.WithDatabase(srv.Database()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close(context.Background()) })

			ctx := context.Background()
			cycle := func() {
				ok, err := c.Lock(ctx, "bench", "owner", mongolock.Expire(time.Minute))
				if err != nil || !ok {
					b.Fatalf("Lock = %v, %v", ok, err)
				}
				if err := c.Release(ctx, "bench", "owner"); err != nil {
					b.Fatalf("Release: %v", err)
				}
			}
			ping := func() {
				if err := client.Ping(ctx, nil); err != nil {
					b.Fatalf("Ping: %v", err)
				}
			}

			// Warm up: connections, the server clock's samples, the document.
			for range 50 {
				cycle()
				ping()
			}

			var cycles, pings time.Duration
			timed := func(f func(), d *time.Duration) {
				start := time.Now()
				f()
				*d += time.Since(start)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					timed(cycle, &cycles)
					timed(ping, &pings)
				} else {
					timed(ping, &pings)
					timed(cycle, &cycles)
				}
			}
			b.StopTimer()

			b.ReportMetric(float64(b.N)/cycles.Seconds(), "cycles/s")
			b.ReportMetric(float64(cycles.Nanoseconds())/float64(b.N), "cycle-ns")
			b.ReportMetric(float64(pings.Nanoseconds())/float64(b.N), "ping-ns")
			b.ReportMetric(float64(cycles)/float64(pings), "pings/cycle")
		})
	}
}
