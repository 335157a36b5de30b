package main

import (
	"context"
	"fmt"
	"regexp"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock"
)

// retiredSuffix ends the token of a lock whose holder released it before
// its minimum hold time (MinHold, --min-hold) ended: the library keeps it
// locked until then under that retired token, which no acquisition's
// matches, so nobody can renew it (store.go, heldSuffix). LockInfo does
// not say so; until it does, the command asks the documents, without
// fetching any token.
const retiredSuffix = ":held"

// minHeld returns which of keys are held only for the rest of their
// minimum hold time.
func minHeld(ctx context.Context, c *mongolock.Client, keys []string) (map[string]bool, error) {
	held := map[string]bool{}
	if len(keys) == 0 {
		return held, nil
	}
	cur, err := c.Collection().Find(ctx, bson.D{
		{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}},
		{Key: "token", Value: bson.D{{Key: "$regex", Value: regexp.QuoteMeta(retiredSuffix) + "$"}}},
	}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading which locks are in their minimum hold: %w", err)
	}
	var docs []struct {
		Key string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("reading which locks are in their minimum hold: %w", err)
	}
	for _, d := range docs {
		held[d.Key] = true
	}
	return held, nil
}

// isMinHeld reports whether key is held only for the rest of its minimum
// hold time; false if that cannot be read.
func isMinHeld(ctx context.Context, c *mongolock.Client, key string) bool {
	held, err := minHeld(ctx, c, []string{key})
	return err == nil && held[key]
}
