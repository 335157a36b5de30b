package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// Results of "release --json".
const (
	releasedLock     = "released"      // it was held; now it is released
	releaseNotHeld   = "not_held"      // it exists but was not held: nothing to release
	releaseNotFound  = "not_found"     // there is no such lock
	releaseHeldOther = "held_by_other" // --owner does not hold it: nothing released
)

// releaseJSON is the output of "release --json". Its shape is stable:
// fields may be added, none removed.
type releaseJSON struct {
	Key     string    `json:"key"`
	Result  string    `json:"result"`  // released, not_held, not_found or held_by_other
	Owner   string    `json:"owner"`   // who held it (held_by_other: who holds it); "" if nobody
	Since   *jsonTime `json:"since"`   // since when; null if not held
	Expires *jsonTime `json:"expires"` // until when; null if never, or not held
	Fence   int64     `json:"fence"`   // the fence of its latest acquisition; 0 if none
}

func (a *app) releaseCommand() *cobra.Command {
	var (
		owner   string
		force   bool
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "release KEY (--owner OWNER | --force)",
		Short: "Release a lock held by an owner, or clear it whoever holds it",
		Long: `Release releases the lock KEY if OWNER holds it (the owner name recorded in
the lock, as "mongolock status" shows it).

--force clears the lock whoever holds it, and says what it cleared: owner,
since, fence. It is for a lock whose holder is gone and that never expires,
or must not wait for its expiry. A holder that is still alive is not told
until its next renewal fails ("mongolock run" then stops its command and
exits 70), so its work may overlap with the next holder's: use fences.

--json prints, for scripts, what was there and what happened:

  {"key": "nightly-report", "result": "released", "owner": "worker-1",
   "since": "2026-01-02T15:03:35.001Z", "expires": "2026-01-02T15:04:35.001Z",
   "fence": 1767366215001000}

"result" is "released", "not_held" (it was not held: nothing to release),
"not_found" (no such lock) or "held_by_other" (--owner does not hold it;
"owner" is who does). "since" and "expires" are null when not held;
"expires" also when the lock never expires. Fields may be added, never
removed. When the server could not be used, nothing is printed on standard
output.

Exit codes: 0 released (with --force, also when it was not held or does not
exist, as for rm -f); 1 if OWNER does not hold the lock, there is no such
lock (with --owner), or the server could not be used; 2 for a usage error
(then no lock is touched).`,
		Example: `  mongolock release nightly-report --owner worker-1
  mongolock release nightly-report --force
  mongolock release nightly-report --force --json | jq -r .owner`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("want exactly one KEY, got %d arguments", len(args))
			}
			switch {
			case force && cmd.Flags().Changed("owner"):
				return usageError("give either --owner or --force, not both: --force clears the lock whoever holds it")
			case !force && !cmd.Flags().Changed("owner"):
				return usageError("say whose lock to release with --owner OWNER, or clear it whoever holds it with --force")
			case !force && owner == "":
				return usageError("--owner must not be empty")
			}
			return checkKey(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, _, err := a.connect(ctx, cmd, timeout)
			if err != nil {
				return err
			}
			defer c.close()

			if force {
				return a.forceRelease(ctx, c.Client, key, asJSON)
			}
			return a.ownerRelease(ctx, c.Client, key, owner, asJSON)
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "release only if this owner holds the lock")
	cmd.Flags().BoolVar(&force, "force", false, "clear the lock whoever holds it")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (shape above) instead of a sentence")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// releaseResult describes lock info as "release --json" shows it.
func releaseResult(key, result string, info *mongolock.LockInfo) releaseJSON {
	r := releaseJSON{Key: key, Result: result}
	if info != nil {
		r.Fence = info.Fence
		if info.Locked {
			r.Owner, r.Since, r.Expires = info.Owner, jsonTimeOf(info.Created), jsonTimeOf(info.Expire)
		}
	}
	return r
}

// printReleaseJSON prints r.
func (a *app) printReleaseJSON(r releaseJSON) error {
	enc := json.NewEncoder(a.io.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return failure(err)
	}
	return nil
}

// ownerRelease releases key if owner holds it.
func (a *app) ownerRelease(ctx context.Context, c *mongolock.Client, key, owner string, asJSON bool) error {
	// What is released, read just before: for the report only.
	before, err := c.Info(ctx, key)
	if errors.Is(err, mongolock.ErrNotFound) {
		if asJSON {
			if err := a.printReleaseJSON(releaseResult(key, releaseNotFound, nil)); err != nil {
				return err
			}
			return exitWith(exitFailure, nil)
		}
		return failure(fmt.Errorf("no lock %q in %s.%s; nothing released", key, a.database, a.collection))
	}
	if err != nil {
		return failure(err)
	}
	err = c.Release(ctx, key, owner)
	if errors.Is(err, mongolock.ErrNotHeld) {
		now, ierr := c.Info(ctx, key)
		if asJSON {
			result := releaseHeldOther
			switch {
			case errors.Is(ierr, mongolock.ErrNotFound):
				result, now = releaseNotFound, nil
			case ierr != nil:
				return failure(ierr)
			case !now.Locked:
				result = releaseNotHeld
			}
			if err := a.printReleaseJSON(releaseResult(key, result, now)); err != nil {
				return err
			}
			return exitWith(exitFailure, nil)
		}
		return failure(fmt.Errorf("the lock %q is not held by %q: %s; nothing released", key, owner, describeCurrent(now, ierr)))
	}
	if err != nil {
		return failure(err)
	}
	if asJSON {
		if before.Owner != owner { // taken over between the two reads
			before = &mongolock.LockInfo{Key: key, Locked: true, Owner: owner}
		}
		return a.printReleaseJSON(releaseResult(key, releasedLock, before))
	}
	fmt.Fprintf(a.io.out, "released the lock %q held by %q\n", key, owner)
	return nil
}

func (a *app) forceRelease(ctx context.Context, c *mongolock.Client, key string, asJSON bool) error {
	before, err := c.ForceRelease(ctx, key)
	if errors.Is(err, mongolock.ErrNotFound) {
		// As rm -f: what does not exist is cleared already.
		if asJSON {
			return a.printReleaseJSON(releaseResult(key, releaseNotFound, nil))
		}
		fmt.Fprintf(a.io.out, "there is no lock %q in %s.%s; nothing to clear\n", key, a.database, a.collection)
		return nil
	}
	if err != nil {
		return failure(err)
	}
	if asJSON {
		result := releasedLock
		if !before.Locked {
			result = releaseNotHeld
		}
		return a.printReleaseJSON(releaseResult(key, result, before))
	}
	if !before.Locked {
		fmt.Fprintf(a.io.out, "the lock %q was not held (already released); nothing to clear\n", key)
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "force-released the lock %q: it was held by %q", key, before.Owner)
	if !before.Created.IsZero() {
		fmt.Fprintf(&b, " since %s", fmtTime(before.Created))
	}
	if before.Fence != 0 {
		fmt.Fprintf(&b, ", fence %d", before.Fence)
	}
	if !before.Expire.IsZero() {
		fmt.Fprintf(&b, ", expiring %s", fmtTime(before.Expire))
	}
	fmt.Fprintln(a.io.out, b.String())
	return nil
}

// describeCurrent describes who holds a lock, from Info's result, for an
// error message.
func describeCurrent(info *mongolock.LockInfo, err error) string {
	switch {
	case errors.Is(err, mongolock.ErrNotFound):
		return "there is no such lock"
	case err != nil:
		return "its holder could not be read: " + message(err)
	case !info.Locked:
		return "it is released"
	}
	return fmt.Sprintf("it is held by %q since %s", info.Owner, fmtTime(info.Created))
}
