package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/internal/embedded"
)

// demoExpire is the expiry of the demo workers' leases: short, so that the
// killed holder's lock is recovered quickly.
const demoExpire = 2 * time.Second

// demoPoll is how often the demo reads the ledger.
const demoPoll = 5 * time.Millisecond

// One worker holds the lock once for longer than the expiry, to show that
// keep-alive renewals make that safe: demoLongHolder, on its
// demoLongHoldAt-th acquisition. The demo does not kill it then.
const (
	demoLongHolder = "worker-1"
	demoLongHoldAt = 1
)

type demoOptions struct {
	workers  int
	duration time.Duration
}

func (a *app) demoCommand() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo [--workers N] [--duration D] [--uri URI]",
		Short: "Watch worker processes share one lock, one of them killed mid-hold",
		Long: `Demo shows the lock at work. It starts --workers worker processes that
compete for one lock (expiring 2s after its last renewal, kept alive while
held), each writing "enter" and "leave" lines with its fence to a shared
ledger file while it holds the lock. Partway through, it kills the current
holder with SIGKILL, which cannot release the lock: the others take it over
once its lease expires. One worker holds the lock once for longer than the
expiry, which only keep-alive renewals make safe.

It prints each acquisition as it happens, then a report computed from the
ledger: acquisitions per worker, overlapping critical sections (must be 0),
fences (must strictly increase), the time to recover from the killed holder,
and the hand-off latency from one holder's "leave" to the next one's
"enter".

Without --uri (or MONGOLOCK_URI) it starts an embedded server of its own
(as "mongolock devserver" does) and removes it at the end. With a server, it
uses a fresh key in --database/--collection and deletes that key's document
at the end.

The worker processes end with the demo, however it ends (SIGKILL
included). If standard output is closed (as in "mongolock demo | head"), the
demo stops its workers, cleans up and exits 141, as a program killed by
SIGPIPE would.

Ctrl-C (SIGINT) or SIGTERM stops the workers and prints the report of what
happened until then: an interrupted demo is not a failed one, unless it saw
a guarantee broken.

Exit codes: 0 if every guarantee held; 1 if one did not (or a worker
failed), interrupted or not; 2 for a usage error; 130 if interrupted; 141
if standard output was closed.`,
		Example: `  go run ./cmd/mongolock demo
  mongolock demo --workers 10 --duration 1m
  mongolock demo --uri mongodb://localhost:27017`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.workers < 2 || o.workers > 64:
				return usageError("--workers must be between 2 and 64 (one is killed, another takes over), got %d", o.workers)
			case o.duration < time.Second:
				return usageError("--duration must be at least 1s, got %v", o.duration)
			}
			return a.demo(cmd, o)
		},
	}
	cmd.Flags().IntVar(&o.workers, "workers", 6, "number of worker processes")
	cmd.Flags().DurationVar(&o.duration, "duration", 20*time.Second, "how long the workers compete (longer if the recovery from the kill is still awaited)")
	return cmd
}

// demoWorkerProc is one worker process the demo started.
type demoWorkerProc struct {
	id     string
	cmd    *exec.Cmd
	output syncBuffer
	done   chan struct{} // closed once it exited
	err    error         // its Wait error, once done
}

