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

// mongolock: tests of the mongolock patch in split.go.

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/types"
	"github.com/mongolock/mongolock/internal/third_party/ferretdb/internal/util/must"
)

// checkSplit checks splitObject against json.Unmarshal on data: when
// splitObject accepts data, either json.Unmarshal gives the same fields or
// one of the values splitObject returned is not valid JSON (its decoding
// then fails).
func checkSplit(t *testing.T, data []byte) (ok bool) {
	t.Helper()

	got, ok := splitObject(data)
	if !ok {
		return false
	}

	var want map[string]json.RawMessage
	if err := json.Unmarshal(data, &want); err == nil {
		if !maps.EqualFunc(got, want, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Errorf("splitObject(%q) = %q, json.Unmarshal gives %q", data, got, want)
		}
		return true
	}

	for _, v := range got {
		if !json.Valid(v) {
			return true
		}
	}
	t.Errorf("splitObject accepted %q, which json.Unmarshal rejects, with valid values %q", data, got)

	return true
}

func TestSplitObject(t *testing.T) {
	t.Parallel()

	doc := must.NotFail(types.NewDocument(
		"_id", "k",
		"locked", true,
		"owner", "me, \"quoted\" {and} [brackets] \\ back",
		"expire", time.UnixMilli(1_700_000_000_000),
		"fence", int64(42),
		"sub", must.NotFail(types.NewDocument("a", must.NotFail(types.NewArray(int32(1), "x", types.Null)))),
		"nothing", types.Null,
		"f", 1.5,
	))

	stored := must.NotFail(Marshal(doc))
	if !checkSplit(t, stored) {
		t.Fatalf("splitObject gave up on what Marshal writes: %s", stored)
	}
	got, err := Unmarshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, doc) {
		t.Errorf("Unmarshal(Marshal(doc)) = %v, want %v", got, doc)
	}

	for _, data := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"":{[]},"":0}`, `{"a":"x,}]"}`, `{"a":{"b":[1,{"c":"\""}]},"d":null}`,
		`{"a":1 }`, `{ "a":1}`, `{"a":1,}`, `{"a"1}`, `{"a":}`, `{"a":[1}}`, `{"a":{]}`, `{"a":1}}`,
		`{"a\"b":1}`, "{\"\x02\":\"\"}", `{"a":tru}`, `{"a":"unterminated}`, `[1]`, `{`, ``, `{"a":1}x`,
	} {
		checkSplit(t, []byte(data))
	}
}

func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":"x"}`, `{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":1}`, `{"a":[{"b":"]"}]}`} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		checkSplit(t, data)
	})
}
