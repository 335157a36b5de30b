package tests

// The stress harness: several OS processes, each with several goroutines,
// contend for a few keys through every kind of acquisition — leases kept
// alive and renewed by hand (Renew racing keep-alive), owner-named Lock,
// Touch and Release, a Python-style worker that replaces whole documents,
// and Clients closed while their acquisitions are in flight — while a
// nemesis kills holders with SIGKILL, pauses the server for longer than
// the expiry, adds latency, drops connections, drops replies after the
// server applied the command, delays replies so that they arrive after
// later ones, delays hello requests or replies so that clients' clock
// estimates sit at either edge of their error bounds, answers writes with
// MongoDB's failure replies (write concern errors, step-downs, shutdowns;
// before or after applying them), force-releases locks and purges idle
// ones. Some processes run with their clock an hour off. Every lease
// holder writes to a fencing-checked resource (in this process, over a
// Unix socket), which accepts a write only with a fence at least the
// highest it has seen (equal only from the same acquisition).
//
// Afterwards it checks, from the recorded history (stress_check_test.go):
//   - exclusion, by the contract: a holder may act only while Lost is open
//     and before ExpiresAt, so no two holders' entitlements overlap;
//   - no accepted write came from a holder after an acquisition with a
//     higher fence had returned;
//   - the history of acquisitions, releases and force-releases is
//     linearizable (porcupine) against a lease-lock model: lease fences rise
//     in linearization order (also across Python acquisitions), and a
//     release succeeds only for the current holder;
//   - a holder that saw Lost() close saw it no later than its lease's
//     expiry;
//   - a Client's Close leaves nothing it acquired held;
//   - once everything stopped and one expire period passed, no lock is held;
//   - no child panicked or leaked a goroutine (each child's TestMain runs
//     goleak).
//
// Reproduce a run with its seed: MONGOLOCK_STRESS_SEED=N go test -run
// TestStress -v . ; a longer run: MONGOLOCK_STRESS_LONG=1 (see docs/STRESS.md).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mongolock/mongolock"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mongolock/mongolock/mongolocktest"
)

const (
	stressExpire = 600 * time.Millisecond
	// stressMaxClockError is every harness Client's WithMaxClockError:
	// the nemesis's hello delays keep estimates inside it, and Purge's
	// idleFor (3 times it) lets keys that go quiet be purged in a short run.
	stressMaxClockError = 400 * time.Millisecond
	stressWorkerE       = "MONGOLOCK_STRESS_WORKER"
)

// stressKeys are the contended keys (see pickStressKey: the last two are
// picked rarely, and delta only in every other four-second window, so that
// it goes idle long enough to be purged).
var stressKeys = []string{"alpha", "beta", "gamma", "delta"}

// The recipes' keys: a semaphore of stressLimit, a readers–writer lock,
// an election, a fair lock. (The Python-style worker meets the first two;
// the operators and the closer all of them, the closer the fair lock with
// Fair only, since a fair lock serves in arrival order only the
// acquisitions that use Fair.)
const (
	semKey      = "sem"
	rwKey       = "rw"
	electKey    = "elect"
	fairKey     = "fair"
	stressLimit = 2
)

var recipeKeys = []string{semKey, rwKey, electKey, fairKey}

// fairHeartbeat is how long a fair waiter of the harness's workers keeps
// its place without refreshing it: the library's max(2s, 20 retry
// intervals), with the workers' 20ms.
const fairHeartbeat = 2 * time.Second

// stressConfig sizes one run.
type stressConfig struct {
	seed       uint64
	processes  int
	goroutines int
	duration   time.Duration
	skews      []time.Duration // per process slot, cycled
}

// fencedResource accepts a write only with a fence at least the highest it
// has seen for the key, equal only from the same acquisition (token).
type fencedResource struct {
	mu       sync.Mutex
	last     map[string]int64
	lastTok  map[string]string
	accepted []write
	rejected int

	// The recipes: a semaphore's holders write with their own fences, and
	// a write is stale once stressLimit acquisitions with higher fences
	// wrote (cautious: it refuses a holder whose higher-fenced fellows
	// came and went, and a refusal is no error); a reader's write is stale
	// once a writer with a higher fence wrote, a writer's once anyone with
	// a higher fence wrote.
	semSeen map[int64]string // semKey: fence -> token
	writer  int64            // rwKey: the highest writer's fence seen
}

