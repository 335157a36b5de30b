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

package backends

// mongolock: tests of the mongolock patch in validation.go.

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Upstream's checks, which databaseNameOK and collectionNameOK replace.
var (
	upstreamDatabaseNameRe   = regexp.MustCompile("^[a-zA-Z0-9_-]{1,63}$")
	upstreamCollectionNameRe = regexp.MustCompile("^[^\\.$\x00][^$\x00]{0,234}$")
)

func checkNames(t *testing.T, name string) {
	t.Helper()

	if got, want := databaseNameOK(name), upstreamDatabaseNameRe.MatchString(name); got != want {
		t.Errorf("databaseNameOK(%q) = %v, upstream %v", name, got, want)
	}

	want := upstreamCollectionNameRe.MatchString(name) && utf8.ValidString(name)
	if got := collectionNameOK(name); got != want {
		t.Errorf("collectionNameOK(%q) = %v, upstream %v", name, got, want)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()

	for _, name := range []string{
		"", "a", "mongolocktest_0123456789abcdef", "A-b_9", "a.b", "a$b", "a\x00b", ".a", "$a", "a.",
		"système", "日本", "\xff", "a\xffb", strings.Repeat("x", 63), strings.Repeat("x", 64),
		strings.Repeat("x", 235), strings.Repeat("x", 236), strings.Repeat("é", 235), strings.Repeat("é", 236),
		"local", "oplog.rs", "system.users",
	} {
		checkNames(t, name)
	}
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"locks", ".x", "a$", "日本", strings.Repeat("é", 236)} {
		f.Add(s)
	}

	f.Fuzz(checkNames)
}
