package mongolock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// store builds and runs every query this package sends. Each method is one
// round trip; the lock state machine (acquire.go, seed.go, lease.go) decides
// what to send and what the answer means.
type store struct {
	coll *mongo.Collection
}

// shapeGuard matches only documents whose fields have the types this
// package writes and decodeLock accepts (locked a boolean; owner and token
// strings or null; created and expire dates or null; fence a 32- or 64-bit
// integer below maxFence, or none), so a write never changes (or is misled
// by) a document of the wrong shape. Missing and null are alike.
var shapeGuard = bson.A{
	bson.D{{Key: fieldLocked, Value: bson.D{{Key: "$type", Value: "bool"}}}},
	nullOr(fieldOwner, bson.D{{Key: "$type", Value: "string"}}),
	nullOr(fieldToken, bson.D{{Key: "$type", Value: "string"}}),
	nullOr(fieldCreated, bson.D{{Key: "$type", Value: "date"}}),
	nullOr(fieldExpire, bson.D{{Key: "$type", Value: "date"}}),
	bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldFence, Value: nil}},
		bson.D{{Key: fieldFence, Value: bson.D{{Key: "$type", Value: "int"}}}},
		bson.D{{Key: fieldFence, Value: bson.D{{Key: "$type", Value: "long"}, {Key: "$lt", Value: maxFence}}}},
	}}},
}

// nullOr matches documents whose field is null, missing or matches cond.
func nullOr(field string, cond bson.D) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: field, Value: nil}},
		bson.D{{Key: field, Value: cond}},
	}}}
}

// shapeGuardRaw is shapeGuard with each clause encoded once: the driver
// appends a RawValue's bytes as they are (the bytes it would encode from the
// clause), instead of encoding the guard's twelve small documents, with a
// codec lookup for every value, for every write.
var shapeGuardRaw = rawClauses(shapeGuard)

// rawClauses returns clauses, documents, encoded once each.
func rawClauses(clauses bson.A) bson.A {
	raw := make(bson.A, len(clauses))
	for i, c := range clauses {
		b, err := bson.Marshal(c)
		if err != nil {
			panic(fmt.Sprintf("mongolock: encoding the shape guard: %v", err))
		}
		raw[i] = bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: b}
	}
	return raw
}

func guarded(key string, conds ...bson.D) bson.D {
	and := make(bson.A, 0, len(shapeGuardRaw)+len(conds))
	and = append(and, shapeGuardRaw...)
	for _, c := range conds {
		and = append(and, c)
	}
	return bson.D{{Key: fieldKey, Value: key}, {Key: "$and", Value: and}}
}

// storedTime is t as a stored date will hold it, rounded up to BSON's
// millisecond. Expiries are rounded up, never truncated, so that a lease's
// local deadline (computed from the exact value) never falls after the
// instant the server considers the lock expired.
func storedTime(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}

// expireValue is the expiry written for a lock taken at now for d: null
// (never) for 0, else now+d rounded up to the millisecond (storedTime).
func expireValue(now time.Time, d time.Duration) any {
	if d == 0 {
		return nil
	}
	return storedTime(now.Add(d))
}

// stampAcquired records, in the server's own clock, when a fence was last
// written: Purge reads it to prove how long a document has been idle.
var stampAcquired = bson.E{Key: "$currentDate", Value: bson.D{{Key: fieldAcquired, Value: true}}}

// releasedShape is the Python package's released shape, plus the server
// time of the release (for Purge).
func releasedShape(extra ...bson.E) bson.D {
	set := bson.D{
		{Key: fieldLocked, Value: false},
		{Key: fieldOwner, Value: nil},
		{Key: fieldCreated, Value: nil},
		{Key: fieldExpire, Value: nil},
	}
	return bson.D{
		{Key: "$set", Value: append(set, extra...)},
		{Key: "$currentDate", Value: bson.D{{Key: fieldReleased, Value: true}}},
	}
}

// acquire takes the lock for token if it is free: released, expired before
// the earliest the server clock can now read, or already taken with this
// same token (a retry whose first reply was lost). It upserts, so a key that
// has no document is taken in the same round trip; when the document exists
// and is held, the upsert's insert fails with a duplicate-key error, which
// acquire reports as errHeld. The fence is raised to at least fence.
//
// It returns the document as it was before (nil when it was inserted).
func (s *store) acquire(ctx context.Context, key, owner, token string, now serverTime, expire time.Duration, fence int64) (*lockDoc, error) {
	filter := guarded(key, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldLocked, Value: false}},
		bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$lt", Value: now.earliest()}}}},
		bson.D{{Key: fieldToken, Value: token}},
	}}})
	update := bson.D{
		takeSet(owner, token, now, expire),
		{Key: "$max", Value: bson.D{{Key: fieldFence, Value: fence}}},
		stampAcquired,
	}
	return s.upsert(ctx, key, filter, update)
}

