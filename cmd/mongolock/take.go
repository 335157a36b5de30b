package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mongolock/mongolock"
)

// waitNotice is how long "run" and "lock" wait for a lock before they
// say, on a terminal, who holds it.
const waitNotice = time.Second

// takeOptions are the flags that say how "run" and "lock" take a lock.
type takeOptions struct {
	key          string
	owner        string
	expire       time.Duration
	timeout      waitFlag
	nonblock     bool
	minHold      time.Duration
	quiet        bool
	verbose      bool
	conflictExit int
	limit        int  // --limit: a semaphore of this many holders (as consul lock -n)
	shared       bool // --shared: a reader's lease (as flock -s)
}

// waitFlag is --timeout (-w, --wait): a duration, a number of seconds as
// flock(1) takes it, or -1 to wait without limit.
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
		// A bare number is seconds, as flock -w takes it.
		secs, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > math.MaxInt64/float64(time.Second) {
			return errors.New("want a duration such as 30s or 5m, a number of seconds, or -1 to wait without limit")
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return errors.New("must not be negative: -1 waits without limit, 0 makes one attempt")
	}
	*w = waitFlag{d: d}
	return nil
}

func (w *waitFlag) Type() string { return "duration" }

// addFlags adds the flags of o to f.
func (o *takeOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.key, "key", "", "the lock's key (or give it as the first argument)")
	f.StringVar(&o.owner, "owner", "", "owner name recorded in the lock (default: host, pid and a random suffix)")
	f.DurationVar(&o.expire, "expire", 30*time.Second, "the lock expires this long after its last renewal; it is renewed about every third of it (too short for the server's round trip: a usage error)")
	f.Var(&o.timeout, "timeout", "wait up to this long for the lock, connecting included (default 0: one attempt, safe for cron; -1: no limit; a bare number is seconds)")
	f.VarP(&o.timeout, "wait", "w", "the same as --timeout (flock's name)")
	f.BoolVarP(&o.nonblock, "nonblock", "n", false, "make one attempt and fail at once if the lock is held (the default; as flock -n)")
	f.DurationVar(&o.minHold, "min-hold", 0, "keep the lock at least this long after it was taken, even if released sooner")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "say nothing while waiting or when the lock is held elsewhere")
	f.BoolVar(&o.verbose, "verbose", false, "say when the wait starts, how long it took to take the lock, and when it is released (as flock --verbose)")
	f.IntVarP(&o.conflictExit, "conflict-exit-code", "E", exitConflict, "exit code when the lock is held by someone else (as flock -E)")
	f.IntVar(&o.limit, "limit", 1, "a semaphore: up to this many holders at once, all asking for the same limit (as consul lock -n)")
	f.BoolVarP(&o.shared, "shared", "s", false, "a shared (reader) lock: readers share it and exclude holders without --shared (as flock -s)")
}

// validate checks o once the flags are parsed.
func (o *takeOptions) validate(cmd *cobra.Command) error {
	f := cmd.Flags()
	switch {
	case o.key == "":
		return usageError("the lock key must not be empty")
	case f.Changed("timeout") && f.Changed("wait"):
		return usageError("give --timeout or --wait (-w), not both: they are the same")
	case o.nonblock && (o.timeout.forever || o.timeout.d > 0):
		return usageError("give -n (--nonblock) or a wait (--timeout, -w), not both: -n makes one attempt")
	case o.quiet && o.verbose:
		return usageError("give --quiet or --verbose, not both")
	case o.expire < time.Millisecond:
		return usageError("--expire must be at least 1ms, got %v", o.expire)
	case o.minHold < 0:
		return usageError("--min-hold must not be negative, got %v", o.minHold)
	case o.conflictExit < 0 || o.conflictExit > 255:
		return usageError("--conflict-exit-code must be between 0 and 255, got %d", o.conflictExit)
	case o.limit < 1 || o.limit > 1000:
		return usageError("--limit must be between 1 and 1000, got %d", o.limit)
	case o.shared && o.limit > 1:
		return usageError("give --shared or --limit, not both: readers are not counted")
	case o.minHold > 0 && (o.shared || o.limit > 1):
		return usageError("--min-hold is for exclusive locks, not with --shared or --limit")
	}
	return nil
}

// setKey takes the key from the positional arguments (at most one) or
// --key; usage is the command line to show in messages.
func (o *takeOptions) setKey(cmd *cobra.Command, positional []string, usage string) error {
	byFlag := cmd.Flags().Changed("key")
	switch {
	case len(positional) > 1:
		return usageError("unexpected argument %q: one lock key only, as in: %s", positional[1], usage)
	case len(positional) == 1 && byFlag && positional[0] != o.key:
		return usageError("the lock key is given twice, as %q and --key %q: give it once", positional[0], o.key)
	case len(positional) == 1:
		o.key = positional[0]
	case !byFlag:
		return usageError("no lock key given, as in: %s", usage)
	}
	return nil
}

// lockOptions are the library's options for o.
func (o *takeOptions) lockOptions() []mongolock.LockOption {
	opts := []mongolock.LockOption{mongolock.Expire(o.expire)}
	if o.owner != "" {
		opts = append(opts, mongolock.Owner(o.owner))
	}
	if o.minHold > 0 {
		opts = append(opts, mongolock.MinHold(o.minHold))
	}
	if o.limit > 1 {
		opts = append(opts, mongolock.Limit(o.limit))
	}
	if o.shared {
		opts = append(opts, mongolock.Shared())
	}
	return opts
}

