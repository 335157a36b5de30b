package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock"
)

// heldJSON is what "lock --json" prints once it holds the lock. Its shape
// is stable: fields may be added, none removed.
type heldJSON struct {
	Key   string `json:"key"`
	Owner string `json:"owner"`
	Token string `json:"token"`
	Fence int64  `json:"fence"`
}

func (a *app) lockCommand() *cobra.Command {
	o := &takeOptions{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lock KEY [flags]",
		Short: "Take a lock and hold it until interrupted or standard input closes",
		Long: `Lock takes the lock KEY, prints its key, owner, token and fence, and holds
it (renewing it in the background) until it gets SIGINT (Ctrl-C), SIGTERM or
SIGHUP, or until its standard input reaches end of file; then it releases
the lock and exits 0. It is "mongolock run" without a command, as
"etcdctl lock NAME" is, for shell scripts that do several steps under one
lock. KEY may also be given with --key.

It prints, on standard output, one NAME=VALUE line each for MONGOLOCK_KEY,
MONGOLOCK_OWNER, MONGOLOCK_TOKEN and MONGOLOCK_FENCE, quoted for the shell
where needed (so that "eval" or "export" can take them), or with --json
one JSON object: {"key": ..., "owner": ..., "token": ..., "fence": ...}.
Standard input is read and discarded. If it is /dev/null (as for a command
a script starts with &), it is not watched: then only a signal ends lock.

The lock is taken as "mongolock run" takes it: one attempt by default
(exit 75, or -E, if held), --timeout/-w to wait, --expire, --min-hold,
--owner, --limit (a semaphore), --shared (a reader). If the lock is lost while held (it could not be renewed in time,
or an operator force-released it), lock says so and exits 70 at once: check
on it (kill -0, wait) before each step that must not overlap with the next
holder's, or pass the fence along.

Exit codes: 0 once released after a signal or the end of standard input;
75 (or --conflict-exit-code) if the lock is held by someone else; 70 if the
lock was lost while held; 128+N if signal N interrupted the wait for the
lock; 2 for a usage error (also when the key is held as another kind of
lock: --limit, --shared); 1 if the server could not be used (to take the
lock, or to release it: it then expires --expire after its last renewal).`,
		Example: `  # In a bash script: hold the lock while several steps run, as a coprocess
  # whose standard input is the script's: it is released when the script
  # ends, however it ends (kill -9 included).
  coproc LOCK { exec mongolock lock nightly-report --timeout 10m; }
  for _ in 1 2 3 4; do read -r kv <&"${LOCK[0]}" || exit 75; eval "export $kv"; done
  step-one --fence "$MONGOLOCK_FENCE"
  step-two --fence "$MONGOLOCK_FENCE"
  kill "$LOCK_PID"; wait "$LOCK_PID"     # release it now (exit 0); or: exec {LOCK[1]}>&-

  # By hand, in a terminal: Ctrl-C or Ctrl-D releases it.
  mongolock lock maintenance --owner "$USER"`,
		Args: func(cmd *cobra.Command, args []string) error {
			return o.setKey(cmd, args, "mongolock lock KEY [flags]")
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return a.hold(cmd, o, asJSON)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print the lock's details as one JSON object instead of NAME=VALUE lines`)
	return cmd
}

// hold is "mongolock lock": take the lock, print it, hold it until a
// signal, the end of standard input or its loss, release it.
func (a *app) hold(cmd *cobra.Command, o *takeOptions, asJSON bool) error {
	uri, err := a.serverURI(cmd)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	c, l, err := a.take(o, uri, sigs, "the lock was not taken")
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	taken := time.Now()

	if err := printHeld(a.io.out, l, asJSON); err != nil {
		_ = a.releaseLease(l, o, taken, releaseTimeout)
		return failure(fmt.Errorf("writing the lock's details (released it again): %w", err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	eof := a.watchInput(ctx, &wg)

	select {
	case <-sigs:
	case <-eof:
	case <-l.Lost():
		_ = a.releaseLease(l, o, taken, lostReleaseTimeout) // a courtesy: it may be someone else's by now
		return exitWith(exitLost, fmt.Errorf("LOST the lock %q while holding it: %s%s", o.key, message(leaseErr(l)), shortExpiry(o.expire)))
	}
	err = a.releaseLease(l, o, taken, releaseTimeout)
	switch {
	case errors.Is(err, mongolock.ErrNotHeld):
		return exitWith(exitLost, fmt.Errorf("the lock %q was no longer held when it was to be released (%s): it was not held throughout", o.key, message(err)))
	case err != nil:
		return failure(fmt.Errorf("releasing the lock %q: %w (it frees itself when it expires)", o.key, err))
	}
	return nil
}

// leaseErr is why l was lost.
func leaseErr(l *mongolock.Lease) error {
	if err := l.Err(); err != nil {
		return err
	}
	return mongolock.ErrLost
}

// printHeld prints what "lock" holds: NAME=VALUE lines for the shell, or
// one JSON object.
func printHeld(w io.Writer, l *mongolock.Lease, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(heldJSON{Key: l.Key(), Owner: l.Owner(), Token: l.Token(), Fence: l.Fence()})
	}
	var b strings.Builder
	for _, kv := range [][2]string{
		{envKey, l.Key()},
		{envOwner, l.Owner()},
		{envToken, l.Token()},
		{envFence, strconv.FormatInt(l.Fence(), 10)},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], shellWord(kv[1]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shellSafe matches the values a POSIX shell reads back unchanged without
// quotes.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]+$`)

// shellWord quotes s for a POSIX shell, if it needs it.
func shellWord(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// watchInput returns a channel that is closed when standard input reaches
// end of file, or nil (never) when standard input is /dev/null or not
// open: a command started with & by a shell without job control gets
// /dev/null, which would release the lock at once. Watching a file ends
// with ctx (wg waits for it); another reader (tests) is read to its end.
func (a *app) watchInput(ctx context.Context, wg *sync.WaitGroup) <-chan struct{} {
	eof := make(chan struct{})
	in, ok := a.io.in.(*os.File)
	if !ok {
		go func() {
			_, _ = io.Copy(io.Discard, a.io.in)
			close(eof)
		}()
		return eof
	}
	fi, err := in.Stat()
	if err != nil {
		return nil
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchFile(ctx, in, eof)
	}()
	return eof
}