// raiseFence sets the fence of a lock held with token to at least fence
// (and, unless renew is zero, its expiry to at least renew) and returns the
// fence stored afterwards. It is idempotent, so a retry after a lost reply
// is harmless.
func (s *store) raiseFence(ctx context.Context, key, token string, fence int64, renew time.Time) (stored int64, ok bool, err error) {
	raise := bson.D{{Key: fieldFence, Value: fence}}
	if !renew.IsZero() {
		raise = append(raise, bson.E{Key: fieldExpire, Value: renew})
	}
	return s.raise(ctx, key,
		guarded(key, bson.D{{Key: fieldToken, Value: token}}, bson.D{{Key: fieldLocked, Value: true}}),
		raise, options.After)
}

// raise applies {$max: raise} (and the acquired stamp) to key's document
// if it matches filter, and returns its fence before or after (when).
// ok is false when nothing matched.
func (s *store) raise(ctx context.Context, key string, filter, raise bson.D, when options.ReturnDocument) (fence int64, ok bool, err error) {
	raw, err := s.coll.FindOneAndUpdate(ctx, filter,
		bson.D{{Key: "$max", Value: raise}, stampAcquired},
		options.FindOneAndUpdate().SetReturnDocument(when)).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return 0, false, nil
	case err != nil:
		return 0, false, ctxFail(ctx, err)
	}
	d, err := decodeLock(key, raw)
	if err != nil {
		return 0, false, err
	}
	return d.Fence, true, nil
}

// holder selects the acquisition a release or renewal applies to: by token,
// or, for the owner-named calls of a Client that never acquired the key, by
// owner name (the Python package's rule).
type holder struct {
	token string
	owner string
}

func (h holder) cond() bson.D {
	if h.token != "" {
		return bson.D{{Key: fieldToken, Value: h.token}}
	}
	return bson.D{{Key: fieldOwner, Value: h.owner}, {Key: fieldLocked, Value: true}}
}

