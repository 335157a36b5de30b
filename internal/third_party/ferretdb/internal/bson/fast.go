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

package bson

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/FerretDB/wire/wirebson"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
)

// mongolock patch: this file converts raw BSON documents straight to
// *types.Document, without decoding them to *wirebson.Document first.
// Converting every request that way (ToDocument) allocated about a fifth of
// what FerretDB allocates for a findAndModify or an update by _id, and took
// about as much of its time.
//
// The fast path handles the value types requests carry (everything but
// undefined, DBPointer, JavaScript, symbol, decimal128 and min/max keys),
// checks the encoding exactly as wirebson decoding does, and gives up on
// anything else: another type, malformed BSON, a NaN. ToDocument then takes
// the general path, which returns the same error (or, for decimal128, the
// same panic) as before. When the fast path succeeds, the general path would
// have returned an equal document; TestFastDocument and FuzzFastDocument
// check that.

// fastDocument converts raw, which must hold exactly one BSON document.
// ok is false if the general path must be taken.
func fastDocument(raw []byte) (doc *types.Document, ok bool) {
	keys, values, ok := fastFields(raw)
	if !ok {
		return nil, false
	}

	doc, err := types.ConvertDocument(fields{keys: keys, values: values})
	if err != nil {
		return nil, false
	}

	return doc, true
}

// fastArray converts raw, which must hold exactly one BSON array.
// ok is false if the general path must be taken.
func fastArray(raw []byte) (arr *types.Array, ok bool) {
	keys, values, ok := fastFields(raw)
	if !ok {
		return nil, false
	}

	for i, k := range keys {
		if k != strconv.Itoa(i) {
			return nil, false
		}
	}

	if values == nil {
		values = []any{} // as ToArray makes it
	}

	arr, err := types.NewArray(values...)
	if err != nil {
		return nil, false
	}

	return arr, true
}

// fields is a document's keys and values, for types.ConvertDocument.
type fields struct {
	keys   []string
	values []any
}

// Keys returns the keys.
func (f fields) Keys() []string { return f.keys }

// Values returns the values.
func (f fields) Values() []any { return f.values }

// fastFields returns the keys and converted values of the BSON document raw,
// as wirebson.RawDocument's decoding checks it.
func fastFields(raw []byte) (keys []string, values []any, ok bool) {
	l, ok := findRaw(raw)
	if !ok || l != len(raw) {
		return nil, nil, false
	}

	offset := 4

	for {
		if offset >= len(raw) {
			return nil, nil, false
		}

		t := raw[offset]
		if t == 0 {
			if offset+1 != len(raw) {
				return nil, nil, false
			}

			return keys, values, true
		}

		offset++

		if offset >= len(raw) {
			return nil, nil, false
		}

		n := bytes.IndexByte(raw[offset:], 0)
		if n < 0 {
			return nil, nil, false
		}

		name := string(raw[offset : offset+n])
		offset += n + 1

		v, size, ok := fastValue(t, raw[offset:])
		if !ok {
			return nil, nil, false
		}

		offset += size

		keys = append(keys, name)
		values = append(values, v)
	}
}

// findRaw returns the length of the BSON document or array at the start of b,
// as wirebson.FindRaw does; ok is false where FindRaw returns an error.
func findRaw(b []byte) (l int, ok bool) {
	if len(b) < 5 {
		return 0, false
	}

	l = int(binary.LittleEndian.Uint32(b))
	if l < 5 || len(b) < l || b[l-1] != 0 {
		return 0, false
	}

	return l, true
}

// fastValue converts the value of BSON type t at the start of b, as
// wirebson's decoding and then convertToTypes do, and returns its encoded
// size; ok is false if the general path must be taken.
func fastValue(t byte, b []byte) (v any, size int, ok bool) {
	switch t {
	case 0x01: // double
		if len(b) < 8 {
			return nil, 0, false
		}

		f := math.Float64frombits(binary.LittleEndian.Uint64(b))
		if math.IsNaN(f) {
			return nil, 0, false // convertToTypes's error
		}

		return f, 8, true

	case 0x02: // string
		if len(b) < 5 {
			return nil, 0, false
		}

		n := int(binary.LittleEndian.Uint32(b))
		if n < 1 || len(b) < 4+n || b[4+n-1] != 0 {
			return nil, 0, false
		}

		return string(b[4 : 4+n-1]), 4 + n, true

	case 0x03: // document
		l, ok := findRaw(b)
		if !ok {
			return nil, 0, false
		}

		doc, ok := fastDocument(b[:l])
		if !ok {
			return nil, 0, false
		}

		return doc, l, true

	case 0x04: // array
		l, ok := findRaw(b)
		if !ok {
			return nil, 0, false
		}

		arr, ok := fastArray(b[:l])
		if !ok {
			return nil, 0, false
		}

		return arr, l, true

	case 0x05: // binary
		if len(b) < 5 {
			return nil, 0, false
		}

		n := int(binary.LittleEndian.Uint32(b))
		if len(b) < 5+n {
			return nil, 0, false
		}

		data := []byte{} // convertToTypes turns a nil slice into an empty one
		if n > 0 {
			data = make([]byte, n)
			copy(data, b[5:5+n])
		}

		return types.Binary{B: data, Subtype: types.BinarySubtype(b[4])}, 5 + n, true

	case 0x07: // ObjectID
		if len(b) < 12 {
			return nil, 0, false
		}

		var id types.ObjectID
		copy(id[:], b)

		return id, 12, true

	case 0x08: // boolean
		if len(b) < 1 || b[0] > 1 {
			return nil, 0, false
		}

		return b[0] == 1, 1, true

	case 0x09: // UTC datetime
		if len(b) < 8 {
			return nil, 0, false
		}

		return time.UnixMilli(int64(binary.LittleEndian.Uint64(b))).UTC(), 8, true

	case 0x0a: // null
		return types.Null, 0, true

	case 0x0b: // regular expression: two C strings
		p := bytes.IndexByte(b, 0)
		if p < 0 {
			return nil, 0, false
		}

		o := bytes.IndexByte(b[p+1:], 0)
		if o < 0 {
			return nil, 0, false
		}

		o += p + 1

		return types.Regex{Pattern: string(b[:p]), Options: string(b[p+1 : o])}, o + 1, true

	case 0x10: // int32
		if len(b) < 4 {
			return nil, 0, false
		}

		return int32(binary.LittleEndian.Uint32(b)), 4, true

	case 0x11: // timestamp
		if len(b) < 8 {
			return nil, 0, false
		}

		return types.Timestamp(binary.LittleEndian.Uint64(b)), 8, true

	case 0x12: // int64
		if len(b) < 8 {
			return nil, 0, false
		}

		return int64(binary.LittleEndian.Uint64(b)), 8, true

	default:
		return nil, 0, false
	}
}

// check interfaces
var (
	_ wirebson.AnyDocument = wirebson.RawDocument(nil)
)
