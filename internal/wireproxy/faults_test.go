package wireproxy

import (
	"errors"
	"io"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// forever is a delay no test waits out: tests end it with ResetFaults.
const forever = time.Hour

// is returns a matcher for one command name.
func is(name string) func(string) bool {
	return func(cmd string) bool { return cmd == name }
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recvReply reads one reply and checks that it answers id.
func (c *client) recvReply(id int32) bsoncore.Document {
	c.t.Helper()

	h, msg, err := c.recv(10 * time.Second)
	if err != nil {
		c.t.Fatalf("reply to %d: %v", id, err)
	}
	if h.responseTo != id || h.opCode != opMsg {
		c.t.Fatalf("reply responds to %d with opcode %d, want %d and OP_MSG", h.responseTo, h.opCode, id)
	}
	body, ok := opMsgBody(msg[headerLen+4:])
	if !ok {
		c.t.Fatalf("reply to %d: malformed body", id)
	}
	return body
}

// expectNoReply checks that no reply arrives within a short time. It can
// pass wrongly on a slow machine, never fail wrongly.
func (c *client) expectNoReply(what string) {
	c.t.Helper()

	if h, _, err := c.recv(100 * time.Millisecond); !isTimeout(err) {
		c.t.Fatalf("%s: got a reply (responseTo %d, err %v), want none yet", what, h.responseTo, err)
	}
}

// TestReplyDelayDoesNotHoldTurn delays one reply and checks that a later
// command, on another connection, is executed and answered meanwhile.
func TestReplyDelayDoesNotHoldTurn(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())

	p.DelayNext(1, is("findAndModify"), 0, forever)
	id := c1.send(0, "findAndModify")
	waitFor(t, "the first findAndModify to be executed", func() bool { return up.count("findAndModify") == 1 })

	// Only the next one: c2's findAndModify is neither delayed nor held up.
	c2.roundTrip("findAndModify")
	c1.expectNoReply("delayed findAndModify")

	p.ResetFaults() // ends the delay
	c1.recvReply(id)
}

// TestReplyDelayKeepsOrder pipelines requests on one connection: a reply
// queued behind a delayed one waits for it.
func TestReplyDelayKeepsOrder(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	p.DelayNext(2, is("first"), 0, forever)
	id1 := c.send(0, "first")
	id2 := c.send(0, "second")
	id3 := c.send(0, "first")
	waitFor(t, "the pipelined requests to be executed", func() bool { return up.count("first") == 2 })

	// Their replies have been read upstream: the turn is free.
	dial(t, p.Addr()).roundTrip("ping")
	c.expectNoReply("reply queued behind a delayed one")

	// ResetFaults ends every delay being waited out, not only the first.
	p.ResetFaults()
	for _, id := range []int32{id1, id2, id3} {
		c.recvReply(id)
	}
}

func TestRequestDelay(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())

	// Case-insensitive; a delayed request holds up nothing else.
	p.SetDelay("FindAndModify", forever, 0)
	id := c1.send(0, "findAndModify")
	waitFor(t, "the request to be held", func() bool { return p.sleeping.Load() == 1 })
	c2.roundTrip("ping")
	if n := up.count("findAndModify"); n != 0 {
		t.Fatalf("upstream received %d delayed requests, want 0", n)
	}

	// A zero delay removes the rule; the request already waiting stays.
	p.SetDelay("findandmodify", 0, 0)
	c2.roundTrip("findAndModify")
	c1.expectNoReply("delayed request")

	p.ResetFaults()
	c1.recvReply(id)
	if n := up.count("findAndModify"); n != 2 {
		t.Fatalf("upstream received %d findAndModify, want 2", n)
	}
}

// TestDelaysAddUp checks lower bounds only: a delay is at least as long as
// asked.
func TestDelaysAddUp(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())
	c.roundTrip("ping")

	const d = 40 * time.Millisecond
	p.SetLatency(d)
	p.SetDelay("", d, 0)
	p.SetDelay("ping", 0, d)
	p.DelayNext(1, nil, d, d)
	p.DelayNext(0, nil, d, d)   // no-op
	p.DelayNext(1, nil, 0, -1)  // no-op
	p.SetDelay("hello", -d, -d) // removes nothing, adds nothing
	p.SetDelay("unused", time.Second, 0)
	p.SetDelay("unused", 0, 0)

	start := time.Now()
	c.roundTrip("ping")
	if got, want := time.Since(start), 5*d; got < want {
		t.Errorf("ping took %v, want at least %v (5 delays of %v)", got, want, d)
	}

	p.mu.Lock()
	n := len(p.delays)
	p.mu.Unlock()
	if n != 2 {
		t.Errorf("%d SetDelay rules, want 2 (\"\" and ping)", n)
	}

	p.ResetFaults()
	p.mu.Lock()
	n = len(p.delays) + len(p.delayNext)
	p.mu.Unlock()
	if n != 0 || p.Latency() != 0 {
		t.Errorf("after ResetFaults: %d delay rules, latency %v", n, p.Latency())
	}
}

// TestDelayNextSkipsNoReply checks that requests without a reply do not
// use up DelayNext rules.
func TestDelayNextSkipsNoReply(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	p.DelayNext(1, nil, 0, forever)
	c.send(msgMoreToCome, "insert")
	id := c.send(0, "ping")
	waitFor(t, "the ping to be executed", func() bool { return up.count("ping") == 1 })
	c.expectNoReply("delayed ping")

	p.ResetFaults()
	c.recvReply(id)
}

// TestDropAfterDelayedReply checks that a reply delayed before a dropped
// one on the same connection is delivered before the connection closes.
func TestDropAfterDelayedReply(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	p.DelayNext(1, is("first"), 0, 50*time.Millisecond)
	p.DropReplies(1, is("second"))
	id := c.send(0, "first")
	c.send(0, "second")

	c.recvReply(id)
	if _, _, err := c.recv(10 * time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("after the delayed reply: err = %v, want EOF (reply dropped)", err)
	}
}
