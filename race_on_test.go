//go:build race

package mongolock

// raceEnabled says this test binary was built with -race, so that the
// test server is built the same way (reusing the dependencies already built).
const raceEnabled = true
