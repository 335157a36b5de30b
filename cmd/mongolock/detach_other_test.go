//go:build !linux

package main

import "os/exec"

// detach is a no-op here; see proc_linux_test.go.
func detach(cmd *exec.Cmd) {}
