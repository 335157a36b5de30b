package mongolocktest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/mongolocktest"
)

// driverEvents records what the driver does with the server after an error.
type driverEvents struct {
	mu            sync.Mutex
	markedUnknown int // server descriptions changed from a known kind to Unknown
	poolCleared   int
}

func (e *driverEvents) options() *options.ClientOptions {
	return options.Client().
		SetServerMonitor(&event.ServerMonitor{
			ServerDescriptionChanged: func(ev *event.ServerDescriptionChangedEvent) {
				if ev.PreviousDescription.Kind != "Unknown" && ev.NewDescription.Kind == "Unknown" {
					e.mu.Lock()
					e.markedUnknown++
					e.mu.Unlock()
				}
			},
		}).
		SetPoolMonitor(&event.PoolMonitor{
			Event: func(ev *event.PoolEvent) {
				if ev.Type == event.ConnectionPoolCleared {
					e.mu.Lock()
					e.poolCleared++
					e.mu.Unlock()
				}
			},
		})
}

func (e *driverEvents) get() (markedUnknown, poolCleared int) {
	e.mu.Lock()
	defer e.mu.Unlock()

	return e.markedUnknown, e.poolCleared
}

// writeOp is one kind of write, run against the document with _id id.
type writeOp struct {
	cmd string // the command the driver sends

	// setup prepares the document, run does the write and returns its error,
	// applied tells from the document whether the write was done.
	setup   func(ctx context.Context, coll *mongo.Collection, id string) error
	run     func(ctx context.Context, coll *mongo.Collection, id string) error
	applied func(ctx context.Context, coll *mongo.Collection, id string) (bool, error)
}

func exists(ctx context.Context, coll *mongo.Collection, id string) (bool, error) {
	n, err := coll.CountDocuments(ctx, byID(id))
	return n == 1, err
}

var writeOps = []writeOp{
	{
		cmd:   "update",
		setup: insertDoc,
		run: func(ctx context.Context, coll *mongo.Collection, id string) error {
			_, err := coll.UpdateOne(ctx, byID(id), inc)
			return err
		},
		applied: incremented,
	},
	{
		cmd:   "findAndModify",
		setup: insertDoc,
		run: func(ctx context.Context, coll *mongo.Collection, id string) error {
			return coll.FindOneAndUpdate(ctx, byID(id), inc).Err()
		},
		applied: incremented,
	},
	{
		cmd:   "delete",
		setup: insertDoc,
		run: func(ctx context.Context, coll *mongo.Collection, id string) error {
			_, err := coll.DeleteOne(ctx, byID(id))
			return err
		},
		applied: func(ctx context.Context, coll *mongo.Collection, id string) (bool, error) {
			ok, err := exists(ctx, coll, id)
			return !ok, err
		},
	},
	{
		cmd:   "insert",
		setup: func(context.Context, *mongo.Collection, string) error { return nil },
		run:   insertDoc,
		applied: func(ctx context.Context, coll *mongo.Collection, id string) (bool, error) {
			return exists(ctx, coll, id)
		},
	},
}

// TestFailNext injects each ready-made failure into each kind of write,
// through the Go driver with its default options (retryable writes and
// reads on), and checks the error, whether the write was applied, what the
// driver did with the server, and that the next operation succeeds.
func TestFailNext(t *testing.T) {
	t.Parallel()

	failures := []struct {
		name string
		f    mongolocktest.Failure

		// What the driver does, as documented on the ready-made values.
		markedUnknown, poolCleared bool
	}{
		{"WriteConcernErrorApplied", mongolocktest.WriteConcernErrorApplied, false, false},
		{"WriteConcernErrorNotApplied", mongolocktest.WriteConcernErrorNotApplied, false, false},
		{"NotWritablePrimaryBefore", mongolocktest.NotWritablePrimaryBefore, true, false},
		{"NotWritablePrimaryAfter", mongolocktest.NotWritablePrimaryAfter, true, false},
		{"PrimarySteppedDownBefore", mongolocktest.PrimarySteppedDownBefore, true, false},
		{"PrimarySteppedDownAfter", mongolocktest.PrimarySteppedDownAfter, true, false},
		{"InterruptedAtShutdownBefore", mongolocktest.InterruptedAtShutdownBefore, true, true},
		{"InterruptedAtShutdownAfter", mongolocktest.InterruptedAtShutdownAfter, true, true},
		// A replica set member's label changes nothing on a standalone server.
		{"NotWritablePrimaryBeforeRetryable", mongolocktest.NotWritablePrimaryBefore.WithLabels("RetryableWriteError"), true, false},
	}

	for _, fc := range failures {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()

			s := mongolocktest.Start(t)
			if !s.Embedded() {
				t.Skip("the driver's reactions are those to a standalone server")
			}
			var events driverEvents
			coll := s.Client(t, events.options()).Database(s.Database()).Collection("c")
			ctx := ctxTimeout(t, 60*time.Second)

			for i, op := range writeOps {
				id := op.cmd
				if err := op.setup(ctx, coll, id); err != nil {
					t.Fatalf("%s: setup: %v", op.cmd, err)
				}
				unknown0, cleared0 := events.get()

				s.FailNext(1, op.cmd, fc.f)
				err := op.run(ctx, coll, id)
				checkFailure(t, op.cmd, fc.f, err)

				if n := s.InjectedFailures(); n != int64(i+1) {
					t.Errorf("%s: InjectedFailures() = %d, want %d (no retry)", op.cmd, n, i+1)
				}

				// The next operation succeeds (after the driver has checked the
				// server again, if it marked it Unknown).
				start := time.Now()
				applied, err := op.applied(ctx, coll, id)
				if err != nil {
					t.Fatalf("%s: the operation after the failure: %v", op.cmd, err)
				}
				if applied != fc.f.Applied {
					t.Errorf("%s: write applied = %v, want %v", op.cmd, applied, fc.f.Applied)
				}
				t.Logf("%s: the next operation took %v", op.cmd, time.Since(start))

				unknown, cleared := events.get()
				if got := unknown > unknown0; got != fc.markedUnknown {
					t.Errorf("%s: driver marked the server Unknown: %v, want %v", op.cmd, got, fc.markedUnknown)
				}
				if got := cleared > cleared0; got != fc.poolCleared {
					t.Errorf("%s: driver cleared its pool: %v, want %v", op.cmd, got, fc.poolCleared)
				}

				// The same write again, without failure.
				if err := op.run(ctx, coll, id+"-again"); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
					t.Errorf("%s: a write after the failure: %v", op.cmd, err)
				}
			}
		})
	}
}

