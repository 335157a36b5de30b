//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// supervisorExecutable is what "run" starts as the supervising process:
// this very program, also if its file was replaced or removed since.
func supervisorExecutable() (string, error) { return "/proc/self/exe", nil }

// becomeSubreaper makes the descendants this process orphans its own
// children, instead of init's, so that it can find and kill them
// (PR_SET_CHILD_SUBREAPER).
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// liveChildren returns the children of process parent that have not
// exited (zombies left out), read from /proc. Killing a child by pid is
// safe from pid reuse as long as only parent reaps it.
func liveChildren(parent int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited meanwhile
		}
		// "pid (comm) state ppid ...", where comm may hold anything.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == parent {
			kids = append(kids, pid)
		}
	}
	return kids, nil
}

// parentOf returns the parent of process pid, from /proc.
func parentOf(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.Atoi(f[1])
}

// signalIgnored reports whether this process ignores sig (SIG_IGN), from
// /proc/self/status. The Go runtime does not know it for signals it does
// not handle, such as an inherited SIGTSTP.
func signalIgnored(sig syscall.Signal) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if mask, ok := strings.CutPrefix(sc.Text(), "SigIgn:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
