package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// Lock states shown by "status".
const (
	stateHeld     = "held"     // locked, and not expired by the server's clock
	stateExpired  = "expired"  // locked, but expired: anyone may take it
	stateReleased = "released" // released by its holder or an operator
)

// statusJSON is the output of "status --json". Its shape is stable: fields
// may be added, none removed or changed. Times are the database server's,
// in RFC 3339 with milliseconds, UTC (jsonTime).
type statusJSON struct {
	ServerTime jsonTime   `json:"server_time"` // the server's clock when the locks were read
	Locks      []lockJSON `json:"locks"`       // sorted by key; empty, never null
}

// lockJSON is one lock in statusJSON.
type lockJSON struct {
	Key         string    `json:"key"`
	State       string    `json:"state"`         // "held", "expired" or "released"
	Owner       string    `json:"owner"`         // "" when released
	Since       *jsonTime `json:"since"`         // when the holder took it; null when released
	Expires     *jsonTime `json:"expires"`       // null if it never expires, or is released
	ExpiresInMS *int64    `json:"expires_in_ms"` // expires minus server_time; negative once expired; null with expires
	Fence       int64     `json:"fence"`         // fencing token of the latest acquisition; 0 if none
	MinHold     bool      `json:"min_hold"`      // released by its holder, held until expires (--min-hold); cannot be renewed

	// Beyond the mutex (added fields; the ones above keep their meaning:
	// for a semaphore or a shared lock, owner is "*semaphore" or "*shared",
	// as the Python package sees it, since and expires span its holders,
	// and fence is the latest any holder got).
	Kind    string       `json:"kind"`    // "exclusive", "semaphore", "shared" or "election"
	Limit   *int         `json:"limit"`   // a semaphore's limit; null for other kinds
	Holders []holderJSON `json:"holders"` // its holder (exclusive, election) or each holder (semaphore, shared); empty when released, never null
	Waiters []waiterJSON `json:"waiters"` // a fair lock's queue in arrival order, or the writer waiting for a shared lock's readers; never null
	Leader  *leaderJSON  `json:"leader"`  // an election's leader while it is held; null otherwise
}

// holderJSON is one holder of a lock in lockJSON.
type holderJSON struct {
	Owner       string    `json:"owner"`
	State       string    `json:"state"`         // "held" or "expired"
	Since       *jsonTime `json:"since"`         // when it took the lock
	Expires     *jsonTime `json:"expires"`       // null if it never expires
	ExpiresInMS *int64    `json:"expires_in_ms"` // expires minus server_time; negative once expired; null with expires
	Fence       int64     `json:"fence"`         // its fencing token (an election's term)
}

// waiterJSON is one acquisition waiting for a lock in lockJSON.
type waiterJSON struct {
	Owner string `json:"owner"`
}

// Kinds of locks shown by "status".
const (
	kindExclusive = "exclusive"
	kindSemaphore = "semaphore" // run --limit N
	kindShared    = "shared"    // run --shared: readers (a writer holds the key as an exclusive lock)
	kindElection  = "election"  // elect
)

// lockKind says what kind of lock l is. An election is known by its
// leader's value, which "elect" never leaves empty.
func lockKind(l mongolock.LockInfo) string {
	switch {
	case l.Limit > 0:
		return kindSemaphore
	case l.Shared:
		return kindShared
	case l.Value != "":
		return kindElection
	}
	return kindExclusive
}

// holdersOf returns who holds l: each holder of a semaphore or shared
// lock, or the one holder of another lock (none when released).
func holdersOf(l mongolock.LockInfo) []mongolock.Holder {
	switch {
	case l.Limit > 0 || l.Shared:
		return l.Holders()
	case l.Locked:
		return []mongolock.Holder{{Owner: l.Owner, Created: l.Created, Expire: l.Expire, Fence: l.Fence}}
	}
	return nil
}

// holderState is "held" or "expired" for a holder at server time now.
func holderState(h mongolock.Holder, now time.Time) string {
	if !h.Expire.IsZero() && !h.Expire.After(now) {
		return stateExpired
	}
	return stateHeld
}

