package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// The tests of "run --limit", "run --shared", "elect" and what "status"
// shows of them. Both cores are busy in CI: they wait generously and
// check the order of events, not how long each took.

// holdScript prints "ready" with the command's environment, then holds
// until the file named by its first argument exists.
const holdScript = `echo "ready key=$MONGOLOCK_KEY owner=$MONGOLOCK_OWNER token=$MONGOLOCK_TOKEN fence=$MONGOLOCK_FENCE term=$MONGOLOCK_TERM value=$MONGOLOCK_VALUE"; ` +
	`while [ ! -e "$1" ]; do sleep 0.05; done; echo leaving`

// holding is a mongolock process whose command holds until told to stop.
type holding struct {
	*started
	stopFile string
}

// startHolding starts mongolock with line (its arguments before "--"),
// running holdScript, and waits until the command is ready.
func startHolding(t *testing.T, line []string) *holding {
	t.Helper()
	h := startHoldingNoWait(t, line)
	h.stdout.waitFor(t, "ready", 60*time.Second)
	return h
}

// startHoldingNoWait is startHolding without waiting for the command.
func startHoldingNoWait(t *testing.T, line []string) *holding {
	t.Helper()
	stop := filepath.Join(t.TempDir(), "stop")
	return &holding{
		started:  startBinary(t, nil, args(line, []string{"--", "sh", "-c", holdScript, "sh", stop})...),
		stopFile: stop,
	}
}

// stop lets the command end, and checks that mongolock then exits 0.
func (h *holding) stop(t *testing.T) result {
	t.Helper()
	if err := os.WriteFile(h.stopFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := h.wait(t, 60*time.Second)
	if r.code != 0 || !strings.Contains(r.stdout, "leaving") {
		t.Errorf("want the command to finish and exit 0:\n%s", r)
	}
	return r
}

// env returns the value of name in the command's "ready" line.
func (h *holding) env(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`\b` + name + `=(\S*)`).FindStringSubmatch(h.stdout.waitFor(t, "ready", time.Minute))
	if m == nil {
		t.Fatalf("no %s in the ready line:\n%s", name, h.stdout)
	}
	return m[1]
}

// isDone reports whether the process has exited.
func (s *started) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// statusOf runs "status KEY --json" and returns the lock.
func statusOf(t *testing.T, flags []string, key string) lockJSON {
	t.Helper()
	r := runBinary(t, "", nil, args([]string{"status", key, "--json"}, flags)...)
	var got statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || len(got.Locks) != 1 {
		t.Fatalf("status %s --json: %v\n%s", key, err, r)
	}
	return got.Locks[0]
}

// statusTable runs "status KEY" and returns the table.
func statusTable(t *testing.T, flags []string, key string) string {
	t.Helper()
	r := runBinary(t, "", nil, args([]string{"status", key}, flags)...)
	if r.code != 0 {
		t.Fatalf("status %s:\n%s", key, r)
	}
	return r.stdout
}

// row returns the table's row that starts with first (after spaces) and
// contains owner, split into columns; nil if there is none.
func row(table, first, owner string) []string {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == first && strings.Contains(line, owner) {
			return f
		}
	}
	return nil
}

// noFile fails the test if path exists: a command ran that must not have.
func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("the command ran (%s exists)", path)
	}
}

