package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// Exit codes of a demo worker besides 0 (stopped as asked) and 1 (error).
const (
	exitWorkerLost     = 3 // its lease was lost while it held the lock
	exitWorkerOrphaned = 4 // the demo that started it is gone
)

// Holding times of a demo worker: a short random hold, then a short random
// pause before it competes again.
const (
	demoHoldMin  = 150 * time.Millisecond
	demoHoldMax  = 350 * time.Millisecond
	demoPauseMax = 100 * time.Millisecond
)

// workerOptions are the flags of "demo-worker".
type workerOptions struct {
	key      string
	id       string
	ledger   string
	expire   time.Duration
	longHold int // which acquisition holds for longer than expire (0: none)
	lifeline int // descriptor whose end of file means the demo is gone (0: none)
}

// demoWorkerCommand is the hidden command the demo starts in each worker
// process.
func (a *app) demoWorkerCommand() *cobra.Command {
	o := &workerOptions{}
	cmd := &cobra.Command{
		Use:    "demo-worker",
		Short:  "One worker process of the demo (started by mongolock demo)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.key == "" || o.id == "" || o.ledger == "" || o.expire <= 0 {
				return usageError("demo-worker needs --key, --id, --ledger and --expire")
			}
			return a.demoWorker(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "the lock's key")
	f.StringVar(&o.id, "id", "", "this worker's name, also its owner name")
	f.StringVar(&o.ledger, "ledger", "", "the ledger file")
	f.DurationVar(&o.expire, "expire", 2*time.Second, "the lease's expiry")
	f.IntVar(&o.longHold, "long-hold", 0, "hold the lock for expire+1s on this acquisition (0: never)")
	f.IntVar(&o.lifeline, "lifeline-fd", 0, "exit at once when this inherited pipe reaches end of file (the demo is gone)")
	return cmd
}

// demoWorker takes the lock again and again, writing each critical
// section to the ledger, until SIGTERM or SIGINT.
func (a *app) demoWorker(cmd *cobra.Command, o *workerOptions) error {
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if o.lifeline > 0 {
		go watchLifeline(os.NewFile(uintptr(o.lifeline), "lifeline"))
	}

	ledger, err := os.OpenFile(o.ledger, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return failure(err)
	}
	defer ledger.Close()

	c, _, err := a.connect(stop, cmd, 0)
	if err != nil {
		if stop.Err() != nil {
			return nil
		}
		return err
	}
	defer c.close()

	for n := 1; ; n++ {
		l, err := c.Acquire(stop, o.key, mongolock.Owner(o.id), mongolock.Expire(o.expire))
		if stop.Err() != nil {
			if l != nil {
				releaseQuietly(l)
			}
			return nil
		}
		if err != nil {
			return failure(err)
		}
		if err := appendEvent(ledger, ledgerEvent{at: time.Now(), op: opEnter, fence: l.Fence(), worker: o.id}); err != nil {
			return failure(err)
		}

		hold := demoHoldMin + rand.N(demoHoldMax-demoHoldMin)
		if n == o.longHold {
			hold = o.expire + time.Second
		}
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-stop.Done():
			t.Stop()
		case <-l.Lost():
			t.Stop()
			_ = appendEvent(ledger, ledgerEvent{at: time.Now(), op: opLost, fence: l.Fence(), worker: o.id})
			return exitWith(exitWorkerLost, fmt.Errorf("%s: lease lost while holding the lock: %s", o.id, message(l.Err())))
		}

		if err := appendEvent(ledger, ledgerEvent{at: time.Now(), op: opLeave, fence: l.Fence(), worker: o.id}); err != nil {
			return failure(err)
		}
		ctx, rcancel := context.WithTimeout(context.Background(), releaseTimeout)
		err = l.Release(ctx)
		rcancel()
		if errors.Is(err, mongolock.ErrNotHeld) {
			return exitWith(exitWorkerLost, fmt.Errorf("%s: the lease had been lost by the time it was released: %s", o.id, message(err)))
		}
		if err != nil {
			return failure(err)
		}

		pause := time.NewTimer(rand.N(demoPauseMax))
		select {
		case <-pause.C:
		case <-stop.Done():
			pause.Stop()
			return nil
		}
	}
}

// watchLifeline ends the worker process as soon as lifeline, a pipe whose
// write end only the demo holds, reaches end of file: the demo is gone,
// however it ended, and a worker must not go on without it. It does not
// release its lease: the demo's own server may be gone with it, and the
// lease expires after --expire anyway. It runs for the rest of the
// process's life.
func watchLifeline(lifeline *os.File) {
	var b [1]byte
	for {
		if _, err := lifeline.Read(b[:]); err != nil {
			os.Exit(exitWorkerOrphaned)
		}
	}
}

// releaseQuietly releases l, for a worker that is stopping.
func releaseQuietly(l *mongolock.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	_ = l.Release(ctx)
}