// checkFailure checks that err is what the Go driver makes of f.
func checkFailure(t *testing.T, cmd string, f mongolocktest.Failure, err error) {
	t.Helper()

	if err == nil {
		t.Errorf("%s: no error, want %s", cmd, f.CodeName)
		return
	}

	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(int(f.Code)) {
		t.Errorf("%s: %v, want a server error with code %d", cmd, err, f.Code)
	}
	for _, l := range f.Labels {
		if !se.HasErrorLabel(l) {
			t.Errorf("%s: %v, want label %s", cmd, err, l)
		}
	}

	if f.WriteConcern {
		var we mongo.WriteException
		switch {
		case !errors.As(err, &we):
			t.Errorf("%s: %T %v, want a mongo.WriteException", cmd, err, err)
		case we.WriteConcernError == nil || we.WriteConcernError.Code != int(f.Code) || len(we.WriteErrors) > 0:
			t.Errorf("%s: %v, want a WriteConcernError with code %d and no write errors", cmd, err, f.Code)
		case f.Code == 64 && !bsonBool(we.WriteConcernError.Details, "wtimeout"):
			t.Errorf("%s: WriteConcernError details %v, want wtimeout: true", cmd, we.WriteConcernError.Details)
		}
		return
	}

	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != f.Code || ce.Name != f.CodeName || ce.Message != f.Message {
		t.Errorf("%s: %T %v, want a mongo.CommandError %d %s %q", cmd, err, err, f.Code, f.CodeName, f.Message)
	}
}

func bsonBool(doc bson.Raw, key string) bool {
	b, ok := doc.Lookup(key).BooleanOK()
	return ok && b
}

// TestFailNextReadIsRetried shows that the driver retries reads, even on a
// standalone server: once when the context has no deadline, and as often as
// the deadline allows when it has one.
func TestFailNextReadIsRetried(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	coll := s.Client(t).Database(s.Database()).Collection("c")
	ctx := ctxTimeout(t, 60*time.Second)
	if err := insertDoc(ctx, coll, "k"); err != nil {
		t.Fatal(err)
	}
	s.ResetCommandCounts()

	// No deadline: one retry. (The server answers; the proxy's failure does
	// not hang.)
	s.FailNext(1, "FIND", mongolocktest.NotWritablePrimaryBefore)
	if err := coll.FindOne(context.Background(), byID("k")).Err(); err != nil {
		t.Fatalf("find with one failure: %v, want the retry to succeed", err)
	}
	if n := s.CommandCount("find"); n != 1 {
		t.Errorf("CommandCount(find) = %d, want 1 (the failed find was not forwarded)", n)
	}

	s.FailNext(2, "find", mongolocktest.InterruptedAtShutdownAfter)
	var ce mongo.CommandError
	if err := coll.FindOne(context.Background(), byID("k")).Err(); !errors.As(err, &ce) || ce.Code != 11600 {
		t.Errorf("find with two failures, no deadline: %v, want InterruptedAtShutdown", err)
	}
	if n := s.CommandCount("find"); n != 3 {
		t.Errorf("CommandCount(find) = %d, want 3", n)
	}

	// A deadline: retries until one succeeds.
	s.FailNext(3, "find", mongolocktest.PrimarySteppedDownBefore)
	if err := coll.FindOne(ctx, byID("k")).Err(); err != nil {
		t.Errorf("find with three failures and a deadline: %v, want the retries to succeed", err)
	}
	if n := s.InjectedFailures(); n != 6 {
		t.Errorf("InjectedFailures() = %d, want 6", n)
	}

	// ResetFaults discards pending rules.
	s.FailNext(1, "", mongolocktest.NotWritablePrimaryBefore)
	s.ResetFaults()
	if err := coll.FindOne(ctx, byID("k")).Err(); err != nil {
		t.Fatal(err)
	}
	if n := s.InjectedFailures(); n != 6 {
		t.Errorf("InjectedFailures() = %d after ResetFaults, want 6", n)
	}
}
