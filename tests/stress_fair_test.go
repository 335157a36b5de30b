package tests

// The fair lock's checks: the waiters that use Fair get the lock in the
// order they arrived (checkFair, and the same rule as a porcupine model,
// fairModel). TestFairCheck shows what they accept and reject.
//
// What the library promises (options.go, Fair; docs/DESIGN.md, "Fair
// queueing"), and so what is checked:
//
//   - A waiter has its place in the queue once an enqueue of its token is
//     applied ($addToSet appends to order); the harness knows it has one
//     when that enqueue returned with the token queued.
//   - It keeps its place until it takes the lock, gives up (it takes
//     itself out of the queue), or its heartbeat runs out: the heartbeat
//     its last enqueue wrote is before the server's clock, and then any
//     other waiter may remove it (a waiter whose process was killed, or
//     that was paused or starved, is skipped only then, never earlier).
//     Its place is also lost when the document is replaced (a Python
//     acquisition or release) or deleted (Purge of a lock left free for
//     idleFor with waiters queued); the waiters then queue again in the
//     order their next enqueues land. Nothing else removes a waiter:
//     ForceRelease and non-fair acquisitions leave the queue as it is.
//   - A fair acquisition takes the lock only when no waiter is queued
//     ahead of it: it is the queue's head, or nobody is queued.
//
// So: if waiter A surely had its place before waiter B first asked for
// one (A's enqueue returned before B's first enqueue was sent — or, if B
// never queued, before the run of tries in which B took the lock began),
// and A surely kept it (none of the above can have removed it) until B's
// taking try returned, B took the lock ahead of A: a violation.
//
// The history gives what "surely" needs. Every command's effect lies
// between its call and its return (one cut short by SIGKILL: up to
// killMargin after the kill), as the linearizability check assumes. An
// enqueue's outcome is applied (its reply shows the token queued), not
// applied (no document matched), or unknown (a failure, a lost reply, a
// write concern error); only an applied one gives a place for sure, an
// unknown one may have. A's place may be lost from the call of: its own try
// that took or may have taken the lock, its own dequeue (giving up), a
// Python-style try or release on the key, a Purge that deleted or may have
// deleted documents — or from the instant a heartbeat A wrote, which may
// be the stored one then, is not after it (on this machine's clock, which
// is the test server's). The server's clock is what the library's removal
// compares with (through its estimate's earliest reading), so a waiter
// whose heartbeat has not run out cannot be removed, however stale it is.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// fairPlace is a place in the fair queue that a waiter (token) had — for
// sure once its enqueue returned, or maybe (an enqueue whose outcome is
// unknown) — from its enqueue, applied somewhere in [call, ret], until it
// may have lost it (lost: from then on it may be gone; why says what may
// have ended it). A waiter that may have lost its place and queued again
// has a second place: it is then at either.
type fairPlace struct {
	token, proc string
	call, ret   int64
	lost        int64
	why         string
	maybe       bool
}

// fairTake is a try of a fair acquisition that surely took the lock,
// somewhere in [from, to]: from is the start of its run of tries (after
// its last refused one), to the try's return. arrived is when the token
// first asked for a place: its first enqueue's call, or from if it never
// queued.
type fairTake struct {
	token, proc string
	from, to    int64
	arrived     int64
}

// fairHistory is the fair key's part of a history, as checkFair and
// fairModel read it.
type fairHistory struct {
	places   []fairPlace
	takes    []fairTake
	problems []string // what makes the history unfit to check
	enqueues int      // enqueues sent, and applied
	applied  int
	gaveUp   int // waiters that took themselves out of the queue
	removed  int // waiters removed by others as dead (dequeue statements sent)
}