func (a *app) statusCommand() *cobra.Command {
	var (
		prefix  string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [KEY | --prefix PREFIX]",
		Short: "Show locks: who holds them, since when, until when",
		Long: `Status shows the lock KEY, the locks whose keys start with --prefix, or all
locks: key, state, owner, since, expires in, fence.

A lock is "held" while it is locked and has not expired by the database
server's clock, "expired" when its holder stopped renewing it (anyone may
take it), "released" when its holder or an operator released it. Times are
the server's.

A semaphore (run --limit N) or a shared lock (run --shared) has a row that
counts its holders ("2 of 3 holders", "2 readers"), then one indented row
for each holder with its owner, since, expires in and fence, and one for
each waiting writer (or, for a fair lock, each waiter in its queue). An
election (elect) shows its leader below the table: value, owner, term and
since.

--json prints, for scripts:

  {"server_time": "2026-01-02T15:04:05.123Z",
   "locks": [{"key": "nightly-report", "state": "held", "owner": "worker-1",
              "since": "2026-01-02T15:03:35.001Z", "expires": "2026-01-02T15:04:35.001Z",
              "expires_in_ms": 29878, "fence": 1767366215001000}]}

"since" is null when released; "expires" and "expires_in_ms" are null when
the lock never expires or is released; "expires_in_ms" is negative once it
has expired. "min_hold" is true for a lock its holder released before its
minimum hold time (--min-hold) ended: it stays held until "expires", and
nobody can renew it. Times are the server's, in UTC with milliseconds.

Each lock also has "kind" ("exclusive", "semaphore", "shared" or
"election"); "limit", a semaphore's limit (else null); "holders", a list of
{"owner", "state", "since", "expires", "expires_in_ms", "fence"}: the
holder of an exclusive lock or an election, each holder of a semaphore or
shared lock (whose own "owner" is then "*semaphore" or "*shared"), empty
when released; "waiters", a list of {"owner"}: a fair lock's queue, or the
writer waiting for a shared lock's readers; and "leader", an election's
{"value", "owner", "term", "since"} while it is held, else null.
Fields may be added, never removed.

Exit codes: 0 when the locks could be read (also when none matched a
prefix); 1 if KEY does not exist or the server could not be read; 2 for a
usage error.`,
		Example: `  mongolock status
  mongolock status nightly-report
  mongolock status --prefix jobs/ --json | jq -r '.locks[] | select(.state == "held") | .key'`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usageError("at most one KEY, got %d arguments", len(args))
			case len(args) == 1 && cmd.Flags().Changed("prefix"):
				return usageError("give either KEY or --prefix, not both")
			case len(args) == 1:
				return checkKey(args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, _, err := a.connect(ctx, cmd, timeout)
			if err != nil {
				return err
			}
			defer c.close()

			var locks []mongolock.LockInfo
			notFound := false
			if len(args) == 1 {
				info, err := c.Info(ctx, args[0])
				switch {
				case errors.Is(err, mongolock.ErrNotFound):
					notFound = true
				case err != nil:
					return failure(err)
				default:
					locks = []mongolock.LockInfo{*info}
				}
			} else {
				locks, err = c.List(ctx, prefix)
				if err != nil {
					return failure(err)
				}
			}
			now, _, err := c.ServerTime(ctx)
			if err != nil {
				return failure(fmt.Errorf("reading the server's clock: %w", err))
			}
			retired := minHeld(locks)

			if asJSON {
				if err := a.printStatusJSON(now, locks, retired); err != nil {
					return failure(err)
				}
			} else {
				a.printStatusTable(now, locks, retired, len(args) == 1, prefix)
			}
			if notFound {
				if asJSON {
					return exitWith(exitFailure, nil)
				}
				return exitWith(exitFailure, fmt.Errorf("no lock %q in %s.%s", args[0], a.database, a.collection))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "show the locks whose keys start with this")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (shape above) instead of a table")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// lockState classifies a lock at server time now.
func lockState(l mongolock.LockInfo, now time.Time) string {
	switch {
	case !l.Locked:
		return stateReleased
	case !l.Expire.IsZero() && !l.Expire.After(now):
		return stateExpired
	}
	return stateHeld
}

func (a *app) printStatusJSON(now time.Time, locks []mongolock.LockInfo, retired map[string]bool) error {
	out := statusJSON{ServerTime: jsonTime(now), Locks: make([]lockJSON, 0, len(locks))}
	for _, l := range locks {
		j := lockJSON{Key: l.Key, State: lockState(l, now), Owner: l.Owner, Fence: l.Fence, Since: jsonTimeOf(l.Created)}
		if !l.Expire.IsZero() && l.Locked {
			j.Expires, j.ExpiresInMS = jsonTimeOf(l.Expire), expiresIn(l.Expire, now)
		}
		j.MinHold = j.State == stateHeld && retired[l.Key]
		j.Kind = lockKind(l)
		if j.Kind == kindSemaphore {
			j.Limit = &l.Limit
		}
		j.Holders = []holderJSON{}
		for _, h := range holdersOf(l) {
			hj := holderJSON{Owner: h.Owner, State: holderState(h, now), Since: jsonTimeOf(h.Created), Fence: h.Fence}
			if !h.Expire.IsZero() {
				hj.Expires, hj.ExpiresInMS = jsonTimeOf(h.Expire), expiresIn(h.Expire, now)
			}
			j.Holders = append(j.Holders, hj)
		}
		j.Waiters = []waiterJSON{}
		for _, w := range l.Waiters() {
			j.Waiters = append(j.Waiters, waiterJSON{Owner: w.Owner})
		}
		if j.Kind == kindElection && j.State == stateHeld {
			j.Leader = leaderOf(mongolock.LeaderInfo{Value: l.Value, Owner: l.Owner, Term: l.Fence, Since: l.Created})
		}
		out.Locks = append(out.Locks, j)
	}
	enc := json.NewEncoder(a.io.out)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// expiresIn is how long after now t comes, in milliseconds, for JSON.
func expiresIn(t, now time.Time) *int64 {
	ms := t.Sub(now).Milliseconds()
	return &ms
}

func (a *app) printStatusTable(now time.Time, locks []mongolock.LockInfo, retired map[string]bool, single bool, prefix string) {
	if len(locks) == 0 {
		switch {
		case single:
		case prefix != "":
			fmt.Fprintf(a.io.out, "no locks with keys starting with %q in %s.%s\n", prefix, a.database, a.collection)
		default:
			fmt.Fprintf(a.io.out, "no locks in %s.%s\n", a.database, a.collection)
		}
		return
	}
	tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTATE\tOWNER\tSINCE\tEXPIRES IN\tFENCE")
	var notes []string
	for _, l := range locks {
		state := lockState(l, now)
		owner, since, expires := "-", "-", "-"
		if l.Owner != "" {
			owner = l.Owner
		}
		if !l.Created.IsZero() {
			since = fmtTime(l.Created)
		}
		switch {
		case state == stateReleased:
		case l.Expire.IsZero():
			expires = "never"
		case state == stateExpired:
			expires = "expired " + fmtDuration(now.Sub(l.Expire)) + " ago"
		case retired[l.Key]:
			expires = fmtDuration(l.Expire.Sub(now)) + " (min-hold)"
			notes = append(notes, fmt.Sprintf("%s: held until %s: its holder released it before its minimum hold time (--min-hold) ended; it cannot be renewed",
				l.Key, fmtTime(l.Expire)))
		default:
			expires = fmtDuration(l.Expire.Sub(now))
		}
		kind := lockKind(l)
		holders := holdersOf(l)
		live := 0
		for _, h := range holders {
			if holderState(h, now) == stateHeld {
				live++
			}
		}
		role := "waiter"
		switch kind {
		case kindSemaphore:
			owner = fmt.Sprintf("%d of %d holders", live, l.Limit)
		case kindShared:
			owner, role = plural(live, "reader"), "writer"
		case kindElection:
			if state == stateHeld {
				notes = append(notes, fmt.Sprintf("%s: election led by %q with value %s, term %d, since %s",
					l.Key, l.Owner, quoteShort(l.Value, 60), l.Fence, fmtTime(l.Created)))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Key, state, owner, since, expires, fenceText(l.Fence))
		if kind == kindSemaphore || kind == kindShared {
			name := "  holder"
			if kind == kindShared {
				name = "  reader"
			}
			for _, h := range holders {
				hstate, hexpires := holderState(h, now), "never"
				switch {
				case h.Expire.IsZero():
				case hstate == stateExpired:
					hexpires = "expired " + fmtDuration(now.Sub(h.Expire)) + " ago"
				default:
					hexpires = fmtDuration(h.Expire.Sub(now))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, hstate, h.Owner, fmtTime(h.Created), hexpires, fenceText(h.Fence))
			}
		}
		for _, w := range l.Waiters() {
			fmt.Fprintf(tw, "  %s\twaiting\t%s\t-\t-\t-\n", role, w.Owner)
		}
	}
	_ = tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(a.io.out, n)
	}
}

// fenceText is a fence for the table: "-" for none.
func fenceText(fence int64) string {
	if fence == 0 {
		return "-"
	}
	return strconv.FormatInt(fence, 10)
}

// quoteShort quotes s, cut to at most n characters ("..." marks a cut).
func quoteShort(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:n])) + "..."
}