func (r *fencedResource) offer(w write) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case w.key == semKey && w.mode == "entry":
		higher := 0
		for f := range r.semSeen {
			if f > w.fence {
				higher++
			}
		}
		if tok, seen := r.semSeen[w.fence]; higher < stressLimit && (!seen || tok == w.token) {
			if r.semSeen == nil {
				r.semSeen = map[int64]string{}
			}
			r.semSeen[w.fence] = w.token
			r.accepted = append(r.accepted, w)
			return true
		}
		r.rejected++
		return false
	case w.key == rwKey && w.mode == "reader":
		if w.fence > r.writer {
			r.last[w.key] = max(r.last[w.key], w.fence)
			r.accepted = append(r.accepted, w)
			return true
		}
		r.rejected++
		return false
	}
	last := r.last[w.key]
	if w.fence > last || (w.fence == last && w.token == r.lastTok[w.key]) {
		r.last[w.key], r.lastTok[w.key] = w.fence, w.token
		if w.key == rwKey {
			r.writer = w.fence
		}
		r.accepted = append(r.accepted, w)
		return true
	}
	r.rejected++
	return false
}

func (r *fencedResource) serve(l net.Listener, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				var w write
				if _, err := fmt.Sscanf(sc.Text(), "%s %d %s %d %s", &w.key, &w.fence, &w.token, &w.sent, &w.mode); err != nil {
					return
				}
				reply := "REJECT\n"
				if r.offer(w) {
					reply = "OK\n"
				}
				if _, err := conn.Write([]byte(reply)); err != nil {
					return
				}
			}
		}()
	}
}

func TestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress harness")
	}
	cfg := stressConfig{
		seed: uint64(time.Now().UnixNano()), processes: 3, goroutines: 3,
		duration: 20 * time.Second,
		skews:    stressSkews(),
	}
	if s := os.Getenv("MONGOLOCK_STRESS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MONGOLOCK_STRESS_SEED: %v", err)
		}
		cfg.seed = n
	}
	switch {
	case os.Getenv("MONGOLOCK_STRESS_LONG") != "":
		cfg.duration, cfg.processes, cfg.goroutines = 5*time.Minute, 4, 4
	case os.Getenv("MONGOLOCK_STRESS_SELFTEST") != "":
		// A short run against a deliberately broken library (the mutant
		// "acquisitions judge expiry on the local clock", planted by
		// TestMutantsAreCaught), which must fail: one process with its
		// clock an hour ahead steals live locks.
		cfg.duration, cfg.processes, cfg.goroutines = 6*time.Second, 2, 2
		cfg.skews = []time.Duration{0, time.Hour}
	}
	t.Logf("seed %d (rerun with MONGOLOCK_STRESS_SEED=%d)", cfg.seed, cfg.seed)
	violations := runStress(t, cfg)
	for _, v := range violations {
		t.Error(v)
	}
}

// failureKinds are the failure replies the nemesis injects.
var failureKinds = []mongolocktest.Failure{
	mongolocktest.WriteConcernErrorApplied,
	mongolocktest.WriteConcernErrorNotApplied,
	mongolocktest.NotWritablePrimaryBefore,
	mongolocktest.NotWritablePrimaryAfter,
	mongolocktest.PrimarySteppedDownAfter,
	mongolocktest.InterruptedAtShutdownBefore,
	mongolocktest.InterruptedAtShutdownAfter,
}