// readFairHistory extracts the places and takes of the fair key.
func readFairHistory(history []hevent) fairHistory {
	const (
		unknown = iota
		applied
		refused
	)
	type request struct {
		op, proc, token string
		call, ret, hb   int64
		outcome         int
		done            bool
	}
	var (
		fh       fairHistory
		reqs     = map[[2]string][]*request{} // (proc, request ID): a dequeue has one per token
		byToken  = map[string][]*request{}
		resets   []fairWindow
		killedAt = map[string]int64{}
		last     int64
	)
	for _, e := range history {
		last = max(last, e.Call, e.Return)
		id := [2]string{e.Proc, e.ID}
		switch e.Op {
		case "killed":
			killedAt[e.Proc] = e.Return
		case "try", "enqueue", "dequeue":
			if e.Key != fairKey || (e.Op == "dequeue" && e.Kind != "self") {
				if e.Op == "dequeue" && e.Key == fairKey {
					fh.removed++
				}
				continue
			}
			r := &request{op: e.Op, proc: e.Proc, token: e.Token, call: e.Call, hb: e.Heartbeat}
			switch {
			case e.Op == "try" && strings.HasPrefix(e.Token, "py:"):
				r.op = "python" // a Python-style acquisition replaces the document
			case e.Op == "try" && e.Kind != "fair":
				continue // not promised to respect the queue, nor does it change it
			}
			if e.Op == "enqueue" {
				fh.enqueues++
				if e.Heartbeat == 0 {
					fh.problems = append(fh.problems, fmt.Sprintf("%s: an enqueue of %.8s without a heartbeat (the command monitor could not read it)", e.Proc, e.Token))
				}
			}
			reqs[id] = append(reqs[id], r)
			byToken[e.Token] = append(byToken[e.Token], r)
		case "tried", "enqueued", "dequeued":
			for _, r := range reqs[id] {
				r.ret, r.done = e.Return, true
				switch {
				case e.Maybe:
				case e.OK:
					r.outcome = applied
				default:
					r.outcome = refused
				}
			}
		case "releasing":
			if e.Key == fairKey && strings.HasPrefix(e.Token, "py:") {
				r := &request{op: "python", proc: e.Proc, token: e.Token, call: e.Call}
				reqs[[2]string{e.Proc, "release " + e.Token}] = []*request{r}
			}
		case "release", "stop":
			for _, r := range reqs[[2]string{e.Proc, "release " + e.Token}] {
				r.ret, r.done = e.Return, true
			}
		case "purge":
			if e.N != 0 || e.Maybe {
				resets = append(resets, fairWindow{e.Call, e.Return, "a Purge may have deleted the document"})
			}
		}
	}
	for _, rs := range reqs {
		for _, r := range rs {
			if !r.done {
				r.ret = last + 1
				if k, ok := killedAt[r.proc]; ok {
					r.ret = max(r.call, min(r.ret, k+int64(killMargin)))
				}
			}
			if r.op == "python" && r.outcome != refused {
				resets = append(resets, fairWindow{r.call, r.ret, "a Python-style write replaced the document"})
			}
		}
	}

	tokens := make([]string, 0, len(byToken))
	for t := range byToken {
		tokens = append(tokens, t)
	}
	sort.Strings(tokens)
	for _, token := range tokens {
		rs := byToken[token]
		sort.Slice(rs, func(i, j int) bool { return rs[i].call < rs[j].call })
		var (
			enq, tries []*request
			own        []fairWindow // when it may have left the queue itself
		)
		for _, r := range rs {
			switch r.op {
			case "enqueue":
				enq = append(enq, r)
				if r.outcome == applied {
					fh.applied++
				}
			case "try":
				tries = append(tries, r)
				if r.outcome != refused {
					own = append(own, fairWindow{r.call, r.ret, "it tried to take the lock"})
				}
			case "dequeue":
				fh.gaveUp++
				own = append(own, fairWindow{r.call, r.ret, "it gave up"})
			}
		}
		// lapse[k]: the first instant from enqueue k on at which a
		// heartbeat that may be the stored one is not after it. The
		// heartbeat of enqueue j (applied or unknown) may be the stored
		// one from its call until the next applied enqueue returned.
		lapse := make([]int64, len(enq)+1)
		lapse[len(enq)] = math.MaxInt64
		next := int64(math.MaxInt64) // the next applied enqueue's return
		for k := len(enq) - 1; k >= 0; k-- {
			lapse[k] = lapse[k+1]
			if r := enq[k]; r.outcome != refused {
				if at := max(r.call, r.hb); at < next {
					lapse[k] = min(lapse[k], at)
				}
				if r.outcome == applied {
					next = r.ret
				}
			}
		}
		// lost(k): the first instant the place enqueue k gave may be gone.
		lost := func(k int) (int64, string) {
			at, why := lapse[k], "its heartbeat ran out"
			for _, ws := range [][]fairWindow{own, resets} {
				for _, w := range ws {
					if w.to >= enq[k].call && w.from < at {
						at, why = w.from, w.why
					}
				}
			}
			return at, why
		}
		var cur *fairPlace
		for k, r := range enq {
			switch {
			case r.outcome == unknown:
				fh.places = append(fh.places, fairPlace{token: token, proc: r.proc, call: r.call, ret: r.ret, lost: r.call, why: "its enqueue's outcome is unknown", maybe: true})
			case r.outcome == applied && (cur == nil || r.ret > cur.lost):
				// Its first place, or one it may have taken anew.
				at, why := lost(k)
				fh.places = append(fh.places, fairPlace{token: token, proc: r.proc, call: r.call, ret: r.ret, lost: at, why: why})
				cur = &fairPlace{lost: at}
			}
		}
		// Takes: a try surely taken, from the start of its run.
		arrived := int64(math.MaxInt64)
		for _, r := range enq {
			if r.outcome != refused {
				arrived = min(arrived, r.call)
			}
		}
		run := 0
		for i, r := range tries {
			switch r.outcome {
			case refused:
				run = i + 1
			case applied:
				from := tries[run].call
				fh.takes = append(fh.takes, fairTake{token: token, proc: r.proc, from: from, to: r.ret, arrived: min(arrived, from)})
			}
		}
	}
	if fh.enqueues > 0 && fh.applied == 0 {
		fh.problems = append(fh.problems, fmt.Sprintf("none of %d enqueues was seen applied (the command monitor could not read their replies)", fh.enqueues))
	}
	return fh
}