// release frees the lock, writing the Python package's released shape and
// keeping the token and fence, so that a retried release still matches and
// the fence keeps rising; released records the server's time of it (for
// Purge). It reports whether a document matched.
func (s *store) release(ctx context.Context, key string, h holder) (bool, error) {
	res, err := s.coll.UpdateOne(ctx, guarded(key, h.cond()), releasedShape())
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// heldSuffix marks the token of a lock released under MinHold: it stays
// locked until its expiry, but no acquisition's token matches it any more.
const heldSuffix = ":held"

// releaseHeld releases the lock held with token but keeps it locked until
// until (MinHold): the expiry becomes until (rounded up to the millisecond)
// and the token is retired, so nobody can renew it. A resend after a lost
// reply matches the retired token and writes the same, so it is
// idempotent. It reports whether a document matched.
func (s *store) releaseHeld(ctx context.Context, key, token string, until time.Time) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		guarded(key, bson.D{{Key: fieldToken, Value: bson.D{{Key: "$in", Value: bson.A{token, token + heldSuffix}}}}}),
		bson.D{{Key: "$set", Value: bson.D{
			{Key: fieldExpire, Value: storedTime(until)},
			{Key: fieldToken, Value: token + heldSuffix},
		}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// renewMany renews, in one round trip (an unordered bulk write of one
// update per lease, each by _id so that it uses the _id index), the locks
// held with tokens[i] on keys[i] that surely have not expired at now, to
// expire at least d after now: $max, so that a renewal the server applies
// after a later one never moves the expiry back (see renewLease). It
// returns the expiry it wrote and how many documents matched.
//
// A lease that is an entry of holders (multi[i]) is renewed by its entry
// (renewEntryModel) in the same bulk write.
func (s *store) renewMany(ctx context.Context, keys, tokens []string, multi []bool, now serverTime, d time.Duration) (time.Time, int64, error) {
	expire := storedTime(now.at.Add(d))
	update := bson.D{{Key: "$max", Value: bson.D{{Key: fieldExpire, Value: expire}}}}
	models := make([]mongo.WriteModel, len(keys))
	for i := range keys {
		if multi[i] {
			models[i] = renewEntryModel(keys[i], tokens[i], now, expire)
			continue
		}
		models[i] = mongo.NewUpdateOneModel().SetFilter(guarded(keys[i],
			bson.D{{Key: fieldToken, Value: tokens[i]}},
			bson.D{{Key: fieldLocked, Value: true}},
			bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$gt", Value: now.latest()}}}},
		)).SetUpdate(update)
	}
	res, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if res == nil {
		return expire, 0, ctxFail(ctx, err)
	}
	return expire, res.MatchedCount, ctxFail(ctx, err)
}

// releaseMany releases, in one round trip, the locks held with tokens.
func (s *store) releaseMany(ctx context.Context, keys, tokens []string) error {
	filter := append(guarded("", bson.D{{Key: fieldToken, Value: bson.D{{Key: "$in", Value: tokens}}}}),
		bson.E{})
	filter[0] = bson.E{Key: fieldKey, Value: bson.D{{Key: "$in", Value: keys}}}
	filter = filter[:len(filter)-1]
	_, err := s.coll.UpdateMany(ctx, filter, releasedShape())
	return ctxFail(ctx, err)
}

// findMany reads the lock documents of keys; documents of the wrong shape
// are left out.
func (s *store) findMany(ctx context.Context, keys []string) (map[string]*lockDoc, error) {
	cur, err := s.coll.Find(ctx, bson.D{{Key: fieldKey, Value: bson.D{{Key: "$in", Value: keys}}}})
	if err != nil {
		return nil, ctxFail(ctx, err)
	}
	defer cur.Close(ctx)
	out := make(map[string]*lockDoc, len(keys))
	for cur.Next(ctx) {
		key, _ := cur.Current.Lookup(fieldKey).StringValueOK()
		if d, err := decodeDoc(key, cur.Current); err == nil {
			out[key] = d
		}
	}
	return out, ctxFail(ctx, cur.Err())
}

// markSeen stamps, with the server's time, the documents that carry none of
// this package's time stamps (written by the Python package, or by an
// earlier version of this package), so that a later purge can tell how long
// they have been idle since.
func (s *store) markSeen(ctx context.Context) error {
	_, err := s.coll.UpdateMany(ctx, bson.D{{Key: "$and", Value: append(bson.A{
		bson.D{{Key: fieldAcquired, Value: nil}},
		bson.D{{Key: fieldReleased, Value: nil}},
		bson.D{{Key: fieldSeen, Value: nil}},
	}, shapeGuard...)}}, bson.D{{Key: "$currentDate", Value: bson.D{{Key: fieldSeen, Value: true}}}})
	return ctxFail(ctx, err)
}

// purge deletes the lock documents of the right shape that are idle since
// before cutoff and whose every time stamp (acquired, released, seen: all
// server times) is before stampCutoff, and that have at least one. Idle:
// released, or held with an expiry before cutoff. It returns how many it
// deleted.
func (s *store) purge(ctx context.Context, cutoff, stampCutoff time.Time) (int64, error) {
	before := func(field string) bson.D {
		return nullOr(field, bson.D{{Key: "$lt", Value: stampCutoff}})
	}
	conds := append(bson.A{
		// Recipes' documents too: their expiry is at least every holder's.
		bson.D{{Key: "$and", Value: recipeGuard}},
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldLocked, Value: false}},
			bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$lt", Value: cutoff}}}},
		}}},
		before(fieldAcquired), before(fieldReleased), before(fieldSeen),
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldAcquired, Value: bson.D{{Key: "$type", Value: "date"}}}},
			bson.D{{Key: fieldReleased, Value: bson.D{{Key: "$type", Value: "date"}}}},
			bson.D{{Key: fieldSeen, Value: bson.D{{Key: "$type", Value: "date"}}}},
		}}},
	}, shapeGuard...)
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "$and", Value: conds}})
	if err != nil {
		return 0, ctxFail(ctx, err)
	}
	return res.DeletedCount, nil
}

// renewLease extends a lease's lock, held with token and surely not
// expired at now, to expire at least d after now, and returns the expiry
// it wrote. The expiry only ever grows ($max): renewals can be applied by
// the server in another order than their replies arrive (a slow one, or
// one resent after a lost reply, lands after a later one), and the lease
// trusts every renewal it hears of, so none may shorten what another
// wrote. A lock that never expired gets an expiry (null sorts below
// dates). It reports whether a document matched.
func (s *store) renewLease(ctx context.Context, key, token string, now serverTime, d time.Duration) (time.Time, bool, error) {
	expire := storedTime(now.at.Add(d))
	res, err := s.coll.UpdateOne(ctx,
		guarded(key, bson.D{{Key: fieldToken, Value: token}}, bson.D{{Key: fieldLocked, Value: true}}, liveAt(now)),
		bson.D{{Key: "$max", Value: bson.D{{Key: fieldExpire, Value: expire}}}})
	if err != nil {
		return expire, false, ctxFail(ctx, err)
	}
	return expire, res.MatchedCount == 1, nil
}

