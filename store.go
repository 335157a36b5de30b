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

// shapeGuard matches only documents whose expire and fence fields have the
// types this package writes, so a write never changes (or is misled by) a
// document of the wrong shape.
var shapeGuard = bson.A{
	bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldExpire, Value: nil}},
		bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$type", Value: "date"}}}},
	}}},
	bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldFence, Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: fieldFence, Value: bson.D{{Key: "$type", Value: "number"}}}},
	}}},
}

func guarded(key string, conds ...bson.D) bson.D {
	and := make(bson.A, 0, len(shapeGuard)+len(conds))
	and = append(and, shapeGuard...)
	for _, c := range conds {
		and = append(and, c)
	}
	return bson.D{{Key: fieldKey, Value: key}, {Key: "$and", Value: and}}
}

func expireValue(now time.Time, d time.Duration) any {
	if d == 0 {
		return nil
	}
	return now.Add(d)
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
		{Key: "$set", Value: bson.D{
			{Key: fieldLocked, Value: true},
			{Key: fieldOwner, Value: owner},
			{Key: fieldCreated, Value: now.at},
			{Key: fieldExpire, Value: expireValue(now.at, expire)},
			{Key: fieldToken, Value: token},
		}},
		{Key: "$max", Value: bson.D{{Key: fieldFence, Value: fence}}},
	}
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

// raiseFence sets the fence of a lock held with token to at least fence.
// It is idempotent, so a retry after a lost reply is harmless.
func (s *store) raiseFence(ctx context.Context, key, token string, fence int64) (bool, error) {
	res, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: fieldKey, Value: key}, {Key: fieldToken, Value: token}, {Key: fieldLocked, Value: true}},
		bson.D{{Key: "$max", Value: bson.D{{Key: fieldFence, Value: fence}}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
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
// the fence keeps rising; released records when (for Purge; zero now
// writes null). It reports whether a document matched.
func (s *store) release(ctx context.Context, key string, h holder, now serverTime) (bool, error) {
	var released any
	if !now.at.IsZero() {
		released = now.at
	}
	res, err := s.coll.UpdateOne(ctx, guarded(key, h.cond()), bson.D{{Key: "$set", Value: bson.D{
		{Key: fieldLocked, Value: false},
		{Key: fieldOwner, Value: nil},
		{Key: fieldCreated, Value: nil},
		{Key: fieldExpire, Value: nil},
		{Key: fieldReleased, Value: released},
	}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// heldSuffix marks the token of a lock released under MinHold: it stays
// locked until its expiry, but no acquisition's token matches it any more.
const heldSuffix = ":held"

// releaseHeld releases the lock held with token but keeps it locked until
// until (MinHold): the expiry becomes until and the token is retired, so
// nobody can renew it. It reports whether a document matched.
func (s *store) releaseHeld(ctx context.Context, key, token string, until time.Time) (bool, error) {
	res, err := s.coll.UpdateOne(ctx, guarded(key, bson.D{{Key: fieldToken, Value: token}}),
		bson.D{{Key: "$set", Value: bson.D{
			{Key: fieldExpire, Value: until},
			{Key: fieldToken, Value: token + heldSuffix},
		}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
}

// renewMany renews, in one round trip (an unordered bulk write of one
// update per lease, each by _id so that it uses the _id index), the locks
// held with tokens[i] on keys[i] that have not expired at now, to expire d
// after now. It returns how many it renewed.
func (s *store) renewMany(ctx context.Context, keys, tokens []string, now serverTime, d time.Duration) (int64, error) {
	update := bson.D{{Key: "$set", Value: bson.D{{Key: fieldExpire, Value: now.at.Add(d)}}}}
	models := make([]mongo.WriteModel, len(keys))
	for i := range keys {
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{
			{Key: fieldKey, Value: keys[i]},
			{Key: fieldToken, Value: tokens[i]},
			{Key: fieldLocked, Value: true},
			{Key: fieldExpire, Value: bson.D{{Key: "$gt", Value: now.at}}},
		}).SetUpdate(update)
	}
	res, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if res == nil {
		return 0, ctxFail(ctx, err)
	}
	return res.MatchedCount, ctxFail(ctx, err)
}

// releaseMany releases, in one round trip, the locks held with tokens.
func (s *store) releaseMany(ctx context.Context, keys, tokens []string, now serverTime) error {
	_, err := s.coll.UpdateMany(ctx, bson.D{
		{Key: fieldKey, Value: bson.D{{Key: "$in", Value: keys}}},
		{Key: fieldToken, Value: bson.D{{Key: "$in", Value: tokens}}},
	}, bson.D{{Key: "$set", Value: bson.D{
		{Key: fieldLocked, Value: false},
		{Key: fieldOwner, Value: nil},
		{Key: fieldCreated, Value: nil},
		{Key: fieldExpire, Value: nil},
		{Key: fieldReleased, Value: now.at},
	}}})
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
		if d, err := decodeLock(key, cur.Current); err == nil {
			out[key] = d
		}
	}
	return out, ctxFail(ctx, cur.Err())
}

// purge deletes lock documents idle since before cutoff (server time):
// released before it (or released by the Python package, which records no
// time), or expired before it. It returns how many it deleted.
func (s *store) purge(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldLocked, Value: false}, {Key: fieldReleased, Value: bson.D{{Key: "$lt", Value: cutoff}}}},
		bson.D{{Key: fieldLocked, Value: false}, {Key: fieldReleased, Value: nil}},
		bson.D{{Key: fieldLocked, Value: true}, {Key: fieldExpire, Value: bson.D{{Key: "$lt", Value: cutoff}}}},
	}}})
	if err != nil {
		return 0, ctxFail(ctx, err)
	}
	return res.DeletedCount, nil
}

// renew moves the expiry of a lock that is held and not yet expired at the
// server-time estimate now to now+expire. It reports whether it matched.
func (s *store) renew(ctx context.Context, key string, h holder, now serverTime, expire time.Duration) (bool, error) {
	live := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: fieldExpire, Value: nil}},
		bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$gt", Value: now.at}}}},
	}}}
	res, err := s.coll.UpdateOne(ctx,
		guarded(key, h.cond(), bson.D{{Key: fieldLocked, Value: true}}, live),
		bson.D{{Key: "$set", Value: bson.D{{Key: fieldExpire, Value: now.at.Add(expire)}}}})
	if err != nil {
		return false, ctxFail(ctx, err)
	}
	return res.MatchedCount == 1, nil
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
	return decodeLock(key, raw)
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

// outcomeUnknown reports whether a failed operation may nevertheless have
// been applied by the server (a network error or a timeout), so that the
// caller must retry with the same token rather than give up.
func outcomeUnknown(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded)
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
		d, err := decodeLock(key, cur.Current)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, ctxFail(ctx, cur.Err())
}

// forceRelease writes the released shape whoever holds key (a document of
// the wrong shape excepted) and returns the document as it was before. The
// token is replaced, so the former holder can no longer renew or release.
func (s *store) forceRelease(ctx context.Context, key string, now serverTime) (*lockDoc, error) {
	raw, err := s.coll.FindOneAndUpdate(ctx, guarded(key), bson.D{{Key: "$set", Value: bson.D{
		{Key: fieldLocked, Value: false},
		{Key: fieldOwner, Value: nil},
		{Key: fieldCreated, Value: nil},
		{Key: fieldExpire, Value: nil},
		{Key: fieldToken, Value: nil},
		{Key: fieldReleased, Value: now.at},
	}}}, options.FindOneAndUpdate().SetReturnDocument(options.Before)).Raw()
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
	return decodeLock(key, raw)
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