// fairWindow is a stretch of real time (unix ns) in which something (why)
// may have happened.
type fairWindow struct {
	from, to int64
	why      string
}

// fairStats is what checkFair saw.
type fairStats struct {
	takes, waiters int
	// pairs: a take by B while A surely had its place from before B
	// arrived: then A was served first (inOrder), or may have left the
	// queue before B took the lock (skipped, by what may have ended it).
	pairs, inOrder int
	skipped        map[string]int
	fh             *fairHistory
}

func (s fairStats) String() string {
	whys := make([]string, 0, len(s.skipped))
	for why, n := range s.skipped {
		whys = append(whys, fmt.Sprintf("%s: %d", why, n))
	}
	sort.Strings(whys)
	return fmt.Sprintf("%d fair takes, %d waiters with a place (%d enqueues, %d applied; %d gave up, %d dead-waiter removals sent); %d pairs of waiters in a known order: %d served in order, others may have left first (%s)",
		s.takes, s.waiters, s.fh.enqueues, s.fh.applied, s.fh.gaveUp, s.fh.removed, s.pairs, s.inOrder, strings.Join(whys, ", "))
}

// checkFair checks that fair acquisitions were served in arrival order
// (see the top of this file for the exact rule).
func checkFair(history []hevent) ([]string, fairStats) {
	fh := readFairHistory(history)
	st := fairStats{takes: len(fh.takes), skipped: map[string]int{}, fh: &fh}
	problems := append([]string(nil), fh.problems...)
	waiters := map[string]bool{}
	for _, a := range fh.places {
		if !a.maybe {
			waiters[a.token] = true
		}
	}
	st.waiters = len(waiters)
	for _, b := range fh.takes {
		for _, a := range fh.places {
			if a.maybe || a.token == b.token || a.ret >= b.arrived || a.lost <= b.arrived {
				continue
			}
			// A surely had its place from before B arrived, and still had
			// it when B arrived.
			st.pairs++
			switch {
			case a.lost > b.to:
				problems = append(problems, fmt.Sprintf(
					"key %q: %s's fair acquisition (token %.8s, arrived %s) took the lock at %s–%s ahead of %s's waiter (token %.8s), which was queued since %s and kept its place until %s (then %s)",
					fairKey, b.proc, b.token, at(b.arrived), at(b.from), at(b.to), a.proc, a.token, at(a.ret), atOrNever(a.lost), a.why))
			case a.why == "it tried to take the lock":
				st.inOrder++
			default:
				st.skipped[a.why]++
			}
		}
	}
	sort.Strings(problems)
	return problems, st
}

