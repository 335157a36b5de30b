package embedded

// These tests cover the mongolock patches in internal/third_party/ferretdb (see its
// README.md): FerretDB's SQLite backend pushes `WHERE _id = ?` down to SQL
// whenever a filter has a top-level string or ObjectID _id, not only when the
// filter is exactly {_id: ...}, and that WHERE now uses the _id index. The
// handler still applies the whole filter to what the backend returns, so
// results must be exactly those of a full scan; the tests below check that
// for the commands the library (and the driver) send with such filters,
// against a collection large enough that a full scan is costly. They pass
// against upstream FerretDB too, except Explain, which checks that the
// patched copy is in use.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// pushdownServer starts a server and returns a connected client; both are
// closed by tb.Cleanup (client first).
func pushdownServer(tb testing.TB) *mongo.Client {
	tb.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := Start(ctx, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})

	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Disconnect(ctx); err != nil {
			tb.Error(err)
		}
	})

	return c
}

// fillLocks inserts n documents {_id: "k<i>", locked, expire, n: 0}: even
// keys are unlocked, odd keys locked; keys divisible by 3 have expired, the
// others expire in an hour.
func fillLocks(tb testing.TB, coll *mongo.Collection, n int, now time.Time) {
	tb.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const batch = 1000
	for lo := 0; lo < n; lo += batch {
		docs := make([]any, 0, batch)
		for i := lo; i < min(lo+batch, n); i++ {
			expire := now.Add(time.Hour)
			if i%3 == 0 {
				expire = now.Add(-time.Hour)
			}
			docs = append(docs, bson.D{
				{Key: "_id", Value: fmt.Sprintf("k%d", i)},
				{Key: "locked", Value: i%2 == 1},
				{Key: "expire", Value: expire},
				{Key: "n", Value: int32(0)},
			})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			tb.Fatal(err)
		}
	}
}

// acquireFilter is the shape of the library's conditional acquire filter.
func acquireFilter(id any, now time.Time) bson.D {
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "locked", Value: false}},
			bson.D{{Key: "expire", Value: bson.D{{Key: "$lt", Value: now}}}},
		}},
	}
}

