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

package sjson

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/lazyerrors"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
)

// mongolock patch: this file encodes and decodes the scalar values of a
// stored document, and its schema, without encoding/json where the result
// is the same: a json.Marshal or json.Unmarshal per value (and per key of
// the schema) was most of Marshal's and Unmarshal's time and allocations.
// Anything else is left to the general path, which is unchanged.
// TestFastValues and FuzzFastValues compare both paths.

// appendMarshal appends Marshal's encoding of d to buf.
func appendMarshal(buf []byte, d *types.Document) ([]byte, error) {
	buf = append(buf, `{"$s":`...)

	buf, err := appendSchemaForDoc(buf, d)
	if err != nil {
		return nil, err
	}

	for i := range d.Len() {
		key, value := d.Field(i)

		// The key as it is, unescaped: upstream writes it so.
		buf = append(buf, ',', '"')
		buf = append(buf, key...)
		buf = append(buf, '"', ':')

		if buf, err = appendValue(buf, value); err != nil {
			return nil, lazyerrors.Error(err)
		}
	}

	return append(buf, '}'), nil
}

// appendValue appends the encoding of v, as toSJSON(v).MarshalJSON() writes it.
func appendValue(buf []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendString(buf, v)
	case bool:
		return strconv.AppendBool(buf, v), nil
	case time.Time:
		return strconv.AppendInt(buf, v.UnixMilli(), 10), nil
	case types.NullType:
		return append(buf, "null"...), nil
	case int32:
		return strconv.AppendInt(buf, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(buf, v, 10), nil
	}

	b, err := toSJSON(v).MarshalJSON()
	if err != nil {
		return nil, err
	}

	return append(buf, b...), nil
}

// plainString reports whether json.Marshal encodes s as s between quotes:
// printable ASCII without '"', '\\' and what it escapes for HTML.
func plainString(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e:
			return false
		case c == '"' || c == '\\' || c == '<' || c == '>' || c == '&':
			return false
		}
	}

	return true
}

// appendString appends the JSON encoding of s, as json.Marshal writes it.
func appendString(buf []byte, s string) ([]byte, error) {
	if plainString(s) {
		buf = append(buf, '"')
		buf = append(buf, s...)

		return append(buf, '"'), nil
	}

	b, err := json.Marshal(s)
	if err != nil {
		return nil, lazyerrors.Error(err)
	}

	return append(buf, b...), nil
}

// appendSchemaForDoc appends what marshalSchemaForDoc returns for td.
func appendSchemaForDoc(buf []byte, td *types.Document) ([]byte, error) {
	n := td.Len()
	if n == 0 {
		return append(buf, "{}"...), nil
	}

	buf = append(buf, `{"p":{`...)

	var err error

	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}

		key, _ := td.Field(i)
		if buf, err = appendString(buf, key); err != nil {
			return nil, err
		}

		buf = append(buf, ':')

		// Get, as upstream: it panics on a duplicate key.
		if buf, err = appendElem(buf, must.NotFail(td.Get(key))); err != nil {
			return nil, lazyerrors.Error(err)
		}
	}

	buf = append(buf, `},"$k":[`...)

	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}

		key, _ := td.Field(i)
		if buf, err = appendString(buf, key); err != nil {
			return nil, err
		}
	}

	return append(buf, ']', '}'), nil
}

// appendElem appends what marshalElemForSingleValue returns for value.
func appendElem(buf []byte, value any) ([]byte, error) {
	var s string

	switch value.(type) {
	case float64:
		s = `{"t":"double"}`
	case string:
		s = `{"t":"string"}`
	case types.ObjectID:
		s = `{"t":"objectId"}`
	case bool:
		s = `{"t":"bool"}`
	case time.Time:
		s = `{"t":"date"}`
	case types.NullType:
		s = `{"t":"null"}`
	case int32:
		s = `{"t":"int"}`
	case types.Timestamp:
		s = `{"t":"timestamp"}`
	case int64:
		s = `{"t":"long"}`
	default:
		b, err := marshalElemForSingleValue(value)
		if err != nil {
			return nil, err
		}

		return append(buf, b...), nil
	}

	return append(buf, s...), nil
}

// unmarshalScalar decodes data, of one of the types of the schema sch, as
// unmarshalSingleValue does, for the types and encodings it handles: ok is
// false for anything else. It does not handle null.
func unmarshalScalar(data []byte, sch *elem) (v any, ok bool) {
	switch sch.Type {
	case elemTypeString:
		if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
			return nil, false
		}

		s := data[1 : len(data)-1]
		for _, c := range s {
			// no escapes, control characters, or quotes (a value that
			// would end early)
			if c < 0x20 || c == '\\' || c == '"' {
				return nil, false
			}
		}

		if !utf8.Valid(s) {
			return nil, false // json.Unmarshal replaces invalid bytes
		}

		return string(s), true

	case elemTypeBool:
		switch string(data) {
		case "true":
			return true, true
		case "false":
			return false, true
		}

		return nil, false

	case elemTypeDate:
		n, ok := parseJSONInt(data, 64)
		if !ok {
			return nil, false
		}

		return fromSJSON(new(dateTimeType(time.UnixMilli(n)))), true

	case elemTypeInt:
		n, ok := parseJSONInt(data, 32)
		if !ok {
			return nil, false
		}

		return int32(n), true

	case elemTypeLong:
		n, ok := parseJSONInt(data, 64)
		if !ok {
			return nil, false
		}

		return n, true
	}

	return nil, false
}

// parseJSONInt parses data, a JSON integer (an optional minus, then digits
// without a leading zero) that fits bitSize bits, as json.Unmarshal into an
// integer of that size accepts it; ok is false for anything else.
func parseJSONInt(data []byte, bitSize int) (int64, bool) {
	digits := data
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}

	if len(digits) == 0 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}

	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}

	n, err := strconv.ParseInt(string(data), 10, bitSize)
	if err != nil {
		return 0, false
	}

	return n, true
}
