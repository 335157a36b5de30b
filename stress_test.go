package mongolock

// The stress harness: several OS processes, each with several goroutines,
// contend for a few keys while a nemesis kills holders with SIGKILL, pauses
// the server for longer than the expiry, adds latency, drops connections
// and drops replies after the server applied the command; some processes
// run with their wall clock an hour off. Every holder writes to a
// fencing-checked resource (in this process, over a Unix socket), which
// accepts a write only with a fence at least the highest it has seen (equal
// only from the same acquisition) and records every accepted write.
//
// Afterwards it checks, from the recorded history:
//   - no accepted write came from a holder whose lease had been superseded
//     (an acquisition with a higher fence had returned before it wrote);
//   - the history of acquisitions and releases is linearizable (porcupine)
//     against a lease-lock model: fences rise in linearization order, and a
//     release succeeds only for the current holder;
//   - a holder that saw Lost() close saw it no later than its lease's
//     expiry on its own monotonic clock;
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
	"math"
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

	"github.com/anishathalye/porcupine"
	driverevent "go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"

	"github.com/mongolock/mongolock/mongolocktest"
)

const (
	stressExpire  = 600 * time.Millisecond
	stressWorkerE = "MONGOLOCK_STRESS_WORKER"
)

var stressKeys = []string{"alpha", "beta"}

// stressConfig sizes one run.
type stressConfig struct {
	seed       uint64
	processes  int
	goroutines int
	duration   time.Duration
	skews      []time.Duration // per process slot, cycled
	broken     bool            // children judge expiry on their own clock
}

// event is one line of a worker's history.
type event struct {
	Proc   string `json:"proc"`
	Op     string `json:"op"`           // acquire, release, lost, try, tried, killed
	ID     string `json:"id,omitempty"` // try and tried: the driver's request ID, unique within Proc
	Key    string `json:"key"`
	Token  string `json:"token,omitempty"`
	Call   int64  `json:"call"`             // unix ns, real clock
	Return int64  `json:"ret"`              // unix ns, real clock
	OK     bool   `json:"ok"`               // acquired / released
	Maybe  bool   `json:"maybe,omitempty"`  // tried: failed with an unknown outcome (not a duplicate key)
	Fence  int64  `json:"fence,omitempty"`  // acquire
	Expiry int64  `json:"expiry,omitempty"` // lost: the lease's local deadline (unix ns)
	Why    string `json:"why,omitempty"`    // lost: Err()
	Stall  int64  `json:"stall,omitempty"`  // lost: the process's worst scheduling stall in the last 2s (ns)
}

// write is one write the resource accepted.
type write struct {
	key, token string
	fence      int64
	sent       int64 // unix ns when the holder sent it
}

// fencedResource accepts a write only with a fence at least the highest it
// has seen for the key, equal only from the same acquisition (token).
type fencedResource struct {
	mu       sync.Mutex
	last     map[string]int64
	lastTok  map[string]string
	accepted []write
	rejected int
}

func (r *fencedResource) offer(w write) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.last[w.key]
	if w.fence > last || (w.fence == last && w.token == r.lastTok[w.key]) {
		r.last[w.key], r.lastTok[w.key] = w.fence, w.token
		r.accepted = append(r.accepted, w)
		return true
	}
	r.rejected++
	return false
}

func (r *fencedResource) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				var w write
				if _, err := fmt.Sscanf(sc.Text(), "%s %d %s %d", &w.key, &w.fence, &w.token, &w.sent); err != nil {
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
	if os.Getenv("MONGOLOCK_STRESS_LONG") != "" {
		cfg.duration, cfg.processes, cfg.goroutines = 5*time.Minute, 4, 4
	}
	t.Logf("seed %d (rerun with MONGOLOCK_STRESS_SEED=%d)", cfg.seed, cfg.seed)
	violations := runStress(t, cfg)
	for _, v := range violations {
		t.Error(v)
	}
}

