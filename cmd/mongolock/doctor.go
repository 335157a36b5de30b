package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/internal/atomicity"
)

// The atomicity probe (TEST-SERVER.md): probeGoroutines goroutines each
// try probeAttempts times per round to take a lease on one document with a
// conditional findOneAndUpdate, hold it probeHold, and release it. Rounds
// repeat until a violation shows or the probe's time is up.
const (
	probeGoroutines = 16
	probeAttempts   = 40
	probeHold       = time.Millisecond
	probeRoundLimit = 30 * time.Second
)

// doctor's verdict levels, worst last.
const (
	levelOK = iota
	levelWarn
	levelFail
)

// doctorJSON is the output of "doctor --json". Its shape is stable:
// fields may be added, none removed.
type doctorJSON struct {
	Server     string        `json:"server"`     // the connection string, password hidden
	Database   string        `json:"database"`   // the lock collection's database
	Collection string        `json:"collection"` // the lock collection
	Checks     []doctorCheck `json:"checks"`     // in the order they ran
	Verdict    string        `json:"verdict"`    // "SAFE" or "UNSAFE"
	Problems   []string      `json:"problems"`   // topics of the failed checks; never null
	Warnings   []string      `json:"warnings"`   // topics of the checks with warnings; never null
}

// doctorCheck is one finding of doctor.
type doctorCheck struct {
	Topic   string `json:"topic"`   // "server", "topology", "write concern", ...
	Level   string `json:"level"`   // "ok", "warn", "fail", or "info" (does not count)
	Message string `json:"message"` // what was found, on one line
}

// doctorReport collects doctor's findings, printing them as they come
// unless the report is to be JSON.
type doctorReport struct {
	a        *app
	asJSON   bool
	worst    int
	checks   []doctorCheck
	problems []string // what made the verdict UNSAFE
	warnings []string
}

func (r *doctorReport) line(level int, topic, format string, args ...any) {
	tag := map[int]string{levelOK: "ok  ", levelWarn: "WARN", levelFail: "FAIL"}[level]
	msg := fmt.Sprintf(format, args...)
	r.add(strings.ToLower(strings.TrimSpace(tag)), topic, msg)
	if !r.asJSON {
		fmt.Fprintf(r.a.io.out, "  %s  %-14s %s\n", tag, topic, strings.ReplaceAll(msg, "\n", "\n"+strings.Repeat(" ", 23)))
	}
	r.worst = max(r.worst, level)
	switch level {
	case levelWarn:
		r.warnings = append(r.warnings, topic)
	case levelFail:
		r.problems = append(r.problems, topic)
	}
}

// info reports a finding that does not count towards the verdict; an
// empty topic continues the previous one.
func (r *doctorReport) info(topic, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t := topic
	if t == "" && len(r.checks) > 0 {
		t = r.checks[len(r.checks)-1].Topic
	}
	r.add("info", t, msg)
	if !r.asJSON {
		fmt.Fprintf(r.a.io.out, "        %-14s %s\n", topic, strings.ReplaceAll(msg, "\n", "\n"+strings.Repeat(" ", 23)))
	}
}

func (r *doctorReport) add(level, topic, msg string) {
	r.checks = append(r.checks, doctorCheck{Topic: topic, Level: level, Message: strings.Join(strings.Fields(msg), " ")})
}

