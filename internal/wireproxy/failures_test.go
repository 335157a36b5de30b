package wireproxy

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// failureFields returns the error fields of a reply body.
func failureFields(t *testing.T, doc bsoncore.Document) (ok float64, code int32, codeName, errmsg string, labels []string) {
	t.Helper()

	ok, _ = doc.Lookup("ok").AsFloat64OK()
	code, _ = doc.Lookup("code").Int32OK()
	codeName, _ = doc.Lookup("codeName").StringValueOK()
	errmsg, _ = doc.Lookup("errmsg").StringValueOK()
	if arr, isArr := doc.Lookup("errorLabels").ArrayOK(); isArr {
		vals, _ := arr.Values()
		for _, v := range vals {
			labels = append(labels, v.StringValue())
		}
	}
	return ok, code, codeName, errmsg, labels
}

func TestFailNextCommandError(t *testing.T) {
	t.Parallel()

	for _, applied := range []bool{false, true} {
		t.Run(map[bool]string{false: "before", true: "after"}[applied], func(t *testing.T) {
			t.Parallel()

			up := newFakeServer(t)
			p := newProxy(t, up.addr(), Options{Serialize: true})
			c := dial(t, p.Addr())

			f := Failure{Code: 10107, CodeName: "NotWritablePrimary", Applied: applied, Labels: []string{"RetryableWriteError"}}
			p.FailNext(1, is("update"), f)
			f.Labels[0] = "changed" // FailNext keeps its own copy
			p.FailNext(0, nil, f)   // no-op

			c.roundTrip("ping") // not matched
			id := c.send(0, "update")
			ok, code, codeName, errmsg, labels := failureFields(t, c.recvReply(id))
			if ok != 0 || code != 10107 || codeName != "NotWritablePrimary" ||
				errmsg != "NotWritablePrimary (injected by wireproxy)" ||
				!slices.Equal(labels, []string{"RetryableWriteError"}) {
				t.Errorf("reply: ok %v, code %d, codeName %q, errmsg %q, labels %q", ok, code, codeName, errmsg, labels)
			}

			want := int64(0)
			if applied {
				want = 1
			}
			if n := up.count("update"); n != want {
				t.Errorf("upstream executed %d updates, want %d", n, want)
			}
			if n := p.Count("update"); n != want {
				t.Errorf("Count(update) = %d, want %d", n, want)
			}
			if n := p.Failed(); n != 1 {
				t.Errorf("Failed() = %d, want 1", n)
			}

			// Only the next one; the turn was given back.
			dial(t, p.Addr()).roundTrip("update")
			id = c.send(0, "update")
			if ok, _, _, _, _ := failureFields(t, c.recvReply(id)); ok != 1 {
				t.Errorf("second update: ok = %v, want 1", ok)
			}
		})
	}
}