// "run --limit N": N commands hold the semaphore at once, each with its
// own fence; the N+1th is refused with the conflict exit code, or waits
// with --timeout until one leaves; a different limit is a usage error.
func TestRunLimit(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := filepath.Join(t.TempDir(), "ran")
	const key, n = "encoders", 3
	sem := []string{"run", key, "--limit", strconv.Itoa(n)}

	var holders []*holding
	fences := map[string]bool{}
	for i := range n {
		h := startHolding(t, args(sem, flags, []string{"--owner", "enc-" + strconv.Itoa(i)}))
		holders = append(holders, h)
		fences[h.env(t, "fence")] = true
	}
	if len(fences) != n {
		t.Errorf("%d holders with %d distinct fences, want %d", n, len(fences), n)
	}
	for _, h := range holders {
		if h.isDone() {
			t.Fatalf("a holder exited while the others held:\n%s", h.stderr)
		}
	}

	t.Run("status", func(t *testing.T) {
		l := statusOf(t, flags, key)
		if l.Kind != kindSemaphore || l.Limit == nil || *l.Limit != n || l.State != stateHeld || l.Leader != nil || l.Waiters == nil {
			t.Errorf("status --json: kind %q, limit %v, state %q, leader %v, waiters %v; want a held semaphore of %d", l.Kind, l.Limit, l.State, l.Leader, l.Waiters, n)
		}
		if len(l.Holders) != n {
			t.Fatalf("status --json: %d holders, want %d: %+v", len(l.Holders), n, l.Holders)
		}
		for i, h := range l.Holders {
			if !strings.HasPrefix(h.Owner, "enc-") || h.State != stateHeld || h.Since == nil || h.Expires == nil || h.ExpiresInMS == nil || !fences[strconv.FormatInt(h.Fence, 10)] {
				t.Errorf("holder %d: %+v; want one of enc-0..2, held, with since, expires and its fence", i, h)
			}
			if i > 0 && h.Fence <= l.Holders[i-1].Fence {
				t.Errorf("holders not in fence order: %d after %d", h.Fence, l.Holders[i-1].Fence)
			}
		}
		table := statusTable(t, flags, key)
		if f := row(table, key, "holders"); f == nil || f[1] != stateHeld || !strings.Contains(table, "3 of 3 holders") {
			t.Errorf("status: want a row for %s, held, 3 of 3 holders:\n%s", key, table)
		}
		for i := range n {
			f := row(table, "holder", "enc-"+strconv.Itoa(i))
			if f == nil || f[1] != stateHeld || !fences[f[len(f)-1]] {
				t.Errorf("status: no row for holder enc-%d with its state and fence:\n%s", i, table)
			}
		}
	})

	t.Run("one more is refused", func(t *testing.T) {
		r := runBinary(t, "", nil, args(sem, flags, []string{"--", "touch", marker})...)
		if r.code != exitConflict || !regexp.MustCompile(`the lock "encoders" is held by "enc-\d"`).MatchString(r.stderr) {
			t.Errorf("want exit %d naming a holder:\n%s", exitConflict, r)
		}
		r = runBinary(t, "", nil, args(sem, flags, []string{"-E", "9", "--quiet", "--", "touch", marker})...)
		if r.code != 9 || r.stderr != "" {
			t.Errorf("-E 9 --quiet: want exit 9 and no output:\n%s", r)
		}
		noFile(t, marker)
	})

	t.Run("another limit", func(t *testing.T) {
		for _, line := range [][]string{
			{"run", key, "--limit", "2"},
			{"run", key},
			{"run", key, "--shared"},
		} {
			r := runBinary(t, "", nil, args(line, flags, []string{"--", "touch", marker})...)
			if r.code != exitUsage || !strings.Contains(r.stderr, `the key "encoders" is held as a semaphore of 3 (--limit 3)`) {
				t.Errorf("%s: want exit %d saying the key is a semaphore of 3:\n%s", strings.Join(line, " "), exitUsage, r)
			}
		}
		noFile(t, marker)
	})

	t.Run("one more waits", func(t *testing.T) {
		w := startBinary(t, nil, args(sem, flags, []string{"--timeout", "2m", "--verbose", "--owner", "enc-late", "--", "echo", "got-a-slot"})...)
		w.stderr.waitFor(t, "mongolock: waiting up to", 60*time.Second)
		time.Sleep(300 * time.Millisecond) // a few retries: it must go on waiting
		if w.isDone() {
			t.Fatalf("the waiter ended while %d held:\n%s", n, w.stderr)
		}
		holders[0].stop(t)
		r := w.wait(t, 60*time.Second)
		if r.code != 0 || r.stdout != "got-a-slot\n" {
			t.Errorf("want the waiter to run once a holder left:\n%s", r)
		}
		for _, h := range holders[1:] {
			if h.isDone() {
				t.Errorf("a holder ended before it was told to:\n%s", h.stderr)
			}
		}
	})

	for _, h := range holders[1:] {
		h.stop(t)
	}
	info, err := c.Info(testCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Locked || len(info.Holders()) != 0 {
		t.Errorf("after every holder left: locked %v, holders %+v", info.Locked, info.Holders())
	}
	if l := statusOf(t, flags, key); l.State != stateReleased || len(l.Holders) != 0 || l.Kind != kindSemaphore {
		t.Errorf("status --json after every holder left: %+v; want a released semaphore, no holders", l)
	}
}

// "run --shared": readers hold together; a writer is refused while they
// do, or waits for them with --timeout, and readers that come while it
// waits queue behind it.
func TestRunShared(t *testing.T) {
	t.Parallel()
	_, flags := server(t)
	marker := filepath.Join(t.TempDir(), "ran")
	const key = "catalog"

	r1 := startHolding(t, args([]string{"run", key, "--shared", "--owner", "reader-1"}, flags))
	r2 := startHolding(t, args([]string{"run", key, "-s", "--owner", "reader-2"}, flags))
	if r1.isDone() {
		t.Fatalf("the first reader ended when the second came:\n%s", r1.stderr)
	}

	table := statusTable(t, flags, key)
	if !strings.Contains(table, "2 readers") || row(table, "reader", "reader-1") == nil || row(table, "reader", "reader-2") == nil {
		t.Errorf("status: want 2 readers and a row for each:\n%s", table)
	}
	if l := statusOf(t, flags, key); l.Kind != kindShared || l.Limit != nil || len(l.Holders) != 2 || l.Owner != "*shared" {
		t.Errorf("status --json: %+v; want kind shared, no limit, 2 holders, owner *shared", l)
	}

	r := runBinary(t, "", nil, args([]string{"run", key}, flags, []string{"--", "touch", marker})...)
	if r.code != exitConflict || !regexp.MustCompile(`the lock "catalog" is held by "reader-\d"`).MatchString(r.stderr) {
		t.Errorf("a writer: want exit %d naming a reader:\n%s", exitConflict, r)
	}
	noFile(t, marker)

	w := startBinary(t, nil, args([]string{"run", key, "--timeout", "2m", "--verbose", "--owner", "writer-1"}, flags, []string{"--", "echo", "writer-ran"})...)
	w.stderr.waitFor(t, "mongolock: waiting up to", 60*time.Second)
	// The writer records that it waits; status shows it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		l := statusOf(t, flags, key)
		if len(l.Waiters) == 1 && l.Waiters[0].Owner == "writer-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --json shows no waiting writer: %+v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f := row(statusTable(t, flags, key), "writer", "writer-1"); f == nil || f[1] != "waiting" {
		t.Errorf("status: no row for the waiting writer:\n%s", statusTable(t, flags, key))
	}
	// A reader that comes now queues behind the writer.
	r = runBinary(t, "", nil, args([]string{"run", key, "--shared", "-n"}, flags, []string{"--", "touch", marker})...)
	if r.code != exitConflict || !strings.Contains(r.stderr, `"writer-1"`) {
		t.Errorf("a reader behind a waiting writer: want exit %d naming the writer:\n%s", exitConflict, r)
	}
	noFile(t, marker)

	r1.stop(t)
	if w.isDone() {
		t.Fatalf("the writer ran while a reader held:\n%s", w.stderr)
	}
	r2.stop(t)
	res := w.wait(t, 60*time.Second)
	if res.code != 0 || res.stdout != "writer-ran\n" {
		t.Errorf("want the writer to run once the readers left:\n%s", res)
	}
}