func (a *app) demo(cmd *cobra.Command, o *demoOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// When standard output goes away (as in "mongolock demo | head"), a
	// write fails with EPIPE rather than killing mongolock with SIGPIPE
	// (os/signal: once SIGPIPE is notified), and the demo ends cleanly.
	pipeSig := make(chan os.Signal, 1)
	signal.Notify(pipeSig, syscall.SIGPIPE)
	defer signal.Stop(pipeSig)
	ctx, outputGone := context.WithCancelCause(ctx)
	defer outputGone(nil)
	out := &demoOutput{w: a.io.out, gone: outputGone}

	uri := a.uri
	if !cmd.Flags().Changed("uri") {
		uri = a.getenv(envURI)
	}
	if uri != "" {
		if _, err := parseURI(uri); err != nil {
			return err
		}
		fmt.Fprintf(out, "Using the server at %s\n", mongolock.RedactURI(uri))
	} else {
		startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		srv, err := embedded.Start(startCtx, embedded.Config{})
		cancel()
		if err != nil {
			return failure(fmt.Errorf("starting the embedded server: %w", err))
		}
		defer func() {
			cctx, ccancel := context.WithTimeout(context.Background(), stopTimeout)
			defer ccancel()
			_ = srv.Close(cctx)
		}()
		uri = srv.URI()
		fmt.Fprintf(out, "Started an embedded server (FerretDB on SQLite behind a serializing proxy) at %s\n", uri)
	}

	// A client of our own: to check the server, and to delete the demo's
	// lock document at the end.
	c, err := a.connectURI(ctx, uri, 0)
	if err != nil {
		return err
	}
	defer c.close()
	key := "mongolock-demo-" + randomHex(4)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.Collection().DeleteOne(dctx, bson.D{{Key: "_id", Value: key}})
	}()

	dir, err := os.MkdirTemp("", "mongolock-demo-*")
	if err != nil {
		return failure(err)
	}
	defer os.RemoveAll(dir)
	ledgerPath := filepath.Join(dir, "ledger")
	ledgerFile, err := os.OpenFile(ledgerPath, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return failure(err)
	}
	defer ledgerFile.Close()
	reader, err := os.Open(ledgerPath)
	if err != nil {
		return failure(err)
	}
	defer reader.Close()

	exe, err := os.Executable()
	if err != nil {
		return failure(fmt.Errorf("finding this program to start the workers: %w", err))
	}

	fmt.Fprintf(out, "Starting %d worker processes competing for the lock %q (expires %s after each renewal, kept alive while held).\n"+
		"Each writes enter/leave lines with its fence to %s while it holds the lock.\n\n",
		o.workers, key, demoExpire, ledgerPath)

	// The workers' lifeline: each inherits the read end of this pipe, and
	// exits when it reads end of file, that is when the demo is gone,
	// however it ended (SIGKILL included): only the demo holds the write
	// end.
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return failure(err)
	}
	defer lifeW.Close()

	workers := make([]*demoWorkerProc, o.workers)
	for i := range workers {
		w := &demoWorkerProc{id: "worker-" + strconv.Itoa(i+1), done: make(chan struct{})}
		args := []string{"demo-worker", "--database", a.database, "--collection", a.collection,
			"--key", key, "--ledger", ledgerPath, "--id", w.id, "--expire", demoExpire.String(),
			"--lifeline-fd", "3"}
		if w.id == demoLongHolder {
			args = append(args, "--long-hold", strconv.Itoa(demoLongHoldAt))
		}
		w.cmd = exec.Command(exe, args...)
		// The URI goes through the environment, where other users cannot
		// read its password as they could in the arguments.
		w.cmd.Env = append(os.Environ(), envURI+"="+uri)
		w.cmd.Stdout, w.cmd.Stderr = &w.output, &w.output
		w.cmd.ExtraFiles = []*os.File{lifeR} // descriptor 3
		if err := w.cmd.Start(); err != nil {
			lifeR.Close()
			stopWorkers(workers[:i])
			return failure(fmt.Errorf("starting %s: %w", w.id, err))
		}
		go func() { w.err = w.cmd.Wait(); close(w.done) }()
		workers[i] = w
	}
	lifeR.Close()

	start := time.Now()
	check := newLedgerCheck()
	tail := newLedgerTail(reader)
	killAt := start.Add(o.duration * 2 / 5)
	end := start.Add(o.duration)
	hardEnd := end.Add(demoExpire + 5*time.Second) // waiting for the recovery from the kill
	var killed *demoWorkerProc
	interrupted := false

	ticker := time.NewTicker(demoPoll)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-ticker.C:
		}
		events, err := tail.next()
		if err != nil {
			stopWorkers(workers)
			return failure(err)
		}
		for _, e := range events {
			if line := check.observe(e, demoExpire); line != "" {
				fmt.Fprintf(out, "%7.2fs  %s\n", e.at.Sub(start).Seconds(), line)
			}
		}

		now := time.Now()
		if killed == nil && now.After(killAt) {
			if w := holderToKill(check, workers); w != nil {
				killed = w
				fence := check.open[w.id].fence
				_ = w.cmd.Process.Kill()
				<-w.done
				if err := appendEvent(ledgerFile, ledgerEvent{at: time.Now(), op: opKilled, fence: fence, worker: w.id}); err != nil {
					stopWorkers(workers)
					return failure(err)
				}
			}
		}
		if now.After(end) && (check.recovered || now.After(hardEnd)) {
			break
		}
		if allExited(workers) {
			break
		}
	}
	// Ctrl-C on a terminal reaches the workers too (they share the demo's
	// process group): they may all have stopped, as asked, before the
	// demo's own signal ended the loop. Either way it was interrupted.
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errOutputGone) || allStoppedAsAsked(workers, killed) && time.Now().Before(end) {
		interrupted = true
	}

	stopWorkers(workers)
	events, err := tail.next()
	if err != nil {
		return failure(err)
	}
	for _, e := range events {
		if line := check.observe(e, demoExpire); line != "" {
			fmt.Fprintf(out, "%7.2fs  %s\n", e.at.Sub(start).Seconds(), line)
		}
	}

	switch {
	case errors.Is(context.Cause(ctx), errOutputGone):
		return exitWith(exitOutputGone, nil) // nobody reads a report any more
	case out.err != nil:
		return failure(fmt.Errorf("writing the demo's output: %w", out.err))
	}
	ok := a.demoReport(out, check, workers, killed, time.Since(start), interrupted)
	switch {
	case !ok:
		return exitWith(exitFailure, errors.New("a guarantee did not hold (see the report above)"))
	case interrupted:
		return exitWith(130, errors.New("demo interrupted"))
	}
	return nil
}

