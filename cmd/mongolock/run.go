package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mongolock/mongolock"
)

// Environment variables "mongolock run" and "mongolock elect" give the
// command; "elect" adds envTerm and envValue.
const (
	envKey   = "MONGOLOCK_KEY"
	envOwner = "MONGOLOCK_OWNER"
	envToken = "MONGOLOCK_TOKEN"
	envFence = "MONGOLOCK_FENCE"
	envTerm  = "MONGOLOCK_TERM"  // elect: the leader's term, which is its fence
	envValue = "MONGOLOCK_VALUE" // elect: the leader's value (--value)
)

// releaseTimeout bounds the release after the command exits;
// lostReleaseTimeout, after the lock was lost.
const (
	releaseTimeout     = 10 * time.Second
	lostReleaseTimeout = 2 * time.Second
)

// forwarded are the signals "run" and "elect" pass on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// runOptions are the flags of "run", and of "elect", which runs its
// command as "run" does.
type runOptions struct {
	takeOptions
	killGrace time.Duration
	shell     bool
}

func (a *app) runCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run KEY [flags] -- COMMAND [ARG...]",
		Short: "Run a command while holding a lock",
		Long: `Run takes the lock KEY, runs COMMAND while holding it, and releases it when
COMMAND exits, like flock(1) for a lock shared through MongoDB. KEY may also
be given with --key.

By default it makes one attempt, which is what cron jobs want: if someone
else holds the lock, COMMAND does not run and mongolock exits 75 at once
(--conflict-exit-code, -E), instead of queueing behind the holder. -n
(--nonblock) says so explicitly. --timeout D (-w D, --wait D) waits up to D
for the lock, connecting included, --timeout -1 without limit; a bare
number is seconds, as for flock -w. While it waits more than a second, and
only if standard error is a terminal, a "waiting..." line says who holds the
lock and when that expires (not in logs or cron mail; --quiet silences it
and the "held" message, --verbose says when the wait starts and how long it
took, on a terminal or not).

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

--limit N makes the lock a semaphore: up to N commands hold it at once,
each with its own token and fence (as consul lock -n). --shared (-s) takes
a reader's share (as flock -s): readers hold it together, and a run
without --shared (a writer) waits until they have left, while readers that
come after a waiting writer queue behind it. Every holder of a key must
ask for the same kind: another --limit, or --shared where the holders took
a semaphore, is a usage error (exit 2). "mongolock status KEY" shows each
holder.

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
process; or N interrupted the wait for the lock); 75 (or
--conflict-exit-code) if the lock was not acquired; 70 if the lock was lost
while COMMAND ran or was suspended; 126/127 if COMMAND could not be executed
/ was not found; 2 for a usage error (also when the key is held as another
kind of lock: --limit, --shared); 1 if the server could not be used.`,
		Example: `  # Run the nightly report on one machine only; others exit 75 at once.
  mongolock run nightly-report -- ./report.sh --full

  # Wait up to 10 minutes for the lock, and keep it for at least an hour so a
  # drifted cron on another machine does not run the job again.
  mongolock run backup --timeout 10m --min-hold 1h -- ./backup.sh

  # Through a shell, using the fencing token.
  mongolock run deploy -w -1 --shell -- 'deploy --fence "$MONGOLOCK_FENCE"'

  # In a cron job where "already running" is not an error.
  mongolock run sync -n -E 0 --quiet -- ./sync.sh

  # At most 3 encoders at once, across machines; wait up to an hour for a slot.
  mongolock run encoders --limit 3 -w 1h -- ./encode.sh

  # Readers share the catalog; a writer (no --shared) waits for them.
  mongolock run catalog --shared -w 5m -- ./read-catalog.sh
  mongolock run catalog -w 5m -- ./rebuild-catalog.sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			key := "KEY"
			if cmd.Flags().Changed("key") {
				key = "--key " + o.key
			}
			switch {
			case dash < 0 && len(args) > 1 && !cmd.Flags().Changed("key"):
				return usageError("put the command after --, as in: mongolock run %s -- %s", args[0], strings.Join(args[1:], " "))
			case dash < 0 && len(args) > 0 && cmd.Flags().Changed("key"):
				return usageError("put the command after --, as in: mongolock run %s -- %s", key, strings.Join(args, " "))
			case dash < 0 && len(args) == 1:
				return usageError("no command given: put it after --, as in: mongolock run %s -- COMMAND [ARG...]", args[0])
			case dash < 0 || dash == len(args):
				return usageError("no command given: put it after --, as in: mongolock run %s -- COMMAND [ARG...]", key)
			}
			return o.setKey(cmd, args[:dash], "mongolock run KEY [flags] -- COMMAND [ARG...]")
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return a.runHeld(cmd, o, args[cmd.ArgsLenAtDash():])
		},
	}
	f := cmd.Flags()
	o.addFlags(f)
	o.addRunFlags(f)
	return cmd
}

// addRunFlags adds the flags that say how the command runs.
func (o *runOptions) addRunFlags(f *pflag.FlagSet) {
	f.DurationVar(&o.killGrace, "kill-grace", 5*time.Second, "time between SIGTERM and SIGKILL when the command must stop (the lock was lost), and for what it leaves running")
	f.BoolVar(&o.shell, "shell", false, `run the command through "sh -c" (its words joined by spaces)`)
}

func (o *runOptions) validate(cmd *cobra.Command) error {
	if err := o.takeOptions.validate(cmd); err != nil {
		return err
	}
	if o.killGrace < 0 {
		return usageError("--kill-grace must not be negative, got %v", o.killGrace)
	}
	return nil
}

// runHeld is "mongolock run" and "mongolock elect": take the lock (or
// campaign until leading), run the command, watch the lease, release (or
// resign).
func (a *app) runHeld(cmd *cobra.Command, o *runOptions, argv []string) error {
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

	c, lease, err := a.take(&o.takeOptions, uri, sigs, "the command was not run")
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	taken := time.Now()

	code, lost := a.supervise(o, lease, argv, sigs)
	signal.Stop(sigs) // the command is gone: a signal now ends mongolock as usual

	// After a loss the release is a courtesy (the lock may be someone
	// else's by now, and the server may be unreachable): do not wait long.
	timeout := releaseTimeout
	if lost {
		timeout = lostReleaseTimeout
	}
	rerr := a.releaseLease(lease, &o.takeOptions, taken, timeout)
	switch {
	case lost:
		return exitWith(exitLost, fmt.Errorf("exiting %d: %s was lost%s; the command is not running any more", exitLost, o.subject(), shortExpiry(o.expire)))
	case errors.Is(rerr, mongolock.ErrNotHeld):
		return exitWith(exitLost, fmt.Errorf("%s was no longer held when the command finished (%s): the command's run was not exclusive to the end", o.subject(), message(rerr)))
	case rerr != nil:
		fmt.Fprintf(a.io.err, "mongolock: warning: releasing %s: %s (it frees itself when it expires)\n", o.subject(), message(rerr))
	}
	if code != 0 {
		return exitWith(code, nil)
	}
	return nil
}

// heartbeat is how often "run" (and "elect") passes the lease's deadline
// on to the supervisor's watchdog (the deadline moves at each renewal,
// about every third of --expire).
func heartbeat(expire time.Duration) time.Duration {
	return min(max(expire/10, 10*time.Millisecond), 500*time.Millisecond)
}

// supervise runs the command while the lease is held (a lock, or an
// election's leadership): it forwards sigs, keeps the supervisor's
// watchdog informed, suspends and resumes with the command under job
// control, and stops the command if the lease is lost. It returns the exit
// code to use and whether the lease was lost.
func (a *app) supervise(o *runOptions, l *mongolock.Lease, argv []string, sigs <-chan os.Signal) (code int, lost bool) {
	if o.shell {
		argv = []string{"/bin/sh", "-c", strings.Join(argv, " ")}
	}
	// mongolock may have been stopped (Ctrl-Z) since it took the lock.
	if err := leaseGone(l); err != nil {
		fmt.Fprintf(a.io.err, "mongolock: LOST %s before the command started: %s; the command was not run\n", o.subject(), message(err))
		return exitLost, true
	}
	env := append(os.Environ(),
		envKey+"="+l.Key(),
		envOwner+"="+l.Owner(),
		envToken+"="+l.Token(),
		envFence+"="+strconv.FormatInt(l.Fence(), 10),
	)
	if o.election {
		env = append(env, envTerm+"="+strconv.FormatInt(l.Fence(), 10), envValue+"="+o.value)
	}
	j, err := startJob(jobSpec{
		argv:      argv,
		env:       env,
		stdio:     a.io,
		killGrace: o.killGrace,
	})
	if err != nil {
		fmt.Fprintf(a.io.err, "mongolock: %s\n", message(err))
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
			fmt.Fprintf(a.io.err, "mongolock: LOST %s while the command was running: %s\n"+
				"mongolock: stopping the command: SIGTERM now, SIGKILL in %s\n", o.subject(), message(reason), o.killGrace)
			j.signal(syscall.SIGTERM)
			killc = time.After(o.killGrace)
		} else {
			fmt.Fprintf(a.io.err, "mongolock: LOST %s while the command was running: %s\n"+
				"mongolock: stopping the command: SIGKILL\n", o.subject(), message(reason))
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
					fmt.Fprintf(a.io.err, "mongolock: LOST %s: it was not renewed in time (mongolock was stopped or stalled)\n"+
						"mongolock: stopping the command: SIGTERM now, SIGKILL in %s\n", o.subject(), o.killGrace)
				}
			case jobStopped:
				if !lost && j.suspend(ev.n) {
					// Continued (fg, bg). The lock was not renewed while
					// mongolock was stopped: resume the command only if
					// it is still held.
					if err := leaseGone(l); err != nil {
						lostc, lost = nil, true
						fmt.Fprintf(a.io.err, "mongolock: LOST %s while the command was suspended: %s\n"+
							"mongolock: killing the command instead of resuming it\n", o.subject(), message(err))
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