// "elect": of two electors, one leads and runs its command, the other
// waits (by default) and takes over when the first exits, with a higher
// term; the command gets the election's environment; status and
// --observe show the leader.
func TestElect(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	marker := filepath.Join(t.TempDir(), "ran")
	const name = "scheduler"

	obs := startBinary(t, nil, args([]string{"elect", name, "--observe", "--json"}, flags)...)
	obs.stdout.waitFor(t, `"leader":null`, 60*time.Second)

	a := startHolding(t, args([]string{"elect", name, "--value", "10.0.0.1:8080", "--owner", "node-a"}, flags))
	b := startHoldingNoWait(t, args([]string{"elect", name, "--value", "10.0.0.2:8080", "--owner", "node-b", "--verbose"}, flags))
	b.stderr.waitFor(t, "mongolock: waiting without limit: the election \"scheduler\" is led by \"node-a\" (value \"10.0.0.1:8080\", term ", 60*time.Second)

	t.Run("environment", func(t *testing.T) {
		term := a.env(t, "term")
		if term == "" || term != a.env(t, "fence") {
			t.Errorf("MONGOLOCK_TERM=%q, want MONGOLOCK_FENCE=%q", term, a.env(t, "fence"))
		}
		for name, want := range map[string]string{"key": "scheduler", "owner": "node-a", "value": "10.0.0.1:8080"} {
			if got := a.env(t, name); got != want {
				t.Errorf("%s=%q, want %q", name, got, want)
			}
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a.env(t, "token")) {
			t.Errorf("MONGOLOCK_TOKEN=%q, want 32 hex digits", a.env(t, "token"))
		}
	})

	t.Run("status", func(t *testing.T) {
		l := statusOf(t, flags, name)
		term, _ := strconv.ParseInt(a.env(t, "term"), 10, 64)
		if l.Kind != kindElection || l.State != stateHeld || l.Leader == nil || len(l.Holders) != 1 || l.Holders[0].Owner != "node-a" {
			t.Fatalf("status --json: %+v; want an election led by node-a", l)
		}
		if ld := l.Leader; ld.Value != "10.0.0.1:8080" || ld.Owner != "node-a" || ld.Term != term || ld.Since == nil {
			t.Errorf("leader %+v; want value 10.0.0.1:8080, owner node-a, term %d, a since", *ld, term)
		}
		table := statusTable(t, flags, name)
		if !strings.Contains(table, `scheduler: election led by "node-a" with value "10.0.0.1:8080", term `+a.env(t, "term")+", since ") {
			t.Errorf("status: no line for the leader:\n%s", table)
		}
	})

	t.Run("one attempt", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"elect", name, "-n"}, flags, []string{"--", "touch", marker})...)
		if r.code != exitConflict || !strings.Contains(r.stderr, `the election "scheduler" is led by "node-a" (value "10.0.0.1:8080"`) {
			t.Errorf("-n: want exit %d naming the leader:\n%s", exitConflict, r)
		}
		r = runBinary(t, "", nil, args([]string{"elect", name, "--timeout", "300ms"}, flags, []string{"--", "touch", marker})...)
		if r.code != exitConflict || !strings.Contains(r.stderr, `led by "node-a"`) {
			t.Errorf("--timeout 300ms: want exit %d naming the leader:\n%s", exitConflict, r)
		}
		noFile(t, marker)
	})

	if b.stdout.hasFrom(0, "ready") {
		t.Fatalf("the second elector led while the first did:\n%s", b.stdout)
	}
	a.stop(t)
	b.stdout.waitFor(t, "ready", 60*time.Second)
	termA, _ := strconv.ParseInt(a.env(t, "term"), 10, 64)
	termB, _ := strconv.ParseInt(b.env(t, "term"), 10, 64)
	if termB <= termA || b.env(t, "value") != "10.0.0.2:8080" {
		t.Errorf("the second leader: term %d (the first's %d), value %q; want a higher term, 10.0.0.2:8080", termB, termA, b.env(t, "value"))
	}
	obs.stdout.waitFor(t, `"value":"10.0.0.2:8080"`, 60*time.Second)
	rb := b.stop(t)
	if !strings.Contains(rb.stderr, `mongolock: resigned the leadership of "scheduler" after leading `) {
		t.Errorf("--verbose: no word of resigning:\n%s", rb.stderr)
	}
	from := obs.stdout.count()
	obs.stdout.waitForFrom(t, from-1, `"leader":null`, 60*time.Second)

	if err := obs.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ro := obs.wait(t, 30*time.Second)
	if ro.code != 0 {
		t.Errorf("--observe after SIGINT: want exit 0:\n%s", ro)
	}
	// Each line a JSON object; the leaders in order, terms rising.
	var leaders []string
	var last int64
	for _, line := range strings.Split(strings.TrimSpace(ro.stdout), "\n") {
		var ev observedJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Name != name {
			t.Fatalf("not a line of --observe --json: %q (%v)", line, err)
		}
		if ev.Leader == nil {
			leaders = append(leaders, "none")
			continue
		}
		if ev.Leader.Term <= last {
			t.Errorf("term %d after %d", ev.Leader.Term, last)
		}
		last = ev.Leader.Term
		leaders = append(leaders, ev.Leader.Owner)
	}
	got := strings.Join(leaders, " ")
	if got != "none node-a node-b none" && got != "none node-a none node-b none" {
		t.Errorf("observed leaders %q; want none node-a [none] node-b none:\n%s", got, ro.stdout)
	}

	l := statusOf(t, flags, name)
	if l.State != stateReleased || l.Leader != nil || len(l.Holders) != 0 {
		t.Errorf("status --json after both resigned: %+v; want released, no leader", l)
	}
	if _, err := c.Election(name).Leader(testCtx(t)); err == nil {
		t.Error("a leader after both resigned")
	}
}