func (a *app) doctorCommand() *cobra.Command {
	var (
		probeTime time.Duration
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "doctor --uri URI",
		Short: "Check whether a deployment is safe for mongolock",
		Long: `Doctor checks a MongoDB deployment for mongolock and ends with a one-line
verdict:

  server        the server's version; whether it is FerretDB (buildInfo has
                ferretdbVersion)
  topology      standalone, replica set or sharded cluster (from hello)
  concerns      the write and read concern mongolock uses for its lock
                operations (majority), and whether the server accepts them
  clock         the server's clock offset from this machine and the round
                trip (mongolock judges expiry on the server's clock, from
                hello's localTime)
  atomicity     16 goroutines race to take a lease on one document with a
                conditional findOneAndUpdate, on a scratch collection that is
                dropped afterwards; more than one holder at once, or lost
                $inc updates, means the server's findAndModify is not atomic
                and no MongoDB lock is safe on it (raw FerretDB 1.x is not;
                behind "mongolock devserver"'s serializing proxy it is)
  locks         whether the lock collection's documents are readable

--json prints the same findings at the end, for scripts:

  {"server": "mongodb://db1,db2,db3/?replicaSet=rs0", "database": "mongolock",
   "collection": "lock",
   "checks": [{"topic": "server", "level": "ok", "message": "MongoDB 7.0.14 ..."}, ...],
   "verdict": "SAFE", "problems": [], "warnings": []}

"level" is "ok", "warn", "fail", or "info" (a note that does not count);
"problems" and "warnings" list the topics of the failed checks and of those
with warnings. Fields may be added, never removed. When a check cannot run,
nothing is printed on standard output.

Exit codes: 0 when the verdict is SAFE (warnings included); 1 when it is
UNSAFE or a check could not run; 2 for a usage error; 130 if interrupted.`,
		Example: `  mongolock doctor --uri mongodb://localhost:27017
  mongolock doctor --uri 'mongodb://app:secret@db1,db2,db3/?replicaSet=rs0'
  MONGOLOCK_URI=mongodb://127.0.0.1:27017/?directConnection=true mongolock doctor
  mongolock doctor --json | jq -r '.checks[] | select(.level == "fail") | .message'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if probeTime <= 0 {
				return usageError("--probe-time must be positive, got %v", probeTime)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			c, uri, err := a.connect(ctx, cmd, 0)
			if err != nil {
				return err
			}
			defer c.close()
			return a.doctor(ctx, c.Client, uri, probeTime, asJSON)
		},
	}
	cmd.Flags().DurationVar(&probeTime, "probe-time", 3*time.Second, "how long the atomicity probe runs at most (it stops at the first violation)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON (shape above) at the end, instead of as they come")
	return cmd
}

func (a *app) doctor(ctx context.Context, c *mongolock.Client, uri string, probeTime time.Duration, asJSON bool) error {
	mc := c.Collection().Database().Client()
	r := &doctorReport{a: a, asJSON: asJSON}
	if !asJSON {
		fmt.Fprintf(a.io.out, "Checking %s for mongolock (lock collection %s.%s)\n", mongolock.RedactURI(uri), a.database, a.collection)
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// Server and topology.
	clock, err := sampleClock(cctx, mc, 5)
	if err != nil {
		return failure(fmt.Errorf("hello: %w", err))
	}
	var build bson.Raw
	build, err = mc.Database("admin").RunCommand(cctx, bson.D{{Key: "buildInfo", Value: 1}}).Raw()
	if err != nil {
		return failure(fmt.Errorf("buildInfo: %w", err))
	}
	version, _ := build.Lookup("version").StringValueOK()
	ferret, isFerret := build.Lookup("ferretdbVersion").StringValueOK()
	wire, _ := clock.hello.Lookup("maxWireVersion").AsInt64OK()
	if isFerret {
		if ferret == "" || ferret == "unknown" {
			ferret = "(version unknown)"
		}
		r.line(levelOK, "server", "FerretDB %s (reports MongoDB %s, wire version %d)", ferret, version, wire)
	} else {
		r.line(levelOK, "server", "MongoDB %s (wire version %d)", version, wire)
	}
	a.doctorTopology(cctx, r, mc, clock.hello)
	if isFerret {
		r.info("server", "FerretDB 1.x executes findAndModify as a read and then a write, which is only\n"+
			"safe behind a proxy that serializes commands; the atomicity probe decides")
	}

	// Concerns, probed on the scratch collection.
	scratchName := "mongolock_doctor_" + randomHex(6)
	scratchDB := mc.Database(a.database)
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := scratchDB.Collection(scratchName).Drop(dctx); err != nil {
			fmt.Fprintf(a.io.err, "mongolock: warning: dropping the scratch collection %s.%s: %s\n", a.database, scratchName, message(err))
		}
	}()
	a.doctorConcerns(cctx, r, uri, scratchDB.Collection(scratchName,
		options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadConcern(readconcern.Majority())))

	// Clock.
	offset := clock.offset()
	msg := fmt.Sprintf("server clock %s this machine's (±%s), round trip %s;\n"+
		"mongolock judges expiry on the server's clock, so the offset is harmless",
		describeOffset(offset), fmtDuration(clock.uncertainty()), fmtDuration(clock.rtt))
	if clock.uncertainty() > mongolock.DefaultMaxClockError/2 {
		r.line(levelWarn, "clock", "%s; but the round trip is so long that the clock estimate's error\n"+
			"nears the %s mongolock accepts (WithMaxClockError)", msg, mongolock.DefaultMaxClockError)
	} else {
		r.line(levelOK, "clock", "%s", msg)
	}

	// Atomicity.
	a.doctorAtomicity(ctx, r, scratchDB.Collection(scratchName+"_probe"), probeTime)
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		_ = scratchDB.Collection(scratchName + "_probe").Drop(dctx)
	}()
	if ctx.Err() != nil {
		return exitWith(130, errors.New("doctor interrupted"))
	}

	// The lock collection.
	locks, err := c.List(cctx, "")
	switch {
	case errors.Is(err, mongolock.ErrInvalidDocument):
		r.line(levelWarn, "locks", "%s (such a lock is never changed by mongolock; fix or delete it)", message(err))
	case err != nil:
		r.line(levelWarn, "locks", "could not list the locks: %s", message(err))
	default:
		held := 0
		for _, l := range locks {
			if lockState(l, clock.serverNow()) == stateHeld {
				held++
			}
		}
		r.line(levelOK, "locks", "%d locks in %s.%s, %d held", len(locks), a.database, a.collection, held)
	}

	if asJSON {
		out := doctorJSON{
			Server: mongolock.RedactURI(uri), Database: a.database, Collection: a.collection,
			Checks: r.checks, Verdict: "SAFE", Problems: append([]string{}, r.problems...), Warnings: append([]string{}, r.warnings...),
		}
		if r.worst == levelFail {
			out.Verdict = "UNSAFE"
		}
		enc := json.NewEncoder(a.io.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return failure(err)
		}
		if r.worst == levelFail {
			return exitWith(exitFailure, nil)
		}
		return nil
	}
	switch {
	case r.worst == levelFail:
		fmt.Fprintf(a.io.out, "verdict: UNSAFE for mongolock (%s): locks on this deployment can be held twice or fail\n", strings.Join(r.problems, ", "))
		return exitWith(exitFailure, nil)
	case r.worst == levelWarn:
		fmt.Fprintf(a.io.out, "verdict: SAFE for mongolock, with warnings (%s)\n", strings.Join(r.warnings, ", "))
	default:
		fmt.Fprintln(a.io.out, "verdict: SAFE for mongolock")
	}
	return nil
}

func (a *app) doctorTopology(ctx context.Context, r *doctorReport, mc *mongo.Client, hello bson.Raw) {
	msg, _ := hello.Lookup("msg").StringValueOK()
	setName, isRS := hello.Lookup("setName").StringValueOK()
	switch {
	case msg == "isdbgrid":
		r.line(levelOK, "topology", "sharded cluster (connected to mongos)")
		ns := a.database + "." + a.collection
		var coll struct {
			Key bson.Raw `bson:"key"`
		}
		err := configCollection(ctx, mc, ns, &coll)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			r.info("", "%s is not sharded: it lives on its primary shard, which is fine", ns)
		case err != nil:
			r.info("", "could not read %s's shard key: %s", ns, message(err))
		default:
			if elems, _ := coll.Key.Elements(); len(elems) != 1 || elems[0].Key() != "_id" {
				r.line(levelWarn, "shard key", "%s is sharded on %s; shard it on _id so that every lock operation targets one shard", ns, coll.Key)
			} else {
				r.line(levelOK, "shard key", "%s is sharded on _id", ns)
			}
		}
	case isRS:
		hosts, _ := hello.Lookup("hosts").Array().Values()
		primary, _ := hello.Lookup("primary").StringValueOK()
		r.line(levelOK, "topology", "replica set %q, %d members, primary %s", setName, len(hosts), primary)
	default:
		r.line(levelWarn, "topology", "standalone server: no replica set, so no failover; fine for development,\n"+
			"use a replica set in production")
	}
}

// configCollection reads config.collections' entry for ns (sharded
// clusters only).
func configCollection(ctx context.Context, mc *mongo.Client, ns string, into any) error {
	return mc.Database("config").Collection("collections").FindOne(ctx, bson.D{{Key: "_id", Value: ns}}).Decode(into)
}

func (a *app) doctorConcerns(ctx context.Context, r *doctorReport, uri string, scratch *mongo.Collection) {
	var overrides []string
	if cs, err := connstring.Parse(uri); err == nil {
		switch {
		case cs.WString != "":
			overrides = append(overrides, "w="+cs.WString)
		case cs.WNumberSet:
			overrides = append(overrides, "w="+strconv.Itoa(cs.WNumber))
		}
		if cs.ReadConcernLevel != "" {
			overrides = append(overrides, "readConcernLevel="+cs.ReadConcernLevel)
		}
	}
	note := ""
	if len(overrides) > 0 {
		note = fmt.Sprintf(" (the URI's %s applies to other operations, not to locks)", strings.Join(overrides, ", "))
	}

	_, err := scratch.InsertOne(ctx, bson.D{{Key: "_id", Value: "write-concern-probe"}})
	if err != nil {
		r.line(levelFail, "write concern", "mongolock writes locks with write concern majority, and the server refused it: %s", message(err))
	} else {
		r.line(levelOK, "write concern", "majority, accepted%s", note)
	}
	err = scratch.FindOne(ctx, bson.D{{Key: "_id", Value: "write-concern-probe"}}).Err()
	if err != nil {
		r.line(levelFail, "read concern", "mongolock reads locks with read concern majority, and the server refused it: %s", message(err))
	} else {
		r.line(levelOK, "read concern", "majority, accepted; reads from the primary")
	}
}

// probeResult is the outcome of the atomicity probe.
type probeResult struct {
	rounds       int
	acquisitions int64 // acquisitions the clients saw
	fence        int64 // what the documents' $inc counters add up to
	maxHolders   int32 // most clients holding the lease at once
}

func (a *app) doctorAtomicity(ctx context.Context, r *doctorReport, coll *mongo.Collection, budget time.Duration) {
	var res probeResult
	deadline := time.Now().Add(budget)
	var err error
	for res.rounds == 0 || (time.Now().Before(deadline) && res.maxHolders <= 1 && res.acquisitions == res.fence) {
		res.rounds++
		var round probeResult
		round, err = atomicityRound(ctx, coll, "k"+strconv.Itoa(res.rounds), deadline)
		res.acquisitions += round.acquisitions
		res.fence += round.fence
		res.maxHolders = max(res.maxHolders, round.maxHolders)
		if err != nil {
			break
		}
	}
	switch {
	case err != nil && ctx.Err() == nil:
		r.line(levelFail, "atomicity", "the probe failed: %s", message(err))
	case res.maxHolders > 1 || res.acquisitions != res.fence:
		r.line(levelFail, "atomicity", "NOT ATOMIC: %d goroutines racing with conditional findOneAndUpdate: up to %d\n"+
			"held the lease at once, and %d acquisitions left the $inc counter at %d (%s).\n"+
			"Two workers can hold one lock. (FerretDB 1.x: put \"mongolock devserver\"'s serializing proxy in front.)",
			probeGoroutines, res.maxHolders, res.acquisitions, res.fence, plural(res.rounds, "round"))
	default:
		r.line(levelOK, "atomicity", "%d goroutines racing with conditional findOneAndUpdate: never more than one holder,\n"+
			"%d acquisitions = the $inc counter (%s)", probeGoroutines, res.acquisitions, plural(res.rounds, "round"))
	}
}

// atomicityRound runs one round of the probe on the document key of coll.
// Goroutines stop early at the first overlap, or at deadline.
func atomicityRound(ctx context.Context, coll *mongo.Collection, key string, deadline time.Time) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeRoundLimit)
	defer cancel()
	r, err := atomicity.Round(ctx, coll, key, atomicity.Config{
		Goroutines: probeGoroutines, Attempts: probeAttempts, Hold: probeHold,
		StopOnOverlap: true, Deadline: deadline,
	})
	return probeResult{acquisitions: r.Acquisitions, fence: r.Fence, maxHolders: r.MaxHolders}, err
}

// describeOffset says how far ahead or behind the server's clock is.
func describeOffset(d time.Duration) string {
	switch {
	case d > 0:
		return fmtDuration(d) + " ahead of"
	case d < 0:
		return fmtDuration(-d) + " behind"
	}
	return "level with"
}

// plural says "1 round", "2 rounds".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
