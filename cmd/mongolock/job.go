package main

import "time"

// jobSpec is the command "run" runs and how.
type jobSpec struct {
	argv      []string
	env       []string
	stdio     stdio
	killGrace time.Duration // between SIGTERM and SIGKILL to what the command leaves running
}

// jobEventKind says what a jobEvent reports.
type jobEventKind int

const (
	jobStarted   jobEventKind = iota + 1 // the command runs; n is its pid
	jobFailed                            // it could not be started; n is the exit code (126, 127), text why
	jobStopped                           // it was stopped by signal n
	jobLeftovers                         // it exited, and what it left running is being stopped
	jobWatchdog                          // the lock was not renewed in time; it is being stopped
	jobDied                              // the supervision ended abnormally; text says how
	jobEnded                             // all is over; n is the exit code to report (the last event)
)

// jobEvent is something that happened to the command.
type jobEvent struct {
	kind jobEventKind
	n    int
	text string
}
