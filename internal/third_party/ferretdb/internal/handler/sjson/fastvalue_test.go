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

// mongolock: tests of the mongolock patch in fastvalue.go.

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/lazyerrors"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
)

// referenceMarshal is Marshal as upstream wrote it, without fastvalue.go.
func referenceMarshal(d *types.Document) ([]byte, error) {
	schema, err := marshalSchemaForDoc(d)
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer

	buf.WriteString(`{"$s":`)
	buf.Write(schema)

	keys := d.Keys()
	values := d.Values()

	for i, key := range keys {
		buf.WriteByte(',')
		buf.WriteString(`"`)
		buf.WriteString(key)
		buf.WriteString(`":`)

		b, err := toSJSON(values[i]).MarshalJSON()
		if err != nil {
			return nil, lazyerrors.Error(err)
		}

		buf.Write(b)
	}

	buf.WriteByte('}')

	return buf.Bytes(), nil
}

// referenceScalar decodes data as unmarshalSingleValue does without
// unmarshalScalar, for the types unmarshalScalar handles.
func referenceScalar(data []byte, t elemType) (v any, err error) {
	var res sjsontype

	switch t {
	case elemTypeString:
		var s stringType
		err, res = s.UnmarshalJSON(data), &s
	case elemTypeBool:
		var b boolType
		err, res = b.UnmarshalJSON(data), &b
	case elemTypeDate:
		var d dateTimeType
		err, res = d.UnmarshalJSON(data), &d
	case elemTypeInt:
		var i int32Type
		err, res = i.UnmarshalJSON(data), &i
	case elemTypeLong:
		var l int64Type
		err, res = l.UnmarshalJSON(data), &l
	default:
		panic(t)
	}

	if err != nil {
		return nil, err
	}

	return fromSJSON(res), nil
}

var scalarTypes = []elemType{elemTypeString, elemTypeBool, elemTypeDate, elemTypeInt, elemTypeLong}

// checkScalar checks that unmarshalScalar, when it decodes data, agrees
// with referenceScalar.
func checkScalar(t *testing.T, data []byte, typ elemType) (ok bool) {
	t.Helper()

	if bytes.Equal(data, []byte("null")) {
		return false // unmarshalSingleValue handles null first; the reference panics
	}

	got, ok := unmarshalScalar(data, &elem{Type: typ})
	if !ok {
		return false
	}

	want, err := referenceScalar(data, typ)
	switch {
	case err != nil:
		t.Errorf("unmarshalScalar(%q, %s) = %#v, the general path fails: %v", data, typ, got, err)
	case !reflect.DeepEqual(got, want):
		t.Errorf("unmarshalScalar(%q, %s) = %#v, the general path gives %#v", data, typ, got, want)
	}

	return true
}

// checkMarshal checks that Marshal writes what upstream's Marshal writes
// for d, and that Unmarshal reads it back as the general path does.
func checkMarshal(t *testing.T, d *types.Document) {
	t.Helper()

	got, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}

	want, err := referenceMarshal(d)
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal:\ngot  %s\nwant %s", got, want)
	}

	back, err := Unmarshal(got)
	if err != nil {
		// Upstream writes the keys of the data unescaped: a key that needs
		// escaping makes the encoding invalid JSON.
		if json.Valid(got) {
			t.Fatalf("Unmarshal(%s): %v", got, err)
		}

		return
	}

	if d.Len() == 0 {
		return
	}

	// The values unmarshalScalar decoded, decoded the general way.
	v, ok := splitObject(got)
	if !ok {
		must.NoError(json.Unmarshal(got, &v))
	}
	sch := must.NotFail(decodeSchema(v["$s"]))

	for _, key := range sch.Keys {
		typ := sch.Properties[key].Type
		if !bytes.Equal(v[key], []byte("null")) && slicesContains(scalarTypes, typ) {
			if !checkScalar(t, v[key], typ) && !bytes.ContainsAny(v[key], `\\`) {
				t.Errorf("unmarshalScalar gave up on %s %q", typ, v[key])
			}
		}
	}

	if back.Len() != d.Len() {
		t.Errorf("Unmarshal(Marshal(d)) has %d fields, want %d", back.Len(), d.Len())
	}
}

func slicesContains(s []elemType, t elemType) bool {
	for _, e := range s {
		if e == t {
			return true
		}
	}

	return false
}

func TestFastValues(t *testing.T) {
	t.Parallel()

	strs := []string{
		"", "owner-1", "héllo", "a<b>&c", `q"uote`, `back\slash`, "tab\t", "\u2028", "\x7f",
		"\xff invalid", "nul\x00", "emoji 🙂",
	}

	for _, s := range strs {
		checkMarshal(t, must.NotFail(types.NewDocument(
			"_id", s,
			s, "key",
			"locked", true,
			"free", false,
			"owner", types.Null,
			"created", time.UnixMilli(1_700_000_000_123).UTC(),
			"neg", time.UnixMilli(-5).UTC(),
			"fence", int64(math.MaxInt64),
			"low", int64(math.MinInt64),
			"i", int32(math.MinInt32),
			"d", 1.5,
			"oid", types.ObjectID{1, 2, 3},
			"bin", types.Binary{B: []byte{1}, Subtype: 4},
			"sub", must.NotFail(types.NewDocument("a", s, "n", int32(7))),
			"arr", must.NotFail(types.NewArray(s, int64(1), types.Null)),
		)))
	}

	checkMarshal(t, must.NotFail(types.NewDocument()))

	for _, typ := range scalarTypes {
		for _, data := range []string{
			`""`, `"abc"`, `"a\"b"`, `"a\u0041"`, "\"\xff\"", "\"a\tb\"", `"é"`,
			`true`, `false`, `tru`, `True`,
			`0`, `-0`, `1`, `-1`, `01`, `+1`, `1.0`, `1e3`, `-`, ``, ` 1`, `1 `,
			`2147483647`, `2147483648`, `-2147483648`, `-2147483649`,
			`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`,
		} {
			checkScalar(t, []byte(data), typ)
		}
	}
}

func FuzzFastValues(f *testing.F) {
	f.Add("owner", int64(1_700_000_000_123), []byte(`"x"`))
	f.Add("a<b", int64(-1), []byte(`-12`))
	f.Add("\u2028", int64(math.MaxInt64), []byte(`true`))

	f.Fuzz(func(t *testing.T, s string, n int64, data []byte) {
		checkMarshal(t, must.NotFail(types.NewDocument(
			"_id", s,
			"s"+strconv.Itoa(len(s)), s,
			"d", time.UnixMilli(n).UTC(),
			"l", n,
			"i", int32(n),
			"b", n%2 == 0,
		)))

		for _, typ := range scalarTypes {
			checkScalar(t, data, typ)
		}
	})
}
