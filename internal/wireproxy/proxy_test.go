package wireproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeServer is a minimal upstream speaking OP_MSG. Commands:
//
//   - ping, hello, anything else: reply {ok: 1} at once;
//   - slow {ms: n}: sleep n ms, then reply, tracking how many run at once;
//   - hello/getMore with maxAwaitTimeMS or getMore: block ~1s (awaitable);
//   - stream {n: k}: reply k times, all but the last with moreToCome;
//   - a request with moreToCome gets no reply.
type fakeServer struct {
	ln net.Listener
	wg sync.WaitGroup

	active    atomic.Int32
	maxActive atomic.Int32
	received  sync.Map // command name -> *atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	s := &fakeServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()

	t.Cleanup(s.close)

	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) accept() {
	defer s.wg.Done()

	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()

		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *fakeServer) count(cmd string) int64 {
	v, ok := s.received.Load(cmd)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (s *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	var wmu sync.Mutex // replies of background handlers

	for {
		msg, h, err := readMessage(r, nil)
		if err != nil {
			return
		}
		req := parseRequest(msg, h)
		body, _ := opMsgBody(msg[headerLen+4:])

		v, _ := s.received.LoadOrStore(req.cmd, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)

		if req.noReply {
			continue
		}

		reply := func(flags uint32) {
			okDoc := bsoncore.NewDocumentBuilder().AppendDouble("ok", 1).Build()
			wmu.Lock()
			defer wmu.Unlock()
			_, _ = c.Write(buildOpMsg(h.requestID+1000, h.requestID, flags, okDoc, false))
		}

		switch {
		case req.cmd == "slow":
			n := s.active.Add(1)
			for {
				m := s.maxActive.Load()
				if n <= m || s.maxActive.CompareAndSwap(m, n) {
					break
				}
			}
			ms, _ := body.Lookup("ms").AsInt64OK()
			time.Sleep(time.Duration(ms) * time.Millisecond)
			s.active.Add(-1)
			reply(0)

		case req.blocking && req.cmd != "stream":
			time.Sleep(time.Second)
			reply(0)

		case req.cmd == "stream":
			n, _ := body.Lookup("n").AsInt64OK()
			for i := int64(1); i < n; i++ {
				reply(msgMoreToCome)
			}
			reply(0)

		default:
			reply(0)
		}
	}
}

// client is a raw wire-protocol client connection for tests.
type client struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	id int32
}

func dial(t *testing.T, addr string) *client {
	t.Helper()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes an OP_MSG {cmd: 1, extra...} and returns its request ID.
func (c *client) send(flags uint32, cmd string, extra ...func(*bsoncore.DocumentBuilder)) int32 {
	c.t.Helper()

	b := bsoncore.NewDocumentBuilder().AppendInt32(cmd, 1)
	for _, f := range extra {
		f(b)
	}
	c.id++
	if _, err := c.c.Write(buildOpMsg(c.id, 0, flags, b.Build(), false)); err != nil {
		c.t.Fatalf("send %s: %v", cmd, err)
	}

	return c.id
}

// recv reads one reply, failing after timeout.
func (c *client) recv(timeout time.Duration) (header, []byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	msg, h, err := readMessage(c.r, nil)
	return h, msg, err
}

// roundTrip sends cmd and waits for its reply.
func (c *client) roundTrip(cmd string, extra ...func(*bsoncore.DocumentBuilder)) {
	c.t.Helper()

	id := c.send(0, cmd, extra...)
	h, _, err := c.recv(10 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: %v", cmd, err)
	}
	if h.responseTo != id {
		c.t.Fatalf("%s: responseTo = %d, want %d", cmd, h.responseTo, id)
	}
}

func newProxy(t *testing.T, upstream string, opts Options) *Proxy {
	t.Helper()

	p, err := New(upstream, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})

	return p
}

func ms(n int64) func(*bsoncore.DocumentBuilder) {
	return func(b *bsoncore.DocumentBuilder) { b.AppendInt64("ms", n) }
}

// runConcurrently runs f on n fresh connections at once.
func runConcurrently(t *testing.T, addr string, n int, f func(c *client)) {
	t.Helper()

	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, addr)
	}

	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { f(c) })
	}
	wg.Wait()
}