func atOrNever(ns int64) string {
	if ns == math.MaxInt64 {
		return "the end"
	}
	return at(ns)
}

// The fair queue as a porcupine model: checkFair's rule as a sequential
// specification, a cross-check of it. Operations: a place taken (arrive,
// within its enqueue's [call, ret]) and a take (within [from, to]). State:
// the places in queue order, each with the instant from which it may be
// gone, and the earliest instant the next operation can take effect (no
// operation takes effect before one ordered ahead of it, nor before a
// place it needs gone may be gone). A take by B skips every place ahead of
// B's first place (all places, if it has none), each of which must be one
// that may be gone by then, and removes them and B's places. (A waiter
// with two places, having queued again after it may have lost its first,
// is at either: the model lets it take at its first, and lets others skip
// that one.)
type fairInput struct {
	op, token string
	call, ret int64
	lost      int64 // arrive: from when the place may be gone
}

type fairState struct {
	queue string // token@lost,token@lost,... in queue order
	clock int64
}

type fairSlot struct {
	token string
	lost  int64
}

func fairSlots(s string) []fairSlot {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := make([]fairSlot, len(parts))
	for i, p := range parts {
		tok, lost, _ := strings.Cut(p, "@")
		n, _ := strconv.ParseInt(lost, 10, 64)
		out[i] = fairSlot{tok, n}
	}
	return out
}

func fairQueue(slots []fairSlot) string {
	parts := make([]string, len(slots))
	for i, s := range slots {
		parts[i] = s.token + "@" + strconv.FormatInt(s.lost, 10)
	}
	return strings.Join(parts, ",")
}

