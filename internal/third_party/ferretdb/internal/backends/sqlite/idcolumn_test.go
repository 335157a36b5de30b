package sqlite

// mongolock patch 23 (see ../../../README.md): collections keep each
// document's _id in a column of its own (metadata.IDValueColumn), written by
// the INSERT and indexed instead of the _id expression, so an UPDATE does not
// parse the JSON documents to maintain the index. These tests check that
// every operation gives the same results on such a collection as on a
// collection created the way upstream (and earlier versions of this copy)
// created them, which a data directory may still hold, and that the UPDATE
// no longer evaluates JSON.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends/sqlite/metadata"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/handler/sjson"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/iterator"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/state"
)

const (
	testDB        = "testdb"
	legacyName    = "legacy"
	legacyTable   = "legacy_00000001"
	legacyCapName = "legacycapped"
	legacyCapTbl  = "legacycapped_00000001"
)

// createLegacyDatabase creates, in dir, the database testDB with the
// collections legacyName and legacyCapName (capped) as upstream's
// registry creates them: no IDValueColumn, a unique index on the _id
// expression, settings without idValueColumn.
func createLegacyDatabase(t *testing.T, dir string) {
	t.Helper()

	db, err := sql.Open("sqlite", filepath.Join(dir, testDB+".sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	settings := func(capped int64) string {
		return fmt.Sprintf(`{"uuid":"00000000-0000-0000-0000-000000000001",`+
			`"indexes":[{"name":"_id_","key":[{"field":"_id","descending":false}],"unique":true}],`+
			`"cappedSize":%d,"cappedDocuments":0}`, capped)
	}

	for _, q := range []string{
		`CREATE TABLE "_ferretdb_collections" (` +
			`name TEXT NOT NULL UNIQUE CHECK(name != ''), ` +
			`table_name TEXT NOT NULL UNIQUE CHECK(table_name != ''), ` +
			`settings TEXT NOT NULL CHECK(settings != '')) STRICT`,
		`CREATE TABLE "` + legacyTable + `" (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`,
		`CREATE UNIQUE INDEX "` + legacyTable + `__id_" ON "` + legacyTable + `" (_ferretdb_sjson->"_id")`,
		`INSERT INTO "_ferretdb_collections" (name, table_name, settings) VALUES ` +
			`('` + legacyName + `', '` + legacyTable + `', '` + settings(0) + `')`,
		`CREATE TABLE "` + legacyCapTbl + `" (_ferretdb_record_id INTEGER PRIMARY KEY, ` +
			`_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`,
		`CREATE UNIQUE INDEX "` + legacyCapTbl + `__id_" ON "` + legacyCapTbl + `" (_ferretdb_sjson->"_id")`,
		`INSERT INTO "_ferretdb_collections" (name, table_name, settings) VALUES ` +
			`('` + legacyCapName + `', '` + legacyCapTbl + `', '` + settings(1<<20) + `')`,
	} {
		if _, err = db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// openRegistry opens a registry on dir (in memory if memory is true).
func openRegistry(t *testing.T, dir string, memory bool) *metadata.Registry {
	t.Helper()

	u := url.URL{Scheme: "file", Path: filepath.ToSlash(dir) + "/", OmitHost: true}
	if memory {
		u.RawQuery = "mode=memory"
	}

	sp, err := state.NewProvider("")
	if err != nil {
		t.Fatal(err)
	}

	r, err := metadata.NewRegistry(u.String(), 100, slog.New(slog.DiscardHandler), sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	return r
}

// testIDs returns _id values of every type an _id can have.
func testIDs() []any {
	oid := types.ObjectID{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

	return []any{
		"a",
		"",
		`quote " backslash \ <html> & é 日本 ` + "\n\t\x01",
		oid,
		int32(1),
		int32(-7),
		int64(1),
		int64(1 << 60),
		float64(1),
		1.5,
		math.Copysign(0, -1),
		1e300,
		true,
		false,
		types.Null,
		time.Date(2026, 12, 2, 3, 4, 5, 6e6, time.UTC),
		types.NewTimestamp(time.Unix(1700000000, 0), 3),
		types.Binary{Subtype: types.BinaryGeneric, B: []byte{0, 1, 2}},
		must.NotFail(types.NewDocument("a", int32(1), "b", "x")),
		must.NotFail(types.NewDocument("b", "x", "a", int32(1))),
		must.NotFail(types.NewDocument()),
	}
}

// errString returns a comparable form of err: its code if it is a
// backends.Error (the handlers use only the code), and its text otherwise.
func errString(err error) string {
	var be *backends.Error
	if errors.As(err, &be) {
		return be.Code().String()
	}

	return fmt.Sprint(err)
}

// docString returns a comparable form of doc (record IDs differ between
// collections: the backend contract assigns them).
func docString(t *testing.T, doc *types.Document) string {
	t.Helper()

	return string(must.NotFail(sjson.Marshal(doc)))
}

// queryAll returns the documents that Query returns for filter.
func queryAll(t *testing.T, c backends.Collection, filter *types.Document) []string {
	t.Helper()

	res, err := c.Query(context.Background(), &backends.QueryParams{Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Iter.Close()

	var docs []string

	for {
		_, doc, err := res.Iter.Next()
		if err != nil {
			if errors.Is(err, iterator.ErrIteratorDone) {
				break
			}

			t.Fatal(err)
		}

		docs = append(docs, docString(t, doc))
	}

	return docs
}

// checkIDColumn checks that every row's IDValueColumn holds IDColumn's
// value.
func checkIDColumn(t *testing.T, r *metadata.Registry, name string) {
	t.Helper()

	ctx := context.Background()

	meta := r.CollectionGet(ctx, testDB, name)
	if !meta.Settings.IDValueColumn {
		t.Fatalf("%s: no IDValueColumn", name)
	}

	var bad, total int

	q := fmt.Sprintf(`SELECT count(*) FILTER (WHERE %s IS NOT %s), count(*) FROM %q`,
		metadata.IDValueColumn, metadata.IDColumn, meta.TableName)
	if err := r.DatabaseGetExisting(ctx, testDB).QueryRowContext(ctx, q).Scan(&bad, &total); err != nil {
		t.Fatal(err)
	}

	if bad != 0 {
		t.Errorf("%s: %d of %d rows have an %s that is not their _id", name, bad, total, metadata.IDValueColumn)
	}
}

// TestIDValueColumn runs the same operations on new and legacy collections
// (capped or not, in files and in memory) and compares their results.
func TestIDValueColumn(t *testing.T) {
	for _, memory := range []bool{false, true} {
		for _, capped := range []bool{false, true} {
			t.Run(fmt.Sprintf("memory=%v,capped=%v", memory, capped), func(t *testing.T) {
				testIDValueColumn(t, memory, capped)
			})
		}
	}
}

func testIDValueColumn(t *testing.T, memory, capped bool) {
	ctx := context.Background()

	// The legacy collection is always in files (an old data directory); the
	// new one is in memory or in a database of the same directory.
	dir := t.TempDir()
	createLegacyDatabase(t, dir)

	r := openRegistry(t, dir, false)
	newR := r

	if memory {
		newR = openRegistry(t, t.TempDir(), true)
	}

	legacy := newCollection(r, testDB, legacyName)
	newName := "new"

	if capped {
		legacy = newCollection(r, testDB, legacyCapName)
		newName = "newcapped"
	}

	if r.CollectionGet(ctx, testDB, legacyName).Settings.IDValueColumn {
		t.Fatal("legacy collection read as having IDValueColumn")
	}

	var cappedSize int64
	if capped {
		cappedSize = 1 << 20
	}

	if _, err := newR.CollectionCreate(ctx, &metadata.CollectionCreateParams{
		DBName: testDB, Name: newName, CappedSize: cappedSize,
	}); err != nil {
		t.Fatal(err)
	}

	coll := newCollection(newR, testDB, newName)

	// each step runs f on both collections and compares what it returns
	var recordID int64

	step := func(what string, f func(c backends.Collection) string) {
		t.Helper()

		old, got := f(legacy), f(coll)
		if old != got {
			t.Errorf("%s:\nlegacy: %s\nnew:    %s", what, old, got)
		}

		checkIDColumn(t, newR, newName)
	}

	newDoc := func(id any, v any) *types.Document {
		recordID++
		d := must.NotFail(types.NewDocument("_id", id, "v", v))
		d.SetRecordID(recordID)

		return d
	}

	ids := testIDs()

	// insert one at a time, then a batch, then duplicates
	for i, id := range ids[:len(ids)/2] {
		recordID0 := recordID

		step(fmt.Sprintf("insert %d", i), func(c backends.Collection) string {
			recordID = recordID0
			_, err := c.InsertAll(ctx, &backends.InsertAllParams{Docs: []*types.Document{newDoc(id, int32(i))}})

			return errString(err)
		})
	}

	recordID0 := recordID

	step("insert batch", func(c backends.Collection) string {
		recordID = recordID0

		var docs []*types.Document
		for i, id := range ids[len(ids)/2:] {
			docs = append(docs, newDoc(id, int32(100+i)))
		}

		_, err := c.InsertAll(ctx, &backends.InsertAllParams{Docs: docs})

		return errString(err)
	})

	for i, id := range ids {
		step(fmt.Sprintf("insert duplicate %d", i), func(c backends.Collection) string {
			_, err := c.InsertAll(ctx, &backends.InsertAllParams{Docs: []*types.Document{newDoc(id, "dup")}})

			return errString(err)
		})
	}

	query := func(what string, filter *types.Document) {
		t.Helper()

		step(what, func(c backends.Collection) string {
			return strings.Join(queryAll(t, c, filter), "\n")
		})
	}

	query("query all", must.NotFail(types.NewDocument()))

	for i, id := range append(ids, "missing", types.ObjectID{1}) {
		query(fmt.Sprintf("query _id %d", i), must.NotFail(types.NewDocument("_id", id)))
		query(fmt.Sprintf("query _id and v %d", i), must.NotFail(types.NewDocument("v", int32(1), "_id", id)))
	}

	// update every document (and missing ones), one at a time and in a batch
	for i, id := range append(ids, "missing") {
		step(fmt.Sprintf("update %d", i), func(c backends.Collection) string {
			res, err := c.UpdateAll(ctx, &backends.UpdateAllParams{Docs: []*types.Document{
				must.NotFail(types.NewDocument("_id", id, "v", "updated", "w", int64(i))),
			}})
			if err != nil {
				return err.Error()
			}

			return fmt.Sprint(res.Updated)
		})
	}

	step("update batch", func(c backends.Collection) string {
		var docs []*types.Document
		for _, id := range ids {
			docs = append(docs, must.NotFail(types.NewDocument("_id", id, "v", "batch")))
		}

		res, err := c.UpdateAll(ctx, &backends.UpdateAllParams{Docs: docs})
		if err != nil {
			return err.Error()
		}

		return fmt.Sprint(res.Updated)
	})

	query("query all after updates", must.NotFail(types.NewDocument()))

	for i, id := range ids {
		query(fmt.Sprintf("query _id %d after updates", i), must.NotFail(types.NewDocument("_id", id)))
	}

	// delete some by _id, then all by record ID or _id
	step("delete", func(c backends.Collection) string {
		res, err := c.DeleteAll(ctx, &backends.DeleteAllParams{IDs: []any{ids[0], ids[3], ids[8], ids[18], "missing"}})
		if err != nil {
			return err.Error()
		}

		return fmt.Sprint(res.Deleted)
	})

	query("query all after delete", must.NotFail(types.NewDocument()))

	if capped {
		step("delete by record ID", func(c backends.Collection) string {
			res, err := c.Query(ctx, &backends.QueryParams{OnlyRecordIDs: true})
			if err != nil {
				return err.Error()
			}

			var recordIDs []int64

			for len(recordIDs) < 2 {
				_, doc, err := res.Iter.Next()
				if err != nil {
					return err.Error()
				}

				recordIDs = append(recordIDs, doc.RecordID())
			}

			res.Iter.Close()

			del, err := c.DeleteAll(ctx, &backends.DeleteAllParams{RecordIDs: recordIDs})
			if err != nil {
				return err.Error()
			}

			return fmt.Sprint(del.Deleted)
		})

		query("query all after delete by record ID", must.NotFail(types.NewDocument()))
	}

	step("delete rest", func(c backends.Collection) string {
		res, err := c.DeleteAll(ctx, &backends.DeleteAllParams{IDs: ids})
		if err != nil {
			return err.Error()
		}

		return fmt.Sprint(res.Deleted)
	})

	query("query all after deleting all", must.NotFail(types.NewDocument()))

	// the new collection's _id index is on the column
	step("explain", func(c backends.Collection) string {
		res, err := c.Explain(ctx, &backends.ExplainParams{Filter: must.NotFail(types.NewDocument("_id", "a"))})
		if err != nil {
			return err.Error()
		}

		plan := fmt.Sprint(must.NotFail(res.QueryPlanner.Get("Plan")).(*types.Array).Get(0))

		return fmt.Sprint(res.FilterPushdown, strings.Contains(plan, "USING INDEX"))
	})
}

// TestIDValueColumnUpdateNoJSON checks that an UPDATE by _id of a new
// collection evaluates no SQL function (upstream's evaluated the _id
// expression, which parses the JSON document, on the old and the new row),
// and that the _id index is on the column.
func TestIDValueColumnUpdateNoJSON(t *testing.T) {
	ctx := context.Background()
	r := openRegistry(t, t.TempDir(), true)

	if _, err := r.CollectionCreate(ctx, &metadata.CollectionCreateParams{DBName: testDB, Name: "c"}); err != nil {
		t.Fatal(err)
	}

	meta := r.CollectionGet(ctx, testDB, "c")
	db := r.DatabaseGetExisting(ctx, testDB)

	q := fmt.Sprintf(`EXPLAIN UPDATE %q SET %s = ? WHERE %s = ?`,
		meta.TableName, metadata.DefaultColumn, meta.IDExpr())

	rows, err := db.QueryContext(ctx, q, `{"$s":{"p":{"_id":{"t":"string"}},"$k":["_id"]},"_id":"a"}`, `"a"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()

	var program []string

	for rows.Next() {
		var addr, p1, p2, p3, p5 int64
		var opcode string
		var p4, comment sql.NullString

		if err = rows.Scan(&addr, &opcode, &p1, &p2, &p3, &p4, &p5, &comment); err != nil {
			t.Fatal(err)
		}

		program = append(program, fmt.Sprintf("%d %s %s", addr, opcode, p4.String))

		if strings.Contains(opcode, "Func") { // Function, PureFunc
			t.Errorf("UPDATE evaluates a function: %d %s %s", addr, opcode, p4.String)
		}
	}

	if err = rows.Err(); err != nil {
		t.Fatal(err)
	}

	if t.Failed() {
		t.Logf("program:\n%s", strings.Join(program, "\n"))
	}

	var sqlText string
	if err = db.QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE name = ?`,
		meta.TableName+"__id_").Scan(&sqlText); err != nil {
		t.Fatal(err)
	}

	if want := "(" + metadata.IDValueColumn + ")"; !strings.HasSuffix(sqlText, want) {
		t.Errorf("_id index: %s, want it on %s", sqlText, want)
	}

	// an earlier version's INSERT, which does not set the column, fails
	q = fmt.Sprintf(`INSERT INTO %q (%s) VALUES (?)`, meta.TableName, metadata.DefaultColumn)
	_, err = db.ExecContext(ctx, q, `{"$s":{"p":{"_id":{"t":"string"}},"$k":["_id"]},"_id":"a"}`)

	if err == nil || !strings.Contains(err.Error(), "NOT NULL constraint failed") {
		t.Errorf("INSERT without %s: %v, want a NOT NULL constraint error", metadata.IDValueColumn, err)
	}
}
