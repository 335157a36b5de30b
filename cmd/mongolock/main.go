// Command mongolock runs commands under a distributed lock kept in MongoDB,
// inspects and clears locks, checks a deployment, and runs a local
// MongoDB-compatible server and a demonstration.
//
// Run "mongolock --help" for the commands, or "go run ./cmd/mongolock demo"
// to see the lock at work.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:]...))
}
