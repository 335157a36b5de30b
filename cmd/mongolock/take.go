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

// waitNotice is how long "run", "lock" and "elect" wait before they say,
// on a terminal, who holds the lock or leads the election.
const waitNotice = time.Second

// takeOptions are the flags that say how "run" and "lock" take a lock, and
// how "elect" campaigns for an election's leadership (a lock on its name
// that stores the leader's value).
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
	limit        int    // --limit: a semaphore of this many holders (as consul lock -n)
	shared       bool   // --shared: a reader's lease (as flock -s)
	election     bool   // "elect": campaign for the leadership of the election key
	value        string // --value: the leader's value (elect)
}

// subject names what o takes, for messages: the lock "k", or the
// leadership of "k".
func (o *takeOptions) subject() string {
	if o.election {
		return fmt.Sprintf("the leadership of %q", o.key)
	}
	return fmt.Sprintf("the lock %q", o.key)
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

// addFlags adds the flags of o that "run" and "lock" take.
func (o *takeOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.key, "key", "", "the lock's key (or give it as the first argument)")
	o.addTakeFlags(f)
	f.Var(&o.timeout, "timeout", "wait up to this long for the lock, connecting included (default 0: one attempt, safe for cron; -1: no limit; a bare number is seconds)")
	f.BoolVarP(&o.nonblock, "nonblock", "n", false, "make one attempt and fail at once if the lock is held (the default; as flock -n)")
	f.IntVarP(&o.conflictExit, "conflict-exit-code", "E", exitConflict, "exit code when the lock is held by someone else (as flock -E)")
	f.DurationVar(&o.minHold, "min-hold", 0, "keep the lock at least this long after it was taken, even if released sooner")
	f.IntVar(&o.limit, "limit", 1, "a semaphore: up to this many holders at once, all asking for the same limit (as consul lock -n)")
	f.BoolVarP(&o.shared, "shared", "s", false, "a shared (reader) lock: readers share it and exclude holders without --shared (as flock -s)")
}

