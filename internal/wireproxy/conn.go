package wireproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// errConnClosed is returned by waits interrupted by a closed connection.
var errConnClosed = errors.New("wireproxy: connection closed")

// readBufferSize is the size of the buffered readers on both sides.
const readBufferSize = 64 << 10

// conn is one proxied client connection and its upstream connection.
type conn struct {
	p        *Proxy
	client   net.Conn
	upstream net.Conn

	done      chan struct{} // closed by close
	closeOnce sync.Once

	// outWake is signalled (capacity 1) when an item is added to out.
	outWake chan struct{}

	mu      sync.Mutex
	closed  bool
	holding bool                 // this connection holds p.turn
	pending map[int32]pendingReq // tracked requests by request ID
	out     []outItem            // what pumpOut still has to do, in order
}

// pendingReq is what the reply pump must do with the reply to a request.
type pendingReq struct {
	serialized bool            // the request holds the turn until its reply is read
	drop       bool            // discard the reply and close the connection
	fail       *Failure        // replace the reply (the request was applied)
	delay      time.Duration   // delay the reply
	reset      <-chan struct{} // closed by ResetFaults: delay no more
}

// outItem is one thing to do on the client side, in order: write msg to
// the client, not before at (zero: at once) unless reset is closed first,
// or close the connection.
type outItem struct {
	msg   []byte
	at    time.Time
	reset <-chan struct{}
	close bool
}

// newConn returns a conn for the client connection nc and upstream up.
func newConn(p *Proxy, nc, up net.Conn) *conn {
	return &conn{
		p:        p,
		client:   nc,
		upstream: up,
		done:     make(chan struct{}),
		outWake:  make(chan struct{}, 1),
		pending:  make(map[int32]pendingReq),
	}
}

// run pumps messages in both directions until either side fails or the
// connection is closed, then closes both sides and waits for its pumps.
func (c *conn) run() {
	var wg sync.WaitGroup
	wg.Go(c.pumpReplies)
	wg.Go(c.pumpOut)

	c.pumpRequests()
	wg.Wait()
}

// close closes both sides of the connection and gives back the turn if the
// connection holds it. It is idempotent.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if c.holding {
			c.holding = false
			<-c.p.turn
		}
		c.mu.Unlock()

		close(c.done)
		_ = c.client.Close()
		_ = c.upstream.Close()
	})
}

// pumpRequests reads requests from the client and forwards them upstream.
func (c *conn) pumpRequests() {
	defer c.close()

	r := bufio.NewReaderSize(c.client, readBufferSize)
	var buf []byte

	for {
		msg, h, err := readMessage(r, buf)
		if err != nil {
			c.logEnd("client", err)
			return
		}
		buf = msg

		if err := c.forward(msg, h, parseRequest(msg, h)); err != nil {
			c.logEnd("forward", err)
			return
		}
	}
}

// forward applies the faults and the serialization to one request and
// writes it upstream, or answers it with a failure.
func (c *conn) forward(msg []byte, h header, req request) error {
	p := c.p

	d, reset := p.delaysFor(req)
	if err := p.sleep(d.request, reset, c.done); err != nil {
		return err
	}

	serialize := p.opts.Serialize && !req.blocking && !req.opaque
	for {
		if err := p.waitUnpaused(c.done); err != nil {
			return err
		}
		if !serialize {
			break
		}
		if err := c.acquireTurn(); err != nil {
			return err
		}
		// Pause may have been called while this request waited for the turn.
		if !p.isPaused() {
			break
		}
		c.releaseTurn()
	}

	failable := h.opCode == opMsg && !req.noReply && !req.opaque &&
		opMsgFlags(msg)&msgExhaustAllowed == 0
	ex := p.execute(req, failable)

	if !ex.forward {
		// Answered without the server: nothing to wait for.
		c.releaseTurn()
		p.failed.Add(1)
		p.logger.Debug("wireproxy: failed request", "cmd", req.cmd, "code", ex.fail.Code)
		reply := failureReply(ex.fail, p.replyID.Add(1), h.requestID, req.cmd)
		c.send(outItem{msg: reply, at: deliverAt(d.reply), reset: reset})
		return nil
	}

	holdUntilReply := serialize && !req.noReply
	if holdUntilReply || ex.drop || ex.fail != nil || (d.reply > 0 && !req.noReply) {
		c.mu.Lock()
		c.pending[h.requestID] = pendingReq{
			serialized: holdUntilReply,
			drop:       ex.drop,
			fail:       ex.fail,
			delay:      d.reply,
			reset:      reset,
		}
		c.mu.Unlock()
	}

	_, err := c.upstream.Write(msg)
	if serialize && req.noReply {
		c.releaseTurn()
	}
	if err != nil {
		return fmt.Errorf("wireproxy: write request upstream: %w", err)
	}

	return nil
}

