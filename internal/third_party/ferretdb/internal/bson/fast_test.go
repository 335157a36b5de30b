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

// mongolock: tests of the mongolock patch in fast.go.

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/FerretDB/wire/wirebson"
	mongobson "go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
)

// reference converts raw the general way, without the fast path: a deep
// wirebson decoding, then convertToTypes (which never sees a RawDocument).
// It returns ok false where that fails or panics.
func reference(raw []byte) (doc *types.Document, ok bool) {
	defer func() {
		if recover() != nil {
			doc, ok = nil, false
		}
	}()

	d, err := wirebson.RawDocument(raw).DecodeDeep()
	if err != nil {
		return nil, false
	}

	v, err := convertToTypes(d)
	if err != nil {
		return nil, false
	}

	return v.(*types.Document), true
}

// checkFast checks that fastDocument and reference agree on raw: the fast
// path may give up, but when it succeeds, so does the reference, with an
// equal document.
func checkFast(t *testing.T, raw []byte) (fastOK bool) {
	t.Helper()

	fast, fastOK := fastDocument(raw)
	ref, refOK := reference(raw)

	switch {
	case fastOK && !refOK:
		t.Errorf("fast path accepted %x, which the general path rejects", raw)
	case fastOK && !reflect.DeepEqual(fast, ref):
		t.Errorf("fast path and general path differ on %x:\nfast:    %#v\ngeneral: %#v", raw, fast, ref)
	}

	return fastOK
}

func mustMarshal(t *testing.T, d any) []byte {
	t.Helper()

	b, err := mongobson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}

	return b
}

func TestFastDocument(t *testing.T) {
	t.Parallel()

	oid := mongobson.NewObjectID()
	all := mongobson.D{
		{Key: "findAndModify", Value: "locks"},
		{Key: "double", Value: 3.5},
		{Key: "negzero", Value: math.Copysign(0, -1)},
		{Key: "inf", Value: math.Inf(1)},
		{Key: "string", Value: "héllo"},
		{Key: "empty", Value: ""},
		{Key: "doc", Value: mongobson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: mongobson.D{}}}},
		{Key: "array", Value: mongobson.A{int64(1), "two", mongobson.D{{Key: "x", Value: nil}}, mongobson.A{}}},
		{Key: "bin", Value: mongobson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}},
		{Key: "emptybin", Value: mongobson.Binary{Subtype: 0, Data: nil}},
		{Key: "oldbin", Value: mongobson.Binary{Subtype: 2, Data: []byte{1, 2, 3}}},
		{Key: "oid", Value: oid},
		{Key: "true", Value: true},
		{Key: "false", Value: false},
		{Key: "date", Value: mongobson.NewDateTimeFromTime(time.UnixMilli(1_700_000_000_123))},
		{Key: "null", Value: nil},
		{Key: "regex", Value: mongobson.Regex{Pattern: "^a.*", Options: "i"}},
		{Key: "int32", Value: int32(-7)},
		{Key: "ts", Value: mongobson.Timestamp{T: 1700000000, I: 3}},
		{Key: "int64", Value: int64(1) << 40},
		{Key: "dup", Value: 1},
		{Key: "dup", Value: 2},
	}

	for name, d := range map[string]any{
		"all types":   all,
		"empty":       mongobson.D{},
		"many fields": manyFields(40),
		"nested":      mongobson.D{{Key: "a", Value: mongobson.D{{Key: "b", Value: mongobson.A{all}}}}},
		// Larger than sharedStringMax: keys and strings copied one by one.
		"large": mongobson.D{{Key: "big", Value: strings.Repeat("x", sharedStringMax)}, {Key: "all", Value: all}},
		// Arrays of more than fastFieldsBuf values, and of two-digit indexes.
		"long arrays": mongobson.D{{Key: "a", Value: longArray(12)}, {Key: "b", Value: longArray(40)}},
		// Documents of 1 to 5 fields (MakeDocumentFields allocates up to 4
		// with the document).
		"small documents": mongobson.D{
			{Key: "1", Value: manyFields(1)}, {Key: "2", Value: manyFields(2)}, {Key: "3", Value: manyFields(3)},
			{Key: "4", Value: manyFields(4)}, {Key: "5", Value: manyFields(5)},
		},
	} {
		t.Run(name, func(t *testing.T) {
			if !checkFast(t, mustMarshal(t, d)) {
				t.Error("fast path gave up")
			}
		})
	}

	// The general path rejects (or panics on) these, so the fast path must
	// give up on them.
	for name, d := range map[string]any{
		"NaN":        mongobson.D{{Key: "f", Value: math.NaN()}},
		"nested NaN": mongobson.D{{Key: "a", Value: mongobson.A{math.NaN()}}},
		"decimal128": mongobson.D{{Key: "d", Value: mongobson.NewDecimal128(1, 2)}},
		"minkey":     mongobson.D{{Key: "k", Value: mongobson.MinKey{}}},
		"javascript": mongobson.D{{Key: "j", Value: mongobson.JavaScript("1")}},
		"undefined":  mongobson.D{{Key: "u", Value: mongobson.Undefined{}}},
	} {
		t.Run(name, func(t *testing.T) {
			if checkFast(t, mustMarshal(t, d)) {
				t.Error("fast path accepted a document the general path rejects")
			}
		})
	}

	// Malformed encodings.
	valid := mustMarshal(t, mongobson.D{{Key: "a", Value: mongobson.A{"x", "y"}}, {Key: "s", Value: "str"}})
	for name, raw := range map[string][]byte{
		"truncated":      valid[:len(valid)-1],
		"trailing byte":  append(append([]byte{}, valid...), 0),
		"short":          {5, 0, 0},
		"no terminator":  {5, 0, 0, 0, 1},
		"bad bool":       {9, 0, 0, 0, 8, 'b', 0, 2, 0},
		"array index":    mustMarshal(t, mongobson.D{{Key: "a", Value: mongobson.D{{Key: "1", Value: "x"}}}}),
		"string prefix":  {14, 0, 0, 0, 2, 's', 0, 0, 0, 0, 0, 0, 0, 0},
		"string no nul":  {15, 0, 0, 0, 2, 's', 0, 2, 0, 0, 0, 'a', 'b', 0, 0},
		"regex unclosed": {10, 0, 0, 0, 0x0b, 'r', 0, 'a', 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "array index" {
				raw[4] = 0x04 // the first field's type: an array whose first index is "1"
			}
			if checkFast(t, raw) {
				t.Error("fast path accepted a malformed document")
			}
		})
	}
}

