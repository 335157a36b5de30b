package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

func (a *app) releaseCommand() *cobra.Command {
	var (
		owner   string
		force   bool
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

Exit codes: 0 released (with --force, also when it was not held); 1 if OWNER
does not hold the lock, there is no such lock, or the server could not be
used; 2 for a usage error (then no lock is touched).`,
		Example: `  mongolock release nightly-report --owner worker-1
  mongolock release nightly-report --force`,
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
			c, _, err := a.connect(ctx, cmd)
			if err != nil {
				return err
			}
			defer c.close()

			if force {
				return a.forceRelease(ctx, c.Client, key)
			}
			err = c.Release(ctx, key, owner)
			if errors.Is(err, mongolock.ErrNotHeld) {
				return failure(fmt.Errorf("the lock %q is not held by %q: %s; nothing released", key, owner, currentHolder(ctx, c.Client, key)))
			}
			if err != nil {
				return failure(err)
			}
			fmt.Fprintf(a.io.out, "released the lock %q held by %q\n", key, owner)
			return nil
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "release only if this owner holds the lock")
	cmd.Flags().BoolVar(&force, "force", false, "clear the lock whoever holds it")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

func (a *app) forceRelease(ctx context.Context, c *mongolock.Client, key string) error {
	before, err := c.ForceRelease(ctx, key)
	if errors.Is(err, mongolock.ErrNotFound) {
		return failure(fmt.Errorf("no lock %q in %s.%s; nothing released", key, a.database, a.collection))
	}
	if err != nil {
		return failure(err)
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

// currentHolder describes who holds key now, for an error message.
func currentHolder(ctx context.Context, c *mongolock.Client, key string) string {
	info, err := c.Info(ctx, key)
	switch {
	case errors.Is(err, mongolock.ErrNotFound):
		return "there is no such lock"
	case err != nil:
		return "its holder could not be read: " + err.Error()
	case !info.Locked:
		return "it is released"
	}
	return fmt.Sprintf("it is held by %q since %s", info.Owner, fmtTime(info.Created))
}
