package sqlite

// mongolock patch 24 (see ../../../README.md): a query or an update by _id
// runs with its context's cancellation removed (boundedContext), so that
// neither the SQLite driver nor database/sql starts a goroutine per statement
// to wait for it.

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"testing"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends/sqlite/metadata"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/iterator"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
)

// goroutinesCreated returns the number of goroutines created so far.
func goroutinesCreated(t *testing.T) uint64 {
	t.Helper()

	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)

	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Skip("runtime/metrics has no /sched/goroutines-created")
	}

	return s[0].Value.Uint64()
}

// TestBoundedContext checks that queries and updates by _id, with a context
// that can be canceled, start no goroutine, and still fail at once when
// their context is canceled.
func TestBoundedContext(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) {
			r := openRegistry(t, t.TempDir(), memory)
			c := newCollection(r, testDB, "c")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			if _, err := r.CollectionCreate(ctx, &metadata.CollectionCreateParams{DBName: testDB, Name: "c"}); err != nil {
				t.Fatal(err)
			}

			doc := must.NotFail(types.NewDocument("_id", "k", "v", int32(0)))
			if _, err := c.InsertAll(ctx, &backends.InsertAllParams{Docs: []*types.Document{doc}}); err != nil {
				t.Fatal(err)
			}

			filter := must.NotFail(types.NewDocument("_id", "k"))

			const n = 200

			before := goroutinesCreated(t)

			for i := range n {
				res, err := c.Query(ctx, &backends.QueryParams{Filter: filter})
				if err != nil {
					t.Fatal(err)
				}

				if _, _, err = res.Iter.Next(); err != nil {
					t.Fatal(err)
				}

				if _, _, err = res.Iter.Next(); !errors.Is(err, iterator.ErrIteratorDone) {
					t.Fatalf("second Next: %v", err)
				}

				res.Iter.Close()

				upd, err := c.UpdateAll(ctx, &backends.UpdateAllParams{Docs: []*types.Document{
					must.NotFail(types.NewDocument("_id", "k", "v", int32(i))),
				}})
				if err != nil || upd.Updated != 1 {
					t.Fatalf("UpdateAll: %v, %v", upd, err)
				}
			}

			// upstream: three per iteration (two for the query, one for the
			// update); allow for the runtime's own
			if created := goroutinesCreated(t) - before; created > n/4 {
				t.Errorf("%d queries and updates by _id created %d goroutines", n, created)
			}

			cancel()

			if _, err := c.Query(ctx, &backends.QueryParams{Filter: filter}); !errors.Is(err, context.Canceled) {
				t.Errorf("Query with a canceled context: %v", err)
			}

			if _, err := c.UpdateAll(ctx, &backends.UpdateAllParams{Docs: []*types.Document{doc}}); !errors.Is(err, context.Canceled) {
				t.Errorf("UpdateAll with a canceled context: %v", err)
			}
		})
	}
}
