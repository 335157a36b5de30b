package mongolocktest_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/mongolocktest"
)

func byID(id string) bson.D { return bson.D{{Key: "_id", Value: id}} }

var inc = bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}

func insertDoc(ctx context.Context, coll *mongo.Collection, id string) error {
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: 0}})
	return err
}

func incremented(ctx context.Context, coll *mongo.Collection, id string) (bool, error) {
	var doc struct{ N int }
	if err := coll.FindOne(ctx, byID(id)).Decode(&doc); err != nil {
		return false, err
	}
	return doc.N == 1, nil
}

// serverTime runs hello and returns its localTime and the local times just
// before and after. Server and test share the machine's clock.
func serverTime(t *testing.T, c *mongo.Client) (before, server, after time.Time) {
	t.Helper()

	var reply struct {
		LocalTime time.Time `bson:"localTime"`
	}
	before = time.Now()
	err := c.Database("admin").RunCommand(ctxTimeout(t, 30*time.Second), bson.D{{Key: "hello", Value: 1}}).Decode(&reply)
	after = time.Now()
	if err != nil {
		t.Fatal(err)
	}

	return before, reply.LocalTime, after
}

// TestSetDelayHello delays only the request, then only the reply, of hello:
// the server's localTime moves to the end, then to the start, of the round
// trip that brackets it.
func TestSetDelayHello(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	c := s.Client(t)
	serverTime(t, c) // connect

	// localTime has millisecond resolution.
	const (
		d     = 300 * time.Millisecond
		slack = 2 * time.Millisecond
	)

	s.SetDelay("hello", d, 0)
	before, server, after := serverTime(t, c)
	if server.Before(before.Add(d - slack)) {
		t.Errorf("request delayed by %v: localTime %v after the request was sent, want at least %v",
			d, server.Sub(before), d)
	}
	t.Logf("request delay: localTime at %v of a %v round trip", server.Sub(before), after.Sub(before))

	s.SetDelay("HELLO", 0, d) // replaces the request delay
	before, server, after = serverTime(t, c)
	if server.After(after.Add(-d + slack)) {
		t.Errorf("reply delayed by %v: localTime %v before the reply arrived, want at least %v",
			d, after.Sub(server), d)
	}
	t.Logf("reply delay: localTime at %v of a %v round trip", server.Sub(before), after.Sub(before))

	// DelayNext adds up with SetDelay, for the next hello only.
	s.DelayNext(1, "hello", d, 0)
	before, server, after = serverTime(t, c)
	if server.Before(before.Add(d-slack)) || server.After(after.Add(-d+slack)) {
		t.Errorf("request and reply delayed by %v: localTime %v into a %v round trip",
			d, server.Sub(before), after.Sub(before))
	}

	s.SetDelay("hello", 0, 0)
}

// TestDelayNextLateReply makes the reply to one findAndModify arrive after
// the reply to a later findAndModify of another client, although it was
// executed first.
func TestDelayNextLateReply(t *testing.T) {
	t.Parallel()

	s := mongolocktest.Start(t)
	ctx := ctxTimeout(t, 60*time.Second)
	collA := s.Client(t).Database(s.Database()).Collection("c")
	collB := s.Client(t).Database(s.Database()).Collection("c")
	if err := insertDoc(ctx, collA, "k"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		n   int
		err error
	}
	incAfter := func(coll *mongo.Collection) result {
		var doc struct{ N int }
		err := coll.FindOneAndUpdate(ctx, byID("k"), inc,
			options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&doc)
		return result{doc.N, err}
	}

	// Long enough never to expire: ResetFaults ends it.
	s.DelayNext(1, "findAndModify", 0, time.Hour)
	resA := make(chan result, 1)
	go func() { resA <- incAfter(collA) }()

	// Once B can read A's increment, A's command has been executed.
	for {
		ok, err := incremented(ctx, collB, "k")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	resB := incAfter(collB)
	if resB.err != nil || resB.n != 2 {
		t.Fatalf("B's findAndModify: n = %d, %v; want 2", resB.n, resB.err)
	}
	select {
	case r := <-resA:
		t.Fatalf("A's reply arrived before B's: %+v", r)
	default:
	}

	s.ResetFaults()
	if r := <-resA; r.err != nil || r.n != 1 {
		t.Fatalf("A's findAndModify: n = %d, %v; want 1", r.n, r.err)
	}
}
