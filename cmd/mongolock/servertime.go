package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// clockSample is one hello exchange: the server's localTime bracketed by
// two local clock readings.
type clockSample struct {
	hello  bson.Raw      // the whole reply
	server time.Time     // hello's localTime (millisecond resolution)
	local  time.Time     // local midpoint of the exchange
	rtt    time.Duration // round trip
}

// offset is how far the server's clock is ahead of the local one.
func (s clockSample) offset() time.Duration { return s.server.Sub(s.local) }

// uncertainty bounds the error of offset: half the round trip plus half
// the millisecond resolution of localTime.
func (s clockSample) uncertainty() time.Duration { return s.rtt/2 + time.Millisecond/2 }

// serverNow estimates the server's clock now.
func (s clockSample) serverNow() time.Time { return time.Now().Add(s.offset()) }

// sampleClock sends hello n times and returns the sample with the shortest
// round trip, the most precise one.
func sampleClock(ctx context.Context, mc *mongo.Client, n int) (clockSample, error) {
	var best clockSample
	for i := 0; i < n; i++ {
		t0 := time.Now()
		raw, err := mc.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
		t1 := time.Now()
		if err != nil {
			return clockSample{}, fmt.Errorf("hello: %w", err)
		}
		lt, ok := raw.Lookup("localTime").DateTimeOK()
		if !ok {
			return clockSample{}, errors.New("hello: the reply has no localTime")
		}
		s := clockSample{
			hello:  raw,
			server: time.UnixMilli(lt).Add(time.Millisecond / 2), // localTime is truncated to the millisecond
			local:  t0.Add(t1.Sub(t0) / 2),
			rtt:    t1.Sub(t0),
		}
		if i == 0 || s.rtt < best.rtt {
			best = s
		}
	}
	return best, nil
}