// allStoppedAsAsked reports whether every worker but the killed one has
// stopped as a worker stops when asked to (SIGINT, SIGTERM): with status
// 0, or killed by the signal if it came before the worker could catch it.
func allStoppedAsAsked(workers []*demoWorkerProc, killed *demoWorkerProc) bool {
	for _, w := range workers {
		if w != killed && (!exited(w) || w.err != nil && !stoppedBySignal(w)) {
			return false
		}
	}
	return true
}

// stoppedBySignal reports whether w, which has exited, was killed by
// SIGINT or SIGTERM (a Ctrl-C that reached it before it was ready to
// catch it).
func stoppedBySignal(w *demoWorkerProc) bool {
	ps := w.cmd.ProcessState
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGINT || ws.Signal() == syscall.SIGTERM)
}

// holderToKill returns the worker inside the lock now, if it is alive and
// not in its long hold.
func holderToKill(check *ledgerCheck, workers []*demoWorkerProc) *demoWorkerProc {
	for _, w := range workers {
		if w.id == demoLongHolder && check.perWorker[w.id] == demoLongHoldAt {
			continue
		}
		if _, in := check.open[w.id]; in && !exited(w) {
			return w
		}
	}
	return nil
}

func exited(w *demoWorkerProc) bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func allExited(workers []*demoWorkerProc) bool {
	for _, w := range workers {
		if !exited(w) {
			return false
		}
	}
	return true
}

