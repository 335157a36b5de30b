// Command mongolock runs commands under a distributed lock kept in MongoDB,
// inspects and clears locks, checks a deployment, and runs a local
// MongoDB-compatible server and a demonstration.
//
// Run "mongolock --help" for the commands, or "go run ./cmd/mongolock demo"
// to see the lock at work.
package main

import "os"

func main() {
	// "mongolock run" starts this program again to supervise its command
	// (supervisor_unix.go); that mode is not a command of the tree.
	if code, ok := maybeSupervise(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:]...))
}
