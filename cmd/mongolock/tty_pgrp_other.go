//go:build unix && !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

// foreground reports no foreground group: on these systems the command
// runs in a background process group of its own and mongolock forwards
// the terminal's signals to it.
func foreground(fd int) (int, bool) { return 0, false }

func setForeground(fd, pgrp int) {}