// touch sets the expiry of the lock matched by h, held and surely not
// expired at now, to now+d (the Python package's touch: it may shorten
// it). It reports whether a document matched.
func (s *store) touch(ctx context.Context, key string, h holder, now serverTime, d time.Duration) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		guarded(key, h.cond(), bson.D{{Key: fieldLocked, Value: true}}, liveAt(now)),
		bson.D{{Key: "$set", Value: bson.D{{Key: fieldExpire, Value: storedTime(now.at.Add(d))}}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// liveAt matches a lock that never expires or surely has not expired at
// now: its expiry is after the latest the server's clock can read.
func liveAt(now serverTime) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldExpire, Value: nil}},
		bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$gt", Value: now.latest()}}}},
	}}}
}

// find reads the lock document for key; ErrNotFound if there is none.
func (s *store) find(ctx context.Context, key string) (*lockDoc, error) {
	raw, err := s.coll.FindOne(ctx, bson.D{{Key: fieldKey, Value: key}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return nil, ctxFail(ctx, err)
	}
	return decodeDoc(key, raw)
}

// serverLocalTime runs hello and returns the server's localTime.
func (s *store) serverLocalTime(ctx context.Context) (time.Time, error) {
	raw, err := s.coll.Database().RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil {
		return time.Time{}, ctxFail(ctx, err)
	}
	v, err := raw.LookupErr("localTime")
	if err != nil {
		return time.Time{}, errors.New("hello reply has no localTime")
	}
	ms, ok := v.DateTimeOK()
	if !ok {
		return time.Time{}, fmt.Errorf("hello reply's localTime is a %s, not a date", v.Type)
	}
	return time.UnixMilli(ms), nil
}

// errHeld is the store's answer when the lock is held by another
// acquisition; callers turn it into false or a *LockedError.
var errHeld = errors.New("held")

// unknownOutcomeCodes are the server error codes after which a write may or
// may not have been applied (or may yet be, or may be rolled back): the
// node stepped down, shut down or was interrupted, or the network failed
// between the nodes.
var unknownOutcomeCodes = []int{
	6,     // HostUnreachable
	7,     // HostNotFound
	50,    // MaxTimeMSExpired
	64,    // WriteConcernFailed
	89,    // NetworkTimeout
	91,    // ShutdownInProgress
	189,   // PrimarySteppedDown
	262,   // ExceededTimeLimit
	9001,  // SocketException
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11601, // Interrupted
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

// outcomeUnknown reports whether a failed operation may nevertheless have
// been applied by the server, so that the caller must resend it with the
// same token (and give the lock back if it cannot confirm it) rather than
// treat it as not done: a network error, a timeout or cancellation, a
// write concern error (the primary applied the write; it may not survive),
// an error labelled retryable, or one of unknownOutcomeCodes.
func outcomeUnknown(err error) bool {
	if err == nil {
		return false
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	if we := (mongo.WriteException{}); errors.As(err, &we) && we.WriteConcernError != nil {
		return true
	}
	if bwe := (mongo.BulkWriteException{}); errors.As(err, &bwe) && bwe.WriteConcernError != nil {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		if se.HasErrorLabel("RetryableWriteError") {
			return true
		}
		for _, code := range unknownOutcomeCodes {
			if se.HasErrorCode(code) {
				return true
			}
		}
	}
	return false
}

// list reads the lock documents whose _id matches the regular expression
// pattern, sorted by _id.
func (s *store) list(ctx context.Context, pattern string) ([]*lockDoc, error) {
	cur, err := s.coll.Find(ctx,
		bson.D{{Key: fieldKey, Value: bson.D{{Key: "$regex", Value: pattern}}}},
		options.Find().SetSort(bson.D{{Key: fieldKey, Value: 1}}))
	if err != nil {
		return nil, ctxFail(ctx, err)
	}
	defer cur.Close(ctx)
	var out []*lockDoc
	for cur.Next(ctx) {
		key, _ := cur.Current.Lookup(fieldKey).StringValueOK()
		d, err := decodeDoc(key, cur.Current)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, ctxFail(ctx, cur.Err())
}

// forceRelease writes the released shape whoever holds key (a document of
// the wrong shape excepted: it is left as it is and reported) and returns
// the document as it was before. The token is replaced, so the former
// holder can no longer renew or release.
func (s *store) forceRelease(ctx context.Context, key string) (*lockDoc, error) {
	update := append(releasedShape(bson.E{Key: fieldToken, Value: nil}),
		// A semaphore's or a shared lock's holders go with it, and a
		// waiting writer's intent; fair waiters stay queued.
		bson.E{Key: "$unset", Value: bson.D{{Key: fieldHolders, Value: ""}, {Key: fieldCount, Value: ""}, {Key: fieldWriter, Value: ""}}})
	raw, err := s.coll.FindOneAndUpdate(ctx, recipeGuarded(key), update,
		options.FindOneAndUpdate().SetReturnDocument(options.Before)).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		// Absent, or of the wrong shape: find tells which.
		d, ferr := s.find(ctx, key)
		if ferr != nil {
			return nil, ferr
		}
		return nil, &DocumentError{Key: key, Field: fieldExpire, Problem: fmt.Sprintf("does not match the expected shape (locked=%v)", d.Locked)}
	}
	if err != nil {
		return nil, ctxFail(ctx, err)
	}
	return decodeDoc(key, raw)
}

// ctxFail returns err, the driver's error for an operation run with ctx, in
// a form where a context error is matchable with errors.Is and ctx has
// ended by the time it is returned. The driver reports a timeout a little
// before ctx's deadline when it declines to send an operation (less than a
// round trip left) or its socket deadline fires first; that sliver (at
// most maxDeadlineWaitOut) is waited out, so that a caller who sees
// context.DeadlineExceeded also sees ctx.Err() say so. A timeout further
// from ctx's deadline came from elsewhere and is returned as it is, and so
// is any other error (a network error, say) while ctx has not ended.
func ctxFail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil {
		deadline, has := ctx.Deadline()
		timedOut := mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded)
		if !has || !timedOut || time.Until(deadline) > maxDeadlineWaitOut {
			return err
		}
		<-ctx.Done()
	}
	cerr := ctx.Err()
	if errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w: %w", cerr, err)
}

// maxDeadlineWaitOut bounds the wait in ctxFail.
const maxDeadlineWaitOut = time.Second

// The recipes' queries (docs/DESIGN.md, "Beyond the mutex"). Holders of a
// semaphore or a shared lock are entries of holders, keyed by token;
// count counts them. Every entry is added and removed together with count
// in one update, so count is always the number of entries, and a filter on
// count bounds them without reading them (FerretDB has no $expr).

// recipeGuard matches only documents whose recipe fields have the types
// decodeRecipe accepts (holders and queue documents or missing; count and
// limit integers or null; writer and value documents or null; order an
// array or missing), so a recipe's write never changes a document of the
// wrong shape. (holders and queue may not be null: $set of holders.<token>
// needs a document there, or nothing.)
var recipeGuard = bson.A{
	missingOr(fieldHolders, bson.D{{Key: "$type", Value: "object"}}),
	missingOr(fieldQueue, bson.D{{Key: "$type", Value: "object"}}),
	missingOr(fieldOrder, bson.D{{Key: "$type", Value: "array"}}),
	nullOr(fieldCount, bson.D{{Key: "$type", Value: bson.A{"int", "long"}}}),
	nullOr(fieldLimit, bson.D{{Key: "$type", Value: bson.A{"int", "long"}}}),
	nullOr(fieldWriter, bson.D{{Key: "$type", Value: "object"}}),
	nullOr(fieldValue, bson.D{{Key: "$type", Value: "object"}}),
}

// missingOr matches documents whose field is missing or matches cond.
func missingOr(field string, cond bson.D) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: field, Value: cond}},
	}}}
}

