// Package atomicity probes whether a MongoDB-compatible server executes a
// conditional findAndModify atomically: goroutines race to take a lease on
// one document with a conditional upsert (the probe described in
// TEST-SERVER.md), and the probe counts how many believed they held it at
// once. MongoDB never lets two in; FerretDB 1.x alone does. The command's
// doctor and the test server's tests both use it.
package atomicity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Config says how hard one Round races.
type Config struct {
	Goroutines    int           // racing goroutines (16 in TEST-SERVER.md)
	Attempts      int           // attempts per goroutine (40)
	Hold          time.Duration // how long a holder keeps the lease (1ms)
	StopOnOverlap bool          // stop at the first overlap
	Deadline      time.Time     // stop starting attempts after it (zero: none)
}

// Result is the outcome of one Round.
type Result struct {
	Acquisitions int64 // successful acquisitions the goroutines saw
	Fence        int64 // the document's $inc counter afterwards
	MaxHolders   int32 // most goroutines that held the lease at once
}

// Atomic reports whether the round saw what an atomic server gives: never
// two holders, and one counter increment per acquisition.
func (r Result) Atomic() bool { return r.MaxHolders <= 1 && r.Acquisitions == r.Fence }

// Round runs the probe once on the document key of coll.
func Round(ctx context.Context, coll *mongo.Collection, key string, cfg Config) (Result, error) {
	// Halting closes stop rather than cancelling ctx, so operations already
	// sent finish: a cancelled upsert could still be applied after the
	// caller dropped the scratch collection, and create it again.
	var (
		holders, maxHolders atomic.Int32
		acquisitions        atomic.Int64
		wg                  sync.WaitGroup
		errOnce             sync.Once
		firstErr            error
		stop                = make(chan struct{})
		stopOnce            sync.Once
	)
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	fail := func(err error) {
		if ctx.Err() == nil {
			errOnce.Do(func() { firstErr = err })
		}
		halt()
	}
	for g := 0; g < cfg.Goroutines; g++ {
		me := fmt.Sprintf("probe-%d", g)
		wg.Go(func() {
			for i := 0; i < cfg.Attempts && !stopped(); i++ {
				if i > 0 && !cfg.Deadline.IsZero() && time.Now().After(cfg.Deadline) {
					return
				}
				now := time.Now()
				filter := bson.D{
					{Key: "_id", Value: key},
					{Key: "$or", Value: bson.A{
						bson.D{{Key: "expire", Value: bson.D{{Key: "$lt", Value: now}}}},
						bson.D{{Key: "owner", Value: me}},
					}},
				}
				update := bson.D{
					{Key: "$set", Value: bson.D{{Key: "owner", Value: me}, {Key: "expire", Value: now.Add(time.Hour)}}},
					{Key: "$inc", Value: bson.D{{Key: "fence", Value: 1}}},
				}
				err := coll.FindOneAndUpdate(ctx, filter, update,
					options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Err()
				switch {
				case mongo.IsDuplicateKeyError(err):
					continue // held by another: the upsert collided with it
				case err != nil:
					fail(fmt.Errorf("findOneAndUpdate: %w", err))
					return
				}
				acquisitions.Add(1)
				n := holders.Add(1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				if n > 1 && cfg.StopOnOverlap {
					halt()
				}
				time.Sleep(cfg.Hold)
				holders.Add(-1)
				_, err = coll.UpdateOne(ctx,
					bson.D{{Key: "_id", Value: key}, {Key: "owner", Value: me}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}, {Key: "expire", Value: time.Unix(0, 0)}}}})
				if err != nil {
					fail(fmt.Errorf("release: %w", err))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return Result{}, firstErr
	}
	res := Result{Acquisitions: acquisitions.Load(), MaxHolders: maxHolders.Load()}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	var doc struct{ Fence int64 }
	err := coll.FindOne(rctx, bson.D{{Key: "_id", Value: key}}).Decode(&doc)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments) && res.Acquisitions == 0:
	case err != nil:
		return res, fmt.Errorf("reading the counter: %w", err)
	}
	res.Fence = doc.Fence
	return res, nil
}