// TestStressCatchesBrokenExpiry runs the harness against a deliberately
// broken library (expiry judged on the client's clock, as the Python
// package does) and requires the checks to catch it.
func TestStressCatchesBrokenExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("stress harness")
	}
	cfg := stressConfig{
		seed: uint64(time.Now().UnixNano()), processes: 2, goroutines: 2,
		duration: 6 * time.Second,
		skews:    []time.Duration{0, time.Hour},
		broken:   true,
	}
	violations := runStress(t, cfg)
	if len(violations) == 0 {
		t.Fatal("the harness did not catch a library that judges expiry on the client's clock")
	}
	t.Logf("caught, as it should: %d violations, first: %s", len(violations), violations[0])
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
	defer ln.Close()
	go res.serve(ln)

	// Children.
	type child struct {
		cmd  *exec.Cmd
		name string
		done chan error
		out  *strings.Builder
	}
	var (
		mu       sync.Mutex
		children []*child
		killed   = map[string]bool{}
		kills    []event // when each child was killed, for the history
		spawned  int
		problems []string
	)
	deadline := time.Now().Add(cfg.duration)
	spawn := func(slot int) *child {
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
			"STRESS_BROKEN="+strconv.FormatBool(cfg.broken),
		)
		c := &child{cmd: cmd, name: name, done: make(chan error, 1), out: &strings.Builder{}}
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
	for time.Now().Add(1500 * time.Millisecond).Before(deadline) {
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		switch f := rng.IntN(6); f {
		case 0: // kill a child, start a replacement
			mu.Lock()
			i := rng.IntN(len(children))
			victim := children[i]
			killed[victim.name] = true
			_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			kills = append(kills, event{Proc: victim.name, Op: "killed", Return: time.Now().UnixNano()})
			children[i] = spawn(i) // the victim's own goroutine reaps it
			mu.Unlock()
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
	time.Sleep(stressExpire + 200*time.Millisecond)
	c, err := Connect(context.Background(), srv.URI(), WithDatabase(srv.Database()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, k := range stressKeys {
		if held, err := c.IsLocked(context.Background(), k); err != nil || held {
			problems = append(problems, fmt.Sprintf("lock %q still held (err %v) one expire period after every worker stopped", k, err))
		}
	}

	writeHistory(t, filepath.Join(dir, "nemesis.jsonl"), kills)
	if keep := os.Getenv("MONGOLOCK_STRESS_KEEP"); keep != "" {
		keepHistory(t, dir, filepath.Join(keep, t.Name()))
	}
	history := readHistory(t, dir)
	res.mu.Lock()
	accepted := append([]write(nil), res.accepted...)
	t.Logf("history: %d events; resource: %d writes accepted, %d rejected", len(history), len(accepted), res.rejected)
	res.mu.Unlock()
	problems = append(problems, checkExclusion(history)...)
	problems = append(problems, checkWrites(history, accepted)...)
	problems = append(problems, checkLost(history)...)
	problems = append(problems, checkLinearizable(t, history, dir)...)
	return problems
}

// writeHistory writes events to file, one JSON line each.
func writeHistory(t *testing.T, file string, events []event) {
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
	t.Logf("history: %d events", len(history))
	var problems []string
	problems = append(problems, checkExclusion(history)...)
	problems = append(problems, checkLost(history)...)
	problems = append(problems, checkLinearizable(t, history, dir)...)
	for _, p := range problems {
		t.Error(p)
	}
}

func readHistory(t *testing.T, dir string) []event {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			var e event
			if json.Unmarshal([]byte(line), &e) == nil && e.Op != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// checkExclusion: no acquisition returned while an earlier holder still
// believed it held the lock — between its acquisition returning and either
// its release being called or its Lost() closing. (Holders killed by the
// nemesis have no recorded end and are skipped: they believe nothing.)
func checkExclusion(history []event) []string {
	end := map[string]int64{} // token -> when its holder stopped believing it held the lock
	for _, e := range history {
		switch e.Op {
		case "release":
			if t, ok := end[e.Token]; !ok || e.Call < t {
				end[e.Token] = e.Call
			}
		case "lost":
			if t, ok := end[e.Token]; !ok || e.Return < t {
				end[e.Token] = e.Return
			}
		}
	}
	acquired := map[string][]event{}
	for _, e := range history {
		if e.Op == "acquire" && e.OK {
			acquired[e.Key] = append(acquired[e.Key], e)
		}
	}
	var problems []string
	for key, acqs := range acquired {
		for _, a := range acqs {
			stop, ok := end[a.Token]
			if !ok {
				continue
			}
			for _, b := range acqs {
				if b.Fence > a.Fence && b.Return > a.Return && b.Return < stop {
					problems = append(problems, fmt.Sprintf(
						"key %q: two holders at once: %s (fence %d) held it from %s to %s, and %s's acquisition (fence %d) returned at %s",
						key, a.Proc, a.Fence, at(a.Return), at(stop), b.Proc, b.Fence, at(b.Return)))
					break
				}
			}
		}
	}
	return problems
}

// checkWrites: no accepted write came from a superseded holder.
func checkWrites(history []event, accepted []write) []string {
	var problems []string
	acquired := map[string][]event{}
	for _, e := range history {
		if e.Op == "acquire" && e.OK {
			acquired[e.Key] = append(acquired[e.Key], e)
		}
	}
	for _, w := range accepted {
		for _, a := range acquired[w.key] {
			if a.Fence > w.fence && a.Return < w.sent {
				problems = append(problems, fmt.Sprintf(
					"key %q: the resource accepted a write with fence %d (token %s) sent at %s, after an acquisition with fence %d (%s) had returned at %s: the writer's lease had been superseded",
					w.key, w.fence, w.token, at(w.sent), a.Fence, a.Proc, at(a.Return)))
				break
			}
		}
	}
	return problems
}

// checkLost: Lost closed no later than the lease's local expiry. A process
// the machine did not schedule for a while was, in effect, paused (the
// issue exempts paused holders); each child measures its own scheduling
// stalls, and a lateness within the stall it measured is not counted.
func checkLost(history []event) []string {
	var problems []string
	for _, e := range history {
		if e.Op == "lost" && e.Return > e.Expiry+e.Stall+int64(20*time.Millisecond) {
			problems = append(problems, fmt.Sprintf("key %q: %s saw Lost() %s after its lease's expiry (%s)",
				e.Key, e.Proc, time.Duration(e.Return-e.Expiry), e.Why))
		}
	}
	return problems
}

func at(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// The lease-lock model for porcupine, per key. State: the holder's token
// and the highest fence. An acquisition that succeeds must carry a fence
// above every earlier one in the linearization, and makes its token the
// holder (possibly taking over an expired lease, which the model cannot
// see, so it does not require the lock to be free). A refused acquisition
// changes nothing and is left out. A successful release must come from the
// holder, and frees the lock; a refused one must not come from the holder
// — unless it is excused (see historyOps), and then it leaves the lock to
// an unknown holder if it was the holder.
type lockState struct {
	holder string
	fence  int64
}

type lockInput struct {
	op, key, token string
	excused        bool // a refused release that an acquisition with an unknown outcome may explain
}

type lockOutput struct {
	ok    bool
	fence int64
}

// unknownHolder stands for the token of an acquisition whose outcome is
// unknown; no operation in a history uses it.
const unknownHolder = "?"

var lockModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(lockInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return lockState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(lockState), input.(lockInput), output.(lockOutput)
		switch {
		case in.op == "acquire":
			return out.fence > s.fence, lockState{holder: in.token, fence: out.fence}
		case out.ok: // release
			return s.holder == in.token, lockState{fence: s.fence}
		case in.excused: // refused release, perhaps because of an unrecorded takeover
			if s.holder == in.token {
				s.holder = unknownHolder
			}
			return true, s
		default: // refused release: not the holder
			return s.holder != in.token, s
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(lockInput), output.(lockOutput)
		switch {
		case in.op == "acquire":
			return fmt.Sprintf("acquire(%.6s) -> fence %d", in.token, out.fence)
		case in.excused:
			return fmt.Sprintf("release(%.6s) -> false (excused)", in.token)
		}
		return fmt.Sprintf("release(%.6s) -> %v", in.token, out.ok)
	},
	DescribeState: func(state interface{}) string {
		s := state.(lockState)
		return fmt.Sprintf("holder %.6s, fence %d", s.holder, s.fence)
	},
}

// killMargin bounds how long after its process was killed an acquisition
// can still take effect: a request already sent waits at most for the
// longest server pause the nemesis injects (stressExpire + 400ms), plus
// its latency and the proxy's queue; twice the pause leaves room to spare.
const killMargin = 2 * (stressExpire + 400*time.Millisecond)

// linearizabilityBudget bounds porcupine's search. A history it cannot
// decide within the budget is reported as undecided, not as a pass.
func linearizabilityBudget() time.Duration {
	if os.Getenv("MONGOLOCK_STRESS_LONG") != "" {
		return 10 * time.Minute
	}
	return time.Minute
}

// historyOps turns the recorded history into porcupine operations: the
// successful acquisitions and all releases.
//
// The tries (findAndModify commands) say when each acquisition can have
// taken effect. A successful acquisition took the lock in its last run of
// tries after its last refused one (a refused try wrote nothing, and shows
// the lock was not its own at that moment), so its operation starts at the
// first try of that run rather than when Acquire was called (which
// includes the waiting).
//
// Every other try that may have written — its outcome is unknown (a lost
// reply, a timeout, its process killed before it returned: it can take
// effect until killMargin after the kill), or it succeeded but was given
// back (its reply came after the lease's expiry), or it belongs to an
// earlier run of a token that later succeeded — may have taken the lock
// from its holder without a trace. The only effect of that the model can
// observe is that the holder's release is then refused, so instead of being
// operations (open windows the checker would have to place everywhere)
// these tries excuse such refusals: a refused release by the holder of
// acquisition A is excused when such a try on the same key was in flight at
// some moment between A's start and the release's return, which is where
// it would have to be linearized. This is sound: every linearization of the
// full history gives one of the reduced history.
func historyOps(history []event) []porcupine.Operation {
	const (
		tryUnknown = iota
		tryTaken
		tryRefused
	)
	type try struct {
		key        string
		call, ret  int64
		outcome    int
		proc       string
		terminated bool
	}
	type window struct{ from, to int64 }
	var (
		ops      []porcupine.Operation
		clients  = map[string]int{}
		tries    = map[[2]string]*try{} // (proc, request ID)
		byToken  = map[string][]*try{}  // in the order they were sent
		killedAt = map[string]int64{}
		acquired = map[string]event{} // token -> its successful acquisition
		start    = map[string]int64{} // token -> when its successful acquisition can have taken effect
		unknown  = map[string][]window{}
		last     int64
	)
	client := func(proc string) int {
		id, ok := clients[proc]
		if !ok {
			id = len(clients)
			clients[proc] = id
		}
		return id
	}
	for _, e := range history {
		last = max(last, e.Call, e.Return)
		switch e.Op {
		case "killed":
			killedAt[e.Proc] = e.Return
		case "try":
			tr := &try{key: e.Key, call: e.Call, proc: e.Proc}
			tries[[2]string{e.Proc, e.ID}] = tr
			byToken[e.Token] = append(byToken[e.Token], tr)
		case "tried":
			if tr := tries[[2]string{e.Proc, e.ID}]; tr != nil {
				tr.ret, tr.terminated = e.Return, true
				switch {
				case e.OK:
					tr.outcome = tryTaken
				case !e.Maybe:
					tr.outcome = tryRefused
				}
			}
		case "acquire":
			if e.OK {
				acquired[e.Token] = e
			}
		}
	}
	for _, tr := range tries {
		if !tr.terminated {
			tr.ret = last + 1
			if k, ok := killedAt[tr.proc]; ok {
				tr.ret = max(tr.call, min(tr.ret, k+int64(killMargin)))
			}
		}
	}
	for token, trs := range byToken {
		sort.Slice(trs, func(i, j int) bool { return trs[i].call < trs[j].call })
		run := 0 // the first try after the last refused one
		for i, tr := range trs {
			if tr.outcome == tryRefused {
				run = i + 1
			}
		}
		_, ok := acquired[token]
		for i, tr := range trs {
			switch {
			case ok && i == run:
				start[token] = tr.call
			case ok && i > run, tr.outcome == tryRefused:
			default:
				unknown[tr.key] = append(unknown[tr.key], window{tr.call, tr.ret})
			}
		}
	}
	begins := func(a event) int64 {
		if t, ok := start[a.Token]; ok && t >= a.Call {
			return t
		}
		return a.Call // no tries recorded: the whole call
	}
	excused := func(rel event) bool {
		a, ok := acquired[rel.Token]
		if !ok {
			return true // its acquisition is not in the history
		}
		from := begins(a)
		for _, w := range unknown[rel.Key] {
			if w.from <= rel.Return && w.to >= from {
				return true
			}
		}
		return false
	}
	for _, e := range history {
		switch {
		case e.Op == "acquire" && e.OK:
			ops = append(ops, porcupine.Operation{
				ClientId: client(e.Proc),
				Input:    lockInput{op: "acquire", key: e.Key, token: e.Token},
				Call:     begins(e), Output: lockOutput{ok: true, fence: e.Fence}, Return: e.Return,
			})
		case e.Op == "release":
			ops = append(ops, porcupine.Operation{
				ClientId: client(e.Proc),
				Input:    lockInput{op: "release", key: e.Key, token: e.Token, excused: !e.OK && excused(e)},
				Call:     e.Call, Output: lockOutput{ok: e.OK}, Return: e.Return,
			})
		}
	}
	return ops
}

// checkLinearizable checks the acquisitions and releases with porcupine.
func checkLinearizable(t *testing.T, history []event, dir string) []string {
	ops := historyOps(history)
	result, info := porcupine.CheckOperationsVerbose(lockModel, ops, linearizabilityBudget())
	switch result {
	case porcupine.Ok:
		refused, excused := 0, 0
		for _, op := range ops {
			if in := op.Input.(lockInput); in.op == "release" && !op.Output.(lockOutput).ok {
				refused++
				if in.excused {
					excused++
				}
			}
		}
		t.Logf("linearizable: %d operations (%d refused releases, %d of them excused by a try that may have taken the lock)", len(ops), refused, excused)
		return nil
	case porcupine.Unknown:
		t.Logf("linearizability undecided: porcupine ran out of its %v budget on %d operations", linearizabilityBudget(), len(ops))
		return nil
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("mongolock-linearizability-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(lockModel, info, path); err != nil {
		path = "(visualization failed: " + err.Error() + ")"
	}
	return []string{fmt.Sprintf("the history of %d operations is not linearizable; porcupine's visualization: %s", len(ops), path)}
}

// TestLinearizabilityModel: the checker accepts what a correct lock may do
// (including a takeover by a try whose outcome is unknown, or whose process
// was killed) and rejects what it must not.
func TestLinearizabilityModel(t *testing.T) {
	acq := func(proc string, call, ret, fence int64) event {
		return event{Proc: proc, Op: "acquire", Key: "k", Token: proc, Call: call, Return: ret, OK: true, Fence: fence}
	}
	rel := func(proc string, call, ret int64, ok bool) event {
		return event{Proc: proc, Op: "release", Key: "k", Token: proc, Call: call, Return: ret, OK: ok}
	}
	try := func(proc, id, key string, call int64) event {
		return event{Proc: proc, Op: "try", ID: id, Key: key, Token: proc, Call: call}
	}
	const (
		taken = iota
		refused
		unknown
	)
	tried := func(proc, id string, ret int64, outcome int) event {
		return event{Proc: proc, Op: "tried", ID: id, Return: ret, OK: outcome == taken, Maybe: outcome == unknown}
	}
	margin := int64(killMargin)
	tests := []struct {
		name    string
		history []event
		ok      bool
	}{
		{"acquire, release, acquire", []event{acq("a", 0, 1, 10), rel("a", 2, 3, true), acq("b", 4, 5, 11)}, true},
		{"takeover after expiry, old holder's release refused", []event{acq("a", 0, 1, 10), acq("b", 2, 3, 11), rel("a", 4, 5, false)}, true},
		{"overlapping acquisitions order by fence", []event{acq("a", 0, 10, 12), acq("b", 1, 2, 11)}, true},
		{"a killed process's try took over", []event{
			acq("a", 0, 1, 10), try("k", "1", "k", 2), {Proc: "k", Op: "killed", Return: 3}, rel("a", 4, 5, false),
		}, true},
		{"a try with an unknown outcome took over", []event{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, false),
		}, true},
		{"a try with an unknown outcome did nothing", []event{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, true),
		}, true},
		{"a try that took the lock and gave it back", []event{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, taken), rel("a", 4, 5, false),
		}, true},
		{"an earlier run of tries of an acquisition that succeeded later", []event{
			acq("x", 0, 1, 10),
			try("t", "1", "k", 2), tried("t", "1", 3, unknown),
			rel("x", 3, 4, false),
			try("t", "2", "k", 5), tried("t", "2", 6, refused),
			try("t", "3", "k", 7), tried("t", "3", 8, taken),
			acq("t", 2, 9, 11),
		}, true},
		{"fence did not rise", []event{acq("a", 0, 1, 10), acq("b", 2, 3, 10)}, false},
		{"fence fell", []event{acq("a", 0, 1, 10), rel("a", 2, 3, true), acq("b", 4, 5, 9)}, false},
		{"release by a non-holder succeeded", []event{acq("a", 0, 1, 10), rel("b", 2, 3, true)}, false},
		{"holder's release refused with nobody else around", []event{acq("a", 0, 1, 10), rel("a", 2, 3, false)}, false},
		{"a refused try is no excuse", []event{
			acq("a", 0, 1, 10), try("r", "1", "k", 2), tried("r", "1", 3, refused), rel("a", 4, 5, false),
		}, false},
		{"a try that ended before the acquisition is no excuse", []event{
			try("m", "1", "k", 0), tried("m", "1", 1, unknown), acq("a", 2, 3, 10), rel("a", 4, 5, false),
		}, false},
		{"a try cut short by a kill long before is no excuse", []event{
			try("k", "1", "k", 0), {Proc: "k", Op: "killed", Return: 1},
			acq("a", margin+2, margin+3, 10), rel("a", margin+4, margin+5, false),
		}, false},
		{"a try on another key is no excuse", []event{
			acq("a", 0, 1, 10), try("m", "1", "other", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, false),
		}, false},
		{"an acquisition starts at its last run of tries, not while it waited", []event{
			try("a", "1", "k", 0), tried("a", "1", 1, refused),
			try("m", "1", "k", 2), tried("m", "1", 3, unknown),
			try("a", "2", "k", 8), tried("a", "2", 9, taken),
			acq("a", 0, 10, 10),
			rel("a", 11, 12, false),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := porcupine.CheckOperations(lockModel, historyOps(tt.history))
			if got != tt.ok {
				t.Fatalf("linearizable = %v; want %v", got, tt.ok)
			}
		})
	}
}

// TestStressWorker is a child process of the harness, not a test.
func TestStressWorker(t *testing.T) {
	if os.Getenv(stressWorkerE) != "1" {
		t.Skip("child process of TestStress")
	}
	skew, _ := time.ParseDuration(os.Getenv("STRESS_SKEW"))
	goroutines, _ := strconv.Atoi(os.Getenv("STRESS_GOROUTINES"))
	untilNS, _ := strconv.ParseInt(os.Getenv("STRESS_UNTIL"), 10, 64)
	seed, _ := strconv.ParseUint(os.Getenv("STRESS_SEED"), 10, 64)
	name := os.Getenv("STRESS_NAME")
	until := time.Unix(0, untilNS)

	opts := []Option{
		WithDatabase(os.Getenv("STRESS_DB")), WithRetryInterval(20 * time.Millisecond),
		withLocalClock(func() time.Time { return time.Now().Add(skew) }),
	}
	if os.Getenv("STRESS_BROKEN") == "true" {
		opts = append(opts, withBrokenClientClockExpiry())
	}
	ctx := context.Background()
	hist, err := os.OpenFile(os.Getenv("STRESS_HISTORY"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	var hmu sync.Mutex
	record := func(e event) {
		e.Proc = name
		b, _ := json.Marshal(e)
		hmu.Lock()
		_, _ = hist.Write(append(b, '\n')) // one write per line: a SIGKILL loses at most the line in flight
		hmu.Unlock()
	}
	now := func() int64 { return time.Now().UnixNano() }

	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("STRESS_URI")).SetMonitor(tryMonitor(record)))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	c, err := New(mc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)

	stalls := newStallMeter()
	defer stalls.stop()

	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			conn, err := net.Dial("unix", os.Getenv("STRESS_SOCK"))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			replies := bufio.NewScanner(conn)
			for time.Now().Before(until) {
				key := stressKeys[rng.IntN(len(stressKeys))]
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				call := now()
				l, err := c.Acquire(actx, key, Expire(stressExpire), Timeout(time.Second))
				ret := now()
				cancel()
				if err != nil {
					record(event{Op: "acquire", Key: key, Call: call, Return: ret})
					continue
				}
				record(event{Op: "acquire", Key: key, Token: l.Token(), Call: call, Return: ret, OK: true, Fence: l.Fence()})

				// Work: a few writes to the resource while the lease is held.
				for w := 0; w < 1+rng.IntN(3); w++ {
					select {
					case <-l.Lost():
					default:
						sent := now()
						fmt.Fprintf(conn, "%s %d %s %d\n", key, l.Fence(), l.Token(), sent)
						if !replies.Scan() {
							return
						}
					}
					time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
				}
				select {
				case <-l.Lost():
					// When did it close, against the lease's own deadline?
					record(event{Op: "lost", Key: key, Token: l.Token(), Return: lostAt(l, skew), Expiry: l.ExpiresAt().Add(-skew).UnixNano(), Why: fmt.Sprint(l.Err()), Stall: stalls.worst()})
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				call = now()
				err = l.Release(rctx)
				ret = now()
				cancel()
				if err == nil || errors.Is(err, ErrNotHeld) {
					record(event{Op: "release", Key: key, Token: l.Token(), Call: call, Return: ret, OK: err == nil})
				}
			}
		}()
	}
	wg.Wait()
}

// tryMonitor records every findAndModify the library sends (each is one try
// of an acquisition, see store.acquire): a "try" line before it is sent and
// a "tried" line with its outcome — taken, refused (a duplicate key: the
// lock is held, nothing was written), or unknown (any other failure: it
// may have been applied). A try cut short by SIGKILL has no "tried" line.
func tryMonitor(record func(event)) *driverevent.CommandMonitor {
	const cmd = "findAndModify"
	now := func() int64 { return time.Now().UnixNano() }
	id := func(n int64) string { return strconv.FormatInt(n, 10) }
	return &driverevent.CommandMonitor{
		Started: func(_ context.Context, e *driverevent.CommandStartedEvent) {
			if e.CommandName != cmd {
				return
			}
			key, _ := e.Command.Lookup("query", fieldKey).StringValueOK()
			token, _ := e.Command.Lookup("update", "$set", fieldToken).StringValueOK()
			record(event{Op: "try", ID: id(e.RequestID), Key: key, Token: token, Call: now()})
		},
		Succeeded: func(_ context.Context, e *driverevent.CommandSucceededEvent) {
			if e.CommandName == cmd {
				record(event{Op: "tried", ID: id(e.RequestID), Return: now(), OK: true})
			}
		},
		Failed: func(_ context.Context, e *driverevent.CommandFailedEvent) {
			if e.CommandName == cmd {
				var de driver.Error
				refused := errors.As(e.Failure, &de) && de.Code == 11000
				record(event{Op: "tried", ID: id(e.RequestID), Return: now(), Maybe: !refused})
			}
		},
	}
}

// lostAt is when the lease's Lost channel closed, in real unix ns (the
// lease records it on the Client's clock, which runs skew ahead).
func lostAt(l *Lease, skew time.Duration) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lostAt.IsZero() {
		return math.MaxInt64
	}
	return l.lostAt.Add(-skew).UnixNano()
}

// stallMeter measures how late this process's goroutines get scheduled: a
// goroutine sleeps 5ms at a time and records by how much it overslept.
type stallMeter struct {
	mu    sync.Mutex
	marks []stall
	done  chan struct{}
	wg    sync.WaitGroup
}

type stall struct {
	at    time.Time
	extra time.Duration
}

func newStallMeter() *stallMeter {
	m := &stallMeter{done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			t := time.Now()
			select {
			case <-m.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if extra := time.Since(t) - 5*time.Millisecond; extra > 2*time.Millisecond {
				m.mu.Lock()
				m.marks = append(m.marks, stall{time.Now(), extra})
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// worst is the longest stall in the last two seconds, in ns.
func (m *stallMeter) worst() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	for _, s := range m.marks {
		if time.Since(s.at) < 2*time.Second && s.extra > w {
			w = s.extra
		}
	}
	return int64(w)
}

func (m *stallMeter) stop() { close(m.done); m.wg.Wait() }

func stressSkews() []time.Duration {
	if os.Getenv("MONGOLOCK_STRESS_NOSKEW") != "" {
		return []time.Duration{0}
	}
	return []time.Duration{0, time.Hour, -time.Hour}
}