func TestSerialize(t *testing.T) {
	t.Parallel()

	for _, serialize := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[serialize], func(t *testing.T) {
			t.Parallel()

			up := newFakeServer(t)
			p := newProxy(t, up.addr(), Options{Serialize: serialize})

			runConcurrently(t, p.Addr(), 6, func(c *client) {
				for range 3 {
					c.roundTrip("slow", ms(15))
				}
			})

			got := up.maxActive.Load()
			switch {
			case serialize && got != 1:
				t.Errorf("serialized: %d commands ran at once, want 1", got)
			case !serialize && got < 2:
				t.Errorf("not serialized: at most %d command ran at once, want several", got)
			}
			if n := p.Count("slow"); n != 18 {
				t.Errorf("Count(slow) = %d, want 18", n)
			}
		})
	}
}

// TestBlockingCommandsDoNotHoldTurn checks that awaitable hellos, getMores
// and exhaust requests do not stall other commands.
func TestBlockingCommandsDoNotHoldTurn(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})

	awaitable := func(b *bsoncore.DocumentBuilder) { b.AppendInt64("maxAwaitTimeMS", 1000) }
	blockers := []struct {
		cmd   string
		flags uint32
		extra []func(*bsoncore.DocumentBuilder)
	}{
		{"hello", 0, []func(*bsoncore.DocumentBuilder){awaitable}},
		{"isMaster", 0, []func(*bsoncore.DocumentBuilder){awaitable}},
		{"getMore", 0, nil},
	}

	var bcs []*client
	for _, b := range blockers {
		c := dial(t, p.Addr())
		c.send(b.flags, b.cmd, b.extra...)
		bcs = append(bcs, c)
	}

	// Let the blockers reach the upstream.
	deadline := time.Now().Add(5 * time.Second)
	for up.count("getMore") == 0 || up.count("hello") == 0 || up.count("isMaster") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("blocking requests did not reach upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	dial(t, p.Addr()).roundTrip("ping")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("ping took %v while blocking commands were pending", d)
	}

	for _, c := range bcs {
		if _, _, err := c.recv(5 * time.Second); err != nil {
			t.Errorf("blocking command reply: %v", err)
		}
	}
}

func TestMoreToCome(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())

	// A request without reply must not keep the turn.
	c.send(msgMoreToCome, "insert")
	c.send(msgMoreToCome, "insert")
	dial(t, p.Addr()).roundTrip("ping")
	c.roundTrip("ping")

	if n := up.count("insert"); n != 2 {
		t.Errorf("upstream received %d inserts, want 2", n)
	}

	// An exhaust stream: several replies to one request.
	id := c.send(msgExhaustAllowed, "stream", func(b *bsoncore.DocumentBuilder) { b.AppendInt64("n", 3) })
	for i := range 3 {
		h, msg, err := c.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("stream reply %d: %v", i, err)
		}
		if i == 0 && h.responseTo != id {
			t.Errorf("first stream reply responds to %d, want %d", h.responseTo, id)
		}
		more := parseRequest(msg, h).noReply
		if want := i < 2; more != want {
			t.Errorf("stream reply %d: moreToCome = %v, want %v", i, more, want)
		}
	}

	c.roundTrip("ping")
}

func TestLatency(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())
	c.roundTrip("ping")

	const d = 150 * time.Millisecond
	p.SetLatency(d)
	if p.Latency() != d {
		t.Errorf("Latency() = %v, want %v", p.Latency(), d)
	}

	start := time.Now()
	c.roundTrip("ping")
	if got := time.Since(start); got < d {
		t.Errorf("ping with latency %v took only %v", d, got)
	}

	p.SetLatency(-1)
	if p.Latency() != 0 {
		t.Errorf("Latency() = %v after SetLatency(-1), want 0", p.Latency())
	}
}

func TestPause(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})
	c := dial(t, p.Addr())
	c.roundTrip("ping")

	p.Pause()
	p.Pause() // idempotent
	if !p.Paused() {
		t.Fatal("Paused() = false after Pause")
	}

	id := c.send(0, "ping")
	if _, _, err := c.recv(200 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("reply while paused: err = %v, want timeout", err)
	}
	if n := up.count("ping"); n != 1 {
		t.Fatalf("upstream received %d pings, want 1 (the one before Pause)", n)
	}

	p.Resume()
	p.Resume() // idempotent
	h, _, err := c.recv(5 * time.Second)
	if err != nil || h.responseTo != id {
		t.Fatalf("reply after Resume: %+v, %v", h, err)
	}
}

