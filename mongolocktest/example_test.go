package mongolocktest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/mongolock/mongolock/mongolocktest"
)

// Start needs the *testing.T of a test, so this example shows the body of a
// test function; it is compiled but not run.
func ExampleStart() {
	testSomething := func(t *testing.T) {
		srv := mongolocktest.Start(t) // stopped when the test ends
		client := srv.Client(t)       // disconnected when the test ends

		ctx := context.Background()
		if err := client.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}

		coll := client.Database(srv.Database()).Collection("locks")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "job"}}); err != nil {
			t.Fatal(err)
		}
	}

	_ = testSomething // in real code: func TestSomething(t *testing.T) { ... }
}

// Fault injection: the next findAndModify is executed by the server but its
// reply is lost, so the client sees a network error although the update was
// applied. Compiled but not run.
func ExampleServer_DropNextReply() {
	testLostReply := func(t *testing.T) {
		srv := mongolocktest.Start(t)
		coll := srv.Client(t).Database(srv.Database()).Collection("locks")
		ctx := context.Background()

		srv.DropNextReply("findAndModify")
		err := coll.FindOneAndUpdate(ctx,
			bson.D{{Key: "_id", Value: "job"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: "me"}}}},
		).Err()
		if !mongo.IsNetworkError(err) {
			t.Fatalf("want a network error, got %v", err)
		}
		// ... the update was applied: the code under test must cope.
	}

	_ = testLostReply
}

// Latency and a pause make operations slow or hang until their context ends.
// Compiled but not run.
func ExampleServer_Pause() {
	testPause := func(t *testing.T) {
		srv := mongolocktest.Start(t)
		client := srv.Client(t)

		srv.SetLatency(50 * time.Millisecond) // every request is delayed
		srv.SetLatency(0)

		srv.Pause()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := client.Ping(ctx, nil); err == nil {
			t.Fatal("ping succeeded while paused")
		}
		srv.Resume()
	}

	_ = testPause
}

// MongoDB's failure replies: the next update is applied but its reply
// carries a writeConcernError; the next findAndModify is refused by a
// "primary" that is no longer one. Compiled but not run.
func ExampleServer_FailNext() {
	testFailures := func(t *testing.T) {
		srv := mongolocktest.Start(t)
		coll := srv.Client(t).Database(srv.Database()).Collection("locks")
		ctx := context.Background()

		srv.FailNext(1, "update", mongolocktest.WriteConcernErrorApplied)
		_, err := coll.UpdateOne(ctx,
			bson.D{{Key: "_id", Value: "job"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: "me"}}}},
		)
		var we mongo.WriteException
		if !errors.As(err, &we) || we.WriteConcernError == nil {
			t.Fatalf("want a write concern error, got %v", err)
		}
		// ... the update was applied nevertheless.

		srv.FailNext(1, "findAndModify", mongolocktest.NotWritablePrimaryBefore)
		err = coll.FindOneAndUpdate(ctx,
			bson.D{{Key: "_id", Value: "job"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: "me"}}}},
		).Err()
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(10107) {
			t.Fatalf("want NotWritablePrimary, got %v", err)
		}
		// ... and this one was not.
	}

	_ = testFailures
}

// Delays in one direction: the server's clock as seen through hello is
// late (request delayed) or early (reply delayed) within the round trip,
// and the reply to the next findAndModify arrives after those of the
// findAndModify commands other clients run in the next 200 ms. Compiled but
// not run.
func ExampleServer_SetDelay() {
	testDelays := func(t *testing.T) {
		srv := mongolocktest.Start(t)

		srv.SetDelay("hello", 300*time.Millisecond, 0) // every hello request
		srv.SetDelay("hello", 0, 300*time.Millisecond) // replaces it: every hello reply
		srv.SetDelay("hello", 0, 0)                    // removes it

		srv.DelayNext(1, "findAndModify", 0, 200*time.Millisecond)
		// ... run the code under test from several clients.
	}

	_ = testDelays
}