// "elect": the command's exit code, the default value, --observe's lines,
// a signal while waiting to lead.
func TestElectCommand(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)

	t.Run("exit code", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"elect", "codes"}, flags, []string{"--", "sh", "-c", "exit 3"})...)
		if r.code != 3 {
			t.Errorf("want the command's exit code 3:\n%s", r)
		}
		r = runBinary(t, "", nil, args([]string{"elect", "codes"}, flags, []string{"--", "mongolock-no-such-command"})...)
		if r.code != exitNotFound {
			t.Errorf("want exit %d:\n%s", exitNotFound, r)
		}
		if _, err := c.Election("codes").Leader(testCtx(t)); err == nil {
			t.Error("still a leader after the command exited")
		}
	})

	t.Run("kept alive", func(t *testing.T) {
		p := startBinary(t, nil, args([]string{"elect", "alive", "--expire", "1s"}, flags, []string{"--", "sh", "-c", "echo ready; sleep 2.5"})...)
		p.stdout.waitFor(t, "ready", 60*time.Second)
		first, err := c.Election("alive").Leader(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		// Without renewals the leadership would be gone 1s after it was
		// taken. (It resigns when the command ends: stop looking before.)
		for ready := time.Now(); time.Since(ready) < 2200*time.Millisecond; time.Sleep(200 * time.Millisecond) {
			info, err := c.Election("alive").Leader(testCtx(t))
			if err != nil || info != first {
				t.Fatalf("%v after the command started: leader %+v, %v; want %+v throughout", time.Since(ready), info, err, first)
			}
		}
		if r := p.wait(t, 60*time.Second); r.code != 0 {
			t.Errorf("want exit 0:\n%s", r)
		}
	})

	t.Run("default value", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"elect", "plain"}, flags, []string{"--shell", "--", `echo "$MONGOLOCK_VALUE|$MONGOLOCK_OWNER"`})...)
		v, owner, _ := strings.Cut(strings.TrimSpace(r.stdout), "|")
		if r.code != 0 || v == "" || v != owner {
			t.Errorf("want MONGOLOCK_VALUE to be the owner name:\n%s", r)
		}
	})

	t.Run("observe", func(t *testing.T) {
		obs := startBinary(t, nil, args([]string{"elect", "watched", "--observe"}, flags)...)
		obs.stdout.waitFor(t, "no leader", 60*time.Second)
		l, err := c.Election("watched").Campaign(testCtx(t), "10.0.0.9:80")
		if err != nil {
			t.Fatal(err)
		}
		line := obs.stdout.waitFor(t, "leader \"10.0.0.9:80\"", 60*time.Second)
		want := regexp.MustCompile(`^leader "10\.0\.0\.9:80": owner "` + regexp.QuoteMeta(l.Owner()) + `", term ` + strconv.FormatInt(l.Fence(), 10) + `, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`)
		if !want.MatchString(line) {
			t.Errorf("--observe line %q does not match %s", line, want)
		}
		if err := l.Release(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		obs.stdout.waitForFrom(t, 1, "no leader", 60*time.Second)
		_ = obs.cmd.Process.Signal(syscall.SIGTERM)
		if r := obs.wait(t, 30*time.Second); r.code != 0 {
			t.Errorf("--observe after SIGTERM: want exit 0:\n%s", r)
		}
	})

	t.Run("observe without a server", func(t *testing.T) {
		r := runBinary(t, "", nil, "elect", "watched", "--observe", "--uri", refusedURI(t), "--connect-timeout", "1s")
		if r.code != exitFailure || !strings.Contains(r.stderr, "no answer") {
			t.Errorf("want exit %d saying the server did not answer:\n%s", exitFailure, r)
		}
	})

	t.Run("signal while waiting", func(t *testing.T) {
		l, err := c.Election("taken").Campaign(testCtx(t), "other")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Release(testCtx(t)) }()
		marker := filepath.Join(t.TempDir(), "ran")
		p := startBinary(t, nil, args([]string{"elect", "taken", "--verbose"}, flags, []string{"--", "touch", marker})...)
		p.stderr.waitFor(t, "waiting without limit", 60*time.Second)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		r := p.wait(t, 30*time.Second)
		if r.code != 128+int(syscall.SIGTERM) || !strings.Contains(r.stderr, `while waiting for the leadership of "taken"; the command was not run`) {
			t.Errorf("want exit %d and a message:\n%s", 128+int(syscall.SIGTERM), r)
		}
		noFile(t, marker)
	})

	t.Run("another kind of lock", func(t *testing.T) {
		l, err := c.Acquire(testCtx(t), "sem", mongolock.Limit(2))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Release(testCtx(t)) }()
		r := runBinary(t, "", nil, args([]string{"elect", "sem"}, flags, []string{"--", "true"})...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "is held as a semaphore of 2 (--limit 2) by") {
			t.Errorf("an election on a semaphore's key: want exit %d saying so:\n%s", exitUsage, r)
		}
	})
}