func TestFailNextWriteConcern(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	wce := Failure{Code: 64, CodeName: "WriteConcernFailed", Message: "waiting for replication timed out", WriteConcern: true}

	tests := []struct {
		cmd     string
		applied bool
		want    bsoncore.Document // the reply, without writeConcernError
	}{
		{"update", false, bsoncore.NewDocumentBuilder().
			AppendInt32("n", 0).AppendInt32("nModified", 0).AppendDouble("ok", 1).Build()},
		{"findAndModify", false, bsoncore.NewDocumentBuilder().
			AppendDocument("lastErrorObject", bsoncore.NewDocumentBuilder().
				AppendInt32("n", 0).AppendBoolean("updatedExisting", false).Build()).
			AppendNull("value").AppendDouble("ok", 1).Build()},
		{"delete", false, bsoncore.NewDocumentBuilder().AppendInt32("n", 0).AppendDouble("ok", 1).Build()},
		{"insert", false, bsoncore.NewDocumentBuilder().AppendInt32("n", 0).AppendDouble("ok", 1).Build()},
		{"other", false, bsoncore.NewDocumentBuilder().AppendDouble("ok", 1).Build()},
		// The fake server's own reply is {ok: 1}.
		{"update", true, bsoncore.NewDocumentBuilder().AppendDouble("ok", 1).Build()},
	}

	for i, tc := range tests {
		f := wce
		f.Applied = tc.applied
		p.FailNext(1, is(tc.cmd), f)

		before := up.count(tc.cmd)
		id := c.send(0, tc.cmd)
		body := c.recvReply(id)

		rest := bsoncore.NewDocumentBuilder()
		elems, _ := body.Elements()
		var got bsoncore.Document
		for _, e := range elems {
			if e.Key() == "writeConcernError" {
				got = e.Value().Document()
				continue
			}
			rest.AppendValue(e.Key(), e.Value())
		}
		if r := rest.Build(); !slices.Equal(r, tc.want) {
			t.Errorf("%s (applied %v): reply %s, want %s plus writeConcernError", tc.cmd, tc.applied, body, tc.want)
		}

		wantWCE := bsoncore.NewDocumentBuilder().
			AppendInt32("code", 64).
			AppendString("codeName", "WriteConcernFailed").
			AppendString("errmsg", "waiting for replication timed out").
			AppendDocument("errInfo", bsoncore.NewDocumentBuilder().AppendBoolean("wtimeout", true).Build()).
			Build()
		if !slices.Equal(got, wantWCE) {
			t.Errorf("%s (applied %v): writeConcernError %s, want %s", tc.cmd, tc.applied, got, wantWCE)
		}

		executed := up.count(tc.cmd) - before
		if want := map[bool]int64{false: 0, true: 1}[tc.applied]; executed != want {
			t.Errorf("%s (applied %v): upstream executed it %d times, want %d", tc.cmd, tc.applied, executed, want)
		}
		if n := p.Failed(); n != int64(i+1) {
			t.Errorf("Failed() = %d, want %d", n, i+1)
		}
	}

	// Another code than WriteConcernFailed has no errInfo; labels are added.
	p.FailNext(1, nil, Failure{Code: 11600, CodeName: "InterruptedAtShutdown", WriteConcern: true, Applied: true, Labels: []string{"L"}})
	body := c.recvReply(c.send(0, "update"))
	wceDoc, _ := body.Lookup("writeConcernError").DocumentOK()
	if _, err := wceDoc.LookupErr("errInfo"); err == nil {
		t.Errorf("writeConcernError %s: errInfo for code 11600", wceDoc)
	}
	if _, _, _, _, labels := failureFields(t, body); !slices.Equal(labels, []string{"L"}) {
		t.Errorf("errorLabels = %q, want [L]", labels)
	}
}

// TestFailNextNotMatched checks the requests FailNext leaves alone, and
// that FailNext rules take precedence over DropReplies rules.
func TestFailNextNotMatched(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	f := Failure{Code: 189, CodeName: "PrimarySteppedDown"}
	p.FailNext(1, nil, f)

	// Requests without reply, exhaust requests and legacy opcodes pass.
	c.send(msgMoreToCome, "insert")
	id := c.send(msgExhaustAllowed, "stream", func(b *bsoncore.DocumentBuilder) { b.AppendInt64("n", 2) })
	for range 2 {
		h, _, err := c.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("exhaust reply: %v", err)
		}
		if h.responseTo != id && h.responseTo != 1000+id {
			t.Fatalf("exhaust reply responds to %d", h.responseTo)
		}
	}
	query := bsoncore.NewDocumentBuilder().AppendInt32("isMaster", 1).Build()
	if _, err := c.c.Write(buildOpQuery(99, 0, "admin.$cmd", query)); err != nil {
		t.Fatal(err)
	}
	if h, _, err := c.recv(10 * time.Second); err != nil || h.responseTo != 99 {
		t.Fatalf("OP_QUERY reply: %+v, %v", h, err)
	}
	if n := p.Failed(); n != 0 {
		t.Fatalf("Failed() = %d, want 0", n)
	}

	// FailNext before DropReplies: the first update fails, the second loses
	// its reply.
	p.DropReplies(1, is("update"))
	if ok, code, _, _, _ := failureFields(t, c.recvReply(c.send(0, "update"))); ok != 0 || code != 189 {
		t.Errorf("first update: ok %v, code %d; want the failure", ok, code)
	}
	c.send(0, "update")
	if _, _, err := c.recv(10 * time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("second update: err = %v, want EOF (reply dropped)", err)
	}
	if p.Failed() != 1 || p.Dropped() != 1 {
		t.Errorf("Failed() = %d, Dropped() = %d; want 1 and 1", p.Failed(), p.Dropped())
	}

	// ResetFaults discards pending FailNext rules.
	p.FailNext(1, nil, f)
	p.ResetFaults()
	dial(t, p.Addr()).roundTrip("update")
	if n := p.Failed(); n != 1 {
		t.Errorf("Failed() = %d after ResetFaults, want 1", n)
	}
}
