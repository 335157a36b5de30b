//go:build race

package tests

// raceEnabled says this test binary was built with -race, so that the
// mutants are built the same way (reusing the dependencies already built).
const raceEnabled = true