// runStress runs the harness and returns what its checks found.
func runStress(t *testing.T, cfg stressConfig) []string {
	srv := mongolocktest.Start(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))

	res := &fencedResource{last: map[string]int64{}, lastTok: map[string]string{}}
	sock := filepath.Join(dir, "resource.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var serving sync.WaitGroup
	serving.Add(1)
	go res.serve(ln, &serving)
	defer func() { ln.Close(); serving.Wait() }()

	admin, err := mongolock.Connect(context.Background(), srv.URI(), mongolock.WithDatabase(srv.Database()), mongolock.WithMaxClockError(stressMaxClockError))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	// Children.
	var (
		children []*stressChild
		killed   = map[string]bool{}
		nemesis  []hevent // kills, force-releases and purges, for the history
		spawned  int
		problems []string
	)
	deadline := time.Now().Add(cfg.duration)
	spawn := func(slot int) *stressChild {
		spawned++
		name := fmt.Sprintf("p%d", spawned)
		skew := cfg.skews[slot%len(cfg.skews)]
		cmd := exec.Command(os.Args[0], "-test.run=^TestStressWorker$", "-test.v")
		cmd.Env = append(os.Environ(),
			stressWorkerE+"=1",
			"STRESS_URI="+srv.URI(), "STRESS_DB="+srv.Database(),
			"STRESS_SOCK="+sock, "STRESS_HISTORY="+filepath.Join(dir, name+".jsonl"),
			"STRESS_NAME="+name, "STRESS_SKEW="+skew.String(),
			"STRESS_GOROUTINES="+strconv.Itoa(cfg.goroutines),
			"STRESS_UNTIL="+strconv.FormatInt(deadline.UnixNano(), 10),
			"STRESS_SEED="+strconv.FormatUint(rng.Uint64(), 10),
		)
		c := &stressChild{cmd: cmd, name: name, done: make(chan error, 1), out: &strings.Builder{}}
		cmd.Stdout, cmd.Stderr = c.out, c.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { c.done <- cmd.Wait() }()
		return c
	}
	for i := 0; i < cfg.processes; i++ {
		children = append(children, spawn(i))
	}

	// The nemesis.
	faults := map[string]int{}
	now := func() int64 { return time.Now().UnixNano() }
	for time.Now().Add(1500 * time.Millisecond).Before(deadline) {
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		switch f := rng.IntN(13); f {
		case 0: // kill a child (half the time one with a fair waiter queued), start a replacement
			// (The draws do not depend on what is queued, so that a seed
			// replays the same faults.)
			i, coin, pick := rng.IntN(len(children)), rng.IntN(2), rng.Uint64()
			if coin == 0 {
				if j, ok := fairWaiterChild(admin, children, pick); ok {
					i = j
					faults["kill a fair waiter"]++
				}
			}
			victim := children[i]
			killed[victim.name] = true
			_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			nemesis = append(nemesis, hevent{Proc: victim.name, Op: "killed", Return: now()})
			children[i] = spawn(i) // the victim's own goroutine reaps it
			faults["kill"]++
		case 1: // pause the server for longer than the expiry
			srv.Pause()
			time.Sleep(stressExpire + time.Duration(rng.IntN(400))*time.Millisecond)
			srv.Resume()
			faults["pause"]++
		case 2:
			srv.SetLatency(time.Duration(5+rng.IntN(30)) * time.Millisecond)
			time.Sleep(time.Second)
			srv.SetLatency(0)
			faults["latency"]++
		case 3:
			srv.DropConnections()
			faults["drop connections"]++
		case 4:
			srv.DropNextReply("findAndModify")
			faults["drop acquire reply"]++
		case 5:
			srv.DropNextReply("update")
			faults["drop release/renew reply"]++
		case 6: // clock estimates to one edge of their bounds
			d := time.Duration(100+rng.IntN(400)) * time.Millisecond
			if rng.IntN(2) == 0 {
				srv.SetDelay("hello", d, 0)
			} else {
				srv.SetDelay("hello", 0, d)
			}
			time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond)
			srv.SetDelay("hello", 0, 0)
			faults["clock edge"]++
		case 7: // renewal and release replies arriving after later ones
			srv.DelayNext(1+rng.IntN(3), "update", 0, time.Duration(100+rng.IntN(600))*time.Millisecond)
			faults["late update reply"]++
		case 8:
			srv.DelayNext(1, "findAndModify", 0, time.Duration(50+rng.IntN(500))*time.Millisecond)
			faults["late acquire reply"]++
		case 9:
			cmd := []string{"findAndModify", "update"}[rng.IntN(2)]
			srv.FailNext(1, cmd, failureKinds[rng.IntN(len(failureKinds))])
			faults["failure reply"]++
		case 10, 11: // an operator force-releases a lock
			all := append(stressKeys, recipeKeys...)
			key := all[rng.IntN(len(all))]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			call := now()
			info, err := admin.ForceRelease(ctx, key)
			ret := now()
			cancel()
			if err == nil {
				e := hevent{Proc: "operator", Op: "forcerelease", Key: key, Call: call, Return: ret, OK: true, Fence: info.Fence}
				if info.Locked {
					e.Owner = info.Owner
				}
				nemesis = append(nemesis, e)
			}
			faults["force-release"]++
		case 12: // an operator purges idle locks
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			call := now()
			n, err := admin.Purge(ctx, 3*stressMaxClockError)
			// A failed Purge may have deleted documents all the same
			// (checkFair needs to know: a deleted fair lock's waiters
			// queue again).
			nemesis = append(nemesis, hevent{Proc: "operator", Op: "purge", Call: call, Return: now(), N: n, Maybe: err != nil})
			faults["purged documents"] += int(n)
			cancel()
			faults["purge"]++
		}
	}
	// A last kill, of a child with a fair waiter queued (the first seen
	// within a second): nobody may be left to remove that waiter, and the
	// end check needs its place to stop counting by itself.
	pick := rng.Uint64()
	for watch := time.Now().Add(time.Second); time.Now().Before(watch); time.Sleep(20 * time.Millisecond) {
		if i, ok := fairWaiterChild(admin, children, pick); ok {
			killed[children[i].name] = true
			_ = children[i].cmd.Process.Signal(syscall.SIGKILL)
			nemesis = append(nemesis, hevent{Proc: children[i].name, Op: "killed", Return: now()})
			faults["kill"]++
			faults["kill a fair waiter"]++
			break
		}
	}
	srv.ResetFaults()
	for _, c := range children {
		select {
		case err := <-c.done:
			if err != nil && !killed[c.name] {
				problems = append(problems, fmt.Sprintf("child %s failed: %v\n%s", c.name, err, c.out))
			}
		case <-time.After(60 * time.Second):
			_ = c.cmd.Process.Kill()
			problems = append(problems, fmt.Sprintf("child %s did not stop\n%s", c.name, c.out))
		}
	}
	t.Logf("faults injected: %v; processes: %d (%d killed)", faults, spawned, len(killed))

	// After one expire period, no lock may be held.
	stopped := time.Now()
	time.Sleep(stressExpire + 200*time.Millisecond)
	for _, k := range append(stressKeys, recipeKeys...) {
		if held, err := admin.IsLocked(context.Background(), k); err != nil || held {
			problems = append(problems, fmt.Sprintf("lock %q still held (err %v) one expire period after every worker stopped", k, err))
		}
	}
	// Once the waiters' heartbeats surely ran out (written and judged
	// with estimates within a clock error each), a fair acquisition that
	// does not wait gets the fair lock: the waiters left in its queue —
	// killed, or whose leaving failed — no longer count.
	time.Sleep(time.Until(stopped.Add(fairHeartbeat + 2*stressMaxClockError + 200*time.Millisecond)))
	if left, err := fairReclaimed(admin); err != nil {
		problems = append(problems, err.Error())
	} else {
		t.Logf("fair lock: %d waiters left queued when every worker stopped, no longer counted", left)
	}

	writeHistory(t, filepath.Join(dir, "nemesis.jsonl"), nemesis)
	if keep := os.Getenv("MONGOLOCK_STRESS_KEEP"); keep != "" {
		keepHistory(t, dir, filepath.Join(keep, t.Name()))
	}
	history := readHistory(t, dir)
	res.mu.Lock()
	accepted := append([]write(nil), res.accepted...)
	t.Logf("history: %d events (%s); resource: %d writes accepted, %d rejected", len(history), countOps(history), len(accepted), res.rejected)
	res.mu.Unlock()
	problems = append(problems, checkProblems(history)...)
	problems = append(problems, checkExclusion(history)...)
	problems = append(problems, checkWrites(history, accepted)...)
	problems = append(problems, checkLost(history)...)
	problems = append(problems, checkLinearizable(t, history)...)
	problems = append(problems, checkFairOrder(t, history)...)
	return problems
}

