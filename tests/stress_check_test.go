package tests

// The stress harness's checks: they read the recorded history (see event)
// and report what does not hold. TestLinearizabilityModel and
// TestExclusionCheck show, on small histories, what each accepts and
// rejects.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// event is one line of the harness's history. Times are real unix ns.
type hevent struct {
	Proc   string `json:"proc"`
	Op     string `json:"op"`             // see the ops below
	Kind   string `json:"kind,omitempty"` // acquire: lease, seed (owner-named Lock), py (Python-style), closer (a Client closed while acquiring), entry, reader, writer, leader, fair; try: fair (a fair acquisition's); dequeue: self or expired
	ID     string `json:"id,omitempty"`   // try, tried, enqueue(d), dequeue(d): the driver's request ID, unique within Proc
	Key    string `json:"key,omitempty"`
	Token  string `json:"token,omitempty"`
	Owner  string `json:"owner,omitempty"` // acquire: the holder's name; forcerelease: the holder it removed
	Call   int64  `json:"call,omitempty"`
	Return int64  `json:"ret,omitempty"`
	OK     bool   `json:"ok,omitempty"`
	Maybe  bool   `json:"maybe,omitempty"`  // tried, enqueued, dequeued: the outcome is unknown (a failure other than a duplicate key, or a write concern error); purge: it failed; release (refused): an earlier attempt of it, whose reply was lost, may have released
	Fence  int64  `json:"fence,omitempty"`  // acquire (0: not known), forcerelease: the stored fence
	Until  int64  `json:"until,omitempty"`  // acquire, promise: the holder may act until then (ExpiresAt); 0: no promise
	At     int64  `json:"at,omitempty"`     // promise: when the holder looked
	Expiry int64  `json:"expiry,omitempty"` // lost: ExpiresAt when Lost was seen
	Why    string `json:"why,omitempty"`    // lost: Err(); problem: what
	Stall  int64  `json:"stall,omitempty"`  // lost: the process's worst scheduling stall in the last 2s (ns)
	N      int64  `json:"n,omitempty"`      // purge: documents deleted

	Heartbeat int64 `json:"hb,omitempty"` // enqueue: the waiter's heartbeat it writes (server time, unix ns)
}

// The ops:
//
//	acquire       an acquisition returned (OK) or failed; a lease's Until is its ExpiresAt then
//	promise       a holder checked Lost and ExpiresAt before acting: it may act from At until Until
//	release       a release (OK: succeeded; refused releases have OK false)
//	releasing     a holder is about to call release: it stopped acting at Call (also if killed before it returns)
//	stop          a release whose outcome is unknown, or a Close: the holder stopped acting at Call
//	lost          a holder saw Lost closed (Return: when it closed)
//	try, tried    a findAndModify (an acquisition's attempt) was sent, and its outcome
//	enqueue       a fair waiter's findAndModify that queues Token (or refreshes its place) was sent
//	enqueued      its outcome (OK: applied, the token is queued; neither OK nor Maybe: no document matched)
//	dequeue       an update statement that takes Token out of the fair queue was sent (Kind self: the
//	              waiter gives up; expired: another removes it as dead)
//	dequeued      that update returned
//	killed        the nemesis killed Proc
//	forcerelease  an operator's ForceRelease of Key (Fence: the holder it removed, if any)
//	purge         an operator's Purge (N: documents deleted; Maybe: it failed, and may have deleted some)
//	problem       something a child saw go wrong (Why)

// write is one write the resource accepted.
type write struct {
	key, token string
	mode       string // "exclusive", "entry" (a semaphore holder) or "reader"
	fence      int64
	sent       int64 // unix ns when the holder checked it may act, just before sending
}

