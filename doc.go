// Package mongolock provides distributed locks for Go programs that
// coordinate through MongoDB.
//
// It is the Go successor of the Python package mongolock and keeps its
// owner-named API (Client.Lock, Client.Release, Client.Touch, Client.Info,
// Client.IsLocked, Client.Do) and its document shape, so Python and Go
// workers sharing one collection exclude each other. It fixes the two
// hazards that package warns about:
//
//   - Same-name workers cannot release each other's locks: every acquisition
//     gets a random 128-bit token, and release and renewal match it. The
//     owner-named Release and Touch use the token of the acquisition made
//     through the same Client.
//   - Clock drift between machines does not break expiry: expiry is judged on
//     the database server's clock, estimated from hello's localTime and the
//     local monotonic clock, never on the local wall clock.
//
// Beyond the seed API, Client.Acquire and Client.TryAcquire return a Lease
// with a fencing token (Lease.Fence) that increases with every acquisition
// of a key.
//
// A minimal use:
//
//	c, err := mongolock.Connect(ctx, "mongodb://localhost:27017")
//	if err != nil { ... }
//	defer c.Close(ctx)
//	err = c.Do(ctx, "nightly-report", "worker-1", func(ctx context.Context) error {
//		return runReport(ctx)
//	}, mongolock.Expire(time.Minute))
//	if errors.Is(err, mongolock.ErrLocked) { ... someone else is running it ... }
//
// Every operation is one round trip in the common case: an uncontended
// acquisition is a single findAndModify, a release or renewal a single
// conditional update. Operations whose reply is lost are retried with the
// same token and are idempotent. See docs/DESIGN.md for the document schema,
// the queries, the clock model and the fencing argument.
package mongolock
