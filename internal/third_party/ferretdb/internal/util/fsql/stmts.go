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

package fsql

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCacheSize bounds the number of statements in a stmtCache.
const stmtCacheSize = 128

// stmtCache holds prepared statements by query, for the statements with
// arguments that a DB runs outside transactions.
//
// mongolock patch: upstream passed every query to [*sql.DB.ExecContext] or
// QueryContext, so SQLite parsed and planned it anew every time, which was
// about a fifth of the time FerretDB spent on a findAndModify or an update
// by _id. A [*sql.Stmt] is prepared once per connection and reused (the
// driver keeps SQLite's statement since modernc.org/sqlite v1.41).
// Statements without arguments (schema changes, PRAGMAs) are not cached.
// A statement whose table has been dropped or changed fails or is
// re-prepared by SQLite exactly as a new one would be.
//
// The cache holds at most stmtCacheSize statements; it is emptied when full.
// Its methods are safe for concurrent use.
type stmtCache struct {
	m      sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

// get returns the prepared statement for query, preparing it on sqlDB if
// needed, or nil if it cannot be prepared (the caller then runs the query
// directly, which reports the error) or if the cache is closed.
func (c *stmtCache) get(ctx context.Context, sqlDB *sql.DB, query string) *sql.Stmt {
	c.m.Lock()
	defer c.m.Unlock()

	if c.closed {
		return nil
	}

	if st := c.stmts[query]; st != nil {
		return st
	}

	st, err := sqlDB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}

	if c.stmts == nil || len(c.stmts) >= stmtCacheSize {
		c.closeAll()
		c.stmts = make(map[string]*sql.Stmt)
	}

	c.stmts[query] = st

	return st
}

// close closes the cached statements; get returns nil afterwards.
func (c *stmtCache) close() {
	c.m.Lock()
	defer c.m.Unlock()

	c.closeAll()
	c.closed = true
}

// closeAll closes and forgets the cached statements. The caller holds c.m.
//
// [*sql.Stmt.Close] waits for nothing: a statement still in use by a query
// is closed once that query is done.
func (c *stmtCache) closeAll() {
	for _, st := range c.stmts {
		_ = st.Close()
	}

	c.stmts = nil
}
