package wireproxy

import (
	"strings"
	"sync/atomic"
	"time"
)

// rule is one pending DropReplies, DelayNext or FailNext request: it applies
// to the next remaining requests whose command name matches. Its fields but
// remaining are not modified after the rule is added.
type rule struct {
	remaining atomic.Int64
	match     func(cmd string) bool

	request, reply time.Duration // DelayNext
	failure        Failure       // FailNext
}

// newRule returns a rule for the next n requests that match (nil matches
// every command).
func newRule(n int, match func(cmd string) bool) *rule {
	if match == nil {
		match = func(string) bool { return true }
	}

	r := &rule{match: match}
	r.remaining.Store(int64(n))

	return r
}

// delays are the request and reply delays of [Proxy.SetDelay].
type delays struct {
	request, reply time.Duration
}

// SetDelay delays the requests of command cmd by request before they are
// forwarded upstream, and their replies by reply before they are written to
// the client. cmd is compared without regard to case; "" means every
// command. A later call for the same cmd replaces the delays; zero (or
// negative) for both removes them.
//
// Delays add up: a request is delayed by [Proxy.SetLatency], the "" delay,
// the delay for its own command name and that of a [Proxy.DelayNext] rule.
//
// A request delay is waited out before the request waits for a pause to end
// and for the serialization turn, so it holds up nothing else. A reply delay
// starts once the whole reply has been read from upstream, after the
// serialization turn has been given back: other commands run meanwhile, and a
// delayed reply can reach its client after the reply to a later request on
// another connection. Replies on one connection keep their order: a reply
// queued behind a delayed one waits for it.
func (p *Proxy) SetDelay(cmd string, request, reply time.Duration) {
	key := strings.ToLower(cmd)
	d := delays{request: max(request, 0), reply: max(reply, 0)}

	p.mu.Lock()
	defer p.mu.Unlock()

	if d == (delays{}) {
		delete(p.delays, key)
		return
	}
	p.delays[key] = d
}

// DelayNext delays the next n requests whose command name matches (nil
// matches every command) by request, and their replies by reply, in
// addition to the delays of [Proxy.SetDelay]. Requests are matched as they
// are read from their clients; requests that expect no reply are never
// matched. Each request uses up at most one DelayNext rule, the oldest that
// matches. Calls accumulate. match is called from the proxy's goroutines and
// must not call the proxy's methods. n <= 0, or no delay at all, does
// nothing.
//
// Delaying only the next reply of a command makes that reply arrive after
// the replies to commands executed after it; see [Proxy.SetDelay].
func (p *Proxy) DelayNext(n int, match func(cmd string) bool, request, reply time.Duration) {
	request, reply = max(request, 0), max(reply, 0)
	if n <= 0 || request+reply == 0 {
		return
	}

	r := newRule(n, match)
	r.request, r.reply = request, reply

	p.mu.Lock()
	defer p.mu.Unlock()

	p.delayNext = append(p.delayNext, r)
}

// takeRule uses up one match of the oldest rule in *rules whose match
// accepts cmd and returns it, or nil. It drops used-up rules from *rules.
// The match functions are called without holding p.mu.
func (p *Proxy) takeRule(rules *[]*rule, cmd string) *rule {
	p.mu.Lock()
	if len(*rules) == 0 {
		p.mu.Unlock()
		return nil
	}
	live := make([]*rule, 0, len(*rules))
	kept := (*rules)[:0]
	for _, r := range *rules {
		if r.remaining.Load() > 0 {
			live = append(live, r)
			kept = append(kept, r)
		}
	}
	clear((*rules)[len(kept):])
	*rules = kept
	p.mu.Unlock()

	for _, r := range live {
		if !r.match(cmd) {
			continue
		}
		for {
			n := r.remaining.Load()
			if n <= 0 {
				break
			}
			if r.remaining.CompareAndSwap(n, n-1) {
				return r
			}
		}
	}

	return nil
}

// delaysFor returns how long to delay req and its reply, using up a
// DelayNext rule if one matches, and the channel that the next
// [Proxy.ResetFaults] closes to end those delays.
func (p *Proxy) delaysFor(req request) (delays, <-chan struct{}) {
	d := delays{request: p.Latency()}

	p.mu.Lock()
	reset := p.resetCh
	if len(p.delays) > 0 {
		all := p.delays[""]
		own := p.delays[strings.ToLower(req.cmd)]
		if req.cmd == "" {
			own = delays{}
		}
		d.request += all.request + own.request
		d.reply += all.reply + own.reply
	}
	p.mu.Unlock()

	if !req.noReply {
		if r := p.takeRule(&p.delayNext, req.cmd); r != nil {
			d.request += r.request
			d.reply += r.reply
		}
	}

	return d, reset
}

// sleep waits for d. It fails when done is closed or the proxy is closed,
// and returns early (successfully) when reset is closed.
func (p *Proxy) sleep(d time.Duration, reset, done <-chan struct{}) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-reset:
		return nil
	default:
	}

	p.sleeping.Add(1)
	defer p.sleeping.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return nil
	case <-reset:
		return nil
	case <-done:
		return errConnClosed
	case <-p.ctx.Done():
		return errProxyClosed
	}
}
