package main

import (
	"context"

	"github.com/mongolock/mongolock"
)

// minHeld returns which of locks are held only for the rest of their
// minimum hold time (MinHold, --min-hold): released by their holder early,
// kept locked until then, and renewable by nobody.
func minHeld(locks []mongolock.LockInfo) map[string]bool {
	held := map[string]bool{}
	for _, l := range locks {
		if l.InMinHold {
			held[l.Key] = true
		}
	}
	return held
}

// isMinHeld reports whether key is held only for the rest of its minimum
// hold time; false if that cannot be read.
func isMinHeld(ctx context.Context, c *mongolock.Client, key string) bool {
	info, err := c.Info(ctx, key)
	return err == nil && info.InMinHold
}
