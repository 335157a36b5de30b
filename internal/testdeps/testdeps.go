// Package testdeps names the third-party modules the library's own tests
// use (porcupine for the stress harness's linearizability check, goleak
// for goroutine leaks), so that this module requires them for the
// workspace (go.work). The library module's go.mod requires the MongoDB
// driver alone, so that a program that imports the library gets nothing
// else; its tests find these through the workspace.
package testdeps

import (
	_ "github.com/anishathalye/porcupine"
	_ "go.uber.org/goleak"
)