// longArray returns an array of n values of several types.
func longArray(n int) mongobson.A {
	a := make(mongobson.A, n)
	for i := range a {
		switch i % 3 {
		case 0:
			a[i] = int32(i)
		case 1:
			a[i] = "s" + string(rune('a'+i%26))
		default:
			a[i] = mongobson.D{{Key: "i", Value: int64(i)}}
		}
	}

	return a
}

// manyFields returns a document with n int32 fields, enough for a keys map.
func manyFields(n int) mongobson.D {
	d := make(mongobson.D, n)
	for i := range d {
		d[i] = mongobson.E{Key: "f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: int32(i)}
	}

	return d
}

func FuzzFastDocument(f *testing.F) {
	for _, d := range []mongobson.D{
		{{Key: "ping", Value: 1}},
		{{Key: "update", Value: "c"}, {Key: "updates", Value: mongobson.A{mongobson.D{
			{Key: "q", Value: mongobson.D{{Key: "_id", Value: "k"}, {Key: "token", Value: "t"}}},
			{Key: "u", Value: mongobson.D{{Key: "$set", Value: mongobson.D{{Key: "locked", Value: false}, {Key: "owner", Value: nil}}}}},
		}}}},
		{{Key: "b", Value: mongobson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}, {Key: "r", Value: mongobson.Regex{Pattern: "a", Options: "i"}}},
		{{Key: "t", Value: mongobson.Timestamp{T: 1, I: 2}}, {Key: "d", Value: mongobson.DateTime(1)}, {Key: "f", Value: 1.5}},
	} {
		b, err := mongobson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) >= 4 && int(binary.LittleEndian.Uint32(raw)) > 1<<20 {
			return // wirebson would allocate for nothing
		}
		checkFast(t, raw)
	})
}
