package mongolock

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// maxValueBytes bounds an election candidate's value.
const maxValueBytes = 4096

// Election is a leader election: candidates Campaign for the lock name,
// and the one that holds it leads, with its value stored beside it until
// it resigns (releases its Lease) or its lease is lost. The term is the
// lease's fence, so terms only rise. Create it with Client.Election.
type Election struct {
	c    *Client
	name string
	opts []LockOption
}

// LeaderInfo describes an election's leader. Times are the database
// server's. The zero LeaderInfo (no Owner) stands for "no leader".
type LeaderInfo struct {
	Value string    // the value the leader campaigned with
	Owner string    // the leader's owner name
	Term  int64     // the leader's fence: it rises with every new leader
	Since time.Time // when it became leader (server time)
}

// Election returns the election name (the lock key it campaigns for; keep
// other locks off that key). opts apply to every Campaign: Expire (default
// DefaultLeaseExpire, kept alive) or NeverExpire, Owner, KeepAlive,
// Timeout; the recipes (Limit, Shared, Fair) and MinHold are refused. A
// bad name or option is reported by the Election's methods.
func (c *Client) Election(name string, opts ...LockOption) *Election {
	return &Election{c: c, name: name, opts: opts}
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Campaign blocks until this candidate leads the election (or Timeout
// passes or ctx ends: then the error is a *LockedError naming the leader),
// and returns its Lease: its Fence is the term, Lost closes when it stops
// leading, and Release resigns. value (up to 4096 bytes of UTF-8) is what
// Leader and Observe report while it leads.
func (e *Election) Campaign(ctx context.Context, value string) (*Lease, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	switch {
	case len(value) > maxValueBytes:
		return nil, argError("value", "must be at most %d bytes, got %d", maxValueBytes, len(value))
	case !utf8.ValidString(value):
		return nil, argError("value", "must be valid UTF-8")
	}
	if !cfg.expireSet && !cfg.never {
		cfg.expire = DefaultLeaseExpire
	}
	owner := cfg.owner
	if !cfg.ownerSet {
		owner = newOwner()
	}
	cfg.value = &value
	return e.c.acquireLease(ctx, e.name, owner, cfg, waitForever)
}

func (e *Election) config() (lockConfig, error) {
	if err := e.c.checkOpen(); err != nil {
		return lockConfig{}, err
	}
	if err := validKey(e.name); err != nil {
		return lockConfig{}, argError("name", "%s", err.(*ArgumentError).Rule)
	}
	cfg, err := buildLockConfig(e.opts)
	if err != nil {
		return cfg, err
	}
	switch {
	case cfg.multi() || cfg.fair || cfg.limitGiven:
		return cfg, argError("Limit, Shared and Fair", "are not for elections: an election has one leader")
	case cfg.minHold > 0:
		return cfg, argError("MinHold", "is not for elections: a leader resigns when it releases")
	}
	return cfg, nil
}

// Leader returns the election's current leader, or an error matching
// ErrNotFound if there is none (nobody holds it, or its holder's lease
// expired by the server's clock).
func (e *Election) Leader(ctx context.Context) (LeaderInfo, error) {
	if _, err := e.config(); err != nil {
		return LeaderInfo{}, err
	}
	d, err := e.c.store.find(ctx, e.name)
	if err != nil {
		return LeaderInfo{}, fmt.Errorf("mongolock: reading the leader of %q: %w", e.name, err)
	}
	now, err := e.c.clock.Now(ctx)
	if err != nil {
		return LeaderInfo{}, err
	}
	if d.kind != "" || !d.heldAt(now.at) {
		return LeaderInfo{}, fmt.Errorf("%w: election %q has no leader", ErrNotFound, e.name)
	}
	return LeaderInfo{Value: d.Value, Owner: d.Owner, Term: d.Fence, Since: d.Created}, nil
}

// Observe returns a channel that delivers the current leader, if any, then
// each change of leader (a new term, or the leader gone: the zero
// LeaderInfo) until ctx ends or the Client is closed; then the channel is
// closed. It watches by reading the leader every WithRetryInterval (and at
// once when a Lease of this Client resigns), so a leader that led for
// less than that may go unseen; the terms it delivers only rise. A read
// that fails is tried again at the next interval; a bad name closes the
// channel at once.
func (e *Election) Observe(ctx context.Context) <-chan LeaderInfo {
	ch := make(chan LeaderInfo)
	if _, err := e.config(); err != nil {
		close(ch)
		return ch
	}
	watch := func(bg context.Context) {
		defer close(ch)
		var (
			last    LeaderInfo
			maxTerm int64
			started bool
			timer   = time.NewTimer(0)
		)
		defer timer.Stop()
		for {
			released, leave := e.c.waits.enter(e.name)
			select {
			case <-ctx.Done():
				leave()
				return
			case <-e.c.closing:
				leave()
				return
			case <-bg.Done():
				leave()
				return
			case <-released:
			case <-timer.C:
			}
			leave()
			timer.Reset(e.c.cfg.retryInterval)
			info, err := e.Leader(ctx)
			switch {
			case errors.Is(err, ErrNotFound):
				info = LeaderInfo{}
			case err != nil:
				continue
			}
			if info.Owner != "" && info.Term < maxTerm {
				continue // an older read answered late: terms only rise
			}
			if started && info == last || !started && info.Owner == "" {
				continue
			}
			select {
			case ch <- info:
				last, started, maxTerm = info, true, max(maxTerm, info.Term)
			case <-ctx.Done():
				return
			case <-e.c.closing:
				return
			}
		}
	}
	if !e.c.background(watch) {
		close(ch)
	}
	return ch
}