var fairModel = porcupine.Model{
	Init: func() interface{} { return fairState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in := state.(fairState), input.(fairInput)
		clock := max(s.clock, in.call)
		slots := fairSlots(s.queue)
		switch in.op {
		case "arrive":
			if clock > in.ret {
				return false, s
			}
			return true, fairState{queue: fairQueue(append(slots, fairSlot{in.token, in.lost})), clock: clock}
		default: // take
			first := len(slots)
			for i, sl := range slots {
				if sl.token == in.token {
					first = i
					break
				}
			}
			for _, sl := range slots[:first] {
				if sl.lost > in.ret {
					return false, s // a waiter ahead surely still queued
				}
				clock = max(clock, sl.lost)
			}
			if clock > in.ret {
				return false, s
			}
			var rest []fairSlot
			for _, sl := range slots[first:] {
				if sl.token != in.token {
					rest = append(rest, sl)
				}
			}
			return true, fairState{queue: fairQueue(rest), clock: clock}
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(fairInput)
		if in.op == "arrive" {
			return fmt.Sprintf("arrive(%.6s) until %s", in.token, atOrNever(in.lost))
		}
		return fmt.Sprintf("take(%.6s)", in.token)
	},
	DescribeState: func(state interface{}) string {
		s := state.(fairState)
		var q []string
		for _, sl := range fairSlots(s.queue) {
			q = append(q, fmt.Sprintf("%.6s", sl.token))
		}
		return fmt.Sprintf("queue [%s]", strings.Join(q, " "))
	},
}

// fairOps turns the fair key's places and takes into porcupine operations.
func fairOps(fh fairHistory) []porcupine.Operation {
	clients := map[string]int{}
	client := func(token string) int {
		id, ok := clients[token]
		if !ok {
			id = len(clients)
			clients[token] = id
		}
		return id
	}
	var ops []porcupine.Operation
	for _, p := range fh.places {
		ops = append(ops, porcupine.Operation{ClientId: client(p.token), Input: fairInput{op: "arrive", token: p.token, call: p.call, ret: p.ret, lost: p.lost}, Call: p.call, Return: p.ret})
	}
	for _, t := range fh.takes {
		ops = append(ops, porcupine.Operation{ClientId: client(t.token), Input: fairInput{op: "take", token: t.token, call: t.from, ret: t.to}, Call: t.from, Return: t.to})
	}
	return ops
}

// checkFairLinearizable checks the fair key's history against fairModel.
func checkFairLinearizable(t *testing.T, history []hevent) []string {
	ops := fairOps(readFairHistory(history))
	res, info := porcupine.CheckOperationsVerbose(fairModel, ops, linearizabilityBudget())
	switch res {
	case porcupine.Ok:
		t.Logf("fair queue linearizable: %d operations", len(ops))
		return nil
	case porcupine.Unknown:
		t.Logf("the fair queue's linearizability undecided within %v (%d operations)", linearizabilityBudget(), len(ops))
		return nil
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("mongolock-fair-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(fairModel, info, path); err != nil {
		path = "(visualization failed: " + err.Error() + ")"
	}
	return []string{fmt.Sprintf("the fair queue's history of %d operations is not linearizable (not served in arrival order); porcupine's visualization: %s", len(ops), path)}
}

// fairEvents builds small fair-key histories for the tests: each process
// is one waiter, whose token is its name.
type fairEvents struct{ ids int }

func (f *fairEvents) id() string { f.ids++; return strconv.Itoa(f.ids) }

const (
	fApplied = iota
	fRefused
	fUnknown
)

func (f *fairEvents) reply(op, proc, id string, ret int64, outcome int) hevent {
	return hevent{Proc: proc, Op: op, ID: id, Return: ret, OK: outcome == fApplied, Maybe: outcome == fUnknown}
}

// enqueue: proc queues (or refreshes its place) in [call, ret], writing
// heartbeat hb.
func (f *fairEvents) enqueue(proc string, call, ret, hb int64, outcome int) []hevent {
	id := f.id()
	return []hevent{{Proc: proc, Op: "enqueue", ID: id, Key: fairKey, Token: proc, Call: call, Heartbeat: hb}, f.reply("enqueued", proc, id, ret, outcome)}
}

// try: proc's fair acquisition's try in [call, ret].
func (f *fairEvents) try(proc string, call, ret int64, outcome int) []hevent {
	id := f.id()
	return []hevent{{Proc: proc, Op: "try", ID: id, Key: fairKey, Token: proc, Kind: "fair", Call: call}, f.reply("tried", proc, id, ret, outcome)}
}

// giveUp: proc takes itself out of the queue in [call, ret].
func (f *fairEvents) giveUp(proc string, call, ret int64) []hevent {
	id := f.id()
	return []hevent{{Proc: proc, Op: "dequeue", ID: id, Key: fairKey, Token: proc, Kind: "self", Call: call}, f.reply("dequeued", proc, id, ret, fApplied)}
}

// TestFairCheck: checkFair and fairModel accept a queue served in arrival
// order, and one that skips a waiter that may have left it (gave up, its
// heartbeat ran out, its process was killed and then its heartbeat ran
// out, it may have taken the lock, a Purge or a Python-style write may
// have dropped the queue); they reject a waiter served ahead of one that
// surely arrived before it and surely kept its place.
func TestFairCheck(t *testing.T) {
	f := &fairEvents{}
	h := func(parts ...[]hevent) []hevent {
		var out []hevent
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const hb = 2000 // a heartbeat that lasts beyond every case
	tests := []struct {
		name    string
		history []hevent
		ok      bool
	}{
		{"served in arrival order", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("a", 10, 11, fApplied), f.try("b", 20, 21, fApplied)), true},
		{"served out of order", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("b", 10, 11, fApplied), f.try("a", 20, 21, fApplied)), false},
		{"the later arrival's refused tries do not count, its taking one does", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("b", 5, 6, fRefused), f.try("b", 10, 11, fApplied), f.try("a", 20, 21, fApplied)), false},
		{"arrivals that overlap may be served in either order", h(
			f.enqueue("a", 0, 5, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("b", 10, 11, fApplied), f.try("a", 20, 21, fApplied)), true},
		{"a waiter that never queued takes the lock while another waits", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.try("b", 10, 11, fApplied)), false},
		{"a waiter that never queued takes the lock before another queued", h(
			f.try("b", 0, 11, fApplied), f.enqueue("a", 5, 6, hb, fApplied)), true},
		{"an enqueue that was not applied gives no place", h(
			f.enqueue("a", 0, 1, hb, fRefused), f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 10, 11, fApplied)), true},
		{"an enqueue whose outcome is unknown gives no place for sure", h(
			f.enqueue("a", 0, 1, hb, fUnknown), f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 10, 11, fApplied)), true},
		{"the first waiter gave up", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.giveUp("a", 5, 6), f.try("b", 10, 11, fApplied)), true},
		{"the first waiter gave up after the take", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("b", 10, 11, fApplied), f.giveUp("a", 12, 13)), false},
		{"another waiter's removal of a live waiter is no excuse", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "b", Op: "dequeue", ID: "x", Key: fairKey, Token: "a", Kind: "expired", Call: 5}, {Proc: "b", Op: "dequeued", ID: "x", Return: 6, OK: true}},
			f.try("b", 10, 11, fApplied)), false},
		{"the first waiter's heartbeat ran out", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 150, 151, fApplied)), true},
		{"the first waiter's heartbeat ran out during the take", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 90, 110, fApplied)), true},
		{"the first waiter refreshed its heartbeat in time", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.enqueue("a", 50, 51, 150, fApplied), f.enqueue("a", 120, 121, 220, fApplied),
			f.try("b", 200, 201, fApplied)), false},
		{"a refresh whose outcome is unknown may have left the old heartbeat", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.enqueue("a", 50, 51, 300, fUnknown), f.try("b", 200, 201, fApplied)), true},
		{"a refresh that came too late: it may have queued again, behind", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.enqueue("a", 120, 121, 400, fApplied), f.try("b", 200, 201, fApplied)), true},
		{"queued again, then surely ahead of a later arrival", h(
			f.enqueue("a", 0, 1, 100, fApplied), f.enqueue("a", 120, 121, 400, fApplied),
			f.enqueue("b", 130, 131, hb, fApplied), f.try("b", 200, 201, fApplied)), false},
		{"a killed waiter keeps its place until its heartbeat runs out", h(
			f.enqueue("a", 0, 1, 100, fApplied), []hevent{{Proc: "a", Op: "killed", Return: 5}},
			f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 50, 51, fApplied)), false},
		{"a killed waiter is skipped once its heartbeat ran out", h(
			f.enqueue("a", 0, 1, 100, fApplied), []hevent{{Proc: "a", Op: "killed", Return: 5}},
			f.enqueue("b", 2, 3, hb, fApplied), f.try("b", 150, 151, fApplied)), true},
		{"the first waiter may have taken the lock (its try's outcome is unknown)", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			f.try("a", 5, 6, fUnknown), f.try("b", 10, 11, fApplied)), true},
		{"a Purge may have dropped the queue", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "operator", Op: "purge", Call: 4, Return: 5, N: 1}}, f.try("b", 10, 11, fApplied)), true},
		{"a failed Purge may have dropped the queue", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "operator", Op: "purge", Call: 4, Return: 5, Maybe: true}}, f.try("b", 10, 11, fApplied)), true},
		{"a Purge that deleted nothing", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "operator", Op: "purge", Call: 4, Return: 5}}, f.try("b", 10, 11, fApplied)), false},
		{"a Python-style write replaced the document", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "py", Op: "try", ID: "p", Key: fairKey, Token: "py:x", Call: 4}, {Proc: "py", Op: "tried", ID: "p", Return: 5, OK: true}},
			f.try("b", 10, 11, fApplied)), true},
		{"an acquisition without Fair may take the lock ahead of the queue", h(
			f.enqueue("a", 0, 1, hb, fApplied),
			[]hevent{{Proc: "b", Op: "try", ID: "l", Key: fairKey, Token: "b", Call: 10}, {Proc: "b", Op: "tried", ID: "l", Return: 11, OK: true}}), true},
		{"a force-release leaves the queue", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied),
			[]hevent{{Proc: "operator", Op: "forcerelease", Key: fairKey, Call: 4, Return: 5, OK: true}}, f.try("b", 10, 11, fApplied)), false},
		{"three waiters, the last served second", h(
			f.enqueue("a", 0, 1, hb, fApplied), f.enqueue("b", 2, 3, hb, fApplied), f.enqueue("c", 4, 5, hb, fApplied),
			f.try("a", 10, 11, fApplied), f.try("c", 20, 21, fApplied), f.try("b", 30, 31, fApplied)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, _ := checkFair(tt.history)
			if ok := len(problems) == 0; ok != tt.ok {
				t.Errorf("checkFair = %v; want ok=%v", problems, tt.ok)
			}
			if ok := porcupine.CheckOperations(fairModel, fairOps(readFairHistory(tt.history))); ok != tt.ok {
				t.Errorf("fairModel: linearizable = %v; want %v", ok, tt.ok)
			}
		})
	}
	// What only the model sees: c's heartbeat ran out at 49; a, queued
	// behind c, took the lock by 51, so c had been removed; c took it
	// later without queueing again, while b was queued.
	t.Run("a waiter removed as dead takes the lock ahead of the queue", func(t *testing.T) {
		history := h(f.enqueue("c", 3, 5, 49, fApplied), f.enqueue("a", 6, 9, hb, fApplied), f.try("a", 26, 51, fApplied),
			f.enqueue("b", 33, 39, hb, fApplied), f.try("c", 59, 79, fApplied))
		if problems, _ := checkFair(history); len(problems) > 0 {
			t.Errorf("checkFair = %v; want no violation (no pair says it)", problems)
		}
		if porcupine.CheckOperations(fairModel, fairOps(readFairHistory(history))) {
			t.Error("fairModel: linearizable; want not")
		}
	})
}