// recipeGuarded is guarded with recipeGuard as well.
func recipeGuarded(key string, conds ...bson.D) bson.D {
	all := make([]bson.D, 0, len(recipeGuard)+len(conds))
	for _, g := range recipeGuard {
		all = append(all, g.(bson.D))
	}
	return guarded(key, append(all, conds...)...)
}

// surelyExpired matches a date field before the earliest the server's
// clock can read at now (a missing or null field does not match).
func surelyExpired(field string, now serverTime) bson.D {
	return bson.D{{Key: field, Value: bson.D{{Key: "$lt", Value: now.earliest()}}}}
}

// ofRecipe matches a document that is a semaphore's or a shared lock's
// (its token is one of their marks). An operation on an entry requires it
// as well as the entry: an exclusive acquisition that took the document
// once every holder surely expired leaves their entries (and count) behind,
// and they must give their holders nothing — no fence raise, renewal or
// release in a lock that is now someone else's.
func ofRecipe() bson.D {
	return bson.D{{Key: fieldToken, Value: bson.D{{Key: "$in", Value: bson.A{markSemaphore, markShared}}}}}
}

func holderPath(token string) string     { return fieldHolders + "." + token }
func holderField(token, f string) string { return fieldHolders + "." + token + "." + f }
func queuePath(token string) string      { return fieldQueue + "." + token }
func exists(field string, yes bool) bson.D {
	return bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: yes}}}}
}

// noLiveWriter matches a document without a writer's intent that may still
// be alive: readers queue behind a waiting writer.
func noLiveWriter(now serverTime) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldWriter, Value: nil}},
		surelyExpired(fieldWriter+"."+entryExpire, now),
	}}}
}

