package wireproxy

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// errMalformedReply reports an upstream OP_MSG reply the proxy cannot edit.
var errMalformedReply = errors.New("wireproxy: malformed OP_MSG reply")

// writeConcernFailed is MongoDB's WriteConcernFailed error code, the one a
// write concern timeout (wtimeout) reports.
const writeConcernFailed = 64

// Failure describes an error reply that [Proxy.FailNext] sends to the client
// instead of the server's reply.
//
// With WriteConcern false the reply is a command error,
//
//	{ok: 0, errmsg: Message, code: Code, codeName: CodeName, errorLabels: Labels}
//
// With WriteConcern true it is a successful reply carrying a write concern
// error, {ok: 1, ..., writeConcernError: {code: Code, codeName: CodeName,
// errmsg: Message}, errorLabels: Labels}; for code 64 (WriteConcernFailed)
// the writeConcernError also has errInfo: {wtimeout: true}, as MongoDB adds
// when a write concern's wtimeout expires. errorLabels is omitted when
// Labels is empty.
type Failure struct {
	// Code and CodeName are the error's code and name, e.g. 10107 and
	// "NotWritablePrimary".
	Code     int32
	CodeName string

	// Message is the error message (errmsg). Empty means
	// "<CodeName> (injected by wireproxy)".
	Message string

	// WriteConcern makes the reply {ok: 1} with a writeConcernError
	// instead of an {ok: 0} command error.
	WriteConcern bool

	// Applied forwards the request to the server first and waits for its
	// reply: the command is executed, as when a server fails after applying
	// a write. With WriteConcern, the server's reply is kept and the
	// writeConcernError added to it; otherwise the server's reply is
	// discarded.
	//
	// Without Applied the request is not forwarded (the command is not
	// executed). With WriteConcern, the reply then reports that nothing was
	// written: n: 0 (and nModified: 0 for update); for findAndModify,
	// value: null and lastErrorObject: {n: 0, updatedExisting: false}.
	Applied bool

	// Labels are the reply's errorLabels, e.g. "RetryableWriteError",
	// which a replica set member adds to errors of retryable writes.
	Labels []string
}

// message returns the errmsg of the reply.
func (f *Failure) message() string {
	if f.Message != "" {
		return f.Message
	}
	return f.CodeName + " (injected by wireproxy)"
}

// FailNext makes the proxy answer the next n OP_MSG requests whose command
// name matches (nil matches every command, the drivers' monitoring hellos
// included) with the error reply f describes, either without forwarding them
// or, with f.Applied, after the server has executed them. The reply
// answers the request (its responseTo is the request's ID) and is subject to
// reply delays like any other.
//
// Requests are matched in the order they are executed (with
// [Options.Serialize], when they get the turn). A request is matched against
// FailNext rules first, then against [Proxy.DropReplies] rules: it uses up
// at most one rule. Requests that expect no reply, that allow exhaust
// replies, and requests other than OP_MSG are never matched. Requests that
// are not forwarded are not counted by [Proxy.Counts]; their reply is queued
// at once, so on a connection with several requests in flight (which
// drivers do not do) it may overtake the replies to earlier requests.
// Calls accumulate. match is called from the proxy's goroutines and must
// not call the proxy's methods. n <= 0 does nothing.
func (p *Proxy) FailNext(n int, match func(cmd string) bool, f Failure) {
	if n <= 0 {
		return
	}

	r := newRule(n, match)
	r.failure = f
	r.failure.Labels = slices.Clone(f.Labels)

	p.mu.Lock()
	defer p.mu.Unlock()

	p.fails = append(p.fails, r)
}

// Failed returns how many replies [Proxy.FailNext] rules have replaced so
// far.
func (p *Proxy) Failed() int64 {
	return p.failed.Load()
}

// failureReply returns the OP_MSG reply for a request that failure f
// answers without the request having been forwarded.
func failureReply(f *Failure, requestID, responseTo int32, cmd string) []byte {
	b := bsoncore.NewDocumentBuilder()
	if !f.WriteConcern {
		appendCommandError(b, f)
		return newOpMsg(requestID, responseTo, b.Build())
	}

	// Nothing was written.
	switch strings.ToLower(cmd) {
	case "update":
		b.AppendInt32("n", 0).AppendInt32("nModified", 0)
	case "findandmodify":
		b.AppendDocument("lastErrorObject", bsoncore.NewDocumentBuilder().
			AppendInt32("n", 0).
			AppendBoolean("updatedExisting", false).
			Build())
		b.AppendNull("value")
	case "insert", "delete":
		b.AppendInt32("n", 0)
	}
	b.AppendDouble("ok", 1)
	appendWriteConcernError(b, f)

	return newOpMsg(requestID, responseTo, b.Build())
}

// appliedFailureReply returns the reply to send instead of reply, the
// upstream's reply to a request that f fails after it was applied.
func appliedFailureReply(f *Failure, reply []byte, h header) ([]byte, error) {
	if !f.WriteConcern {
		return failureReply(f, h.requestID, h.responseTo, ""), nil
	}

	if h.opCode != opMsg || len(reply) < headerLen+4 {
		return nil, errMalformedReply
	}
	flags := binary.LittleEndian.Uint32(reply[headerLen : headerLen+4])
	if flags&(msgChecksumPresent|msgMoreToCome) != 0 {
		return nil, errMalformedReply
	}
	body, ok := opMsgBody(reply[headerLen+4:])
	if !ok {
		return nil, errMalformedReply
	}
	elems, err := body.Elements()
	if err != nil {
		return nil, errMalformedReply
	}

	b := bsoncore.NewDocumentBuilder()
	for _, e := range elems {
		switch key := e.Key(); {
		case key == "writeConcernError":
		case key == "errorLabels" && len(f.Labels) > 0:
		default:
			b.AppendValue(key, e.Value())
		}
	}
	appendWriteConcernError(b, f)

	return newOpMsg(h.requestID, h.responseTo, b.Build()), nil
}

// appendCommandError appends the fields of an {ok: 0} command error.
func appendCommandError(b *bsoncore.DocumentBuilder, f *Failure) {
	b.AppendDouble("ok", 0).
		AppendString("errmsg", f.message()).
		AppendInt32("code", f.Code).
		AppendString("codeName", f.CodeName)
	appendLabels(b, f.Labels)
}

// appendWriteConcernError appends a writeConcernError and errorLabels.
func appendWriteConcernError(b *bsoncore.DocumentBuilder, f *Failure) {
	wce := bsoncore.NewDocumentBuilder().
		AppendInt32("code", f.Code).
		AppendString("codeName", f.CodeName).
		AppendString("errmsg", f.message())
	if f.Code == writeConcernFailed {
		wce.AppendDocument("errInfo", bsoncore.NewDocumentBuilder().AppendBoolean("wtimeout", true).Build())
	}
	b.AppendDocument("writeConcernError", wce.Build())
	appendLabels(b, f.Labels)
}

// appendLabels appends errorLabels unless labels is empty.
func appendLabels(b *bsoncore.DocumentBuilder, labels []string) {
	if len(labels) == 0 {
		return
	}
	arr := bsoncore.NewArrayBuilder()
	for _, l := range labels {
		arr.AppendString(l)
	}
	b.AppendArray("errorLabels", arr.Build())
}