// checkFairOrder runs checkFair and the fair queue's model, and logs what
// checkFair saw.
func checkFairOrder(t *testing.T, history []hevent) []string {
	problems, st := checkFair(history)
	t.Logf("fair lock: %v", st)
	return append(problems, checkFairLinearizable(t, history)...)
}

// fairReclaimed checks that a fair acquisition that does not wait gets
// the fair lock (and releases it), and returns how many waiters were
// queued before it.
func fairReclaimed(c *mongolock.Client) (left int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var waiters []string
	if info, err := c.Info(ctx, fairKey); err == nil {
		for _, w := range info.Waiters() {
			waiters = append(waiters, fmt.Sprintf("%s (heartbeat until %s)", w.Owner, w.Expire.Format("15:04:05.000")))
		}
	} else if !errors.Is(err, mongolock.ErrNotFound) {
		return 0, fmt.Errorf("lock %q: Info: %v", fairKey, err)
	}
	l, err := c.TryAcquire(ctx, fairKey, mongolock.Fair())
	if err != nil {
		return len(waiters), fmt.Errorf("lock %q: a fair TryAcquire one heartbeat after every worker stopped: %v (queued: %v)", fairKey, err, waiters)
	}
	if err := l.Release(ctx); err != nil {
		return len(waiters), fmt.Errorf("lock %q: releasing the fair TryAcquire's lease: %v", fairKey, err)
	}
	return len(waiters), nil
}

