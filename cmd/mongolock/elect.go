package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// maxValueBytes is the longest --value the library takes.
const maxValueBytes = 4096

// electOptions are the flags of "elect".
type electOptions struct {
	runOptions
	observe bool // --observe: print the leader and each change instead of campaigning
	asJSON  bool // --json, with --observe
}

// leaderJSON is an election's leader in "elect --observe --json" and in
// "status --json". Its shape is stable: fields may be added, none removed.
type leaderJSON struct {
	Value string    `json:"value"` // what the leader campaigned with (--value)
	Owner string    `json:"owner"` // the leader's owner name
	Term  int64     `json:"term"`  // the leader's fence: it rises with every new leader
	Since *jsonTime `json:"since"` // when it became leader (server time)
}

// leaderOf is info for JSON; nil (null) when there is no leader.
func leaderOf(info mongolock.LeaderInfo) *leaderJSON {
	if info.Owner == "" {
		return nil
	}
	return &leaderJSON{Value: info.Value, Owner: info.Owner, Term: info.Term, Since: jsonTimeOf(info.Since)}
}

// observedJSON is one line of "elect --observe --json": the leader after a
// change (null: none).
type observedJSON struct {
	Name   string      `json:"name"`
	Leader *leaderJSON `json:"leader"`
}

func (a *app) electCommand() *cobra.Command {
	o := &electOptions{}
	o.election = true
	cmd := &cobra.Command{
		Use:   "elect NAME [flags] -- COMMAND [ARG...] | --observe",
		Short: "Run a command while leading an election; or watch who leads",
		Long: `Elect campaigns for the leadership of the election NAME and runs COMMAND
while it leads. Of the candidates started with the same NAME, one leads and
runs its COMMAND; the others wait. When the leader goes (its COMMAND exits,
mongolock dies, or the leadership is lost), the next candidate takes over.
Like "etcdctl elect" and "consul lock", for an election kept in MongoDB.

By default it waits to lead, without limit, as etcdctl elect and consul
lock do: a candidate is a standby, and a standby that exited when it found
a leader would be none (and, under a service manager that restarts it,
would be restarted over and over). This is unlike "mongolock run", whose
one attempt suits cron jobs. -n (--nonblock) makes one attempt: if another
candidate leads, COMMAND does not run and mongolock exits 75 at once
(--conflict-exit-code, -E). --timeout D (-w D, --wait D) waits up to D,
connecting included; a bare number is seconds. While it waits more than a
second, and only if standard error is a terminal, a "waiting..." line says
who leads (--quiet silences it; --verbose says when the wait starts, how
long it took and when it resigned, on a terminal or not).

The leadership is a lock on NAME (keep other locks off that key) that
stores --value, what the leader wants the others to know (its address, for
instance; default: its owner name). It expires --expire after it was last
renewed, and is renewed in the background while COMMAND runs. COMMAND gets
MONGOLOCK_KEY (NAME), MONGOLOCK_OWNER, MONGOLOCK_TOKEN, MONGOLOCK_FENCE,
MONGOLOCK_TERM (the leader's term: its fence, which rises with every new
leader) and MONGOLOCK_VALUE in its environment; pass the term along with
its writes so that a resource can refuse a deposed leader.

COMMAND runs as under "mongolock run" (see its help): standard input,
output and error are COMMAND's; SIGINT, SIGTERM and SIGHUP are forwarded to
it; job control works; a supervising process kills it, and all it started,
if mongolock dies; what it leaves running when it exits is stopped. If the
leadership is lost while COMMAND runs (not renewed in time, or an operator
force-released it), COMMAND gets SIGTERM, and SIGKILL (with all it started)
--kill-grace later; mongolock then exits 70. When COMMAND exits, mongolock
resigns, and the next candidate leads.

--observe campaigns for nothing: it prints the current leader, then each
change of leader, until SIGINT (Ctrl-C), SIGTERM or SIGHUP, one line each:

  leader "10.0.0.7:8080": owner "web-1-4242-4f2a9c", term 1767366215001000, since 2026-01-02 15:03:35Z
  no leader

or, with --json, one JSON object per line:

  {"name":"scheduler","leader":{"value":"10.0.0.7:8080","owner":"web-1-4242-4f2a9c","term":1767366215001000,"since":"2026-01-02T15:03:35.001Z"}}
  {"name":"scheduler","leader":null}

It reads the leader every 100ms, so a leader that led for less may go
unseen; terms only rise. Fields may be added, never removed.

Exit codes: COMMAND's own; 128+N if signal N killed it (or its supervising
process; or N interrupted the wait to lead); 75 (or --conflict-exit-code)
if another candidate leads and -n or --timeout gave up; 70 if the
leadership was lost while COMMAND ran or was suspended; 126/127 if COMMAND
could not be executed / was not found; 2 for a usage error; 1 if the server
could not be used. With --observe: 0 once a signal ended it; 2 for a usage
error; 1 if the server could not be used.`,
		Example: `  # On every machine: one runs the scheduler, the others stand by.
  mongolock elect scheduler --value "$(hostname):8080" -- ./scheduler

  # Pass the term along, so that storage can refuse a deposed leader.
  mongolock elect indexer --shell -- 'indexer --term "$MONGOLOCK_TERM"'

  # Lead now or not at all (exit 75 if another candidate leads).
  mongolock elect compactor -n -- ./compact.sh

  # Who leads, and each change, as JSON lines.
  mongolock elect scheduler --observe --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			const usage = "mongolock elect NAME [flags] -- COMMAND [ARG...]"
			switch {
			case o.observe && dash >= 0:
				return usageError("--observe runs no command: give the election's name alone, as in: mongolock elect NAME --observe")
			case o.observe && len(args) == 0:
				return usageError("no election name given, as in: mongolock elect NAME --observe")
			case o.observe && len(args) > 1:
				return usageError("unexpected argument %q: one election name only, as in: mongolock elect NAME --observe", args[1])
			case o.observe:
			case dash < 0 && len(args) > 1:
				return usageError("put the command after --, as in: mongolock elect %s -- %s", args[0], strings.Join(args[1:], " "))
			case dash < 0 && len(args) == 1:
				return usageError("no command given: put it after --, as in: mongolock elect %s -- COMMAND [ARG...] (or watch the leader with --observe)", args[0])
			case dash == 0 || len(args) == 0:
				return usageError("no election name given, as in: %s", usage)
			case dash < 0 || dash == len(args):
				return usageError("no command given: put it after --, as in: mongolock elect %s -- COMMAND [ARG...]", args[0])
			case dash > 1:
				return usageError("unexpected argument %q: one election name only, as in: %s", args[1], usage)
			}
			o.key = args[0]
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			if o.observe {
				return a.observe(cmd, o)
			}
			return a.runHeld(cmd, &o.runOptions, args[cmd.ArgsLenAtDash():])
		},
	}
	f := cmd.Flags()
	o.timeout = waitFlag{forever: true} // before --wait and --timeout take it as their default
	o.addTakeFlags(f)
	o.addRunFlags(f)
	f.Var(&o.timeout, "timeout", "wait up to this long to lead, connecting included (-1: without limit, as a standby does; 0: one attempt, as -n; a bare number is seconds)")
	f.BoolVarP(&o.nonblock, "nonblock", "n", false, "make one attempt, and fail at once if another candidate leads")
	f.IntVarP(&o.conflictExit, "conflict-exit-code", "E", exitConflict, "exit code when another candidate leads and -n or --timeout gave up")
	f.StringVar(&o.value, "value", "", "the leader's value, which --observe and status show while it leads, e.g. its address (default: the owner name)")
	f.BoolVar(&o.observe, "observe", false, "print the current leader and each change of leader until interrupted, instead of campaigning")
	f.BoolVar(&o.asJSON, "json", false, "with --observe: print one JSON object per line (shape above)")
	f.Lookup("quiet").Usage = "say nothing while waiting, or when another candidate leads"
	f.Lookup("verbose").Usage = "say when the wait starts, how long it took to lead, and when it resigned"
	f.Lookup("owner").Usage = "owner name recorded in the leadership (default: host, pid and a random suffix)"
	f.Lookup("expire").Usage = "the leadership expires this long after its last renewal; it is renewed about every third of it (too short for the server's round trip: a usage error)"
	f.Lookup("kill-grace").Usage = "time between SIGTERM and SIGKILL when the command must stop (the leadership was lost), and for what it leaves running"
	return cmd
}

// validate checks o once the flags are parsed, and fills in the default
// owner and value.
func (o *electOptions) validate(cmd *cobra.Command) error {
	f := cmd.Flags()
	if o.observe {
		var given []string
		for _, name := range []string{"value", "owner", "expire", "timeout", "wait", "nonblock", "conflict-exit-code", "quiet", "verbose", "kill-grace", "shell"} {
			if f.Changed(name) {
				given = append(given, "--"+name)
			}
		}
		if len(given) > 0 {
			return usageError("%s: not with --observe, which campaigns for nothing", orList(given))
		}
		if o.key == "" {
			return usageError("the election's name must not be empty")
		}
		return nil
	}
	if o.asJSON {
		return usageError("--json is for --observe: the command's output is its own")
	}
	switch {
	case o.key == "":
		return usageError("the election's name must not be empty")
	case f.Changed("value") && o.value == "":
		return usageError("--value must not be empty: it is how observers tell a leader (leave it out for the owner name)")
	case len(o.value) > maxValueBytes:
		return usageError("--value must be at most %d bytes, got %d", maxValueBytes, len(o.value))
	case !utf8.ValidString(o.value):
		return usageError("--value must be valid UTF-8")
	}
	if err := o.runOptions.validate(cmd); err != nil {
		return err
	}
	if o.value == "" {
		if o.owner == "" {
			o.owner = generatedOwner()
		}
		o.value = o.owner
	}
	return nil
}

// generatedOwner returns a unique owner name as the library makes one:
// host, pid and 48 random bits.
func generatedOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%.200s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// describeLeader says who leads the election e names (as a *LockedError
// from a campaign that did not win), with its value and term when they can
// be read, since when, and until when unless renewed.
func describeLeader(ctx context.Context, c *mongolock.Client, e *mongolock.LockedError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the election %q is led", e.Key)
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := c.Election(e.Key).Leader(lctx)
	cancel()
	switch {
	case err == nil && info.Owner == e.Owner:
		fmt.Fprintf(&b, " by %q (value %q, term %d)", info.Owner, info.Value, info.Term)
	case e.Owner != "":
		fmt.Fprintf(&b, " by %q", e.Owner)
	}
	if !e.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", fmtTime(e.Since))
	}
	b.WriteString(expiryNote(ctx, c, e))
	return b.String()
}

// observe is "mongolock elect NAME --observe": print the leader, then
// each change, until a signal.
func (a *app) observe(cmd *cobra.Command, o *electOptions) error {
	uri, err := a.serverURI(cmd)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	wg.Add(1)
	go func() { // owned by observe: ends with ctx, which its return cancels
		defer wg.Done()
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	c, err := a.connectURI(ctx, uri, 0)
	if err != nil {
		if ctx.Err() != nil {
			return nil // a signal ended it
		}
		return err
	}
	defer c.close()

	e := c.Election(o.key)
	info, err := e.Leader(ctx)
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, mongolock.ErrNotFound):
		info = mongolock.LeaderInfo{}
	case err != nil:
		return failure(err)
	}
	if err := a.printLeader(o, info); err != nil {
		return failure(err)
	}
	last := info
	for info := range e.Observe(ctx) {
		if info == last {
			continue
		}
		if err := a.printLeader(o, info); err != nil {
			return failure(err)
		}
		last = info
	}
	return nil
}

// printLeader prints one line of "elect --observe": the leader, or that
// there is none.
func (a *app) printLeader(o *electOptions, info mongolock.LeaderInfo) error {
	if o.asJSON {
		if err := json.NewEncoder(a.io.out).Encode(observedJSON{Name: o.key, Leader: leaderOf(info)}); err != nil {
			return fmt.Errorf("writing the leader: %w", err)
		}
		return nil
	}
	line := "no leader\n"
	if info.Owner != "" {
		line = fmt.Sprintf("leader %q: owner %q, term %d, since %s\n", info.Value, info.Owner, info.Term, fmtTime(info.Since))
	}
	if _, err := io.WriteString(a.io.out, line); err != nil {
		return fmt.Errorf("writing the leader: %w", err)
	}
	return nil
}