func TestConditionalOpsManyDocs(t *testing.T) {
	t.Parallel()

	const docs = 5000

	c := pushdownServer(t)
	coll := c.Database("pushdown").Collection("locks")
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)

	fillLocks(t, coll, docs, now)

	// documents with ObjectID _ids, which the patch also pushes down
	oidLocked, oidFree := bson.NewObjectID(), bson.NewObjectID()
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: oidLocked}, {Key: "locked", Value: true}, {Key: "expire", Value: now.Add(time.Hour)}},
		bson.D{{Key: "_id", Value: oidFree}, {Key: "locked", Value: false}, {Key: "expire", Value: now.Add(time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}

	get := func(t *testing.T, id any) bson.M {
		t.Helper()
		var m bson.M
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
			t.Fatalf("get %v: %v", id, err)
		}
		return m
	}

	acquire := func(id any, owner string, upsert bool) (bson.M, error) {
		var m bson.M
		err := coll.FindOneAndUpdate(ctx, acquireFilter(id, now),
			bson.D{{Key: "$set", Value: bson.D{
				{Key: "locked", Value: true},
				{Key: "owner", Value: owner},
				{Key: "expire", Value: now.Add(time.Minute)},
			}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After).SetUpsert(upsert),
		).Decode(&m)
		return m, err
	}

	t.Run("FindOneAndUpdate", func(t *testing.T) {
		// k42: unlocked -> matches through {locked: false}
		m, err := acquire("k42", "a", false)
		if err != nil {
			t.Fatalf("acquire k42: %v", err)
		}
		if m["_id"] != "k42" || m["owner"] != "a" || m["locked"] != true {
			t.Fatalf("acquire k42 returned %v", m)
		}

		// k42 is now locked and not expired: the same call must not match
		if m, err := acquire("k42", "b", false); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("second acquire k42: %v, %v; want ErrNoDocuments", m, err)
		}
		if m := get(t, "k42"); m["owner"] != "a" {
			t.Fatalf("k42 after failed acquire: %v", m)
		}

		// k43: locked, expires in an hour -> no match, unchanged
		if m, err := acquire("k43", "b", false); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("acquire k43: %v, %v; want ErrNoDocuments", m, err)
		}
		if m := get(t, "k43"); m["locked"] != true || m["owner"] != nil {
			t.Fatalf("k43 after failed acquire: %v", m)
		}

		// k45: locked but expired -> matches through {expire: {$lt: now}}
		if m, err := acquire("k45", "c", false); err != nil || m["_id"] != "k45" || m["owner"] != "c" {
			t.Fatalf("acquire k45: %v, %v", m, err)
		}

		// missing _id, no upsert -> nothing
		if m, err := acquire("nope", "d", false); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("acquire nope: %v, %v; want ErrNoDocuments", m, err)
		}

		// missing _id, upsert -> inserted with that _id
		if m, err := acquire("fresh", "e", true); err != nil || m["_id"] != "fresh" || m["owner"] != "e" {
			t.Fatalf("upsert fresh: %v, %v", m, err)
		}

		// held lock, upsert -> no match, so the upsert collides with the _id
		if _, err = acquire("k43", "f", true); !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("upsert over held k43: %v; want a duplicate key error", err)
		}
		if m := get(t, "k43"); m["owner"] != nil {
			t.Fatalf("k43 after failed upsert: %v", m)
		}

		// ObjectID _ids
		if m, err := acquire(oidLocked, "g", false); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("acquire locked ObjectID: %v, %v; want ErrNoDocuments", m, err)
		}
		if m, err := acquire(oidFree, "g", false); err != nil || m["_id"] != oidFree || m["owner"] != "g" {
			t.Fatalf("acquire free ObjectID: %v, %v", m, err)
		}

		// a string _id never matches an ObjectID _id, and vice versa
		if m, err := acquire(oidFree.Hex(), "h", false); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("acquire ObjectID hex string: %v, %v; want ErrNoDocuments", m, err)
		}

		// exactly the expected documents were modified
		cur, err := coll.Find(ctx, bson.D{{Key: "owner", Value: bson.D{{Key: "$exists", Value: true}}}},
			options.Find().SetProjection(bson.D{{Key: "owner", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		var owned []bson.M
		if err := cur.All(ctx, &owned); err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for _, m := range owned {
			got[fmt.Sprint(m["_id"])] = m["owner"]
		}
		want := map[string]any{"k42": "a", "k45": "c", "fresh": "e", oidFree.String(): "g"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("owned documents = %v, want %v", got, want)
		}
	})

	t.Run("FindOneAndDelete", func(t *testing.T) {
		filter := func(id string, locked bool) bson.D {
			return bson.D{{Key: "_id", Value: id}, {Key: "locked", Value: locked}}
		}
		if err := coll.FindOneAndDelete(ctx, filter("k60", true)).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("delete k60 locked: %v; want ErrNoDocuments", err)
		}
		var m bson.M
		if err := coll.FindOneAndDelete(ctx, filter("k60", false)).Decode(&m); err != nil || m["_id"] != "k60" {
			t.Fatalf("delete k60 unlocked: %v, %v", m, err)
		}
		if n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: "k60"}}); err != nil || n != 0 {
			t.Fatalf("k60 after delete: %d, %v", n, err)
		}
	})

	t.Run("UpdateOne", func(t *testing.T) {
		update := bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}

		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k46"}, {Key: "locked", Value: false}}, update)
		if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 1 {
			t.Fatalf("update k46: %+v, %v", res, err)
		}
		res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k47"}, {Key: "locked", Value: false}}, update)
		if err != nil || res.MatchedCount != 0 || res.ModifiedCount != 0 {
			t.Fatalf("update k47: %+v, %v", res, err)
		}

		// upsert over a held lock: no match, so the insert collides on _id
		_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k47"}, {Key: "locked", Value: false}}, update,
			options.UpdateOne().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("upsert over k47: %v; want a duplicate key error", err)
		}

		res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k48"}, {Key: "n", Value: bson.D{{Key: "$gte", Value: 0}}}}, update)
		if err != nil || res.MatchedCount != 1 {
			t.Fatalf("update k48: %+v, %v", res, err)
		}

		for id, want := range map[string]int32{"k46": 1, "k47": 0, "k48": 1, "k49": 0} {
			if m := get(t, id); m["n"] != want {
				t.Errorf("%s: n = %v, want %d", id, m["n"], want)
			}
		}
	})

	t.Run("DeleteOne", func(t *testing.T) {
		res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "k50"}, {Key: "locked", Value: true}})
		if err != nil || res.DeletedCount != 0 {
			t.Fatalf("delete k50 locked: %+v, %v", res, err)
		}
		res, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "k50"}, {Key: "locked", Value: false}})
		if err != nil || res.DeletedCount != 1 {
			t.Fatalf("delete k50 unlocked: %+v, %v", res, err)
		}
		res, err = coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: "k51"}, {Key: "locked", Value: true}})
		if err != nil || res.DeletedCount != 1 {
			t.Fatalf("delete k51 locked: %+v, %v", res, err)
		}
	})

	t.Run("FindAndCount", func(t *testing.T) {
		for _, tc := range []struct {
			filter bson.D
			want   int64
		}{
			{bson.D{{Key: "_id", Value: "k52"}, {Key: "locked", Value: false}}, 1},
			{bson.D{{Key: "_id", Value: "k53"}, {Key: "locked", Value: false}}, 0},
			{acquireFilter("k53", now), 0},
			{acquireFilter("k57", now), 1}, // locked, expired
			{bson.D{{Key: "_id", Value: "k54"}, {Key: "$and", Value: bson.A{bson.D{{Key: "n", Value: 0}}}}}, 1},
			{bson.D{{Key: "_id", Value: "k54"}, {Key: "$nor", Value: bson.A{bson.D{{Key: "n", Value: 0}}}}}, 0},
			{bson.D{{Key: "locked", Value: false}, {Key: "_id", Value: "k56"}}, 1}, // _id not first
			{bson.D{{Key: "_id", Value: "k56"}, {Key: "$comment", Value: "c"}}, 1},
			{bson.D{{Key: "_id", Value: oidLocked}, {Key: "locked", Value: true}}, 1},
			// not pushed down (non-string _id values): still correct
			{bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"k52", "k53"}}}}, {Key: "locked", Value: false}}, 1},
			{bson.D{{Key: "_id", Value: int32(52)}, {Key: "locked", Value: false}}, 0},
		} {
			// CountDocuments is an aggregate with a leading $match
			n, err := coll.CountDocuments(ctx, tc.filter)
			if err != nil || n != tc.want {
				t.Errorf("CountDocuments(%v) = %d, %v; want %d", tc.filter, n, err, tc.want)
			}

			var found []bson.M
			cur, err := coll.Find(ctx, tc.filter)
			if err == nil {
				err = cur.All(ctx, &found)
			}
			if err != nil || int64(len(found)) != tc.want {
				t.Errorf("Find(%v) = %d documents, %v; want %d", tc.filter, len(found), err, tc.want)
			}

			// the legacy count command
			var res bson.M
			err = c.Database("pushdown").RunCommand(ctx, bson.D{
				{Key: "count", Value: "locks"}, {Key: "query", Value: tc.filter},
			}).Decode(&res)
			if err != nil || fmt.Sprint(res["n"]) != fmt.Sprint(tc.want) {
				t.Errorf("count(%v) = %v, %v; want %d", tc.filter, res["n"], err, tc.want)
			}
		}
	})

	t.Run("Explain", func(t *testing.T) {
		// The patched backend reports (partial) filter pushdown...
		var res bson.M
		err := c.Database("pushdown").RunCommand(ctx, bson.D{
			{Key: "explain", Value: bson.D{
				{Key: "find", Value: "locks"},
				{Key: "filter", Value: acquireFilter("k42", now)},
			}},
		}).Decode(&res)
		if err != nil {
			t.Fatal(err)
		}
		if res["filterPushdown"] != true {
			t.Fatalf("explain: filterPushdown = %v, want true (is internal/third_party/ferretdb in use?)\n%v",
				res["filterPushdown"], res)
		}
		// and the _id index is used (IDColumn matches the index expression)
		if plan := fmt.Sprint(res["queryPlanner"]); !strings.Contains(plan, "USING INDEX") {
			t.Fatalf("explain: the query does not use the _id index: %s", plan)
		}
	})

	t.Run("Timing", func(t *testing.T) {
		// Not asserted; BenchmarkConditionalUpdateManyDocs measures it.
		const n = 20
		start := time.Now()
		for i := range n {
			var m bson.M
			err := coll.FindOneAndUpdate(ctx, acquireFilter("k44", now),
				bson.D{{Key: "$set", Value: bson.D{{Key: "locked", Value: false}, {Key: "n", Value: int32(i + 1)}}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After),
			).Decode(&m)
			if err != nil || m["n"] != int32(i+1) {
				t.Fatalf("update %d: %v, %v", i, m, err)
			}
		}
		t.Logf("%d documents: %v per findOneAndUpdate", docs, time.Since(start)/n)
	})
}

