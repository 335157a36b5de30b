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

//go:build !ferretdb_debug

package debugbuild

// Enabled is false if that's not a debug build.
//
// See [build/version] package documentation for more details.
//
// It is a constant to allow the compiler to optimize away the code.
//
// mongolock patch: only the ferretdb_debug build tag makes a debug build.
// Upstream's constraint is "ferretdb_debug || race": every build with the race
// detector, so every `go test -race` of a program that embeds this server,
// got FerretDB's debug behaviour, made for FerretDB's own tests: resource
// tracking with stack traces, replies decoded in depth before they are sent,
// panics instead of errors on internal inconsistencies (which would end the
// test binary), and fixed ObjectID and cursor ID seeds.
const Enabled = false
