// Package wireproxy is a MongoDB wire-protocol TCP proxy for tests.
//
// A [Proxy] accepts client connections and opens one upstream connection for
// each. It frames messages by their 4-byte little-endian length prefix and
// looks into OP_MSG and legacy OP_QUERY requests far enough to learn the
// command name. It can serialize commands proxy-wide (see
// [Options.Serialize]) and inject faults: latency and per-command delays of
// requests and replies, a pause, dropped connections, lost replies and
// MongoDB error replies. Faults affect only traffic through the proxy.
//
// Replies reach each client in the order the server sent them; the proxy
// writes them from a goroutine of their own so that a delayed reply holds up
// only the replies behind it on the same connection.
//
// Compressed messages (OP_COMPRESSED) are forwarded as they are, with an
// empty command name and without serialization; the embedded test server
// does not negotiate compression.
package wireproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// errProxyClosed is returned by waits interrupted by Close.
var errProxyClosed = errors.New("wireproxy: proxy closed")

// Options configure a [Proxy].
type Options struct {
	// Listen is the TCP address to listen on. Empty means "127.0.0.1:0".
	Listen string

	// Serialize makes commands execute one at a time: a request holds a
	// proxy-wide turn from the moment it is forwarded until its reply has
	// been read from upstream. Requests that may block server-side
	// (an awaitable hello, getMore, exhaust or tailable/awaitData requests)
	// and requests the proxy cannot look into (OP_COMPRESSED) never hold
	// the turn. Requests that expect no reply (moreToCome) wait for the
	// turn but release it as soon as they have been written upstream.
	Serialize bool

	// DialTimeout bounds each upstream connection attempt.
	// Zero means 10 seconds.
	DialTimeout time.Duration

	// Logger receives debug messages about connections. Nil discards them.
	Logger *slog.Logger
}

// Proxy is a MongoDB wire-protocol proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	upstream string
	opts     Options
	ln       net.Listener
	logger   *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// turn is the serialization semaphore (capacity 1).
	turn chan struct{}

	latency atomic.Int64 // time.Duration
	dropped atomic.Int64
	failed  atomic.Int64
	replyID atomic.Int32 // request IDs of the replies the proxy makes up

	mu        sync.Mutex
	closed    bool
	conns     map[*conn]struct{}
	paused    bool
	resumeCh  chan struct{} // closed by Resume; valid while paused
	resetCh   chan struct{} // closed and replaced by ResetFaults
	sleeping  atomic.Int64  // requests and replies waiting out a delay (for tests)
	delays    map[string]delays
	delayNext []*rule
	drops     []*rule
	fails     []*rule
	counts    map[string]int64
}

// New starts a proxy that forwards connections to upstream ("host:port").
// It listens immediately; call [Proxy.Close] to stop it.
func New(upstream string, opts Options) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("wireproxy: upstream address %q: %w", upstream, err)
	}

	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("wireproxy: listen on %s: %w", listen, err)
	}

	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	ctx, cancel := context.WithCancel(context.Background())

	p := &Proxy{
		upstream: upstream,
		opts:     opts,
		ln:       ln,
		logger:   logger,
		ctx:      ctx,
		cancel:   cancel,
		turn:     make(chan struct{}, 1),
		conns:    make(map[*conn]struct{}),
		resetCh:  make(chan struct{}),
		delays:   make(map[string]delays),
		counts:   make(map[string]int64),
	}

	p.wg.Add(1)
	go p.acceptLoop()

	return p, nil
}

// Addr returns the address the proxy listens on ("host:port").
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// Upstream returns the upstream address given to [New].
func (p *Proxy) Upstream() string {
	return p.upstream
}

// Close stops accepting connections, closes all client and upstream
// connections and waits for the proxy's goroutines to finish. It does not
// hang while the proxy is paused. Calling Close more than once is harmless.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.ln.Close()

	for _, c := range conns {
		c.close()
	}

	p.wg.Wait()

	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("wireproxy: close listener: %w", err)
	}

	return nil
}

// SetLatency adds d of delay before each request is forwarded upstream.
// Zero or a negative d removes the delay. The delay is applied before a
// request waits for the serialization turn, so delayed requests do not hold
// up others. It adds up with the delays of [Proxy.SetDelay] and
// [Proxy.DelayNext].
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(d, 0)))
}

// Latency returns the delay set by [Proxy.SetLatency].
func (p *Proxy) Latency() time.Duration {
	return time.Duration(p.latency.Load())
}

// Pause stops forwarding requests: requests read from clients after Pause
// returns wait (their connections stay open) until [Proxy.Resume],
// [Proxy.DropConnections] or [Proxy.Close]. Replies already on their way
// are still delivered.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()

	if !p.paused {
		p.paused = true
		p.resumeCh = make(chan struct{})
	}
}

// Resume lets requests held by [Proxy.Pause] through.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.paused {
		p.paused = false
		close(p.resumeCh)
		p.resumeCh = nil
	}
}