// acquireEntry adds token's entry to holders if there is room: fewer than
// limit entries (a semaphore; maxEntries for readers) and the document is
// of the same kind (a semaphore of the same limit, or a shared lock that no
// writer is waiting for), or free (released, or expired before the
// earliest the server's clock can now read — the document's expiry is at
// least every holder's, so then every holder has surely expired). An entry
// of token already there (a resend whose first attempt was applied) is not
// added again: the filter fails. It upserts, so a key without a document is
// taken in one round trip, and a document that does not match makes the
// upsert fail with a duplicate key: errHeld. The document-level fence is
// raised to at least fence; the expiry to at least the entry's (far future
// if it never expires), so the Python package and the exclusive lock see
// the document held while any holder may be.
//
// It returns the document as it was before (nil when it was inserted).
func (s *store) acquireEntry(ctx context.Context, key, owner, token string, now serverTime, expire time.Duration, fence int64, mark string, limit int) (*lockDoc, error) {
	capacity, kind := maxEntries, bson.D{{Key: fieldToken, Value: mark}}
	if mark == markSemaphore {
		capacity = limit
		kind = append(kind, bson.E{Key: fieldLimit, Value: limit})
	}
	conds := []bson.D{
		exists(holderPath(token), false),
		nullOr(fieldCount, bson.D{{Key: "$lt", Value: capacity}}),
		{{Key: "$or", Value: bson.A{kind, bson.D{{Key: fieldLocked, Value: false}}, surelyExpired(fieldExpire, now)}}},
	}
	if mark == markShared {
		conds = append(conds, noLiveWriter(now))
	}
	entryExp := expireValue(now.at, expire)
	docExp := any(farFuture)
	if entryExp != nil {
		docExp = entryExp
	}
	set := bson.D{
		{Key: holderPath(token), Value: bson.D{
			{Key: entryOwner, Value: owner},
			{Key: entryCreated, Value: now.at},
			{Key: entryExpire, Value: entryExp},
			{Key: entryFence, Value: fence},
		}},
		{Key: fieldLocked, Value: true},
		{Key: fieldOwner, Value: mark},
		{Key: fieldCreated, Value: now.at},
		{Key: fieldToken, Value: mark},
	}
	if mark == markSemaphore {
		set = append(set, bson.E{Key: fieldLimit, Value: limit})
	}
	update := bson.D{
		{Key: "$set", Value: set},
		{Key: "$inc", Value: bson.D{{Key: fieldCount, Value: 1}}},
		{Key: "$max", Value: bson.D{{Key: fieldExpire, Value: docExp}, {Key: fieldFence, Value: fence}}},
		stampAcquired,
	}
	return s.upsert(ctx, key, recipeGuarded(key, conds...), update)
}

// removeEntries removes, in one round trip (an ordered bulk write of two
// updates per entry), the entries of tokens that match cond(token) in a
// semaphore's or shared lock's document (ofRecipe), each with count: the one that leaves holders empty also writes the released
// shape (as the exclusive lock's release), so that the Python package and
// the exclusive lock see the lock free at once. Exactly one of an entry's
// two updates can match. It returns how many entries it removed.
func (s *store) removeEntries(ctx context.Context, key string, tokens []string, cond func(token string) bson.D) (int64, error) {
	models := make([]mongo.WriteModel, 0, 2*len(tokens))
	for _, t := range tokens {
		last := releasedShape()
		last = append(last, bson.E{Key: "$unset", Value: bson.D{{Key: holderPath(t), Value: ""}}})
		last[0].Value = append(last[0].Value.(bson.D), bson.E{Key: fieldCount, Value: 0})
		models = append(models,
			mongo.NewUpdateOneModel().SetFilter(recipeGuarded(key, ofRecipe(), cond(t), bson.D{{Key: fieldCount, Value: 1}})).SetUpdate(last),
			mongo.NewUpdateOneModel().SetFilter(recipeGuarded(key, ofRecipe(), cond(t), bson.D{{Key: fieldCount, Value: bson.D{{Key: "$gt", Value: 1}}}})).SetUpdate(bson.D{
				{Key: "$unset", Value: bson.D{{Key: holderPath(t), Value: ""}}},
				{Key: "$inc", Value: bson.D{{Key: fieldCount, Value: -1}}},
				{Key: "$currentDate", Value: bson.D{{Key: fieldReleased, Value: true}}},
			}))
	}
	res, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(true))
	if err != nil {
		return 0, ctxFail(ctx, err)
	}
	return res.ModifiedCount, nil
}

// releaseEntry removes token's entry (a release). It reports whether it
// did; if not, the entry is gone (released already, removed as expired,
// force-released) — or, on MongoDB, another release changed count between
// the two updates: the caller reads the document to tell.
func (s *store) releaseEntry(ctx context.Context, key, token string) (bool, error) {
	n, err := s.removeEntries(ctx, key, []string{token}, func(t string) bson.D { return exists(holderPath(t), true) })
	return n == 1, err
}

