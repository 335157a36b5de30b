package mongolock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxDrift bounds how fast the local clock may drift from the server's
// clock (200 ppm, several times what ordinary quartz oscillators show). The
// error bound of an estimate grows by this much per second of age.
const maxDrift = 200e-6

// serverTime is an estimate of the database server's clock, taken at the
// local instant local (a reading of the Client's local clock).
type serverTime struct {
	at    time.Time     // estimated server time
	err   time.Duration // |true server time - at| <= err
	local time.Time     // local reading the estimate belongs to
}

// earliest is the earliest the server's clock can read at the local instant.
func (t serverTime) earliest() time.Time { return t.at.Add(-t.err) }

// latest is the latest the server's clock can read at the local instant.
func (t serverTime) latest() time.Time { return t.at.Add(t.err) }

// serverClock estimates the database server's clock from the localTime that
// hello returns. A sample brackets hello between two local readings: the
// server read its clock somewhere in between, so the estimate at the
// midpoint is wrong by at most half the round trip plus half the reported
// clock's resolution (localTime has milliseconds). Between samples the
// estimate advances with the local clock, its error bound growing by
// maxDrift. Wall-clock readings are never compared with server times, so a
// wrong local wall clock changes nothing.
//
// Every caller's wait is bounded by its own context: while one caller takes
// a sample, others wait for it only as long as their contexts allow, and a
// caller whose context ended does not hold anyone else up.
type serverClock struct {
	hello   func(ctx context.Context) (time.Time, error) // runs hello, returns localTime
	now     func() time.Time                             // the local clock
	refresh time.Duration
	maxErr  time.Duration

	mu         sync.Mutex
	best       clockSample
	has        bool
	lastSample time.Time     // local reading when the last sample ended
	sampling   chan struct{} // non-nil while a sample is being taken; closed when it ends
}

type clockSample struct {
	local  time.Time     // local midpoint of the round trip
	server time.Time     // server time estimated at local
	err    time.Duration // error bound at local
}

// at projects the sample to the local instant x.
func (s clockSample) at(x time.Time) serverTime {
	age := x.Sub(s.local)
	if age < 0 {
		age = 0
	}
	return serverTime{
		at:    s.server.Add(x.Sub(s.local)),
		err:   s.err + time.Duration(float64(age)*maxDrift),
		local: x,
	}
}

const (
	localTimeResolution = time.Millisecond
	initialSamples      = 3
)

// Now returns the current server-time estimate. It samples the server first
// when there is no estimate yet, when the last sample is older than the
// refresh interval, or when the estimate's error bound is too large to use
// (say, the first samples were taken while round trips were slow): one
// caller samples, the others use a usable estimate meanwhile or wait for
// the sample within their own contexts.
func (c *serverClock) Now(ctx context.Context) (serverTime, error) {
	for {
		c.mu.Lock()
		x := c.now()
		var est serverTime
		usable := false
		if c.has {
			est = c.best.at(x)
			usable = est.err <= c.maxErr
			if usable && (c.sampling != nil || x.Sub(c.lastSample) < c.refresh) {
				c.mu.Unlock()
				return c.checked(est)
			}
		}
		if wait := c.sampling; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue // look again: the sample may have succeeded
			case <-ctx.Done():
				return serverTime{}, fmt.Errorf("mongolock: waiting for the server clock: %w", ctx.Err())
			}
		}
		done := make(chan struct{})
		c.sampling = done
		n := 1
		if !c.has {
			n = initialSamples
		}
		c.mu.Unlock()

		s, err := c.sample(ctx, n)

		c.mu.Lock()
		c.sampling = nil
		close(done)
		c.lastSample = c.now()
		if err == nil {
			c.keepBetter(s)
		}
		has := c.has
		if has {
			est = c.best.at(c.now())
		}
		c.mu.Unlock()
		if err != nil && !(has && est.err <= c.maxErr) {
			// A failed refresh is not fatal while the old sample, aged,
			// still bounds the error well enough; otherwise it is.
			return serverTime{}, err
		}
		return c.checked(est)
	}
}

func (c *serverClock) checked(t serverTime) (serverTime, error) {
	if t.err > c.maxErr {
		return t, fmt.Errorf("mongolock: server clock error bound %v exceeds the maximum %v (round trips to the server are too slow to judge expiry)", t.err.Round(time.Microsecond), c.maxErr)
	}
	return t, nil
}

// keepBetter keeps whichever of the current and the new sample has the
// smaller error bound now. Called with mu held.
func (c *serverClock) keepBetter(s clockSample) {
	if !c.has || s.err <= c.best.at(s.local).err {
		c.best, c.has = s, true
	}
}

// sample takes n hello samples and returns the one with the smallest
// error. hello only reads, so a sample lost to a network error is simply
// taken again (up to maxAttempts failures).
func (c *serverClock) sample(ctx context.Context, n int) (clockSample, error) {
	var (
		best     clockSample
		got      int
		failures int
	)
	for got < n {
		t0 := c.now()
		lt, err := c.hello(ctx)
		t1 := c.now()
		if err != nil {
			failures++
			if outcomeUnknown(err) && failures < maxAttempts && ctx.Err() == nil {
				continue
			}
			if got > 0 {
				break
			}
			return clockSample{}, fmt.Errorf("mongolock: reading the server clock (hello): %w", err)
		}
		rtt := t1.Sub(t0)
		s := clockSample{
			local:  t0.Add(rtt / 2),
			server: lt.Add(localTimeResolution / 2),
			err:    rtt/2 + localTimeResolution/2,
		}
		if got == 0 || s.err < best.err {
			best = s
		}
		got++
	}
	return best, nil
}
