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
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// splitObject splits the JSON object data into its fields, as
// json.Unmarshal into a map[string]json.RawMessage does, without copying
// the values.
//
// mongolock patch: that json.Unmarshal was about half of Unmarshal's time.
// splitObject handles what Marshal writes: no whitespace, no duplicate keys
// and keys without escapes or control characters. On anything else, and on
// malformed JSON, it returns ok false, and the caller takes the general
// path, which decodes the object or returns the error. It checks the
// object's structure and the nesting of the values; the values themselves
// are checked when Unmarshal decodes them (all those the schema names,
// which is all of them unless the schema lists a key twice).
func splitObject(data []byte) (fields map[string]json.RawMessage, ok bool) {
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return nil, false
	}

	fields = make(map[string]json.RawMessage)

	i := 1
	if data[i] == '}' {
		return fields, i == len(data)-1
	}

	for {
		// a key without escapes
		if data[i] != '"' {
			return nil, false
		}

		end := bytes.IndexByte(data[i+1:], '"')
		if end < 0 {
			return nil, false
		}

		key := data[i+1 : i+1+end]
		if !plainKey(key) {
			return nil, false
		}

		i += end + 2

		if i >= len(data) || data[i] != ':' {
			return nil, false
		}

		i++

		n, ok := skipValue(data[i:])
		if !ok {
			return nil, false
		}

		// A duplicate key would hide its first value from the decoding
		// that checks it; json.Unmarshal checks every value.
		if _, dup := fields[string(key)]; dup {
			return nil, false
		}

		fields[string(key)] = json.RawMessage(data[i : i+n])
		i += n

		if i >= len(data) {
			return nil, false
		}

		switch data[i] {
		case ',':
			i++

			if i >= len(data) {
				return nil, false
			}
		case '}':
			return fields, i == len(data)-1
		default:
			return nil, false
		}
	}
}

// plainKey reports whether the bytes of a JSON string key are its value:
// valid UTF-8 without escapes or control characters (which JSON forbids).
func plainKey(key []byte) bool {
	for _, c := range key {
		if c < 0x20 || c == '\\' {
			return false
		}
	}

	return utf8.Valid(key)
}

// skipValue returns the length of the JSON value at the start of b: a
// string, an object or an array (whose brackets and braces must match, outside
// strings), or a literal or number up to the next ',', '}' or ']'. It
// returns ok false on whitespace, on an empty value and where brackets do
// not match.
func skipValue(b []byte) (n int, ok bool) {
	var stack []byte // the closing brackets expected

	for i := 0; i < len(b); i++ {
		c := b[i]

		switch c {
		case '"':
			for i++; ; i++ {
				if i >= len(b) {
					return 0, false
				}

				if b[i] == '\\' {
					i++
					continue
				}

				if b[i] == '"' {
					break
				}
			}
		case '{':
			stack = append(stack, '}')
		case '[':
			stack = append(stack, ']')
		case '}', ']':
			if len(stack) == 0 {
				if i == 0 {
					return 0, false
				}

				return i, true // the end of a literal or number in the enclosing object
			}

			if stack[len(stack)-1] != c {
				return 0, false
			}

			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) == 0 {
				if i == 0 {
					return 0, false
				}

				return i, true
			}
		case ' ', '\t', '\n', '\r':
			return 0, false
		}

		if len(stack) == 0 && (c == '"' || c == '}' || c == ']') {
			return i + 1, true // a whole string, object or array
		}
	}

	return 0, false
}