// stopWorkers asks the workers still running to stop (SIGTERM: each
// finishes its critical section and releases) and kills any that do not
// within demoExpire + 5s.
func stopWorkers(workers []*demoWorkerProc) {
	for _, w := range workers {
		if !exited(w) {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(demoExpire + 5*time.Second)
	for _, w := range workers {
		select {
		case <-w.done:
		case <-deadline:
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	}
}

// demoReport prints the report and says whether every guarantee held. An
// interrupted demo reports what it saw until then: what it did not get to
// (the kill, the recovery) is not a failure, what it saw go wrong is.
func (a *app) demoReport(out io.Writer, check *ledgerCheck, workers []*demoWorkerProc, killed *demoWorkerProc, elapsed time.Duration, interrupted bool) bool {
	ok := true
	verdict := func(good bool) string {
		if good {
			return "ok"
		}
		ok = false
		return "FAILED"
	}

	what := ""
	if interrupted {
		what = "interrupted, "
	}
	fmt.Fprintf(out, "\nReport (%s%s, %d workers, lease expiry %s)\n", what, fmtDuration(elapsed), len(workers), demoExpire)

	var per []string
	for _, w := range workers {
		s := fmt.Sprintf("%s %d", w.id, check.perWorker[w.id])
		if w == killed {
			s += " (killed)"
		}
		per = append(per, s)
	}
	fmt.Fprintf(out, "  acquisitions per worker:     %s (total %d)\n", strings.Join(per, ", "), check.acquisitions)
	fmt.Fprintf(out, "  overlapping sections:        %d  %s\n", check.overlaps, verdict(check.overlaps == 0))
	for _, l := range check.overlapLines {
		fmt.Fprintf(out, "      %s\n", l)
	}
	fmt.Fprintf(out, "  fences strictly increasing:  %s  %s\n", yesNo(check.fenceErrors == 0), verdict(check.fenceErrors == 0 && (check.acquisitions > 0 || interrupted)))
	fmt.Fprintf(out, "  leases lost while held:      %d  %s\n", check.lost, verdict(check.lost == 0))

	switch {
	case killed == nil && interrupted:
		fmt.Fprintf(out, "  killed holder:               none (interrupted before the kill)\n")
	case killed == nil:
		fmt.Fprintf(out, "  killed holder:               none (no holder to kill in time)  %s\n", verdict(false))
	case !check.killedOpen:
		fmt.Fprintf(out, "  killed holder:               %s, but it had just released the lock: no recovery to measure\n", killed.id)
	case check.recovered:
		fmt.Fprintf(out, "  recovery from the kill:      %s (%s killed while holding)  %s\n", fmtDuration(check.recovery), killed.id, verdict(true))
	case interrupted:
		fmt.Fprintf(out, "  recovery from the kill:      not seen (%s killed while holding; interrupted before it expired)\n", killed.id)
	default:
		fmt.Fprintf(out, "  recovery from the kill:      not seen (%s killed while holding)  %s\n", killed.id, verdict(false))
	}
	if check.longestHold > demoExpire {
		fmt.Fprintf(out, "  longest hold:                %s by %s, beyond the %s expiry (kept alive)  %s\n",
			fmtDuration(check.longestHold), check.longestBy, demoExpire, verdict(check.lost == 0 && check.overlaps == 0))
	} else if check.longestHold > 0 {
		fmt.Fprintf(out, "  longest hold:                %s by %s\n", fmtDuration(check.longestHold), check.longestBy)
	}
	if n := len(check.handoffs); n > 0 {
		fmt.Fprintf(out, "  hand-off latency:            median %s, p99 %s, max %s (%d hand-offs)\n",
			fmtDuration(percentile(check.handoffs, 50)), fmtDuration(percentile(check.handoffs, 99)),
			fmtDuration(slices.Max(check.handoffs)), n)
	}

	var failed []string
	for _, w := range workers {
		if w == killed || w.err == nil || interrupted && stoppedBySignal(w) {
			continue
		}
		failed = append(failed, w.id)
		fmt.Fprintf(out, "  %s failed: %v\n%s", w.id, w.err, indent(w.output.String(), "      "))
	}
	fmt.Fprintf(out, "  workers stopped cleanly:     %d of %d  %s\n",
		len(workers)-len(failed)-btoi(killed != nil), len(workers)-btoi(killed != nil), verdict(len(failed) == 0))

	switch {
	case !ok:
		fmt.Fprintln(out, "\nA GUARANTEE DID NOT HOLD (see FAILED above).")
	case interrupted:
		fmt.Fprintf(out, "\nInterrupted after %s: no guarantee was broken until then (one holder at a time, rising fences).\n", fmtDuration(elapsed))
	default:
		fmt.Fprintln(out, "\nEvery guarantee held: one holder at a time, rising fences, and a dead holder's lock recovered by expiry.")
	}
	return ok
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

// randomHex returns 2n random hexadecimal digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errOutputGone ends the demo when its standard output can no longer be
// written.
var errOutputGone = errors.New("standard output was closed")

// exitOutputGone is the demo's exit code when its standard output went
// away: that of a process killed by SIGPIPE, which shells treat as such.
const exitOutputGone = 128 + 13

// demoOutput is the demo's standard output: the first failed write ends
// the demo (gone, with errOutputGone if the reader went away), and later
// writes are dropped.
type demoOutput struct {
	w    io.Writer
	gone context.CancelCauseFunc
	err  error
}

func (o *demoOutput) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = err
		if errors.Is(err, syscall.EPIPE) {
			o.gone(errOutputGone)
		} else {
			o.gone(err)
		}
	}
	return n, err
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (a worker's
// standard output and error).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
