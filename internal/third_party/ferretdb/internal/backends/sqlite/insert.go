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
	"fmt"
	"strings"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/backends/sqlite/metadata"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/handler/sjson"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/lazyerrors"
)

// prepareInsertStatement returns a statement and arguments for inserting the given documents.
//
// If capped is true, it returns a statement and arguments for inserting record IDs and documents.
//
// mongolock patch: if idValue is true, the statement also sets
// metadata.IDValueColumn to the metadata.IDColumn expression evaluated on
// each document, by SQLite, as the expression index did upstream.
func prepareInsertStatement(tableName string, capped, idValue bool, docs []*types.Document) (string, []any, error) {
	var args []any
	rows := make([]string, len(docs))

	for i, doc := range docs {
		b, err := sjson.Marshal(doc)
		if err != nil {
			return "", nil, lazyerrors.Error(err)
		}

		var row string

		if capped {
			row = "(?, ?"
			args = append(args, doc.RecordID(), string(b))
		} else {
			row = "(?"
			args = append(args, string(b))
		}

		if idValue {
			// the parameter just bound, by number
			row += fmt.Sprintf(", ?%d->'_id'", len(args))
		}

		rows[i] = row + ")"
	}

	columns := []string{metadata.DefaultColumn}
	if capped {
		columns = []string{metadata.RecordIDColumn, metadata.DefaultColumn}
	}

	if idValue {
		columns = append(columns, metadata.IDValueColumn)
	}

	return fmt.Sprintf(
		`INSERT INTO %q (%s) VALUES %s`,
		tableName,
		strings.Join(columns, ", "),
		strings.Join(rows, ", "),
	), args, nil
}