// BenchmarkConditionalUpdateManyDocs measures the library's conditional
// acquire, findOneAndUpdate({_id, $or: [{locked: false}, {expire: {$lt}}]}),
// on a key in the middle of collections of increasing size:
//
//   - free: the document matches and is updated;
//   - held: the lock is held, nothing matches (the backend query must then
//     produce every candidate document, which without pushdown is all of them).
//
// Without the mongolock patch the cost grows linearly with the collection
// size; with it, it should be flat.
func BenchmarkConditionalUpdateManyDocs(b *testing.B) {
	for _, docs := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("docs=%d", docs), func(b *testing.B) {
			// A benchmark with sub-benchmarks runs once: the set-up is not repeated.
			c := pushdownServer(b)
			coll := c.Database("pushdown").Collection("locks")
			ctx := context.Background()
			now := time.Now().Truncate(time.Millisecond)
			fillLocks(b, coll, docs, now)

			free, held := fmt.Sprintf("k%d", docs/2), fmt.Sprintf("k%d", docs/2+1)
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: held}}, bson.D{{Key: "$set", Value: bson.D{
				{Key: "locked", Value: true},
				{Key: "expire", Value: now.Add(time.Hour)},
			}}}); err != nil {
				b.Fatal(err)
			}

			b.Run("free", func(b *testing.B) {
				update := bson.D{
					{Key: "$set", Value: bson.D{{Key: "locked", Value: false}}},
					{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
				}
				for b.Loop() {
					if err := coll.FindOneAndUpdate(ctx, acquireFilter(free, now), update).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})

			b.Run("held", func(b *testing.B) {
				update := bson.D{{Key: "$set", Value: bson.D{{Key: "locked", Value: true}}}}
				for b.Loop() {
					err := coll.FindOneAndUpdate(ctx, acquireFilter(held, now), update).Err()
					if !errors.Is(err, mongo.ErrNoDocuments) {
						b.Fatalf("acquire of a held lock: %v; want ErrNoDocuments", err)
					}
				}
			})
		})
	}
}