// addTakeFlags adds the flags that "run", "lock" and "elect" share, but
// --timeout, --nonblock and --conflict-exit-code, whose help differs.
func (o *takeOptions) addTakeFlags(f *pflag.FlagSet) {
	f.StringVar(&o.owner, "owner", "", "owner name recorded in the lock (default: host, pid and a random suffix)")
	f.DurationVar(&o.expire, "expire", 30*time.Second, "the lock expires this long after its last renewal; it is renewed about every third of it (too short for the server's round trip: a usage error)")
	f.VarP(&o.timeout, "wait", "w", "the same as --timeout (flock's name)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "say nothing while waiting or when the lock is held elsewhere")
	f.BoolVar(&o.verbose, "verbose", false, "say when the wait starts, how long it took to take the lock, and when it is released (as flock --verbose)")
}

// validate checks o once the flags are parsed.
func (o *takeOptions) validate(cmd *cobra.Command) error {
	f := cmd.Flags()
	switch {
	case o.key == "":
		return usageError("the lock key must not be empty")
	case f.Changed("timeout") && f.Changed("wait"):
		return usageError("give --timeout or --wait (-w), not both: they are the same")
	case o.nonblock && (f.Changed("timeout") || f.Changed("wait")) && (o.timeout.forever || o.timeout.d > 0):
		return usageError("give -n (--nonblock) or a wait (--timeout, -w), not both: -n makes one attempt")
	case o.quiet && o.verbose:
		return usageError("give --quiet or --verbose, not both")
	case o.expire < time.Millisecond:
		return usageError("--expire must be at least 1ms, got %v", o.expire)
	case o.minHold < 0:
		return usageError("--min-hold must not be negative, got %v", o.minHold)
	case o.conflictExit < 0 || o.conflictExit > 255:
		return usageError("--conflict-exit-code must be between 0 and 255, got %d", o.conflictExit)
	case !o.election && (o.limit < 1 || o.limit > 1000):
		return usageError("--limit must be between 1 and 1000, got %d", o.limit)
	case o.shared && o.limit > 1:
		return usageError("give --shared or --limit, not both: readers are not counted")
	case o.minHold > 0 && (o.shared || o.limit > 1):
		return usageError("--min-hold is for exclusive locks, not with --shared or --limit")
	}
	if o.nonblock {
		o.timeout = waitFlag{} // one attempt, also where waiting is the default (elect)
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

// tryTake makes one attempt to take what o asks for: the lock, or the
// election's leadership.
func (o *takeOptions) tryTake(ctx context.Context, c *mongolock.Client) (*mongolock.Lease, error) {
	if o.election {
		// Campaign waits, and the library has no one-attempt campaign: a
		// Timeout as short as can be makes it try now (once, and once
		// more at that deadline, which has passed by then).
		return c.Election(o.key, append(o.lockOptions(), mongolock.Timeout(time.Nanosecond))...).Campaign(ctx, o.value)
	}
	return c.TryAcquire(ctx, o.key, o.lockOptions()...)
}

// waitTake waits up to timeout (0: until ctx ends) to take what o asks
// for.
func (o *takeOptions) waitTake(ctx context.Context, c *mongolock.Client, timeout time.Duration) (*mongolock.Lease, error) {
	opts := o.lockOptions()
	if timeout > 0 {
		opts = append(opts, mongolock.Timeout(timeout))
	}
	if o.election {
		return c.Election(o.key, opts...).Campaign(ctx, o.value)
	}
	return c.Acquire(ctx, o.key, opts...)
}

// take connects and takes the lock (or campaigns until it leads), giving
// up when one of sigs arrives. --timeout bounds the whole wait, connecting
// included. On success the connection and lease are returned; the
// connection is also returned with some errors, to be closed. what names
// what did not happen when it gives up ("the command was not run").
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
		return r.c, nil, exitWith(128+signalNumber(s), fmt.Errorf("%v while waiting for %s; %s", s, o.subject(), what))
	}
}

// acquire takes the lock (or the leadership) as o says: one attempt, a
// wait bounded by --timeout counted from start, or an unbounded one. While
// it waits it tells a terminal who holds the lock, and with --verbose says
// that it waits and how long it took.
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
	l, err := o.tryTake(ctx, c.Client)
	var (
		locked   *mongolock.LockedError
		mismatch *mongolock.LimitError
	)
	wait := o.timeout.d - time.Since(start) // what is left of --timeout after connecting
	if errors.As(err, &locked) && (o.timeout.forever || wait > 0) {
		if o.verbose {
			limit := "without limit"
			if !o.timeout.forever {
				limit = "up to " + fmtDuration(wait)
			}
			fmt.Fprintf(a.io.err, "mongolock: waiting %s: %s\n", limit, o.describeHolder(ctx, c.Client, locked))
		}
		if o.timeout.forever {
			wait = 0
		}
		stop := func() {}
		if !o.quiet && isTerminal(a.io.err) {
			stop = a.showWaiting(ctx, c.Client, o, start)
		}
		l, err = o.waitTake(ctx, c.Client, wait)
		stop()
	}

	switch {
	case errors.As(err, &locked):
		if o.quiet {
			return nil, exitWith(o.conflictExit, nil)
		}
		return nil, exitWith(o.conflictExit, fmt.Errorf("%s; %s", o.describeHolder(ctx, c.Client, locked), what))
	case errors.As(err, &mismatch):
		return nil, exitWith(exitUsage, fmt.Errorf("%s; %s", o.describeMismatch(mismatch), what))
	case errors.Is(err, mongolock.ErrLost):
		// Taken and given back at once: the reply came after the lock's
		// deadline. A longer round trip than the estimate said.
		return nil, usageError("--expire %s is too short for the server's round trip: the lock had expired before the server's reply arrived (%s); %s",
			o.expire, message(err), what)
	case err != nil:
		return nil, failure(err)
	}
	switch {
	case o.verbose && o.election:
		fmt.Fprintf(a.io.err, "mongolock: leading %q after %s: owner %q, value %q, term %d, expires %s after each renewal\n",
			o.key, fmtDuration(time.Since(start)), l.Owner(), o.value, l.Fence(), o.expire)
	case o.verbose:
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

// describeHolder says who holds the lock o asks for (or leads its
// election), since when and until when.
func (o *takeOptions) describeHolder(ctx context.Context, c *mongolock.Client, e *mongolock.LockedError) string {
	if o.election {
		return describeLeader(ctx, c, e)
	}
	return describeHolder(ctx, c, e)
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
	b.WriteString(expiryNote(ctx, c, e))
	return b.String()
}

// describeMismatch says that the key o asks for is held as another kind
// of lock than o asks for (a semaphore of another limit, a shared lock,
// an exclusive one).
func (o *takeOptions) describeMismatch(e *mongolock.LimitError) string {
	kind := func(n int) string {
		switch n {
		case 0:
			return "a shared lock (--shared)"
		case 1:
			return "an exclusive lock"
		}
		return fmt.Sprintf("a semaphore of %d (--limit %d)", n, n)
	}
	asked := kind(e.Asked)
	if o.election {
		asked = "an election"
	}
	return fmt.Sprintf("the key %q is held as %s by %q (and maybe others), not as %s: every holder of a key must ask for the same kind of lock (--limit, --shared)",
		e.Key, kind(e.Held), e.Owner, asked)
}

// expiryNote says when the lock e names expires: ", expires in 29.9s
// unless renewed", or "" when that is not known.
func expiryNote(ctx context.Context, c *mongolock.Client, e *mongolock.LockedError) string {
	switch {
	case e.Expires.IsZero() && !e.Since.IsZero():
		return ", and never expires"
	case !e.Expires.IsZero() && isMinHeld(ctx, c, e.Key):
		return fmt.Sprintf(", until %s: its holder released it before its minimum hold time (--min-hold) ended, and it cannot be renewed", fmtTime(e.Expires))
	case !e.Expires.IsZero():
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if now, _, err := c.ServerTime(sctx); err == nil {
			return fmt.Sprintf(", expires in %s unless renewed", fmtDuration(e.Expires.Sub(now)))
		}
		return fmt.Sprintf(", expires at %s unless renewed", fmtTime(e.Expires))
	}
	return ""
}

// showWaiting tells the terminal, once the wait (since start) has lasted
// waitNotice and then every second, who holds the lock o waits for (or
// leads its election). The returned function stops it and clears the
// line.
func (a *app) showWaiting(ctx context.Context, c *mongolock.Client, o *takeOptions, start time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(max(waitNotice-time.Since(start), 0))
		defer t.Stop()
		shown := false
		waitingFor, heldBy := fmt.Sprintf("for the lock %q", o.key), "held by"
		if o.election {
			waitingFor, heldBy = fmt.Sprintf("to lead %q", o.key), "led by"
		}
		for {
			select {
			case <-ctx.Done():
				if shown {
					fmt.Fprint(a.io.err, "\r\033[K")
				}
				return
			case <-t.C:
			}
			line := fmt.Sprintf("mongolock: waiting %s %s", fmtDuration(time.Since(start).Truncate(time.Second)), waitingFor)
			info, err := c.Info(ctx, o.key)
			switch {
			case err != nil || !info.Locked:
			case info.Limit > 0:
				// A semaphore's or readers' own owner is "*semaphore" or
				// "*shared": say how many hold it instead.
				line += fmt.Sprintf(": held by %s (limit %d)", plural(len(info.Holders()), "holder"), info.Limit)
			case info.Shared:
				line += ": held by " + plural(len(info.Holders()), "reader")
			default:
				line += fmt.Sprintf(": %s %q", heldBy, info.Owner)
				switch {
				case info.Expire.IsZero():
					line += ", never expires"
				default:
					if now, _, err := c.ServerTime(ctx); err == nil {
						in := fmtDuration(info.Expire.Sub(now).Truncate(100 * time.Millisecond))
						if info.InMinHold {
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

// releaseLease releases l at the end of "run", "lock" or "elect" (which
// resigns), bounded by timeout, and says so with --verbose. It returns
// the release's error.
func (a *app) releaseLease(l *mongolock.Lease, o *takeOptions, taken time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := l.Release(ctx)
	switch {
	case err != nil || !o.verbose:
	case o.election:
		fmt.Fprintf(a.io.err, "mongolock: resigned the leadership of %q after leading %s\n", o.key, fmtDuration(time.Since(taken)))
	default:
		fmt.Fprintf(a.io.err, "mongolock: released the lock %q after holding it %s\n", o.key, fmtDuration(time.Since(taken)))
	}
	return err
}