// removeExpired removes the entries of tokens that have surely expired at
// now (and only those, however their holders renewed them meanwhile).
func (s *store) removeExpired(ctx context.Context, key string, tokens []string, now serverTime) error {
	_, err := s.removeEntries(ctx, key, tokens, func(t string) bson.D { return surelyExpired(holderField(t, entryExpire), now) })
	return err
}

// entryLive matches token's entry when it never expires or surely has not
// expired at now.
func entryLive(token string, now serverTime) bson.D {
	return bson.D{{Key: "$and", Value: bson.A{
		exists(holderPath(token), true),
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: holderField(token, entryExpire), Value: nil}},
			bson.D{{Key: holderField(token, entryExpire), Value: bson.D{{Key: "$gt", Value: now.latest()}}}},
		}}},
	}}}
}

// renewEntryModel renews token's entry, surely not expired at now, to
// expire at least at expire ($max, as renewLease), and the document's
// expiry with it.
func renewEntryModel(key, token string, now serverTime, expire time.Time) *mongo.UpdateOneModel {
	return mongo.NewUpdateOneModel().SetFilter(recipeGuarded(key, ofRecipe(), entryLive(token, now))).SetUpdate(bson.D{
		{Key: "$max", Value: bson.D{{Key: holderField(token, entryExpire), Value: expire}, {Key: fieldExpire, Value: expire}}},
	})
}

// renewEntry is renewLease for a holder entry.
func (s *store) renewEntry(ctx context.Context, key, token string, now serverTime, d time.Duration) (time.Time, bool, error) {
	expire := storedTime(now.at.Add(d))
	m := renewEntryModel(key, token, now, expire)
	res, err := s.coll.UpdateOne(ctx, m.Filter, m.Update)
	if err != nil {
		return expire, false, ctxFail(ctx, err)
	}
	return expire, res.MatchedCount == 1, nil
}

// raiseEntryFence raises the document's fence and token's entry's to at
// least fence (and, unless renew is zero, their expiries to at least renew)
// and returns the document's fence as it was before: if that was not below
// fence, another holder took a higher fence meanwhile and the caller raises
// again above it. ok is false if the entry is gone, or the document is no
// longer a semaphore's or shared lock's (an exclusive acquisition took it
// after the entry expired).
func (s *store) raiseEntryFence(ctx context.Context, key, token string, fence int64, renew time.Time) (before int64, ok bool, err error) {
	raise := bson.D{{Key: fieldFence, Value: fence}, {Key: holderField(token, entryFence), Value: fence}}
	if !renew.IsZero() {
		raise = append(raise, bson.E{Key: holderField(token, entryExpire), Value: renew}, bson.E{Key: fieldExpire, Value: renew})
	}
	return s.raise(ctx, key, recipeGuarded(key, ofRecipe(), exists(holderPath(token), true)), raise, options.Before)
}

// markWriter records (or refreshes) a writer's intent on a shared lock:
// readers that come after it wait (acquireEntry's noLiveWriter) until it
// has held the lock, or its heartbeat ran out. Another writer's live
// intent is left alone. It reports whether the intent is this writer's.
func (s *store) markWriter(ctx context.Context, key, owner, token string, now serverTime, ttl time.Duration) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		recipeGuarded(key, bson.D{{Key: fieldToken, Value: markShared}}, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldWriter, Value: nil}},
			surelyExpired(fieldWriter+"."+entryExpire, now),
			bson.D{{Key: fieldWriter + "." + entryToken, Value: token}},
		}}}),
		bson.D{{Key: "$set", Value: bson.D{{Key: fieldWriter, Value: bson.D{
			{Key: entryToken, Value: token},
			{Key: entryOwner, Value: owner},
			{Key: entryExpire, Value: storedTime(now.at.Add(ttl))},
		}}}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// clearWriter removes token's writer intent, if it is there.
func (s *store) clearWriter(ctx context.Context, key, token string) error {
	_, err := s.coll.UpdateOne(ctx,
		recipeGuarded(key, bson.D{{Key: fieldWriter + "." + entryToken, Value: token}}),
		bson.D{{Key: "$unset", Value: bson.D{{Key: fieldWriter, Value: ""}}}})
	return ctxFail(ctx, err)
}

// acquireFair is acquire (the exclusive lock's query) for a fair waiter:
// the lock must also have no waiter queued ahead — the queue is empty or
// token is at its head — unless it is token's already (a resend). Taking
// it leaves the queue. A resend is harmless: leaving the queue again
// changes nothing.
func (s *store) acquireFair(ctx context.Context, key, owner, token string, now serverTime, expire time.Duration, fence int64) (*lockDoc, error) {
	filter := recipeGuarded(key,
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldLocked, Value: false}},
			surelyExpired(fieldExpire, now),
			bson.D{{Key: fieldToken, Value: token}},
		}}},
		bson.D{{Key: "$or", Value: bson.A{
			exists(fieldOrder+".0", false),
			bson.D{{Key: fieldOrder + ".0", Value: token}},
			bson.D{{Key: fieldToken, Value: token}},
		}}})
	update := bson.D{
		takeSet(owner, token, now, expire),
		{Key: "$max", Value: bson.D{{Key: fieldFence, Value: fence}}},
		{Key: "$pull", Value: bson.D{{Key: fieldOrder, Value: token}}},
		{Key: "$unset", Value: bson.D{{Key: queuePath(token), Value: ""}}},
		stampAcquired,
	}
	return s.upsert(ctx, key, filter, update)
}

