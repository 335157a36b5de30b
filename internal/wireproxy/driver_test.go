package wireproxy_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/mongolock/mongolock/internal/embedded"
	"github.com/mongolock/mongolock/internal/wireproxy"
)

// TestDriverThroughProxy runs the Go driver through a proxy in front of
// FerretDB itself (not through the embedded server's own proxy).
func TestDriverThroughProxy(t *testing.T) {
	t.Parallel()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})

	p, err := wireproxy.New(srv.DirectAddr(), wireproxy.Options{Serialize: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})

	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + p.Addr() + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := client.Disconnect(context.Background()); err != nil {
			t.Error(err)
		}
	})

	if err := client.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}

	// The driver's first handshake on each connection is a legacy OP_QUERY
	// isMaster; the proxy must understand it as well as OP_MSG.
	counts := p.Counts()
	if counts["ping"] != 1 || counts["isMaster"]+counts["hello"] == 0 {
		t.Errorf("counts after connect and ping: %v", counts)
	}

	coll := client.Database("db").Collection("c")
	docs := make([]any, 25)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}

	// A small batch size makes the cursor use getMore (never serialized).
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	var got []bson.M
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(docs) {
		t.Fatalf("found %d documents, want %d", len(got), len(docs))
	}
	if n := p.Count("getMore"); n < 2 {
		t.Errorf("Count(getMore) = %d, want at least 2", n)
	}

	// Lose the reply of the next insert: the client sees a network error,
	// the document is there anyway.
	p.DropReplies(1, func(cmd string) bool { return cmd == "insert" })
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "lost-reply"}})
	if !mongo.IsNetworkError(err) {
		t.Fatalf("InsertOne with a dropped reply: %v, want a network error", err)
	}
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: "lost-reply"}})
	if err != nil || n != 1 {
		t.Fatalf("CountDocuments = %d, %v; want 1", n, err)
	}
}
