package tests

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

func TestBadInput(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	mustLock(t, c, "held", "owner", mongolock.Expire(time.Hour))
	before := mustInfo(t, c, "held")

	long := strings.Repeat("k", 1025)
	tests := []struct {
		name string
		arg  string // the argument the error must name
		call func() error
	}{
		{"empty key", "key", func() error { _, err := c.Lock(ctx, "", "o"); return err }},
		{"long key", "key", func() error { _, err := c.Lock(ctx, long, "o"); return err }},
		{"key not UTF-8", "key", func() error { _, err := c.Lock(ctx, "\xff\xfe", "o"); return err }},
		{"empty owner", "owner", func() error { _, err := c.Lock(ctx, "held", ""); return err }},
		{"long owner", "owner", func() error { _, err := c.Lock(ctx, "k", strings.Repeat("o", 513)); return err }},
		{"negative Expire", "Expire", func() error { _, err := c.Lock(ctx, "held", "o", mongolock.Expire(-time.Second)); return err }},
		{"zero Expire", "Expire", func() error { _, err := c.Lock(ctx, "held", "o", mongolock.Expire(0)); return err }},
		{"negative Timeout", "Timeout", func() error { _, err := c.Lock(ctx, "held", "o", mongolock.Timeout(-1)); return err }},
		{"Touch zero expire", "expire", func() error { return c.Touch(ctx, "held", "owner", 0) }},
		{"Touch negative expire", "expire", func() error { return c.Touch(ctx, "held", "owner", -time.Second) }},
		{"Release empty owner", "owner", func() error { return c.Release(ctx, "held", "") }},
		{"Release empty key", "key", func() error { return c.Release(ctx, "", "owner") }},
		{"Info empty key", "key", func() error { _, err := c.Info(ctx, ""); return err }},
		{"IsLocked long key", "key", func() error { _, err := c.IsLocked(ctx, long); return err }},
		{"Do nil fn", "fn", func() error { return c.Do(ctx, "held", "owner", nil) }},
		{"Lock with KeepAlive", "KeepAlive", func() error { _, err := c.Lock(ctx, "held", "o", mongolock.KeepAlive(true)); return err }},
		{"TryAcquire with Timeout", "Timeout", func() error { _, err := c.TryAcquire(ctx, "held", mongolock.Timeout(time.Second)); return err }},
		{"Expire and NeverExpire", "NeverExpire", func() error {
			_, err := c.Acquire(ctx, "held", mongolock.Expire(time.Second), mongolock.NeverExpire())
			return err
		}},
		{"Do with Owner option", "Owner", func() error {
			return c.Do(ctx, "held", "o", func(context.Context) error { return nil }, mongolock.Owner("x"))
		}},
		{"Acquire empty key", "key", func() error { _, err := c.Acquire(ctx, ""); return err }},
		{"TryAcquire empty Owner", "owner", func() error { _, err := c.TryAcquire(ctx, "held", mongolock.Owner("")); return err }},
		{"Lock with Owner option", "Owner", func() error { _, err := c.Lock(ctx, "held", "o", mongolock.Owner("x")); return err }},
		{"nil client", "client", func() error { _, err := mongolock.New(nil); return err }},
		{"nil collection", "collection", func() error { _, err := mongolock.NewFromCollection(nil); return err }},
		{"empty database", "WithDatabase", func() error { _, err := mongolock.New(srv.Client(t), mongolock.WithDatabase("")); return err }},
		{"empty URI", "uri", func() error { _, err := mongolock.Connect(ctx, ""); return err }},
		{"zero retry interval", "WithRetryInterval", func() error {
			_, err := mongolock.New(srv.Client(t), mongolock.WithRetryInterval(0))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *mongolock.ArgumentError
			if !errors.Is(err, mongolock.ErrInvalidArgument) || !errors.As(err, &ae) {
				t.Fatalf("error %v; want an *ArgumentError", err)
			}
			if ae.Arg != tt.arg || ae.Rule == "" || !strings.Contains(err.Error(), tt.arg) {
				t.Fatalf("error %q names %q; want %q and a rule", err, ae.Arg, tt.arg)
			}
		})
	}
	lease, err := c.TryAcquire(ctx, "lease-k")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, -time.Second} {
		if err := lease.Renew(ctx, d); !errors.Is(err, mongolock.ErrInvalidArgument) {
			t.Fatalf("Renew(%v): %v; want ErrInvalidArgument", d, err)
		}
	}
	if after := mustInfo(t, c, "held"); *after != *before {
		t.Fatalf("bad input changed a stored lock: %+v -> %+v", before, after)
	}
}

func TestUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	// Port 1 on loopback refuses connections.
	_, err := mongolock.Connect(ctx, "mongodb://user:s3cret-pw@127.0.0.1:1/?serverSelectionTimeoutMS=60000")
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Connect took %v; want to end with the 2s context", took)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("error %q does not say the server is unreachable", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Fatalf("error %q (ctx.Err() = %v); want the context's error, with the context ended", err, ctx.Err())
	}
}

func TestRedactURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mongodb://u:pw@h:27017/db", "mongodb://u:xxxxx@h:27017/db"},
		{"mongodb://h:27017", "mongodb://h:27017"},
		{"mongodb+srv://u:p%40ss@cluster.example/?tls=true", "mongodb+srv://u:xxxxx@cluster.example/?tls=true"},
		{"mongodb://u@h", "mongodb://u@h"},
		{"mongodb//app:s3cret@db1", "mongodb//app:xxxxx@db1"},
		{"mongodb://h1:27017,h2:27017/?replicaSet=rs0", "mongodb://h1:27017,h2:27017/?replicaSet=rs0"},
	}
	for _, tt := range tests {
		if got := mongolock.RedactURI(tt.in); got != tt.want {
			t.Errorf("RedactURI(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestWrongShapeDocument: a stored lock document this package did not
// write is reported as an error, never a panic, and is left as it was.
func TestWrongShapeDocument(t *testing.T) {
	srv := mongolocktest.Start(t)
	c := newClient(t, srv)
	ctx := testCtx(t)
	coll := srv.Client(t).Database(srv.Database()).Collection(mongolock.DefaultCollection)

	docs := []struct {
		name  string
		doc   bson.D
		field string
	}{
		{"expire is a string, held", bson.D{{Key: "locked", Value: true}, {Key: "owner", Value: "x"}, {Key: "expire", Value: "tomorrow"}}, "expire"},
		{"expire is a string, released", bson.D{{Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "expire", Value: "tomorrow"}}, "expire"},
		{"locked is a string", bson.D{{Key: "locked", Value: "yes"}, {Key: "owner", Value: "x"}}, "locked"},
		{"locked is missing", bson.D{{Key: "owner", Value: "x"}}, "locked"},
		{"owner is a number", bson.D{{Key: "locked", Value: true}, {Key: "owner", Value: 7}}, "owner"},
		{"fence is a string", bson.D{{Key: "locked", Value: false}, {Key: "fence", Value: "ten"}}, "fence"},
		{"created is a number", bson.D{{Key: "locked", Value: true}, {Key: "created", Value: 12}}, "created"},
	}
	for i, tt := range docs {
		t.Run(tt.name, func(t *testing.T) {
			key := "bad-" + string(rune('a'+i))
			doc := append(bson.D{{Key: "_id", Value: key}}, tt.doc...)
			if _, err := coll.InsertOne(ctx, doc); err != nil {
				t.Fatal(err)
			}
			stored := func() bson.Raw {
				raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Raw()
				if err != nil {
					t.Fatal(err)
				}
				return raw
			}
			orig := stored()

			_, err := c.Info(ctx, key)
			var de *mongolock.DocumentError
			if !errors.Is(err, mongolock.ErrInvalidDocument) || !errors.As(err, &de) || de.Field != tt.field {
				t.Fatalf("Info: %v; want a *DocumentError about %q", err, tt.field)
			}
			if _, err := c.IsLocked(ctx, key); !errors.Is(err, mongolock.ErrInvalidDocument) {
				t.Fatalf("IsLocked: %v; want ErrInvalidDocument", err)
			}
			_, _ = c.Lock(ctx, key, "x")
			_, _ = c.TryAcquire(ctx, key)
			_ = c.Release(ctx, key, "x")
			_ = c.Touch(ctx, key, "x", time.Minute)
			_ = c.Do(ctx, key, "x", func(context.Context) error { return nil })
			if got := stored(); !bytesEqual(got, orig) {
				t.Fatalf("document changed:\n was %v\n now %v", orig, got)
			}
		})
	}
}

func bytesEqual(a, b bson.Raw) bool { return string(a) == string(b) }

// TestConnectAuthenticationFailure: refused credentials are reported as an
// authentication failure, not as an unreachable server, and without the
// password. (The embedded test server refuses every SCRAM login.)
func TestConnectAuthenticationFailure(t *testing.T) {
	srv := mongolocktest.Start(t)
	if !srv.Embedded() {
		t.Skip("needs the embedded server, which refuses every login")
	}
	uri := strings.Replace(srv.URI(), "mongodb://", "mongodb://someone:s3cret-pw@", 1)
	_, err := mongolock.Connect(testCtx(t), uri)
	if err == nil {
		t.Fatal("Connect with credentials the server refuses succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "authentication") || strings.Contains(msg, "unreachable") || strings.Contains(msg, "s3cret-pw") {
		t.Fatalf("error %q; want an authentication failure, without the password", msg)
	}
}