// checkExclusion reads the contract: a holder may act only while Lost is
// open and before ExpiresAt. Every promise (a holder looked, and may act
// from At until Until) and every acquisition's return (it may act until
// its ExpiresAt then) gives an interval in which that holder is entitled;
// a Python-style holder is entitled from its acquisition until its expiry
// (on this machine's clock, which is the test server's) or its release.
// An entitlement ends early when its holder calls release (or Close does),
// sees Lost, or an operator force-releases it (the one case where the
// library lets another in while the holder may still act). A holder killed
// by the nemesis keeps its entitlement unless it had begun to release: the
// server must go on excluding others until its promised instant. No two
// holders' entitlements may overlap.
func checkExclusion(history []hevent) []string {
	type span struct {
		from, to int64
		token    string
		proc     string
		what     string
	}
	ends := entitlementEnds(history)
	byKey := map[string][]span{}
	add := func(key, token, proc, what string, from, to int64) {
		if end, ok := ends[token]; ok && end < to {
			to = end
		}
		if from < to {
			byKey[key] = append(byKey[key], span{from, to, token, proc, what})
		}
	}
	for _, e := range history {
		switch {
		case e.Op == "acquire" && e.OK && e.Until != 0:
			add(e.Key, e.Token, e.Proc, fmt.Sprintf("%s acquisition (fence %d)", e.Kind, e.Fence), e.Return, e.Until)
		case e.Op == "promise":
			kind := e.Kind
			if kind == "" {
				kind = "lease"
			}
			add(e.Key, e.Token, e.Proc, fmt.Sprintf("%s (fence %d) looked at %s", kind, e.Fence, at(e.At)), e.At, e.Until)
		}
	}
	var problems []string
	for key, spans := range byKey {
		sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
		// At each instant a holder starts to be entitled, who else is:
		// an exclusive holder (a lease, a writer, a leader, an owner-named
		// or Python-style holder) shares with nobody, at most stressLimit
		// semaphore holders at once, readers with readers only.
		reported := map[string]bool{}
		for i, s := range spans {
			active := map[string]span{s.token: s}
			for _, r := range spans[:i+1] {
				if r.from <= s.from && r.to > s.from {
					if cur, ok := active[r.token]; !ok || r.to > cur.to {
						active[r.token] = r
					}
				}
			}
			if len(active) < 2 {
				continue
			}
			kinds := map[string]int{}
			var others []string
			for _, r := range active {
				kinds[spanKind(r.what)]++
				if r.token != s.token {
					others = append(others, fmt.Sprintf("%s (%s) until %s", r.proc, r.what, at(r.to)))
				}
			}
			sort.Strings(others)
			var why string
			switch {
			case kinds["exclusive"] > 0:
				why = "two holders at once"
			case kinds["entry"] > 0 && kinds["reader"] > 0:
				why = "semaphore holders and readers at once"
			case kinds["entry"] > stressLimit:
				why = fmt.Sprintf("%d semaphore holders at once (limit %d)", kinds["entry"], stressLimit)
			default:
				continue
			}
			if msg := fmt.Sprintf("key %q: %s: %s (%s) from %s, while entitled: %s", key, why, s.proc, s.what, at(s.from), strings.Join(others, "; ")); !reported[s.token] {
				reported[s.token] = true
				problems = append(problems, msg)
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// spanKind is how an entitlement shares its key: "entry" (a semaphore
// holder), "reader", or "exclusive" (everything else).
func spanKind(what string) string {
	switch {
	case strings.HasPrefix(what, "entry "):
		return "entry"
	case strings.HasPrefix(what, "reader "):
		return "reader"
	}
	return "exclusive"
}

// entitlementEnds returns, per token, the earliest moment its holder's
// entitlement ended: it called release (or Close did), saw Lost close, or
// an operator force-released it (the force-release names the holder it
// removed by owner — every acquisition in the harness has an owner name of
// its own — or, for a semaphore's or shared lock's document, by its mark:
// then it removed every holder).
func entitlementEnds(history []hevent) map[string]int64 {
	end := map[string]int64{}
	note := func(token string, t int64) {
		if cur, ok := end[token]; token != "" && (!ok || t < cur) {
			end[token] = t
		}
	}
	var acquisitions, forced []hevent
	for _, e := range history {
		switch {
		case e.Op == "release", e.Op == "releasing", e.Op == "stop":
			note(e.Token, e.Call)
		case e.Op == "lost":
			note(e.Token, e.Return)
		case e.Op == "acquire" && e.OK:
			acquisitions = append(acquisitions, e)
		case e.Op == "forcerelease" && e.OK && e.Owner != "":
			forced = append(forced, e)
		}
	}
	for _, f := range forced {
		// A force-release of a semaphore or shared lock removes every
		// holder; of an exclusive one, the holder it names. Its victim
		// may have been taken before it and learned so only after it (a
		// late reply): any acquisition that had begun by then.
		all := f.Owner == "*semaphore" || f.Owner == "*shared"
		for _, a := range acquisitions {
			if a.Key == f.Key && a.Call <= f.Return && (all || a.Owner == f.Owner) {
				note(a.Token, f.Call)
			}
		}
	}
	return end
}

// checkWrites: no accepted write came from a holder after another
// acquisition of the key with a higher fence had returned (the holder
// looked, found itself entitled, and wrote; an acquisition after that
// instant contradicts its entitlement), unless an operator had
// force-released the writer by then.
func checkWrites(history []hevent, accepted []write) []string {
	ends := entitlementEnds(history)
	var problems []string
	acquired := map[string][]hevent{}
	for _, e := range history {
		if e.Op == "acquire" && e.OK && e.Fence != 0 {
			acquired[e.Key] = append(acquired[e.Key], e)
		}
	}
	kinds := map[string]string{}
	for _, e := range history {
		if e.Op == "acquire" && e.OK {
			kinds[e.Token] = spanKind(e.Kind + " ")
		}
	}
	for _, w := range accepted {
		if end, ok := ends[w.token]; ok && end <= w.sent {
			continue // it looked after its entitlement had ended; see checkExclusion
		}
		// A semaphore holder's write says nothing by its fence: the
		// holders with higher fences may have come and gone, and how many
		// hold at once is checkExclusion's business. A reader's write is
		// stale once a writer with a higher fence had returned; anyone
		// else's once anyone with a higher fence had.
		if w.mode == "entry" {
			continue
		}
		for _, a := range acquired[w.key] {
			if a.Fence <= w.fence || a.Return >= w.sent {
				continue
			}
			if w.mode == "reader" && kinds[a.Token] == "reader" {
				continue
			}
			problems = append(problems, fmt.Sprintf(
				"key %q: the resource accepted a write with fence %d (token %s) sent at %s, after an acquisition with fence %d (%s) had returned at %s: the writer's lease had been superseded",
				w.key, w.fence, w.token, at(w.sent), a.Fence, a.Proc, at(a.Return)))
			break
		}
	}
	return problems
}

// checkLost: Lost closed no later than the lease's local expiry. A process
// the machine did not schedule for a while was, in effect, paused; each
// child measures its own scheduling stalls, and a lateness within the
// stall it measured is not counted.
func checkLost(history []hevent) []string {
	var problems []string
	for _, e := range history {
		if e.Op == "lost" && e.Expiry != 0 && e.Return > e.Expiry+e.Stall+int64(20*time.Millisecond) {
			problems = append(problems, fmt.Sprintf("key %q: %s saw Lost() %s after its lease's expiry (%s)",
				e.Key, e.Proc, time.Duration(e.Return-e.Expiry), e.Why))
		}
	}
	return problems
}

// checkProblems reports what the children saw go wrong.
func checkProblems(history []hevent) []string {
	var problems []string
	for _, e := range history {
		if e.Op == "problem" {
			problems = append(problems, fmt.Sprintf("%s: %s", e.Proc, e.Why))
		}
	}
	return problems
}

func at(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// The lease-lock model for porcupine, per key. State: the holder's token
// and the highest fence known. A lease acquisition that succeeds must
// carry a fence above every earlier one in the linearization, and makes
// its token the holder (possibly taking over an expired lease, which the
// model cannot see, so it does not require the lock to be free). An
// owner-named or Python-style acquisition has no fence to check, and
// leaves the highest fence as it was: later leases must still beat it
// (Python's write drops the stored fence). A refused acquisition changes
// nothing and is left out. A successful release must come from the
// holder, and frees the lock; a refused one must not come from the holder
// — unless it is excused (see historyOps), and then it leaves the lock to
// an unknown holder if it was the holder. A force-release frees the lock
// whoever holds it.
type lockState struct {
	holder string
	fence  int64
}

type lockInput struct {
	op, key, token string
	kind           string // acquire: the event's Kind (see multiModel)
	excused        bool   // a refused release that something may explain
}

type lockOutput struct {
	ok    bool
	fence int64
}

// unknownHolder stands for the token of an acquisition the model cannot
// see; no operation in a history uses it.
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
		case in.op == "acquire" && out.fence == 0: // no fence to check
			return true, lockState{holder: in.token, fence: s.fence}
		case in.op == "acquire":
			return out.fence > s.fence, lockState{holder: in.token, fence: out.fence}
		case in.op == "forcerelease":
			return true, lockState{fence: max(s.fence, out.fence)}
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
		case in.op == "forcerelease":
			return fmt.Sprintf("forcerelease -> fence %d", out.fence)
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
// longest server pause the nemesis injects (stressExpire + 400ms) or the
// longest delay it adds, plus the proxy's queue; twice that leaves room
// to spare.
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
// successful acquisitions, all releases, and the operators'
// force-releases.
//
// The tries (findAndModify commands, and a Python-style worker's lock
// attempts) say when each acquisition can have taken effect. A successful
// acquisition took the lock in its last run of tries after its last
// refused one (a refused try wrote nothing, and shows the lock was not its
// own at that moment), so its operation starts at the first try of that
// run rather than when Acquire was called (which includes the waiting).
//
// Every other try that may have written — its outcome is unknown (a lost
// reply, a timeout, its process killed before it returned: it can take
// effect until killMargin after the kill), or it succeeded but was given
// back (its reply came after the lease's expiry, or its Client was
// closed), or it belongs to an earlier run of a token that later succeeded
// — may have taken the lock from its holder without a trace. The only
// effect of that the model can observe is that the holder's release is
// then refused, so instead of being operations (open windows the checker
// would have to place everywhere) these tries excuse such refusals: a
// refused release by the holder of acquisition A is excused when such a
// try on the same key was in flight at some moment between A's start and
// the release's return, which is where it would have to be linearized.
// This is sound: every linearization of the full history gives one of the
// reduced history.
//
// A refused release is excused, too, when the library says an earlier
// attempt of it, whose reply was lost, may have released the lock before
// someone else took it (Maybe).
//
// A refused release is also excused when it may have taken effect after its
// lease's last promised instant — it returned after it: a release delayed
// (a paused server, a resend) may land after the lease expired, and an
// expired lease may be taken over, or purged —
// since the model does not see expiry.
func historyOps(history []hevent) []porcupine.Operation {
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
		acquired = map[string]hevent{} // token -> its successful acquisition
		start    = map[string]int64{}  // token -> when its successful acquisition can have taken effect
		until    = map[string]int64{}  // token -> the last instant it was promised
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
				until[e.Token] = max(until[e.Token], e.Until)
			}
		case "promise":
			until[e.Token] = max(until[e.Token], e.Until)
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
	begins := func(a hevent) int64 {
		if t, ok := start[a.Token]; ok && t >= a.Call {
			return t
		}
		return a.Call // no tries recorded: the whole call
	}
	excused := func(rel hevent) bool {
		a, ok := acquired[rel.Token]
		if !ok {
			return true // its acquisition is not in the history
		}
		if u := until[rel.Token]; u != 0 && rel.Return >= u {
			return true // it may have taken effect after its lease's last promise: the lease may have expired
		}
		from := begins(a)
		for _, w := range unknown[rel.Key] {
			if w.from <= rel.Return && w.to >= from {
				return true
			}
		}
		for _, e := range history {
			if e.Op == "forcerelease" && e.Key == rel.Key && e.Call <= rel.Return && e.Return >= from {
				return true // an operator force-released it (ForceRelease is also an operation)
			}
		}
		return false
	}
	for _, e := range history {
		switch {
		case e.Op == "acquire" && e.OK:
			ops = append(ops, porcupine.Operation{
				ClientId: client(e.Proc),
				Input:    lockInput{op: "acquire", key: e.Key, token: e.Token, kind: e.Kind},
				Call:     begins(e), Output: lockOutput{ok: true, fence: e.Fence}, Return: e.Return,
			})
		case e.Op == "release":
			ops = append(ops, porcupine.Operation{
				ClientId: client(e.Proc),
				Input:    lockInput{op: "release", key: e.Key, token: e.Token, excused: !e.OK && (e.Maybe || excused(e))},
				Call:     e.Call, Output: lockOutput{ok: e.OK}, Return: e.Return,
			})
		case e.Op == "forcerelease" && e.OK:
			ops = append(ops, porcupine.Operation{
				ClientId: client(e.Proc),
				Input:    lockInput{op: "forcerelease", key: e.Key},
				Call:     e.Call, Output: lockOutput{ok: true, fence: e.Fence}, Return: e.Return,
			})
		}
	}
	return ops
}

// checkLinearizable checks the acquisitions and releases with porcupine.
func checkLinearizable(t *testing.T, history []hevent) []string {
	all := historyOps(history)
	var ops, multi []porcupine.Operation
	for _, op := range all {
		if k := op.Input.(lockInput).key; k == semKey || k == rwKey {
			multi = append(multi, op)
		} else {
			ops = append(ops, op)
		}
	}
	var problems []string
	switch res, _ := porcupine.CheckOperationsVerbose(multiModel, multi, linearizabilityBudget()); res {
	case porcupine.Ok:
		t.Logf("linearizable: %d operations on the semaphore and the readers–writer lock", len(multi))
	case porcupine.Unknown:
		t.Logf("linearizability of the recipes undecided within %v (%d operations)", linearizabilityBudget(), len(multi))
	default:
		problems = append(problems, fmt.Sprintf("the history of %d operations on the semaphore and the readers–writer lock is not linearizable", len(multi)))
	}
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
		t.Logf("linearizable: %d operations (%d refused releases, %d of them excused)", len(ops), refused, excused)
		return problems
	case porcupine.Unknown:
		t.Logf("linearizability undecided: porcupine ran out of its %v budget on %d operations", linearizabilityBudget(), len(ops))
		return problems
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("mongolock-linearizability-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(lockModel, info, path); err != nil {
		path = "(visualization failed: " + err.Error() + ")"
	}
	return append(problems, fmt.Sprintf("the history of %d operations is not linearizable; porcupine's visualization: %s", len(ops), path))
}

// multiModel is the model of the semaphore's and the readers–writer
// lock's keys: several holders at once (how many is the exclusion
// check's business: the model cannot see expiry), fences rising in
// linearization order across all of them, a release succeeding only for a
// holder and refused only for a non-holder unless excused (as lockModel).
// Since the model cannot see expiry, an acquisition may take over any
// holder it could not share the key with: an exclusive one (a writer, or
// any other kind that is not shared) makes itself the only holder, a
// shared one (a semaphore entry, a reader) drops the exclusive holders.
// State: the holders (sorted, joined; "x:" or "s:" and the token) and the
// highest fence.
type multiState struct {
	holders string
	fence   int64
}

// sharedKind: the acquisitions that share a key with others of their kind.
func sharedKind(kind string) bool { return kind == "entry" || kind == "reader" }

func multiHolders(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// multiAcquire is the holders after token (of kind) acquired.
func multiAcquire(hs []string, token, kind string) string {
	if !sharedKind(kind) {
		return "x:" + token
	}
	var out []string
	for _, h := range hs {
		if strings.HasPrefix(h, "s:") && h != "s:"+token {
			out = append(out, h)
		}
	}
	out = append(out, "s:"+token)
	sort.Strings(out)
	return strings.Join(out, ",")
}

// multiWithout is the holders without token.
func multiWithout(hs []string, token string) string {
	var out []string
	for _, h := range hs {
		if h[2:] != token {
			out = append(out, h)
		}
	}
	return strings.Join(out, ",")
}

var multiModel = porcupine.Model{
	Partition: lockModel.Partition,
	Init:      func() interface{} { return multiState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(multiState), input.(lockInput), output.(lockOutput)
		hs := multiHolders(s.holders)
		has := false
		for _, h := range hs {
			has = has || h[2:] == in.token
		}
		switch {
		case in.op == "acquire" && out.fence == 0: // Python-style or owner-named: no fence to check
			return true, multiState{holders: multiAcquire(hs, in.token, in.kind), fence: s.fence}
		case in.op == "acquire":
			return out.fence > s.fence, multiState{holders: multiAcquire(hs, in.token, in.kind), fence: out.fence}
		case in.op == "forcerelease":
			return true, multiState{fence: max(s.fence, out.fence)}
		case out.ok:
			return has, multiState{holders: multiWithout(hs, in.token), fence: s.fence}
		case in.excused:
			return true, multiState{holders: multiWithout(hs, in.token), fence: s.fence}
		default:
			return !has, s
		}
	},
	DescribeOperation: lockModel.DescribeOperation,
	DescribeState: func(state interface{}) string {
		s := state.(multiState)
		return fmt.Sprintf("holders %s, fence %d", s.holders, s.fence)
	},
}

// TestExclusionCheck: the exclusion check accepts what the contract
// allows — a holder starved past its ExpiresAt, a take-over after the
// holder saw Lost, a force-release — and rejects two entitled holders.
func TestExclusionCheck(t *testing.T) {
	acq := func(proc string, ret, until, fence int64) hevent {
		return hevent{Proc: proc, Op: "acquire", Kind: "lease", Key: "k", Token: proc, Owner: proc, Call: ret - 1, Return: ret, OK: true, Fence: fence, Until: until}
	}
	kind := func(e hevent, k string) hevent { e.Kind = k; return e }
	promise := func(proc string, atT, until, fence int64) hevent {
		return hevent{Proc: proc, Op: "promise", Key: "k", Token: proc, At: atT, Until: until, Fence: fence}
	}
	tests := []struct {
		name    string
		history []hevent
		ok      bool
	}{
		{"one after the other's expiry", []hevent{acq("a", 10, 100, 1), acq("b", 100, 200, 2)}, true},
		{"overlap", []hevent{acq("a", 10, 100, 1), acq("b", 90, 200, 2)}, false},
		{"overlap with an older fence arriving late", []hevent{acq("a", 10, 100, 2), acq("b", 50, 200, 1)}, false},
		{"a promise after a renewal", []hevent{acq("a", 10, 100, 1), promise("a", 95, 300, 1), acq("b", 150, 400, 2)}, false},
		{"a starved holder whose acquisition came back past its expiry", []hevent{acq("a", 150, 100, 1), acq("b", 120, 300, 2)}, true},
		{"released first", []hevent{acq("a", 10, 100, 1), {Proc: "a", Op: "release", Key: "k", Token: "a", Call: 40, Return: 45, OK: true}, acq("b", 50, 200, 2)}, true},
		{"saw Lost first", []hevent{acq("a", 10, 100, 1), {Proc: "a", Op: "lost", Key: "k", Token: "a", Return: 40}, acq("b", 50, 200, 2)}, true},
		{"force-released", []hevent{acq("a", 10, 100, 1), {Proc: "op", Op: "forcerelease", Key: "k", Call: 40, Return: 45, OK: true, Fence: 1, Owner: "a"}, acq("b", 50, 200, 2)}, true},
		{"force-released someone else", []hevent{acq("a", 10, 100, 1), {Proc: "op", Op: "forcerelease", Key: "k", Call: 40, Return: 45, OK: true, Fence: 7, Owner: "z"}, acq("b", 50, 200, 2)}, false},
		{"a Python holder until its expiry", []hevent{{Proc: "py", Op: "acquire", Kind: "py", Key: "k", Token: "py:x", Return: 10, OK: true, Until: 100}, acq("b", 50, 200, 2)}, false},
		{"semaphore holders up to the limit", []hevent{kind(acq("a", 10, 100, 1), "entry"), kind(acq("b", 20, 100, 2), "entry")}, true},
		{"one semaphore holder too many", []hevent{kind(acq("a", 10, 100, 1), "entry"), kind(acq("b", 20, 100, 2), "entry"), kind(acq("c", 30, 100, 3), "entry")}, false},
		{"readers share", []hevent{kind(acq("a", 10, 100, 1), "reader"), kind(acq("b", 20, 100, 2), "reader"), kind(acq("c", 30, 100, 3), "reader")}, true},
		{"a writer among readers", []hevent{kind(acq("a", 10, 100, 1), "reader"), kind(acq("w", 20, 100, 2), "writer")}, false},
		{"a reader after the writer released", []hevent{kind(acq("w", 10, 100, 1), "writer"), {Proc: "w", Op: "release", Key: "k", Token: "w", Call: 40, Return: 45, OK: true}, kind(acq("a", 50, 200, 2), "reader")}, true},
		{"readers force-released", []hevent{kind(acq("a", 10, 100, 1), "reader"), kind(acq("b", 20, 100, 2), "reader"),
			{Proc: "op", Op: "forcerelease", Key: "k", Call: 40, Return: 45, OK: true, Fence: 2, Owner: "*shared"}, acq("c", 50, 200, 3)}, true},
		{"readers force-released on another key", []hevent{kind(acq("a", 10, 100, 1), "reader"),
			{Proc: "op", Op: "forcerelease", Key: "other", Call: 40, Return: 45, OK: true, Fence: 2, Owner: "*shared"}, acq("c", 50, 200, 3)}, false},
		{"semaphore holders force-released", []hevent{kind(acq("a", 10, 100, 1), "entry"), kind(acq("b", 20, 100, 2), "entry"),
			{Proc: "op", Op: "forcerelease", Key: "k", Call: 40, Return: 45, OK: true, Fence: 2, Owner: "*semaphore"}, acq("c", 50, 200, 3)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := checkExclusion(tt.history)
			if ok := len(problems) == 0; ok != tt.ok {
				t.Fatalf("checkExclusion = %v; want ok=%v", problems, tt.ok)
			}
		})
	}
}

// TestLinearizabilityModel: the checker accepts what a correct lock may do
// (including a takeover by a try whose outcome is unknown, or whose process
// was killed) and rejects what it must not.
func TestLinearizabilityModel(t *testing.T) {
	acq := func(proc string, call, ret, fence int64) hevent {
		return hevent{Proc: proc, Op: "acquire", Kind: "lease", Key: "k", Token: proc, Call: call, Return: ret, OK: true, Fence: fence}
	}
	rel := func(proc string, call, ret int64, ok bool) hevent {
		return hevent{Proc: proc, Op: "release", Key: "k", Token: proc, Call: call, Return: ret, OK: ok}
	}
	try := func(proc, id, key string, call int64) hevent {
		return hevent{Proc: proc, Op: "try", ID: id, Key: key, Token: proc, Call: call}
	}
	const (
		taken = iota
		refused
		unknown
	)
	tried := func(proc, id string, ret int64, outcome int) hevent {
		return hevent{Proc: proc, Op: "tried", ID: id, Return: ret, OK: outcome == taken, Maybe: outcome == unknown}
	}
	py := func(proc string, call, ret int64) hevent {
		return hevent{Proc: proc, Op: "acquire", Kind: "py", Key: "k", Token: proc, Call: call, Return: ret, OK: true}
	}
	margin := int64(killMargin)
	tests := []struct {
		name    string
		history []hevent
		ok      bool
	}{
		{"acquire, release, acquire", []hevent{acq("a", 0, 1, 10), rel("a", 2, 3, true), acq("b", 4, 5, 11)}, true},
		{"takeover after expiry, old holder's release refused", []hevent{acq("a", 0, 1, 10), acq("b", 2, 3, 11), rel("a", 4, 5, false)}, true},
		{"overlapping acquisitions order by fence", []hevent{acq("a", 0, 10, 12), acq("b", 1, 2, 11)}, true},
		{"a killed process's try took over", []hevent{
			acq("a", 0, 1, 10), try("k", "1", "k", 2), {Proc: "k", Op: "killed", Return: 3}, rel("a", 4, 5, false),
		}, true},
		{"a try with an unknown outcome took over", []hevent{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, false),
		}, true},
		{"a try with an unknown outcome did nothing", []hevent{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, true),
		}, true},
		{"a try that took the lock and gave it back", []hevent{
			acq("a", 0, 1, 10), try("m", "1", "k", 2), tried("m", "1", 3, taken), rel("a", 4, 5, false),
		}, true},
		{"an earlier run of tries of an acquisition that succeeded later", []hevent{
			acq("x", 0, 1, 10),
			try("t", "1", "k", 2), tried("t", "1", 3, unknown),
			rel("x", 3, 4, false),
			try("t", "2", "k", 5), tried("t", "2", 6, refused),
			try("t", "3", "k", 7), tried("t", "3", 8, taken),
			acq("t", 2, 9, 11),
		}, true},
		{"a release refused after the lease's expiry", []hevent{
			{Proc: "a", Op: "acquire", Kind: "lease", Key: "k", Token: "a", Call: 0, Return: 1, OK: true, Fence: 10, Until: 3}, rel("a", 4, 5, false),
		}, true},
		{"force-released, then the holder's release is refused", []hevent{
			acq("a", 0, 1, 10), {Proc: "op", Op: "forcerelease", Key: "k", Call: 2, Return: 3, OK: true, Fence: 10}, rel("a", 4, 5, false), acq("b", 6, 7, 11),
		}, true},
		{"fences rise across a Python acquisition", []hevent{
			acq("a", 0, 1, 10), rel("a", 2, 3, true), py("p", 4, 5), rel("p", 6, 7, true), acq("b", 8, 9, 11),
		}, true},
		{"fence fell across a Python acquisition", []hevent{
			acq("a", 0, 1, 10), rel("a", 2, 3, true), py("p", 4, 5), rel("p", 6, 7, true), acq("b", 8, 9, 9),
		}, false},
		{"fence did not rise", []hevent{acq("a", 0, 1, 10), acq("b", 2, 3, 10)}, false},
		{"fence fell", []hevent{acq("a", 0, 1, 10), rel("a", 2, 3, true), acq("b", 4, 5, 9)}, false},
		{"release by a non-holder succeeded", []hevent{acq("a", 0, 1, 10), rel("b", 2, 3, true)}, false},
		{"holder's release refused with nobody else around", []hevent{acq("a", 0, 1, 10), rel("a", 2, 3, false)}, false},
		{"a refused try is no excuse", []hevent{
			acq("a", 0, 1, 10), try("r", "1", "k", 2), tried("r", "1", 3, refused), rel("a", 4, 5, false),
		}, false},
		{"a try that ended before the acquisition is no excuse", []hevent{
			try("m", "1", "k", 0), tried("m", "1", 1, unknown), acq("a", 2, 3, 10), rel("a", 4, 5, false),
		}, false},
		{"a try cut short by a kill long before is no excuse", []hevent{
			try("k", "1", "k", 0), {Proc: "k", Op: "killed", Return: 1},
			acq("a", margin+2, margin+3, 10), rel("a", margin+4, margin+5, false),
		}, false},
		{"a try on another key is no excuse", []hevent{
			acq("a", 0, 1, 10), try("m", "1", "other", 2), tried("m", "1", 3, unknown), rel("a", 4, 5, false),
		}, false},
		{"an acquisition starts at its last run of tries, not while it waited", []hevent{
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

// TestMultiModel: the model of the semaphore's and the readers–writer
// lock's keys accepts shared holders at once with rising fences, and a
// takeover of holders an acquisition cannot share the key with (their
// refused releases then fit), and rejects a falling fence, a release by a
// non-holder, or a refused release of a holder nobody took over.
func TestMultiModel(t *testing.T) {
	acq := func(proc, kind string, call, ret, fence int64) porcupine.Operation {
		return porcupine.Operation{ClientId: len(proc), Input: lockInput{op: "acquire", key: "k", token: proc, kind: kind}, Call: call, Output: lockOutput{ok: true, fence: fence}, Return: ret}
	}
	rel := func(proc string, call, ret int64, ok bool) porcupine.Operation {
		return porcupine.Operation{ClientId: len(proc), Input: lockInput{op: "release", key: "k", token: proc}, Call: call, Output: lockOutput{ok: ok}, Return: ret}
	}
	for _, tt := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"two entries, rising fences", []porcupine.Operation{acq("a", "entry", 0, 1, 10), acq("bb", "entry", 2, 3, 11), rel("a", 4, 5, true), rel("bb", 6, 7, true)}, true},
		{"two readers", []porcupine.Operation{acq("a", "reader", 0, 1, 10), acq("bb", "reader", 2, 3, 11), rel("bb", 4, 5, true), rel("a", 6, 7, true)}, true},
		{"a writer took over from readers", []porcupine.Operation{acq("a", "reader", 0, 1, 10), acq("bb", "reader", 2, 3, 11), acq("ccc", "writer", 4, 5, 12), rel("a", 6, 7, false), rel("bb", 8, 9, false), rel("ccc", 10, 11, true)}, true},
		{"an owner-named lock was taken over by a writer", []porcupine.Operation{acq("a", "seed", 0, 1, 0), acq("bb", "writer", 2, 3, 12), rel("a", 4, 5, false)}, true},
		{"a reader took over from a writer", []porcupine.Operation{acq("a", "writer", 0, 1, 10), acq("bb", "reader", 2, 3, 11), rel("a", 4, 5, false), rel("bb", 6, 7, true)}, true},
		{"a reader does not take over from a reader", []porcupine.Operation{acq("a", "reader", 0, 1, 10), acq("bb", "reader", 2, 3, 11), rel("a", 4, 5, false)}, false},
		{"an entry does not take over from an entry", []porcupine.Operation{acq("a", "entry", 0, 1, 10), acq("bb", "entry", 2, 3, 11), rel("a", 4, 5, false)}, false},
		{"fence fell", []porcupine.Operation{acq("a", "entry", 0, 1, 10), acq("bb", "entry", 2, 3, 9)}, false},
		{"fence fell across a takeover", []porcupine.Operation{acq("a", "reader", 0, 1, 10), acq("bb", "writer", 2, 3, 9)}, false},
		{"release by a non-holder", []porcupine.Operation{acq("a", "entry", 0, 1, 10), rel("bb", 2, 3, true)}, false},
		{"release by a holder taken over", []porcupine.Operation{acq("a", "reader", 0, 1, 10), acq("bb", "writer", 2, 3, 11), rel("a", 4, 5, true)}, false},
		{"holder's release refused", []porcupine.Operation{acq("a", "entry", 0, 1, 10), rel("a", 2, 3, false)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(multiModel, tt.ops); got != tt.ok {
				t.Fatalf("linearizable = %v; want %v", got, tt.ok)
			}
		})
	}
	// The model does not see expiry, so a refused release is excused when
	// it may have taken effect after the lease's last promised instant
	// (historyOps): then the lease may have expired and been taken over,
	// or purged, before the release landed.
	lease := func(proc string, call, ret, fence, until int64) hevent {
		return hevent{Proc: proc, Op: "acquire", Kind: "lease", Key: "k", Token: proc, Call: call, Return: ret, OK: true, Fence: fence, Until: until}
	}
	release := func(proc string, call, ret int64) hevent {
		return hevent{Proc: proc, Op: "release", Key: "k", Token: proc, Call: call, Return: ret}
	}
	for _, tt := range []struct {
		name    string
		history []hevent
		ok      bool
	}{
		{"a release delayed past the lease's expiry, refused after a takeover", []hevent{
			lease("a", 0, 1, 10, 100), release("a", 50, 150), lease("b", 120, 130, 11, 300)}, true},
		{"a release refused before the lease's expiry", []hevent{
			lease("a", 0, 1, 10, 100), release("a", 50, 60), lease("b", 120, 130, 11, 300)}, false},
		{"a release refused after an attempt whose reply was lost", []hevent{
			lease("a", 0, 1, 10, 1000), lease("b", 52, 55, 11, 300),
			{Proc: "a", Op: "release", Key: "k", Token: "a", Call: 50, Return: 60, Maybe: true}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(multiModel, historyOps(tt.history)); got != tt.ok {
				t.Fatalf("linearizable = %v; want %v", got, tt.ok)
			}
		})
	}
}

// TestWritesCheck: the fenced-write check accepts a semaphore entry's
// write after higher-fenced entries came and went, and a reader's after a
// reader with a higher fence, and rejects a write superseded by a later
// acquisition (for a reader, a writer's).
func TestWritesCheck(t *testing.T) {
	acq := func(proc, kind string, ret, fence int64) hevent {
		return hevent{Proc: proc, Op: "acquire", Kind: kind, Key: "k", Token: proc, Call: ret - 1, Return: ret, OK: true, Fence: fence}
	}
	rel := func(proc string, call int64) hevent {
		return hevent{Proc: proc, Op: "release", Key: "k", Token: proc, Call: call, Return: call + 1, OK: true}
	}
	wr := func(proc, mode string, fence, sent int64) write {
		return write{key: "k", token: proc, mode: mode, fence: fence, sent: sent}
	}
	for _, tt := range []struct {
		name    string
		history []hevent
		w       write
		ok      bool
	}{
		{"exclusive, nobody after", []hevent{acq("a", "lease", 1, 10)}, wr("a", "exclusive", 10, 5), true},
		{"exclusive, superseded", []hevent{acq("a", "lease", 1, 10), acq("b", "lease", 3, 11)}, wr("a", "exclusive", 10, 5), false},
		{"exclusive, the later one returned after the write", []hevent{acq("a", "lease", 1, 10), acq("b", "lease", 6, 11)}, wr("a", "exclusive", 10, 5), true},
		{"exclusive, written after its own release began", []hevent{acq("a", "lease", 1, 10), rel("a", 2), acq("b", "lease", 3, 11)}, wr("a", "exclusive", 10, 5), true},
		{"entry, higher-fenced entries came and went", []hevent{acq("a", "entry", 1, 10), acq("b", "entry", 2, 11), rel("b", 3), acq("c", "entry", 4, 12), rel("c", 5), acq("d", "entry", 6, 13)}, wr("a", "entry", 10, 7), true},
		{"reader after a reader", []hevent{acq("a", "reader", 1, 10), acq("b", "reader", 2, 11)}, wr("a", "reader", 10, 5), true},
		{"reader after a writer", []hevent{acq("a", "reader", 1, 10), acq("b", "writer", 2, 11)}, wr("a", "reader", 10, 5), false},
		{"writer after a reader", []hevent{acq("a", "writer", 1, 10), acq("b", "reader", 2, 11)}, wr("a", "exclusive", 10, 5), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			problems := checkWrites(tt.history, []write{tt.w})
			if ok := len(problems) == 0; ok != tt.ok {
				t.Fatalf("accepted = %v; want %v (%v)", ok, tt.ok, problems)
			}
		})
	}
}
