package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// Environment variables "mongolock run" gives the command.
const (
	envKey   = "MONGOLOCK_KEY"
	envOwner = "MONGOLOCK_OWNER"
	envToken = "MONGOLOCK_TOKEN"
	envFence = "MONGOLOCK_FENCE"
)

// releaseTimeout bounds the release after the command exits;
// lostReleaseTimeout, after the lock was lost.
const (
	releaseTimeout     = 10 * time.Second
	lostReleaseTimeout = 2 * time.Second
)

// waitNotice is how long "run" waits for a lock before it says, on a
// terminal, who holds it.
const waitNotice = time.Second

// forwarded are the signals "run" passes on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

type runOptions struct {
	key          string
	owner        string
	expire       time.Duration
	timeout      waitFlag
	minHold      time.Duration
	killGrace    time.Duration
	shell        bool
	quiet        bool
	conflictExit int
}

// waitFlag is --timeout: a duration, or -1 (any negative value) to wait
// without limit.
type waitFlag struct {
	d       time.Duration
	forever bool
}

func (w *waitFlag) String() string {
	switch {
	case w.forever:
		return "-1"
	case w.d == 0:
		return "0" // pflag shows no default for it
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	if s == "-1" {
		*w = waitFlag{forever: true}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 5m, or -1 to wait without limit")
	}
	*w = waitFlag{d: d, forever: d < 0}
	return nil
}

func (w *waitFlag) Type() string { return "duration" }

func (a *app) runCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run --key KEY [flags] -- COMMAND [ARG...]",
		Short: "Run a command while holding a lock",
		Long: `Run takes the lock KEY, runs COMMAND while holding it, and releases it when
COMMAND exits, like flock(1) for a lock shared through MongoDB.

By default it makes one attempt: if someone else holds the lock, COMMAND does
not run and mongolock exits 75 (--conflict-exit-code). --timeout D waits up to
D for the lock, --timeout -1 waits without limit; while it waits more than a
second on a terminal it says who holds the lock and when it expires.

The lock expires --expire after it was last renewed, and is renewed in the
background while COMMAND runs, so a crashed mongolock frees it within that
time. COMMAND gets MONGOLOCK_KEY, MONGOLOCK_OWNER, MONGOLOCK_TOKEN and
MONGOLOCK_FENCE in its environment; pass MONGOLOCK_FENCE along with its
writes so that the resource can refuse a late writer. Standard input, output
and error are COMMAND's; SIGINT, SIGTERM and SIGHUP are forwarded to it.

On a terminal, COMMAND runs in the terminal's foreground, so that Ctrl-C
reaches it once and it can read from the terminal, and job control works as
for any command: Ctrl-Z suspends COMMAND and mongolock, fg and bg resume
them. The lock is not renewed while they are suspended: after longer than
--expire it is lost, and COMMAND is killed instead of resumed (exit 70).

If the lock is lost while COMMAND runs (it could not be renewed in time, or
an operator force-released it), COMMAND gets SIGTERM, and SIGKILL (with all
it started) --kill-grace later; mongolock then exits 70.

COMMAND never runs on without mongolock: it runs under a small supervising
process (mongolock itself), which kills COMMAND and everything it started at
once if mongolock dies, by any signal, SIGKILL included; stops COMMAND as
above if mongolock stops renewing the lock (mongolock stopped or stalled)
once the lock's deadline has passed by 1s; and when COMMAND exits, stops what
it left running (SIGTERM, SIGKILL --kill-grace later) before the lock is
released. On Linux this covers descendants that left COMMAND's process group
or session, or double-forked. Not covered: processes started through another
program (a service manager, at, ssh), processes of another user (sudo), and,
if the supervising process itself is killed, what left COMMAND's process
group (everything, if mongolock is killed with it).

Exit codes: COMMAND's own; 128+N if signal N killed it (or its supervising
process); 75 (or --conflict-exit-code) if the lock was not acquired; 70 if
the lock was lost while COMMAND ran or was suspended; 126/127 if COMMAND
could not be executed / was not found; 2 for a usage error; 1 if the server
could not be used.`,
		Example: `  # Run the nightly report on one machine only; others exit 75 at once.
  mongolock run --key nightly-report -- ./report.sh --full

  # Wait up to 10 minutes for the lock, and keep it for at least an hour so a
  # drifted cron on another machine does not run the job again.
  mongolock run --key backup --timeout 10m --min-hold 1h -- ./backup.sh

  # Through a shell, using the fencing token.
  mongolock run --key deploy --timeout -1 --shell -- 'deploy --fence "$MONGOLOCK_FENCE"'

  # In a cron job where "already running" is not an error.
  mongolock run --key sync --conflict-exit-code 0 --quiet -- ./sync.sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			switch {
			case dash < 0 && len(args) > 0:
				return usageError("put the command after --, as in: mongolock run --key KEY -- %s", strings.Join(args, " "))
			case dash < 0 || dash == len(args):
				return usageError("no command given: put it after --, as in: mongolock run --key KEY -- COMMAND [ARG...]")
			case dash > 0:
				return usageError("unexpected argument %q before --: flags only there, the command goes after --", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return a.runLocked(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "the lock's key (required)")
	f.StringVar(&o.owner, "owner", "", "owner name recorded in the lock (default: host, pid and a random suffix)")
	f.DurationVar(&o.expire, "expire", 30*time.Second, "the lock expires this long after its last renewal; it is renewed about every third of it")
	f.Var(&o.timeout, "timeout", "wait up to this long for the lock (default: one attempt; -1: no limit)")
	f.DurationVar(&o.minHold, "min-hold", 0, "keep the lock at least this long after it was taken, even if the command ends sooner")
	f.DurationVar(&o.killGrace, "kill-grace", 5*time.Second, "time between SIGTERM and SIGKILL when the command must stop (the lock was lost), and for what it leaves running")
	f.BoolVar(&o.shell, "shell", false, `run the command through "sh -c" (its words joined by spaces)`)
	f.BoolVarP(&o.quiet, "quiet", "q", false, "say nothing while waiting or when the lock is held elsewhere")
	f.IntVarP(&o.conflictExit, "conflict-exit-code", "E", exitConflict, "exit code when the lock is held by someone else (as flock -E)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (o *runOptions) validate() error {
	switch {
	case o.key == "":
		return usageError("--key must not be empty")
	case o.expire < time.Millisecond:
		return usageError("--expire must be at least 1ms, got %v", o.expire)
	case o.minHold < 0:
		return usageError("--min-hold must not be negative, got %v", o.minHold)
	case o.killGrace < 0:
		return usageError("--kill-grace must not be negative, got %v", o.killGrace)
	case o.conflictExit < 0 || o.conflictExit > 255:
		return usageError("--conflict-exit-code must be between 0 and 255, got %d", o.conflictExit)
	}
	return nil
}

// runLocked is "mongolock run": acquire, run the command, watch the lease,
// release.
func (a *app) runLocked(cmd *cobra.Command, o *runOptions, argv []string) error {
	uri, err := a.serverURI(cmd)
	if err != nil {
		return err
	}

	// Catch the signals from now on: one that arrives while connecting or
	// waiting ends the wait without running the command; once the command
	// runs, they are forwarded to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	c, lease, err := a.acquireInterruptibly(o, uri, sigs)
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}

	code, lost := a.supervise(o, lease, argv, sigs)
	signal.Stop(sigs) // the command is gone: a signal now ends mongolock as usual

	// After a loss the release is a courtesy (the lock may be someone
	// else's by now, and the server may be unreachable): do not wait long.
	timeout := releaseTimeout
	if lost {
		timeout = lostReleaseTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rerr := lease.Release(ctx)
	switch {
	case lost:
		return exitWith(exitLost, fmt.Errorf("exiting %d: the lock %q was lost; the command is not running any more", exitLost, o.key))
	case errors.Is(rerr, mongolock.ErrNotHeld):
		return exitWith(exitLost, fmt.Errorf("the lock %q was no longer held when the command finished (%v): the command's run was not exclusive to the end", o.key, rerr))
	case rerr != nil:
		fmt.Fprintf(a.io.err, "mongolock: warning: releasing the lock %q: %v (it frees itself when it expires)\n", o.key, rerr)
	}
	if code != 0 {
		return exitWith(code, nil)
	}
	return nil
}

// acquireInterruptibly connects and takes the lock, giving up when one of
// sigs arrives. --timeout bounds the whole wait, connecting included. On
// success the connection and lease are returned; the connection is also
// returned with some errors, to be closed.
func (a *app) acquireInterruptibly(o *runOptions, uri string, sigs <-chan os.Signal) (*conn, *mongolock.Lease, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()

	type result struct {
		c   *conn
		l   *mongolock.Lease
		err error
	}
	done := make(chan result, 1)
	go func() {
		cctx, ccancel := ctx, context.CancelFunc(func() {})
		if o.timeout.d > 0 {
			cctx, ccancel = context.WithDeadline(ctx, start.Add(o.timeout.d))
		}
		c, err := a.connectURI(cctx, uri)
		ccancel()
		if err != nil {
			done <- result{err: err}
			return
		}
		l, err := a.acquire(ctx, c, o, start)
		done <- result{c: c, l: l, err: err}
	}()

	select {
	case r := <-done:
		return r.c, r.l, r.err
	case s := <-sigs:
		cancel()
		r := <-done
		if r.l != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), releaseTimeout)
			_ = r.l.Release(rctx)
			rcancel()
		}
		return r.c, nil, exitWith(128+signalNumber(s), fmt.Errorf("%v while waiting for the lock %q; the command was not run", s, o.key))
	}
}

// acquire takes the lock as o says: one attempt, a wait bounded by
// --timeout counted from start, or an unbounded one, telling a terminal
// who holds it while it waits.
func (a *app) acquire(ctx context.Context, c *conn, o *runOptions, start time.Time) (*mongolock.Lease, error) {
	opts := []mongolock.LockOption{mongolock.Expire(o.expire)}
	if o.owner != "" {
		opts = append(opts, mongolock.Owner(o.owner))
	}
	if o.minHold > 0 {
		opts = append(opts, mongolock.MinHold(o.minHold))
	}

	var (
		l   *mongolock.Lease
		err error
	)
	wait := o.timeout.d - time.Since(start) // what is left of --timeout after connecting
	if o.timeout.forever || wait > 0 {
		if !o.timeout.forever {
			opts = append(opts, mongolock.Timeout(wait))
		}
		stop := func() {}
		if !o.quiet && isTerminal(a.io.err) {
			stop = a.showWaiting(ctx, c.Client, o.key)
		}
		l, err = c.Acquire(ctx, o.key, opts...)
		stop()
	} else {
		l, err = c.TryAcquire(ctx, o.key, opts...)
	}

	var locked *mongolock.LockedError
	switch {
	case errors.As(err, &locked):
		if o.quiet {
			return nil, exitWith(o.conflictExit, nil)
		}
		return nil, exitWith(o.conflictExit, fmt.Errorf("%s; the command was not run", describeHolder(ctx, c.Client, locked)))
	case err != nil:
		return nil, failure(err)
	}
	return l, nil
}

// describeHolder says who holds a lock, since when and until when.
func describeHolder(ctx context.Context, c *mongolock.Client, e *mongolock.LockedError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the lock %q is held", e.Key)
	if e.Owner != "" {
		fmt.Fprintf(&b, " by %q", e.Owner)
	}
	if !e.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", fmtTime(e.Since))
	}
	switch {
	case e.Expires.IsZero() && !e.Since.IsZero():
		b.WriteString(", and never expires")
	case !e.Expires.IsZero():
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if now, _, err := c.ServerTime(sctx); err == nil {
			fmt.Fprintf(&b, ", expires in %s unless renewed", fmtDuration(e.Expires.Sub(now)))
		} else {
			fmt.Fprintf(&b, ", expires at %s unless renewed", fmtTime(e.Expires))
		}
	}
	return b.String()
}

// showWaiting tells the terminal, once the wait has lasted waitNotice and
// then every second, who holds key. The returned function stops it and
// clears the line.
func (a *app) showWaiting(ctx context.Context, c *mongolock.Client, key string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTimer(waitNotice)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-ctx.Done():
				if shown {
					fmt.Fprint(a.io.err, "\r\033[K")
				}
				return
			case <-t.C:
			}
			line := fmt.Sprintf("mongolock: waiting %s for the lock %q", fmtDuration(time.Since(start).Truncate(time.Second)), key)
			if info, err := c.Info(ctx, key); err == nil && info.Locked {
				line += fmt.Sprintf(": held by %q", info.Owner)
				switch {
				case info.Expire.IsZero():
					line += ", never expires"
				default:
					if now, _, err := c.ServerTime(ctx); err == nil {
						line += ", expires in " + fmtDuration(info.Expire.Sub(now).Truncate(100*time.Millisecond))
					}
				}
			}
			if ctx.Err() == nil {
				fmt.Fprint(a.io.err, "\r\033[K"+line)
				shown = true
			}
			t.Reset(time.Second)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// heartbeat is how often "run" passes the lease's deadline on to the
// supervisor's watchdog (the deadline moves at each renewal, about every
// third of --expire).
func heartbeat(expire time.Duration) time.Duration {
	return min(max(expire/10, 10*time.Millisecond), 500*time.Millisecond)
}

// supervise runs the command while the lease is held: it forwards sigs,
// keeps the supervisor's watchdog informed, suspends and resumes with the
// command under job control, and stops the command if the lease is lost.
// It returns the exit code to use and whether the lease was
// lost.
func (a *app) supervise(o *runOptions, l *mongolock.Lease, argv []string, sigs <-chan os.Signal) (code int, lost bool) {
	if o.shell {
		argv = []string{"/bin/sh", "-c", strings.Join(argv, " ")}
	}
	// mongolock may have been stopped (Ctrl-Z) since it took the lock.
	if err := leaseGone(l); err != nil {
		fmt.Fprintf(a.io.err, "mongolock: LOST the lock %q before the command started: %v; the command was not run\n", o.key, err)
		return exitLost, true
	}
	j, err := startJob(jobSpec{
		argv: argv,
		env: append(os.Environ(),
			envKey+"="+l.Key(),
			envOwner+"="+l.Owner(),
			envToken+"="+l.Token(),
			envFence+"="+strconv.FormatInt(l.Fence(), 10),
		),
		stdio:     a.io,
		killGrace: o.killGrace,
	})
	if err != nil {
		fmt.Fprintf(a.io.err, "mongolock: %v\n", err)
		return exitCannotExec, false
	}
	defer j.close()

	deadline := l.ExpiresAt()
	j.setDeadline(deadline)
	tick := time.NewTicker(heartbeat(o.expire))
	defer tick.Stop()

	lostc := l.Lost()
	var killc <-chan time.Time
	// stop stops the command after the lease was lost, for reason.
	stop := func(reason error) {
		lostc, lost = nil, true
		if reason == nil {
			reason = mongolock.ErrLost
		}
		// From now on the watchdog only backs up the kill below.
		j.setDeadline(time.Now().Add(o.killGrace))
		if o.killGrace > 0 {
			fmt.Fprintf(a.io.err, "mongolock: LOST the lock %q while the command was running: %v\n"+
				"mongolock: stopping the command: SIGTERM now, SIGKILL in %s\n", o.key, reason, o.killGrace)
			j.signal(syscall.SIGTERM)
			killc = time.After(o.killGrace)
		} else {
			fmt.Fprintf(a.io.err, "mongolock: LOST the lock %q while the command was running: %v\n"+
				"mongolock: stopping the command: SIGKILL\n", o.key, reason)
			j.kill()
		}
	}

	for {
		select {
		case ev, ok := <-j.Events():
			if !ok {
				return code, lost
			}
			switch ev.kind {
			case jobFailed, jobDied:
				fmt.Fprintf(a.io.err, "mongolock: %s\n", ev.text)
			case jobLeftovers:
				fmt.Fprintf(a.io.err, "mongolock: the command exited but left processes running: SIGTERM now, SIGKILL in %s\n", o.killGrace)
			case jobWatchdog:
				if !lost {
					lostc, lost = nil, true
					fmt.Fprintf(a.io.err, "mongolock: LOST the lock %q: it was not renewed in time (mongolock was stopped or stalled)\n"+
						"mongolock: stopping the command: SIGTERM now, SIGKILL in %s\n", o.key, o.killGrace)
				}
			case jobStopped:
				if !lost && j.suspend(ev.n) {
					// Continued (fg, bg). The lock was not renewed while
					// mongolock was stopped: resume the command only if
					// it is still held.
					if err := leaseGone(l); err != nil {
						lostc, lost = nil, true
						fmt.Fprintf(a.io.err, "mongolock: LOST the lock %q while the command was suspended: %v\n"+
							"mongolock: killing the command instead of resuming it\n", o.key, err)
						j.kill()
					} else {
						j.resume()
					}
				}
			case jobEnded:
				code = ev.n
			}
		case s := <-sigs:
			j.signal(s)
		case <-tick.C:
			if lostc != nil {
				if d := l.ExpiresAt(); !d.Equal(deadline) {
					deadline = d
					j.setDeadline(d)
				}
			}
		case <-lostc:
			stop(l.Err())
		case <-killc:
			killc = nil
			fmt.Fprintf(a.io.err, "mongolock: the command did not stop within %s of SIGTERM: SIGKILL\n", o.killGrace)
			j.kill()
		}
	}
}

// leaseGone returns why l can no longer be counted on: it was lost, or its
// local deadline has passed (its keep-alive may not have noticed yet, after
// mongolock was stopped). It returns nil while l is held.
func leaseGone(l *mongolock.Lease) error {
	select {
	case <-l.Lost():
		if err := l.Err(); err != nil {
			return err
		}
		return mongolock.ErrLost
	default:
	}
	if d := l.ExpiresAt(); !d.IsZero() && !time.Now().Before(d) {
		return fmt.Errorf("%w: not renewed while mongolock was stopped; its deadline passed %s ago", mongolock.ErrLost, fmtDuration(time.Since(d)))
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminalFd(int(f.Fd()))
}