// Leadership lost while the command runs (force-released, or not renewed
// in time): the command is stopped and elect exits 70.
func TestElectLost(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"force-released", "server paused"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv, flags := server(t)
			c := newClient(t, srv)
			p := startBinary(t, nil, args([]string{"elect", "lost", "--expire", "1s", "--kill-grace", "20s"}, flags,
				[]string{"--", "sh", "-c", `trap 'echo got-TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done`})...)
			p.stdout.waitFor(t, "ready", 60*time.Second)
			if how == "force-released" {
				if _, err := c.ForceRelease(testCtx(t), "lost"); err != nil {
					t.Fatal(err)
				}
			} else {
				srv.Pause()
			}
			p.stdout.waitFor(t, "got-TERM", 60*time.Second)
			srv.ResetFaults()
			r := p.wait(t, 60*time.Second)
			if r.code != exitLost || !strings.Contains(r.stderr, `LOST the leadership of "lost" while the command was running`) {
				t.Errorf("want exit %d saying the leadership was lost:\n%s", exitLost, r)
			}
		})
	}
}

// status shows a fair lock's queue: each waiter, in arrival order.
func TestStatusFairWaiters(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	held, err := c.Acquire(testCtx(t), "deploy", mongolock.Fair(), mongolock.Owner("deployer"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	waited := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, "deploy", mongolock.Fair(), mongolock.Owner("next-in-line"))
		waited <- err
	}()
	defer func() {
		cancel()
		if err := <-waited; !errors.Is(err, mongolock.ErrLocked) {
			t.Errorf("the waiter's Acquire: %v, want ErrLocked when its context ended", err)
		}
		_ = held.Release(testCtx(t))
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		l := statusOf(t, flags, "deploy")
		if len(l.Waiters) == 1 && l.Waiters[0].Owner == "next-in-line" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --json shows no waiter: %+v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	table := statusTable(t, flags, "deploy")
	if f := row(table, "waiter", "next-in-line"); f == nil || f[1] != "waiting" || row(table, "deploy", "deployer") == nil {
		t.Errorf("status: want the holder's row, then the waiter's:\n%s", table)
	}
}
