// Copyright 2021 FerretDB Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

package sqlite

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends/sqlite/metadata"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/handler/sjson"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/fsql"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/iterator"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/lazyerrors"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/resource"
)

// queryIterator implements iterator.Interface to fetch documents from the database.
type queryIterator struct {
	// the order of fields is weird to make the struct smaller due to alignment

	ctx           context.Context
	rows          *fsql.Rows // protected by m
	buf           []queryRow // protected by m; see bufferRows
	token         *resource.Token
	m             sync.Mutex
	onlyRecordIDs bool
	buffered      bool // protected by m; see bufferRows
}

// queryRow is a row read from the database, not yet decoded.
type queryRow struct {
	recordID int64
	b        []byte // nil if onlyRecordIDs
}

// newQueryIterator returns a new queryIterator for the given *sql.Rows.
//
// Iterator's Close method closes rows.
// They are also closed by the Next method on any error, including context cancellation,
// to make sure that the database connection is released as early as possible.
// In that case, the iterator's Close method should still be called.
//
// Nil rows are possible and return already done iterator.
// It still should be Close'd.
func newQueryIterator(ctx context.Context, rows *fsql.Rows, onlyRecordIDs bool) *queryIterator {
	iter := &queryIterator{
		ctx:           ctx,
		rows:          rows,
		onlyRecordIDs: onlyRecordIDs,
		token:         resource.NewToken(),
	}
	resource.Track(iter, iter.token)

	return iter
}

// bufferRows reads all rows now, without decoding them, and closes them;
// Next then returns the buffered rows. It returns an error if reading fails
// (the iterator is then closed).
//
// mongolock patch: used for in-memory databases, which have a single
// connection (see pool.openDB). Upstream's iterator held that connection
// until it was exhausted or closed, so a handler that wrote while its query
// was still open (findAndModify, update) waited forever for the connection,
// and so did every request while a client kept a cursor open. Buffered, a
// query releases the connection before Query returns; the rows are copies of
// data that is in memory anyway.
func (iter *queryIterator) bufferRows() error {
	iter.m.Lock()
	defer iter.m.Unlock()

	iter.buffered = true

	if iter.rows == nil {
		return nil
	}

	for iter.rows.Next() {
		row, err := iter.scan()
		if err != nil {
			iter.close()
			return lazyerrors.Error(err)
		}

		iter.buf = append(iter.buf, row)
	}

	err := iter.rows.Err()

	// close the rows only: the iterator is still to be read
	iter.rows.Close()
	iter.rows = nil

	if err != nil {
		iter.close()
		return lazyerrors.Error(err)
	}

	return nil
}

// Next implements iterator.Interface.
func (iter *queryIterator) Next() (struct{}, *types.Document, error) {
	iter.m.Lock()
	defer iter.m.Unlock()

	var unused struct{}

	// ignore context error, if any, if iterator is already closed
	if iter.rows == nil && len(iter.buf) == 0 {
		return unused, nil, iterator.ErrIteratorDone
	}

	if err := context.Cause(iter.ctx); err != nil {
		iter.close()
		return unused, nil, lazyerrors.Error(err)
	}

	var row queryRow

	if iter.buffered {
		row = iter.buf[0]
		iter.buf[0] = queryRow{}
		iter.buf = iter.buf[1:]
	} else {
		if !iter.rows.Next() {
			err := iter.rows.Err()

			iter.close()

			if err == nil {
				err = iterator.ErrIteratorDone
			}

			return unused, nil, lazyerrors.Error(err)
		}

		var err error
		if row, err = iter.scan(); err != nil {
			iter.close()
			return unused, nil, lazyerrors.Error(err)
		}
	}

	doc := must.NotFail(types.NewDocument())

	if !iter.onlyRecordIDs {
		var err error
		if doc, err = sjson.Unmarshal(row.b); err != nil {
			iter.close()
			return unused, nil, lazyerrors.Error(err)
		}
	}

	doc.SetRecordID(row.recordID)

	return unused, doc, nil
}

// scan reads the current row of iter.rows.
func (iter *queryIterator) scan() (queryRow, error) {
	var row queryRow

	columns, err := iter.rows.Columns()
	if err != nil {
		return row, lazyerrors.Error(err)
	}

	var dest []any

	switch {
	case slices.Equal(columns, []string{metadata.RecordIDColumn, metadata.DefaultColumn}):
		dest = []any{&row.recordID, &row.b}
	case slices.Equal(columns, []string{metadata.RecordIDColumn}):
		dest = []any{&row.recordID}
	case slices.Equal(columns, []string{metadata.DefaultColumn}):
		dest = []any{&row.b}
	default:
		panic(fmt.Sprintf("cannot scan unknown columns: %v", columns))
	}

	if err = iter.rows.Scan(dest...); err != nil {
		return row, lazyerrors.Error(err)
	}

	return row, nil
}

// Close implements iterator.Interface.
func (iter *queryIterator) Close() {
	iter.m.Lock()
	defer iter.m.Unlock()

	iter.close()
}

// close closes iterator without holding mutex.
//
// This should be called only when the caller already holds the mutex.
func (iter *queryIterator) close() {
	if iter.rows != nil {
		iter.rows.Close()
		iter.rows = nil
	}

	iter.buf = nil

	resource.Untrack(iter, iter.token)
}

// check interfaces
var (
	_ types.DocumentsIterator = (*queryIterator)(nil)
)
