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

// Package metadata provides access to databases and collections information.
package metadata

import "github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends"

// Collection will probably have a method for getting column name / SQLite path expression for the given document field
// once we implement field extraction.
// IDColumn probably should go away.
// TODO https://github.com/FerretDB/FerretDB/issues/226

const (
	// DefaultColumn is a column name for all fields.
	DefaultColumn = backends.ReservedPrefix + "sjson"

	// IDColumn is a SQLite path expression for _id field.
	//
	// mongolock patch: upstream uses "->'$._id'", which SQLite evaluates the
	// same way ("->" reads a label X as the path '$.X') but does not match the
	// expression of the unique _id index, DefaultColumn->"_id" (see
	// indexesCreate; "_id" is a string literal there), so every
	// "WHERE IDColumn = ?" (Query, Explain, UpdateAll, DeleteAll) scanned the
	// whole table instead of using the index.
	IDColumn = DefaultColumn + "->'_id'"

	// IDValueColumn is the name of the column that holds IDColumn's value,
	// in the collections that have it (Settings.IDValueColumn).
	//
	// mongolock patch: it is written once, by the INSERT, as IDColumn
	// evaluated on the inserted document, and never updated: _id is
	// immutable, and UpdateAll rewrites only the document whose _id matches
	// it. The unique _id index is on this column instead of on the IDColumn
	// expression, so an UPDATE of DefaultColumn no longer parses the old and
	// the new document (the expression index's key on both rows) only to
	// find the same _id; that was half of SQLite's time on an UPDATE.
	IDValueColumn = backends.ReservedPrefix + "id"

	// RecordIDColumn is a name for RecordID column to store capped collection record id.
	RecordIDColumn = backends.ReservedPrefix + "record_id"
)

// Collection represents collection metadata.
//
// Collection value should be immutable to avoid data races.
// Use [deepCopy] to replace the whole value instead of modifying fields of existing value.
type Collection struct {
	Name      string
	TableName string
	Settings  Settings
}

// Capped returns true if collection is capped.
func (c Collection) Capped() bool {
	return c.Settings.CappedSize > 0
}

// IDExpr returns the SQL expression for the stored documents' _id: the
// IDValueColumn column if the collection has it, and the IDColumn
// expression otherwise (collections created before that column existed).
//
// mongolock patch: every query on _id uses it; see IDValueColumn.
func (c Collection) IDExpr() string {
	if c.Settings.IDValueColumn {
		return IDValueColumn
	}

	return IDColumn
}

// deepCopy returns a deep copy.
func (c *Collection) deepCopy() *Collection {
	if c == nil {
		return nil
	}

	return &Collection{
		Name:      c.Name,
		TableName: c.TableName,
		Settings:  c.Settings.deepCopy(),
	}
}
