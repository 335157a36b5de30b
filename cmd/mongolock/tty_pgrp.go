//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import "golang.org/x/sys/unix"

// foreground returns the foreground process group of the terminal fd.
func foreground(fd int) (int, bool) {
	pg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	return pg, err == nil
}

// setForeground makes pgrp the foreground process group of the terminal fd.
func setForeground(fd, pgrp int) {
	_ = unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, pgrp)
}