// take connects and takes the lock, giving up when one of sigs arrives.
// --timeout bounds the whole wait, connecting included. On success the
// connection and lease are returned; the connection is also returned
// with some errors, to be closed. what names what did not happen when it
// gives up ("the command was not run").
func (a *app) take(o *takeOptions, uri string, sigs <-chan os.Signal, what string) (*conn, *mongolock.Lease, error) {
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
		c, err := a.connectURI(cctx, uri, o.timeout.d)
		ccancel()
		if err != nil {
			done <- result{err: err}
			return
		}
		l, err := a.acquire(ctx, c, o, start, what)
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
		return r.c, nil, exitWith(128+signalNumber(s), fmt.Errorf("%v while waiting for the lock %q; %s", s, o.key, what))
	}
}

// acquire takes the lock as o says: one attempt, a wait bounded by
// --timeout counted from start, or an unbounded one. While it waits it
// tells a terminal who holds the lock, and with --verbose says that it
// waits and how long it took.
func (a *app) acquire(ctx context.Context, c *conn, o *takeOptions, start time.Time, what string) (*mongolock.Lease, error) {
	// The server's clock, which every acquisition needs anyway: its error
	// bound says how short an expiry can be.
	_, bound, err := c.ServerTime(ctx)
	if err != nil {
		return nil, failure(fmt.Errorf("reading the server's clock: %w", err))
	}
	if least := minExpire(bound); o.expire < least {
		return nil, usageError("--expire %s is too short for the server's round trip: with the server's clock known to ±%s through it, "+
			"the lock would expire before it could be renewed; %s. Give at least %s (seconds leave room for pauses)", o.expire, fmtDuration(bound), what, fmtDuration(least))
	}
	opts := o.lockOptions()
	l, err := c.TryAcquire(ctx, o.key, opts...)
	var locked *mongolock.LockedError
	wait := o.timeout.d - time.Since(start) // what is left of --timeout after connecting
	if errors.As(err, &locked) && (o.timeout.forever || wait > 0) {
		if o.verbose {
			limit := "without limit"
			if !o.timeout.forever {
				limit = "up to " + fmtDuration(wait)
			}
			fmt.Fprintf(a.io.err, "mongolock: waiting %s: %s\n", limit, describeHolder(ctx, c.Client, locked))
		}
		if !o.timeout.forever {
			opts = append(opts, mongolock.Timeout(wait))
		}
		stop := func() {}
		if !o.quiet && isTerminal(a.io.err) {
			stop = a.showWaiting(ctx, c.Client, o.key, start)
		}
		l, err = c.Acquire(ctx, o.key, opts...)
		stop()
	}

	switch {
	case errors.As(err, &locked):
		if o.quiet {
			return nil, exitWith(o.conflictExit, nil)
		}
		return nil, exitWith(o.conflictExit, fmt.Errorf("%s; %s", describeHolder(ctx, c.Client, locked), what))
	case errors.Is(err, mongolock.ErrLost):
		// Taken and given back at once: the reply came after the lock's
		// deadline. A longer round trip than the estimate said.
		return nil, usageError("--expire %s is too short for the server's round trip: the lock had expired before the server's reply arrived (%s); %s",
			o.expire, message(err), what)
	case err != nil:
		return nil, failure(err)
	}
	if o.verbose {
		fmt.Fprintf(a.io.err, "mongolock: took the lock %q after %s: owner %q, fence %d, expires %s after each renewal\n",
			o.key, fmtDuration(time.Since(start)), l.Owner(), l.Fence(), o.expire)
	}
	return l, nil
}

// shortExpiry says, after a lock was lost, that its expiry left little
// room for delays, if it did.
func shortExpiry(expire time.Duration) string {
	if expire >= time.Second {
		return ""
	}
	return fmt.Sprintf(" (--expire %s leaves little room for delays: give it seconds)", expire)
}

// minExpire is the shortest --expire a lock can be kept with, given the
// error bound of the server-clock estimate (about half the round trip):
// the lock is renewed a third of the way through its expiry, and that
// renewal's round trip (up to twice the bound) must end before the local
// deadline (the expiry less the bound). That needs more than 4.5 bounds;
// 10 leaves room for a round trip slower than the best one measured.
func minExpire(bound time.Duration) time.Duration { return 10 * bound }

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
	case !e.Expires.IsZero() && isMinHeld(ctx, c, e.Key):
		fmt.Fprintf(&b, ", until %s: its holder released it before its minimum hold time (--min-hold) ended, and it cannot be renewed", fmtTime(e.Expires))
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

// showWaiting tells the terminal, once the wait (since start) has lasted
// waitNotice and then every second, who holds key. The returned function
// stops it and clears the line.
func (a *app) showWaiting(ctx context.Context, c *mongolock.Client, key string, start time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(max(waitNotice-time.Since(start), 0))
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
						in := fmtDuration(info.Expire.Sub(now).Truncate(100 * time.Millisecond))
						if isMinHeld(ctx, c, key) {
							line += ", held for its minimum hold time, " + in + " more"
						} else {
							line += ", expires in " + in
						}
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

// releaseLease releases l at the end of "run" or "lock", bounded by
// timeout, and says so with --verbose. It returns the release's error.
func (a *app) releaseLease(l *mongolock.Lease, o *takeOptions, taken time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := l.Release(ctx)
	if err == nil && o.verbose {
		fmt.Fprintf(a.io.err, "mongolock: released the lock %q after holding it %s\n", o.key, fmtDuration(time.Since(taken)))
	}
	return err
}
