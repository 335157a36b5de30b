// Package tests holds the tests of the library (package mongolock) that
// need a server: they run against the embedded test server (mongolocktest)
// or MONGOLOCK_TEST_URI, inject its faults, run the stress harness and the
// broken variants (TestMutantsAreCaught).
//
// They live here, not beside the library, because a module that imports
// the library loads the library package's own tests when it runs go mod
// tidy: their imports (the test server, porcupine, goleak) would land in
// every user's go.mod. This package is part of the library's module but
// imported by nobody; its imports come from the workspace (go.work).
package tests