// stressChild is a child process of the harness.
type stressChild struct {
	cmd  *exec.Cmd
	name string
	done chan error
	out  *strings.Builder
}

// fairWaiterChild picks (by pick, a random number) one of children that
// has a waiter queued for the fair lock (workers name their fair waiters
// "<child>-f-..." and closers' "<child>-closer-...").
func fairWaiterChild(admin *mongolock.Client, children []*stressChild, pick uint64) (int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := admin.Info(ctx, fairKey)
	if err != nil {
		return 0, false
	}
	var with []int
	for i, c := range children {
		for _, w := range info.Waiters() {
			if strings.HasPrefix(w.Owner, c.name+"-") {
				with = append(with, i)
				break
			}
		}
	}
	if len(with) == 0 {
		return 0, false
	}
	return with[pick%uint64(len(with))], true
}

// countOps summarizes a history: how many events of each op (and kind).
func countOps(history []hevent) string {
	n := map[string]int{}
	for _, e := range history {
		op := e.Op
		if e.Op == "acquire" && e.OK {
			op = "acquire/" + e.Kind
		}
		n[op]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, n[k])
	}
	return strings.Join(parts, ", ")
}

// writeHistory writes events to file, one JSON line each.
func writeHistory(t *testing.T, file string, events []hevent) {
	var b []byte
	for _, e := range events {
		line, _ := json.Marshal(e)
		b = append(append(b, line...), '\n')
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// keepHistory copies the run's history files to keep, for
// TestStressRecheck.
func keepHistory(t *testing.T, dir, keep string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(keep, filepath.Base(f)), data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("history kept in %s (recheck: MONGOLOCK_STRESS_RECHECK=%s go test -run TestStressRecheck -v .)", keep, keep)
}

// TestStressRecheck runs the history checks again on a history kept with
// MONGOLOCK_STRESS_KEEP (all but the fencing check, whose resource log is
// not kept), e.g. to try the linearizability check with another budget.
func TestStressRecheck(t *testing.T) {
	dir := os.Getenv("MONGOLOCK_STRESS_RECHECK")
	if dir == "" {
		t.Skip("set MONGOLOCK_STRESS_RECHECK to a directory kept with MONGOLOCK_STRESS_KEEP")
	}
	history := readHistory(t, dir)
	t.Logf("history: %d events (%s)", len(history), countOps(history))
	var problems []string
	problems = append(problems, checkProblems(history)...)
	problems = append(problems, checkExclusion(history)...)
	problems = append(problems, checkLost(history)...)
	problems = append(problems, checkLinearizable(t, history)...)
	problems = append(problems, checkFairOrder(t, history)...)
	for _, p := range problems {
		t.Error(p)
	}
}

func readHistory(t *testing.T, dir string) []hevent {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []hevent
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			var e hevent
			if json.Unmarshal([]byte(line), &e) == nil && e.Op != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

func stressSkews() []time.Duration {
	if os.Getenv("MONGOLOCK_STRESS_NOSKEW") != "" {
		return []time.Duration{0}
	}
	return []time.Duration{0, time.Hour, -time.Hour}
}

var _ = errors.Is