// Paused reports whether the proxy is paused.
func (p *Proxy) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.paused
}

// DropConnections closes all current client connections and their upstream
// connections. New connections are accepted afterwards.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	for _, c := range conns {
		c.close()
	}
}

// DropReplies makes the next n requests whose command name matches lose
// their reply: each is forwarded and executed upstream, its reply is read
// and discarded, and then its client connection (and the upstream one) is
// closed, so the client sees a network error although the command was
// applied. A nil match matches every command. Requests that expect no reply
// are never matched, nor requests that a [Proxy.FailNext] rule matches.
// Calls accumulate: each adds a rule of its own. match is called from the
// proxy's goroutines and must not call the proxy's methods. n <= 0 does
// nothing.
//
// Replies queued before a dropped one on the same connection (held back by
// a reply delay) are delivered before the connection is closed.
func (p *Proxy) DropReplies(n int, match func(cmd string) bool) {
	if n <= 0 {
		return
	}

	r := newRule(n, match)

	p.mu.Lock()
	defer p.mu.Unlock()

	p.drops = append(p.drops, r)
}

// Dropped returns how many replies have been dropped by [Proxy.DropReplies]
// rules so far.
func (p *Proxy) Dropped() int64 {
	return p.dropped.Load()
}

// ResetFaults removes every fault: it removes the latency and the delays of
// [Proxy.SetDelay], resumes a paused proxy, discards pending
// [Proxy.DelayNext], [Proxy.DropReplies] and [Proxy.FailNext] rules, and
// ends the delays being waited out: delayed requests are forwarded and
// delayed replies delivered at once. It does not close connections and does
// not reset the counters (Counts, Dropped, Failed).
func (p *Proxy) ResetFaults() {
	p.SetLatency(0)
	p.Resume()

	p.mu.Lock()
	defer p.mu.Unlock()

	clear(p.delays)
	p.delayNext = nil
	p.drops = nil
	p.fails = nil
	close(p.resetCh)
	p.resetCh = make(chan struct{})
}

// Counts returns how many requests have been forwarded upstream, by command
// name, since the proxy started or [Proxy.ResetCounts]. Requests whose
// command name is unknown (such as OP_COMPRESSED) are counted under "".
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()

	return maps.Clone(p.counts)
}

// Count returns how many cmd requests have been forwarded upstream.
// Command names are case-sensitive ("isMaster" and "ismaster" differ).
func (p *Proxy) Count(cmd string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.counts[cmd]
}

// ResetCounts sets all command counts to zero.
func (p *Proxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()

	clear(p.counts)
}

// acceptLoop accepts client connections until the listener is closed.
func (p *Proxy) acceptLoop() {
	defer p.wg.Done()

	var backoff time.Duration
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}

			// A transient error such as running out of file descriptors.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.logger.Debug("wireproxy: accept", "error", err, "retry_in", backoff)

			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0

		p.wg.Add(1)
		go p.serve(nc)
	}
}

// serve dials upstream for the client connection nc and pumps messages in
// both directions until either side fails or the connection is dropped.
func (p *Proxy) serve(nc net.Conn) {
	defer p.wg.Done()

	dialer := net.Dialer{Timeout: p.opts.DialTimeout}
	up, err := dialer.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		p.logger.Debug("wireproxy: dial upstream", "upstream", p.upstream, "error", err)
		_ = nc.Close()
		return
	}

	c := newConn(p, nc, up)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()

	c.run()
}

// waitUnpaused blocks while the proxy is paused. It fails when the
// connection or the proxy is closed.
func (p *Proxy) waitUnpaused(done <-chan struct{}) error {
	for {
		p.mu.Lock()
		if !p.paused {
			p.mu.Unlock()
			return nil
		}
		ch := p.resumeCh
		p.mu.Unlock()

		select {
		case <-ch:
		case <-done:
			return errConnClosed
		case <-p.ctx.Done():
			return errProxyClosed
		}
	}
}

// isPaused reports whether the proxy is paused.
func (p *Proxy) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.paused
}

// execution is what the proxy does with a request it is about to forward.
type execution struct {
	fail    *Failure // reply with this failure (nil: no failure)
	forward bool     // forward the request upstream
	drop    bool     // discard the reply and close the connection
}

// execute decides what happens to req, which has passed the pause and holds
// the turn if it needs one, and counts it if it is forwarded. failable says
// whether FailNext rules may match it.
func (p *Proxy) execute(req request, failable bool) execution {
	var ex execution
	if failable {
		if r := p.takeRule(&p.fails, req.cmd); r != nil {
			ex.fail = &r.failure
		}
	}

	ex.forward = ex.fail == nil || ex.fail.Applied
	if ex.forward {
		p.mu.Lock()
		p.counts[req.cmd]++
		p.mu.Unlock()
	}

	if ex.fail == nil && !req.noReply {
		ex.drop = p.takeRule(&p.drops, req.cmd) != nil
	}

	return ex
}
