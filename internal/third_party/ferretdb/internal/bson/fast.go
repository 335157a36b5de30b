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

// sharedStringMax is the size up to which a request's keys and strings are
// substrings of one copy of the whole request (fastDocument), instead of a
// copy each: one allocation instead of one per key and string, at the cost
// of keeping that copy (at most this size) alive as long as any of them.
const sharedStringMax = 16 << 10

// fastFieldsBuf is the number of fields a document can have before
// fastFields's buffers, on the stack, must grow on the heap.
const fastFieldsBuf = 16

// fastDocument converts raw, which must hold exactly one BSON document.
// ok is false if the general path must be taken.
func fastDocument(raw []byte) (doc *types.Document, ok bool) {
	var s string
	if len(raw) <= sharedStringMax {
		s = string(raw)
	}

	return fastDoc(raw, s)
}

// fastDoc is fastDocument for raw, and s, if not empty, holding the same
// bytes as raw (keys and strings are its substrings).
func fastDoc(raw []byte, s string) (doc *types.Document, ok bool) {
	var kbuf [fastFieldsBuf]string
	var vbuf [fastFieldsBuf]any

	keys, values, ok := fastFields(raw, s, false, kbuf[:0], vbuf[:0])
	if !ok {
		return nil, false
	}

	return types.MakeDocumentFields(keys, values), true
}

// fastArray converts raw, which must hold exactly one BSON array, and s as
// for fastDoc. ok is false if the general path must be taken.
func fastArray(raw []byte, s string) (arr *types.Array, ok bool) {
	var vbuf [fastFieldsBuf]any

	_, values, ok := fastFields(raw, s, true, nil, vbuf[:0])
	if !ok {
		return nil, false
	}

	// An array keeps its slice: a copy of exactly its length, and an empty
	// one (not nil) if it has none, as ToArray makes it.
	arr, err := types.NewArray(append(make([]any, 0, len(values)), values...)...)
	if err != nil {
		return nil, false
	}

	return arr, true
}

// fastFields appends to keys and values the keys and converted values of the
// BSON document raw, as wirebson.RawDocument's decoding checks it. If array
// is true, the keys must be "0", "1", ... (as fastArray's general path,
// ToArray, requires), and are not returned. s is as for fastDoc.
func fastFields(raw []byte, s string, array bool, keys []string, values []any) ([]string, []any, bool) {
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

		if array {
			if !isIndex(raw[offset:offset+n], len(values)) {
				return nil, nil, false
			}
		} else {
			keys = append(keys, substr(raw, s, offset, offset+n))
		}

		offset += n + 1

		var sub string
		if s != "" {
			sub = s[offset:]
		}

		v, size, ok := fastValue(t, raw[offset:], sub)
		if !ok {
			return nil, nil, false
		}

		offset += size

		values = append(values, v)
	}
}

// fastDocFunc and fastArrayFunc are fastDoc and fastArray, which fastValue
// calls through these variables, not directly: in a cycle of direct calls,
// escape analysis would let no buffer passed down the cycle stay on the
// stack (fastDoc's and fastArray's buffers would be allocated on the heap).
var (
	fastDocFunc   func(raw []byte, s string) (*types.Document, bool)
	fastArrayFunc func(raw []byte, s string) (*types.Array, bool)
)

func init() {
	fastDocFunc, fastArrayFunc = fastDoc, fastArray
}

// substr returns raw[i:j] as a string: s[i:j] if s holds raw, else a copy.
func substr(raw []byte, s string, i, j int) string {
	if s != "" {
		return s[i:j]
	}

	return string(raw[i:j])
}

// isIndex reports whether key is strconv.Itoa(i).
func isIndex(key []byte, i int) bool {
	var buf [20]byte

	return bytes.Equal(key, strconv.AppendInt(buf[:0], int64(i), 10))
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
// size; ok is false if the general path must be taken. s is as for fastDoc.
func fastValue(t byte, b []byte, s string) (v any, size int, ok bool) {
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

		return substr(b, s, 4, 4+n-1), 4 + n, true

	case 0x03: // document
		l, ok := findRaw(b)
		if !ok {
			return nil, 0, false
		}

		if s != "" {
			s = s[:l]
		}

		doc, ok := fastDocFunc(b[:l], s)
		if !ok {
			return nil, 0, false
		}

		return doc, l, true

	case 0x04: // array
		l, ok := findRaw(b)
		if !ok {
			return nil, 0, false
		}

		if s != "" {
			s = s[:l]
		}

		arr, ok := fastArrayFunc(b[:l], s)
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

		return types.Regex{Pattern: substr(b, s, 0, p), Options: substr(b, s, p+1, o)}, o + 1, true

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
