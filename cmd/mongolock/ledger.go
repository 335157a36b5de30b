package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The demo's ledger: a file opened with O_APPEND by every worker process,
// so its order is the real order of the writes across processes. A worker
// writes "enter" right after it acquired the lock and "leave" right before
// it releases it; the demo writes "killed" once a worker it killed is dead.
// One event a line:
//
//	<unix nanoseconds> <enter|leave|lost|killed> <fence> <worker>

// Ledger operations.
const (
	opEnter  = "enter"  // the worker acquired the lock
	opLeave  = "leave"  // the worker is about to release it
	opLost   = "lost"   // the worker's lease was lost while it held it
	opKilled = "killed" // the demo killed the worker (SIGKILL), which is now dead
)

// ledgerEvent is one line of the ledger.
type ledgerEvent struct {
	at     time.Time
	op     string
	fence  int64
	worker string
}

func (e ledgerEvent) String() string {
	return fmt.Sprintf("%d %s %d %s", e.at.UnixNano(), e.op, e.fence, e.worker)
}

// appendEvent writes e to the ledger f (opened with O_APPEND) in one write.
func appendEvent(f *os.File, e ledgerEvent) error {
	_, err := f.WriteString(e.String() + "\n")
	return err
}

func parseEvent(line string) (ledgerEvent, error) {
	fields := strings.Fields(line)
	if len(fields) != 4 {
		return ledgerEvent{}, fmt.Errorf("ledger line %q: want 4 fields", line)
	}
	ns, err1 := strconv.ParseInt(fields[0], 10, 64)
	fence, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil {
		return ledgerEvent{}, fmt.Errorf("ledger line %q: bad number", line)
	}
	switch fields[1] {
	case opEnter, opLeave, opLost, opKilled:
	default:
		return ledgerEvent{}, fmt.Errorf("ledger line %q: unknown event %q", line, fields[1])
	}
	return ledgerEvent{at: time.Unix(0, ns), op: fields[1], fence: fence, worker: fields[3]}, nil
}

// ledgerTail reads the events appended to a ledger since the last call.
type ledgerTail struct {
	r       *bufio.Reader
	partial string
}

func newLedgerTail(f io.Reader) *ledgerTail { return &ledgerTail{r: bufio.NewReader(f)} }

// next returns the complete lines written since the last call.
func (t *ledgerTail) next() ([]ledgerEvent, error) {
	var out []ledgerEvent
	for {
		s, err := t.r.ReadString('\n')
		if err == io.EOF {
			t.partial += s
			return out, nil
		}
		if err != nil {
			return out, err
		}
		line := t.partial + s
		t.partial = ""
		e, err := parseEvent(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// ledgerCheck follows the ledger event by event and keeps what the demo
// reports: it is the judge of the guarantees.
type ledgerCheck struct {
	perWorker    map[string]int // acquisitions
	acquisitions int
	overlaps     int      // an enter while another section was open
	overlapLines []string // the first few, for the report
	fenceErrors  int      // a fence not above the previous one
	lost         int      // leases lost while held

	open      map[string]ledgerEvent // open sections by worker
	lastFence int64
	lastLeave *ledgerEvent // the latest leave not yet followed by an enter

	killed      *ledgerEvent // the kill, once it happened
	killedOpen  bool         // the killed worker was inside when it died
	recovery    time.Duration
	recovered   bool
	handoffs    []time.Duration
	longestHold time.Duration
	longestBy   string
}

func newLedgerCheck() *ledgerCheck {
	return &ledgerCheck{perWorker: map[string]int{}, open: map[string]ledgerEvent{}}
}

// observe applies one event. It returns what happened, in words, for the
// live display ("" for nothing worth a line).
func (c *ledgerCheck) observe(e ledgerEvent, expire time.Duration) string {
	switch e.op {
	case opEnter:
		note := ""
		if len(c.open) > 0 {
			c.overlaps++
			for w := range c.open {
				if len(c.overlapLines) < 5 {
					c.overlapLines = append(c.overlapLines, fmt.Sprintf("%s entered while %s was inside", e.worker, w))
				}
				note = fmt.Sprintf("  OVERLAP: %s is still inside!", w)
			}
		}
		if e.fence <= c.lastFence {
			c.fenceErrors++
			note += fmt.Sprintf("  FENCE %d NOT ABOVE %d!", e.fence, c.lastFence)
		}
		c.lastFence = e.fence
		c.open[e.worker] = e
		c.perWorker[e.worker]++
		c.acquisitions++

		switch {
		case c.killed != nil && !c.recovered:
			c.recovered = true
			c.recovery = e.at.Sub(c.killed.at)
			note = fmt.Sprintf("  (%s after the kill: the dead holder's lease expired)", fmtDuration(c.recovery)) + note
		case c.lastLeave != nil:
			h := e.at.Sub(c.lastLeave.at)
			c.handoffs = append(c.handoffs, h)
			note = fmt.Sprintf("  (hand-off %s)", fmtDuration(h)) + note
		}
		c.lastLeave = nil
		return fmt.Sprintf("%-10s has the lock   fence %d%s", e.worker, e.fence, note)

	case opLeave:
		in, ok := c.open[e.worker]
		delete(c.open, e.worker)
		c.lastLeave = &e
		if ok {
			hold := e.at.Sub(in.at)
			if hold > c.longestHold {
				c.longestHold, c.longestBy = hold, e.worker
			}
			if hold > expire {
				return fmt.Sprintf("%-10s released it after %s, longer than the %s expiry: kept alive by renewals", e.worker, fmtDuration(hold), expire)
			}
		}
		return ""

	case opLost:
		delete(c.open, e.worker)
		c.lost++
		return fmt.Sprintf("%-10s LOST its lease while holding the lock", e.worker)

	case opKilled:
		_, c.killedOpen = c.open[e.worker]
		delete(c.open, e.worker)
		c.killed = &e
		c.lastLeave = nil
		if c.killedOpen {
			return fmt.Sprintf("%-10s KILLED with SIGKILL while holding the lock (fence %d): it cannot release it", e.worker, e.fence)
		}
		return fmt.Sprintf("%-10s KILLED with SIGKILL (it had just released the lock)", e.worker)
	}
	return ""
}

// percentile returns the p-th percentile (0 < p <= 100) of ds, nearest
// rank; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s))*p/100)) - 1
	return s[max(0, min(rank, len(s)-1))]
}