func TestCloseWhilePaused(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p, err := New(up.addr(), Options{Serialize: true})
	if err != nil {
		t.Fatal(err)
	}

	c := dial(t, p.Addr())
	c.roundTrip("ping")
	p.Pause()
	c.send(0, "ping")
	time.Sleep(50 * time.Millisecond)

	done := make(chan error, 1)
	go func() { done <- p.Close() }()

	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while paused")
	}

	if _, _, err := c.recv(5 * time.Second); err == nil {
		t.Fatal("got a reply from a closed proxy")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("closed proxy still accepts connections")
	}
}

func TestDropConnections(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})

	c1 := dial(t, p.Addr())
	c2 := dial(t, p.Addr())
	c1.roundTrip("ping")
	c2.roundTrip("ping")

	// One request in flight, held by the pause.
	p.Pause()
	c1.send(0, "ping")

	p.DropConnections()
	for i, c := range []*client{c1, c2} {
		if _, _, err := c.recv(5 * time.Second); err == nil || isTimeout(err) {
			t.Errorf("client %d after DropConnections: err = %v, want connection closed", i+1, err)
		}
	}

	p.Resume()
	dial(t, p.Addr()).roundTrip("ping")
	if n := up.count("ping"); n != 3 {
		t.Errorf("upstream received %d pings, want 3 (the held one was never forwarded)", n)
	}
}

func TestDropReplies(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{Serialize: true})

	p.DropReplies(2, func(cmd string) bool { return cmd == "findAndModify" })
	p.DropReplies(0, nil) // no-op

	for i := range 3 {
		c := dial(t, p.Addr())
		c.roundTrip("ping") // not matched
		c.send(0, "findAndModify")
		_, _, err := c.recv(5 * time.Second)

		if i < 2 {
			if !errors.Is(err, io.EOF) {
				t.Errorf("findAndModify %d: err = %v, want EOF (reply dropped)", i+1, err)
			}
		} else if err != nil {
			t.Errorf("findAndModify %d: %v, want a reply", i+1, err)
		}
	}

	if n := up.count("findAndModify"); n != 3 {
		t.Errorf("upstream executed %d findAndModify, want 3", n)
	}
	if n := p.Dropped(); n != 2 {
		t.Errorf("Dropped() = %d, want 2", n)
	}

	// The turn was given back: serialized traffic still flows.
	dial(t, p.Addr()).roundTrip("ping")

	// ResetFaults discards pending rules.
	p.DropReplies(1, nil)
	p.ResetFaults()
	dial(t, p.Addr()).roundTrip("findAndModify")
}

func TestCounts(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	p := newProxy(t, up.addr(), Options{})
	c := dial(t, p.Addr())

	c.roundTrip("ping")
	c.roundTrip("ping")
	c.roundTrip("update")

	got := p.Counts()
	if got["ping"] != 2 || got["update"] != 1 || len(got) != 2 {
		t.Errorf("Counts() = %v", got)
	}
	got["ping"] = 100 // a copy
	if p.Count("ping") != 2 {
		t.Errorf("Count(ping) = %d, want 2", p.Count("ping"))
	}

	p.ResetCounts()
	if n := len(p.Counts()); n != 0 {
		t.Errorf("%d counts after ResetCounts", n)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()

	if _, err := New("no-port", Options{}); err == nil {
		t.Error("New with a bad upstream address: no error")
	}
	if _, err := New("127.0.0.1:1", Options{Listen: "256.0.0.1:0"}); err == nil {
		t.Error("New with a bad listen address: no error")
	}
}

func TestUnreachableUpstream(t *testing.T) {
	t.Parallel()

	// A port that was just free: connections to it are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	p := newProxy(t, addr, Options{DialTimeout: time.Second})
	c := dial(t, p.Addr())
	if _, _, err := c.recv(5 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("client of a proxy without upstream: err = %v, want connection closed", err)
	}
}

func TestPingHelper(t *testing.T) {
	t.Parallel()

	up := newFakeServer(t)
	if err := Ping(context.Background(), up.addr()); err != nil {
		t.Fatal(err)
	}

	// A silent server: Ping honours the context.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := Ping(ctx, ln.Addr().String()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping of a silent server: %v, want DeadlineExceeded", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
