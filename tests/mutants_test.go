package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A mutant is a deliberately broken variant of the library: one plausible
// one-line bug, most of them the bug a safety fix removed. The tests named
// in catchers must fail when it is planted. TestMutantsAreCaught plants
// each in turn (with go test -overlay, so the sources are never touched)
// and runs its catchers.
type mutant struct {
	name     string
	file     string // in the library's package (the parent directory)
	from, to string // from must occur exactly once in file
	catchers string // -run pattern of the tests that must fail: in this package, or, after "lib:", in the library's
	env      []string
}

var mutants = []mutant{
	// The five that passed the whole suite once.
	{"acquire judges expiry against the estimate, not its earliest", "store.go",
		`Value: now.earliest()}}}},`, `Value: now.at}}}},`, "^TestClockEdgesExclusion$", nil},
	{"local deadline without the estimate's error", "acquire.go",
		`margin := now.err + time.Duration(float64(expire)*maxDrift)`, `margin := time.Duration(float64(expire) * maxDrift)`, "^TestClockEdgesExclusion$", nil},
	{"renewal without 'surely not expired'", "store.go",
		`bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$gt", Value: now.latest()}}}},
	}}}`, `bson.D{{Key: fieldExpire, Value: bson.D{{Key: "$exists", Value: true}}}},
	}}}`, "^TestTouchAfterExpiry$", nil},
	{"Purge ignores idleFor", "admin.go",
		`cutoff := now.earliest().Add(-idleFor)`, `cutoff := now.earliest()`, "^TestPurgeRespectsIdleFor$", nil},
	{"ForceRelease keeps the holder's token", "store.go",
		`releasedShape(bson.E{Key: fieldToken, Value: nil})`, `releasedShape()`, "^TestForceReleaseRetiresToken$", nil},
	{"acquisitions judge expiry on the local clock, as the Python package does", "acquire.go",
		`		fence := c.fenceCandidate(now)
		before, err := c.send(`, `		now = serverTime{at: c.cfg.now(), local: now.local}
		fence := c.fenceCandidate(now)
		before, err := c.send(`, "^TestStress$", []string{"MONGOLOCK_STRESS_SELFTEST=1"}},
	{"Close does not release", "client.go",
		`	if err := c.releaseAll(ctx); err != nil {`, `	if err := error(nil); err != nil {`, "^TestCloseReleasesLeases$", nil},

	// 1. Renewals applied out of order.
	{"keep-alive renewals may shorten the expiry", "store.go",
		`update := bson.D{{Key: "$max", Value: bson.D{{Key: fieldExpire, Value: expire}}}}`,
		`update := bson.D{{Key: "$set", Value: bson.D{{Key: fieldExpire, Value: expire}}}}`, "^TestRenewRacingKeepAlive$", nil},
	// 2. Releases without a server time; documents without any stamp.
	{"a release stores no time", "store.go",
		`		{Key: "$currentDate", Value: bson.D{{Key: fieldReleased, Value: true}}},
	}
}`, `	}
}`, "^TestPurgeRespectsIdleFor$", nil},
	{"Purge deletes Python documents the moment it stamps them", "store.go",
		`before(fieldAcquired), before(fieldReleased), before(fieldSeen),`,
		`before(fieldAcquired), before(fieldReleased),`, "^TestPurgePythonReleased$", nil},
	{"Purge never stamps Python documents", "store.go",
		`func (s *store) markSeen(ctx context.Context) error {`,
		`func (s *store) markSeen(ctx context.Context) error { return nil; _ = 0`, "^TestPurgePythonReleased$", nil},
	// 3. Purge's margin.
	{"Purge's margin one clock error", "admin.go",
		`const purgeMargin = 3`, `const purgeMargin = 1`, "^TestFencesAcrossPythonPurgeForceRelease$", nil},
	{"no fresh fence for a slow insert", "acquire.go",
		`		fresh = slow`, `		fresh = slow && false`, "^TestFencesAcrossPythonPurgeForceRelease$", nil},
	// 4. Milliseconds.
	{"stored expiries truncated to the millisecond", "store.go",
		`		return r.Add(time.Millisecond)`, `		return r`, "^TestExpiresAtBeforeStoredExpiry$", nil},
	// 5. Python acquisitions.
	{"no wait after a Python acquisition", "acquire.go",
		`	case !before.hasFence:
		wait = true`, `	case !before.hasFence:
		wait = false`, "^TestFencesAcrossPythonPurgeForceRelease$", nil},
	{"no wait after a lost reply", "acquire.go",
		`floor, wait = before.Fence+1, true`, `floor, wait = before.Fence+1, false`, "^TestFencesAcrossPythonPurgeForceRelease$", nil},
	// 6. Overflow.
	{"no bound on a stored fence", "store.go",
		`{Key: "$type", Value: "long"}, {Key: "$lt", Value: maxFence}`, `{Key: "$type", Value: "long"}`, "^TestFenceOverflow$", nil},
	// 7. Unknown outcomes.
	{"a write concern error counts as a failure", "store.go",
		`if we := (mongo.WriteException{}); errors.As(err, &we) && we.WriteConcernError != nil {`,
		`if we := (mongo.WriteException{}); errors.As(err, &we) && we.WriteConcernError != nil && false {`, "^TestUnknownOutcomes$", nil},
	{"a step-down counts as a failure", "store.go",
		`	10107, // NotWritablePrimary`, ``, "^TestUnknownOutcomes$", nil},
	// 8. Close.
	{"an acquisition landing after Close is kept", "client.go",
		`	if !c.closed.Load() {
		keep()`, `	if true {
		keep()`, "^TestCloseRacingAcquisitions$", nil},
	{"Close does not wake waiting acquisitions", "acquire.go",
		`		case <-c.closing:`, `		case <-(chan struct{})(nil):`, "^TestCloseRacingAcquisitions$", nil},
	{"a lease lost after a renewal was sent does not give the lock back", "lease.go",
		`	giveBack := passed && l.unsure && l.state == leaseHeld`, `	giveBack := false`, "^(TestLostAfterAppliedRenewal|TestRenewReplyAfterDeadline)$", nil},
	{"Renew reports success for a lease lost before its reply came", "lease.go",
		`	if !held {
		// Applied`, `	if !held && false {
		// Applied`, "^TestRenewReplyAfterDeadline$", nil},
	// 9, 10. The clock.
	{"waiting for another caller's clock sample ignores ctx", "clock.go",
		`			case <-ctx.Done():
				return serverTime{}, fmt.Errorf("mongolock: waiting for the server clock: %w", ctx.Err())`,
		`			case <-(chan struct{})(nil):
				return serverTime{}, fmt.Errorf("mongolock: waiting for the server clock: %w", ctx.Err())`, "^TestFirstClockSampleBoundedByEachContext$", nil},
	{"an unusable estimate is kept until the refresh", "clock.go",
		`if usable && (c.sampling != nil || x.Sub(c.lastSample) < c.refresh) {`, `if c.has && (c.sampling != nil || x.Sub(c.lastSample) < c.refresh) && (usable || true) {`, "^TestClockResampledWhenUnusable$", nil},
	// 11. MinHold.
	{"a resent MinHold release looks for the retired token", "store.go",
		`Value: bson.A{token, token + heldSuffix}`, `Value: bson.A{token}`, "^TestMinHoldReleaseLostReply$", nil},
	// 12. Release and keep-alive.
	{"a lease being released can be reported lost", "lease.go",
		`	case l.state == leaseReleasing:
		if l.pendingErr == nil {`, `	case false:
		if l.pendingErr == nil {`, "^TestReleaseNeverReportsLost$", nil},
	// 13. Past the deadline.
	{"keep-alive renews a lease past its deadline", "keepalive.go",
		`		if l.loseIfPast() {
			continue
		}`, ``, "lib:^TestKeepAliveNeverRenewsPastDeadline$", nil},
	// 14. Suspend.
	{"no suspend watch", "keepalive.go",
		`	if gap < suspendGap {`, `	if gap < suspendGap || true {`, "^TestSuspendWatchClosesLost$", nil},
	{"Err trusts the timer", "lease.go",
		`func (l *Lease) Err() error {
	l.loseIfPast()`, `func (l *Lease) Err() error {`, "^TestSuspendedPastExpiry$", nil},
	// 15. Wrong shapes.
	{"Purge without the shape guard", "store.go",
		`	}, shapeGuard...)
	res, err := s.coll.DeleteMany(`, `	})
	res, err := s.coll.DeleteMany(`, "^TestWrongShapeDocumentsNeverChanged$", nil},
	{"the shape guard checks expire and fence only", "store.go",
		`	nullOr(fieldOwner, bson.D{{Key: "$type", Value: "string"}}),`, ``, "^TestWrongShapeDocumentsNeverChanged$", nil},

	// 16. The recipes (semaphores, shared locks, fair queueing).
	{"a semaphore admits n+1 holders", "store.go",
		`nullOr(fieldCount, bson.D{{Key: "$lt", Value: capacity}}),`, `nullOr(fieldCount, bson.D{{Key: "$lte", Value: capacity}}),`, "^TestSemaphore$", nil},
	{"a resent entry acquisition counts twice", "store.go",
		`		exists(holderPath(token), false),
		nullOr(`, `		nullOr(`, "^TestRecipesLostReplies$", nil},
	{"the last holder's release leaves the lock locked", "store.go",
		`		last := releasedShape()`, `		last := bson.D{{Key: "$set", Value: bson.D{}}}`, "^TestSemaphore$", nil},
	{"readers do not queue behind a waiting writer", "store.go",
		`		conds = append(conds, noLiveWriter(now))`, ``, "^TestSharedLock$", nil},
	{"an entry's renewal without 'surely not expired'", "store.go",
		`bson.D{{Key: holderField(token, entryExpire), Value: bson.D{{Key: "$gt", Value: now.latest()}}}},`,
		`bson.D{{Key: holderField(token, entryExpire), Value: bson.D{{Key: "$exists", Value: true}}}},`, "lib:^TestEntryRenewAfterExpiryQuery$", nil},
	{"ForceRelease leaves a semaphore's holders", "store.go",
		`bson.D{{Key: fieldHolders, Value: ""}, {Key: fieldCount, Value: ""}, {Key: fieldWriter, Value: ""}}`, `bson.D{{Key: fieldWriter, Value: ""}}`, "^TestRecipesKeepAlive$", nil},
	{"an entry's operations ignore an exclusive takeover", "store.go",
		`Value: bson.D{{Key: "$in", Value: bson.A{markSemaphore, markShared}}}}}`, `Value: bson.D{{Key: "$exists", Value: true}}}}`, "^TestEntryAfterExclusiveTakeover$", nil},
	{"holders that disagree on the limit wait instead", "recipes.go",
		`		if held != asked && !(asked == 1 && held == 0) {`, `		if false {`, "^TestLimitMismatch$", nil},
	{"a fair acquisition ignores the queue", "store.go",
		`			bson.D{{Key: fieldOrder + ".0", Value: token}},`, `			bson.D{{Key: fieldOrder + ".0", Value: bson.D{{Key: "$exists", Value: true}}}},`, "^TestFairOrder$", nil},
	{"a queued fair waiter takes the lock wherever it is in the queue", "store.go",
		`			bson.D{{Key: fieldOrder + ".0", Value: token}},`, `			bson.D{{Key: fieldOrder, Value: token}},`, "^TestStress$", nil},
	{"a dead fair waiter blocks the queue", "recipes.go",
		`			if q := doc.queue[t]; q == nil || q.Expire.Before(now.earliest()) {`, `			if q := doc.queue[t]; q == nil {`, "^TestFairOrder$", nil},
	{"a fair acquisition that does not wait leaves dead waiters queued", "recipes.go",
		`	if cfg.fair && len(doc.order) > 0 {`, `	if cfg.fair && waiting && len(doc.order) > 0 {`, "^TestFairTryAcquireSkipsDeadWaiters$", nil},
}

