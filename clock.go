package mongolock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxDrift bounds how fast the local monotonic clock may drift from the
// server's clock (200 ppm, several times what ordinary quartz oscillators
// show). The error bound of an estimate grows by this much per second of age.
const maxDrift = 200e-6

// serverTime is an estimate of the database server's clock, taken at the
// local instant local (a reading that carries the monotonic clock).
type serverTime struct {
	at    time.Time     // estimated server time
	err   time.Duration // |true server time - at| <= err
	local time.Time     // local reading the estimate belongs to
}

// earliest is the earliest the server's clock can read at the local instant.
func (t serverTime) earliest() time.Time { return t.at.Add(-t.err) }

// serverClock estimates the database server's clock from the localTime that
// hello returns. A sample brackets hello between two local readings: the
// server read its clock somewhere in between, so the estimate at the
// midpoint is wrong by at most half the round trip plus half the reported
// clock's resolution (localTime has milliseconds). Between samples the
// estimate advances with the local monotonic clock, its error bound growing
// by maxDrift. Wall-clock readings are never compared with server times, so a
// wrong local wall clock changes nothing.
type serverClock struct {
	hello   func(ctx context.Context) (time.Time, error) // runs hello, returns localTime
	now     func() time.Time
	refresh time.Duration
	maxErr  time.Duration

	mu         sync.Mutex
	best       clockSample
	has        bool
	lastSample time.Time // local reading of the last sampling attempt
	refreshing bool
}

type clockSample struct {
	local  time.Time     // local midpoint of the round trip (monotonic)
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

// Now returns the current server-time estimate, sampling the server first
// if there is no sample yet or the last one is older than the refresh
// interval.
func (c *serverClock) Now(ctx context.Context) (serverTime, error) {
	c.mu.Lock()
	if !c.has {
		// No estimate yet: sample under the lock so concurrent callers wait
		// for the first estimate rather than all sampling at once.
		defer c.mu.Unlock()
		if err := c.sampleLocked(ctx, initialSamples); err != nil {
			return serverTime{}, err
		}
		return c.checked(c.best.at(c.now()))
	}
	stale := c.now().Sub(c.lastSample) >= c.refresh && !c.refreshing
	if stale {
		c.refreshing = true
	}
	c.mu.Unlock()

	if stale {
		s, err := c.sample(ctx, 1)
		c.mu.Lock()
		c.refreshing = false
		c.lastSample = c.now()
		if err == nil {
			c.keepBetter(s)
		}
		c.mu.Unlock()
		// A failed refresh is not fatal: the old sample, aged, still bounds
		// the error, and the operation will fail on its own if the server
		// is unreachable.
	}
	c.mu.Lock()
	est := c.best.at(c.now())
	c.mu.Unlock()
	return c.checked(est)
}

func (c *serverClock) checked(t serverTime) (serverTime, error) {
	if t.err > c.maxErr {
		return t, fmt.Errorf("mongolock: server clock error bound %v exceeds the maximum %v (round trips to the server are too slow to judge expiry)", t.err.Round(time.Microsecond), c.maxErr)
	}
	return t, nil
}

func (c *serverClock) sampleLocked(ctx context.Context, n int) error {
	s, err := c.sample(ctx, n)
	c.lastSample = c.now()
	if err != nil {
		return err
	}
	c.keepBetter(s)
	return nil
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
