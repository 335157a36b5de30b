package mongolock

// TestServerURI gives the examples (package mongolock_test) the server this
// package's tests share; see testserver_test.go.
var TestServerURI = testServerURI