// TestMutantsAreCaught plants every mutant and requires its catchers to
// fail (MONGOLOCK_MUTANT=name runs one). It needs the go command and takes
// a few minutes, so -short skips it.
func TestMutantsAreCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the package once per mutant")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		t.Skipf("no go command next to this test's toolchain: %v", err)
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Dir(dir) // the library's package
	only := os.Getenv("MONGOLOCK_MUTANT")
	for _, m := range mutants {
		if only != "" && m.name != only {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			t.Parallel() // at most -parallel (GOMAXPROCS) at once
			src, err := os.ReadFile(filepath.Join(lib, m.file))
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(src, []byte(m.from)); n != 1 {
				t.Fatalf("%s: the line to break occurs %d times (want once); update the mutant to match the code", m.file, n)
			}
			tmp := t.TempDir()
			broken := filepath.Join(tmp, m.file)
			if err := os.WriteFile(broken, bytes.Replace(src, []byte(m.from), []byte(m.to), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(lib, m.file): broken}})
			ovFile := filepath.Join(tmp, "overlay.json")
			if err := os.WriteFile(ovFile, overlay, 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			catchers, where := m.catchers, dir
			if c, ok := strings.CutPrefix(catchers, "lib:"); ok {
				catchers, where = c, lib
			}
			args := []string{"test", "-overlay", ovFile, "-count=1", "-failfast", "-run", catchers, "-timeout", "5m"}
			if raceEnabled {
				args = append(args, "-race")
			}
			cmd := exec.Command(gobin, append(args, ".")...)
			cmd.Dir = where
			cmd.Env = append(append(os.Environ(), "GOFLAGS="), m.env...)
			out, err := cmd.CombinedOutput()
			switch {
			case err == nil:
				t.Errorf("the mutant %q passed %s: the suite does not catch it\n%s", m.name, m.catchers, tail(out))
			case !strings.Contains(string(out), "--- FAIL"):
				t.Errorf("the mutant %q did not build or run (it must fail a test, not the build):\n%s", m.name, tail(out))
			default:
				t.Logf("caught in %v by %s", time.Since(start).Round(time.Second), firstFail(out))
			}
		})
	}
}

func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func firstFail(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "--- FAIL") {
			return strings.TrimSpace(l)
		}
	}
	return "?"
}