// pumpReplies reads replies from upstream and queues them for the client.
// When upstream fails, or a reply is dropped, it queues the closing of the
// connection, so that replies queued before are delivered first.
func (c *conn) pumpReplies() {
	r := bufio.NewReaderSize(c.upstream, readBufferSize)

	for {
		// A fresh buffer: the message may wait in c.out.
		msg, h, err := readMessage(r, nil)
		if err != nil {
			c.logEnd("upstream", err)
			c.send(outItem{close: true})
			return
		}

		c.mu.Lock()
		pr, tracked := c.pending[h.responseTo]
		if tracked {
			delete(c.pending, h.responseTo)
		}
		c.mu.Unlock()

		// The whole reply has been read: the next command may run.
		if pr.serialized {
			c.releaseTurn()
		}

		if pr.drop {
			c.p.dropped.Add(1)
			c.p.logger.Debug("wireproxy: dropped reply", "client", c.client.RemoteAddr().String())
			c.send(outItem{close: true})
			return
		}

		if pr.fail != nil {
			failed, err := appliedFailureReply(pr.fail, msg, h)
			if err != nil {
				c.p.logger.Debug("wireproxy: reply kept, cannot add the failure", "error", err)
			} else {
				c.p.failed.Add(1)
				msg = failed
			}
		}

		c.send(outItem{msg: msg, at: deliverAt(pr.delay), reset: pr.reset})
	}
}

// deliverAt returns when a reply delayed by d from now is due (zero: now).
func deliverAt(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// send queues it for pumpOut.
func (c *conn) send(it outItem) {
	c.mu.Lock()
	c.out = append(c.out, it)
	c.mu.Unlock()

	select {
	case c.outWake <- struct{}{}:
	default: // already signalled
	}
}

// pumpOut writes queued replies to the client in order, each not before
// it is due, until the connection is closed or a close item is reached.
func (c *conn) pumpOut() {
	for {
		c.mu.Lock()
		n := len(c.out)
		var it outItem
		if n > 0 {
			it = c.out[0]
			copy(c.out, c.out[1:])
			c.out[n-1] = outItem{}
			c.out = c.out[:n-1]
		}
		c.mu.Unlock()

		if n == 0 {
			select {
			case <-c.outWake:
				continue
			case <-c.done:
				return
			}
		}

		if !it.at.IsZero() {
			if err := c.p.sleep(time.Until(it.at), it.reset, c.done); err != nil {
				return
			}
		}

		if it.close {
			c.close()
			return
		}

		if _, err := c.client.Write(it.msg); err != nil {
			c.logEnd("write reply", err)
			c.close()
			return
		}
	}
}

// acquireTurn waits for the proxy-wide serialization turn.
func (c *conn) acquireTurn() error {
	select {
	case c.p.turn <- struct{}{}:
	case <-c.done:
		return errConnClosed
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	if c.closed {
		// close ran before this connection was marked as holding the turn.
		<-c.p.turn
		return errConnClosed
	}
	c.holding = true

	return nil
}

// releaseTurn gives back the turn if this connection holds it.
func (c *conn) releaseTurn() {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.holding {
		c.holding = false
		<-c.p.turn
	}
}

// logEnd logs why a pump stopped, unless it is an ordinary disconnect.
func (c *conn) logEnd(where string, err error) {
	select {
	case <-c.done:
		return // closed on purpose
	default:
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	c.p.logger.Debug("wireproxy: connection ends", "where", where, "error", err)
}