// TestFairCheckAgreesWithModel: on random histories of a few waiters —
// served in order or not, giving up, their heartbeats running out, tries
// and enqueues of unknown outcome — fairModel rejects every history
// checkFair rejects. It rejects some more: it also reasons that a place an
// earlier take skipped is gone (a waiter whose heartbeat ran out while
// another took the lock from behind it was removed, so if it took the lock
// later without queueing again, it jumped whoever was queued then), which
// a rule about pairs cannot.
func TestFairCheckAgreesWithModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rejected, modelOnly := 0, 0
	for n := range 3000 {
		f := &fairEvents{}
		var history []hevent
		type waiter struct {
			name string
			t    int64
		}
		ws := make([]waiter, 2+rng.IntN(3))
		for i := range ws {
			ws[i] = waiter{name: string(rune('a' + i)), t: rng.Int64N(40)}
		}
		outcome := func() int {
			if rng.IntN(8) == 0 {
				return fUnknown
			}
			return fApplied
		}
		for i := range ws {
			w := &ws[i]
			for range 1 + rng.IntN(3) {
				d := 1 + rng.Int64N(15)
				history = append(history, f.enqueue(w.name, w.t, w.t+d, w.t+20+rng.Int64N(60), outcome())...)
				w.t += d + rng.Int64N(20)
			}
			switch rng.IntN(6) {
			case 0:
				history = append(history, f.giveUp(w.name, w.t, w.t+1+rng.Int64N(5))...)
			case 1:
				d := 1 + rng.Int64N(10)
				history = append(history, f.try(w.name, w.t, w.t+d, fUnknown)...)
			default:
				d := 1 + rng.Int64N(10)
				history = append(history, f.try(w.name, w.t+rng.Int64N(30), w.t+30+d, fApplied)...)
			}
		}
		problems, st := checkFair(history)
		problems = problems[:len(problems)-len(st.fh.problems)] // the violations, not what makes it unfit
		model := porcupine.CheckOperations(fairModel, fairOps(readFairHistory(history)))
		switch {
		case model && len(problems) > 0:
			t.Fatalf("history %d: checkFair says %v, but fairModel finds it linearizable\n%v", n, problems, history)
		case !model && len(problems) == 0:
			modelOnly++
		case !model:
			rejected++
		}
	}
	t.Logf("of 3000 random histories, %d rejected by both, %d by fairModel only", rejected, modelOnly)
	if rejected == 0 || modelOnly > rejected {
		t.Errorf("the random histories do not exercise the checks (%d rejected by both, %d by the model only)", rejected, modelOnly)
	}
}