// enqueue puts token at the back of key's fair queue unless it is there
// already, and (re)writes its heartbeat: it stays queued until expire
// unless refreshed. It returns the document afterwards, or nil if there is
// none, or the queue is full (maxEntries waiters).
func (s *store) enqueue(ctx context.Context, key, owner, token string, expire time.Time) (*lockDoc, error) {
	raw, err := s.coll.FindOneAndUpdate(ctx,
		recipeGuarded(key, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: fieldOrder, Value: token}},
			exists(fmt.Sprintf("%s.%d", fieldOrder, maxEntries-1), false),
		}}}),
		bson.D{
			{Key: "$addToSet", Value: bson.D{{Key: fieldOrder, Value: token}}},
			{Key: "$set", Value: bson.D{{Key: queuePath(token), Value: bson.D{
				{Key: entryOwner, Value: owner}, {Key: entryExpire, Value: expire},
			}}}},
		},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, nil
	case err != nil:
		return nil, ctxFail(ctx, err)
	}
	return decodeDoc(key, raw)
}

// dequeue removes waiters from key's fair queue: token, or (when
// onlyExpired) the waiters of tokens whose heartbeat surely ran out at now.
func (s *store) dequeue(ctx context.Context, key string, tokens []string, now serverTime, onlyExpired bool) error {
	models := make([]mongo.WriteModel, len(tokens))
	for i, t := range tokens {
		cond := bson.D{{Key: fieldOrder, Value: t}}
		if onlyExpired {
			cond = bson.D{{Key: "$or", Value: bson.A{
				surelyExpired(queuePath(t)+"."+entryExpire, now),
				exists(queuePath(t), false),
			}}}
		}
		models[i] = mongo.NewUpdateOneModel().SetFilter(recipeGuarded(key, cond)).SetUpdate(bson.D{
			{Key: "$pull", Value: bson.D{{Key: fieldOrder, Value: t}}},
			{Key: "$unset", Value: bson.D{{Key: queuePath(t), Value: ""}}},
		})
	}
	_, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	return ctxFail(ctx, err)
}

// acquireValue is acquire for an election's candidate: the exclusive
// lock's query, which also stores the candidate's value with its token (a
// reader shows the value only while that token holds the lock).
func (s *store) acquireValue(ctx context.Context, key, owner, token string, now serverTime, expire time.Duration, fence int64, value string) (*lockDoc, error) {
	filter := recipeGuarded(key, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldLocked, Value: false}},
		surelyExpired(fieldExpire, now),
		bson.D{{Key: fieldToken, Value: token}},
	}}})
	update := bson.D{
		takeSet(owner, token, now, expire,
			bson.E{Key: fieldValue, Value: bson.D{{Key: entryToken, Value: token}, {Key: entryValue, Value: value}}}),
		{Key: "$max", Value: bson.D{{Key: fieldFence, Value: fence}}},
		stampAcquired,
	}
	return s.upsert(ctx, key, filter, update)
}

// takeSet is the $set of an exclusive acquisition: the lock is token's,
// for owner, created now and expiring expire later; extra fields follow.
func takeSet(owner, token string, now serverTime, expire time.Duration, extra ...bson.E) bson.E {
	set := bson.D{
		{Key: fieldLocked, Value: true},
		{Key: fieldOwner, Value: owner},
		{Key: fieldCreated, Value: now.at},
		{Key: fieldExpire, Value: expireValue(now.at, expire)},
		{Key: fieldToken, Value: token},
	}
	return bson.E{Key: "$set", Value: append(set, extra...)}
}

// upsert applies update to key's document if it matches filter, or inserts
// one (upsert) if there is none, and returns the document as it was before:
// nil when it was inserted. A document that exists but does not match
// makes the insert collide on _id: that is errHeld.
func (s *store) upsert(ctx context.Context, key string, filter, update bson.D) (*lockDoc, error) {
	opts := options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before)
	raw, err := s.coll.FindOneAndUpdate(ctx, filter, update, opts).Raw()
	switch {
	case err == nil:
		return decodeLock(key, raw)
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, nil // inserted
	case mongo.IsDuplicateKeyError(err):
		return nil, errHeld
	}
	return nil, ctxFail(ctx, err)
}
