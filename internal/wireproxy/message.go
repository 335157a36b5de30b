package wireproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Wire protocol opcodes the proxy knows about.
const (
	opReply      int32 = 1
	opUpdate     int32 = 2001
	opInsert     int32 = 2002
	opQuery      int32 = 2004
	opGetMore    int32 = 2005
	opDelete     int32 = 2006
	opKillCursor int32 = 2007
	opCompressed int32 = 2012
	opMsg        int32 = 2013
)

// OP_MSG flag bits.
const (
	msgChecksumPresent uint32 = 1 << 0
	msgMoreToCome      uint32 = 1 << 1
	msgExhaustAllowed  uint32 = 1 << 16
)

// OP_QUERY flag bits.
const (
	queryTailableCursor uint32 = 1 << 1
	queryAwaitData      uint32 = 1 << 5
	queryExhaust        uint32 = 1 << 6
)

const (
	// headerLen is the size of the standard message header.
	headerLen = 16

	// maxMessageLen bounds the size of a single message. MongoDB's
	// maxMessageSizeBytes is 48,000,000; leave some room above it.
	maxMessageLen = 64 << 20
)

// errMessageLength reports a message whose length prefix is impossible.
var errMessageLength = errors.New("wireproxy: invalid message length")

// header is the standard header of every wire protocol message.
type header struct {
	length     int32
	requestID  int32
	responseTo int32
	opCode     int32
}

// parseHeader decodes the standard message header at the start of b.
func parseHeader(b []byte) header {
	return header{
		length:     int32(binary.LittleEndian.Uint32(b[0:4])),
		requestID:  int32(binary.LittleEndian.Uint32(b[4:8])),
		responseTo: int32(binary.LittleEndian.Uint32(b[8:12])),
		opCode:     int32(binary.LittleEndian.Uint32(b[12:16])),
	}
}

// readMessage reads one whole length-framed message from r. It reuses buf
// when it is large enough and returns the message (header included).
func readMessage(r *bufio.Reader, buf []byte) ([]byte, header, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, header{}, err
	}

	n := int(binary.LittleEndian.Uint32(lenBuf[:]))
	if n < headerLen || n > maxMessageLen {
		return nil, header{}, fmt.Errorf("%w: %d bytes", errMessageLength, n)
	}

	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, lenBuf[:])

	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, header{}, err
	}

	return buf, parseHeader(buf), nil
}

// request describes what the proxy needs to know about a client request.
type request struct {
	// cmd is the command name ("" when unknown, e.g. for OP_COMPRESSED).
	cmd string

	// noReply is true when the server sends no reply (OP_MSG moreToCome and
	// the legacy fire-and-forget opcodes).
	noReply bool

	// blocking is true when the request may block server-side or may be
	// answered by a stream of replies: awaitable hello, getMore, exhaust
	// and tailable/awaitData requests. Such requests never hold the turn.
	blocking bool

	// opaque is true when the proxy cannot see into the request
	// (OP_COMPRESSED), so nothing is known about its blocking behaviour.
	opaque bool
}

// parseRequest inspects a whole client message. It never fails: anything it
// cannot understand is reported as an opaque request with an empty command
// name, which the proxy forwards without serialization.
func parseRequest(msg []byte, h header) request {
	body := msg[headerLen:]

	switch h.opCode {
	case opMsg:
		return parseOpMsg(body)
	case opQuery:
		return parseOpQuery(body)
	case opGetMore:
		return request{cmd: "getMore", blocking: true}
	case opUpdate:
		return request{cmd: "update", noReply: true}
	case opInsert:
		return request{cmd: "insert", noReply: true}
	case opDelete:
		return request{cmd: "delete", noReply: true}
	case opKillCursor:
		return request{cmd: "killCursors", noReply: true}
	default:
		return request{opaque: true}
	}
}

// parseOpMsg inspects the body of an OP_MSG request (after the header).
func parseOpMsg(body []byte) request {
	if len(body) < 4 {
		return request{opaque: true}
	}

	flags := binary.LittleEndian.Uint32(body[:4])
	sections := body[4:]
	if flags&msgChecksumPresent != 0 {
		if len(sections) < 4 {
			return request{opaque: true}
		}
		sections = sections[:len(sections)-4]
	}

	req := request{
		noReply:  flags&msgMoreToCome != 0,
		blocking: flags&msgExhaustAllowed != 0,
	}

	doc, ok := opMsgBody(sections)
	if !ok {
		req.opaque = true
		return req
	}

	req.cmd = commandName(doc)
	if isBlockingCommand(req.cmd, doc) {
		req.blocking = true
	}

	return req
}

// opMsgBody returns the kind 0 (body) section of OP_MSG sections.
func opMsgBody(sections []byte) (bsoncore.Document, bool) {
	for len(sections) > 0 {
		kind := sections[0]
		sections = sections[1:]

		switch kind {
		case 0:
			doc, _, ok := bsoncore.ReadDocument(sections)
			if !ok || doc.Validate() != nil {
				return nil, false
			}
			return doc, true
		case 1:
			if len(sections) < 4 {
				return nil, false
			}
			size := int(int32(binary.LittleEndian.Uint32(sections[:4])))
			if size < 4 || size > len(sections) {
				return nil, false
			}
			sections = sections[size:]
		default:
			return nil, false
		}
	}

	return nil, false
}

// parseOpQuery inspects the body of a legacy OP_QUERY request.
func parseOpQuery(body []byte) request {
	if len(body) < 4 {
		return request{opaque: true}
	}

	flags := binary.LittleEndian.Uint32(body[:4])
	rest := body[4:]

	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return request{opaque: true}
	}
	collection := string(rest[:i])
	rest = rest[i+1:]

	// numberToSkip and numberToReturn.
	if len(rest) < 8 {
		return request{opaque: true}
	}
	rest = rest[8:]

	req := request{
		blocking: flags&queryExhaust != 0 ||
			(flags&queryTailableCursor != 0 && flags&queryAwaitData != 0),
	}

	doc, _, ok := bsoncore.ReadDocument(rest)
	if !ok || doc.Validate() != nil {
		req.opaque = true
		return req
	}

	if !strings.HasSuffix(collection, ".$cmd") {
		// A legacy query on a collection, not a command.
		return req
	}

	// Commands sent through OP_QUERY may be wrapped as {$query: {...}, ...}.
	for _, key := range []string{"$query", "query"} {
		if commandName(doc) != key {
			continue
		}
		if inner, ok := doc.Lookup(key).DocumentOK(); ok {
			doc = inner
		}
		break
	}

	req.cmd = commandName(doc)
	if isBlockingCommand(req.cmd, doc) {
		req.blocking = true
	}

	return req
}

// commandName returns the key of the first element of doc, or "".
func commandName(doc bsoncore.Document) string {
	elem, err := doc.IndexErr(0)
	if err != nil {
		return ""
	}

	key, err := elem.KeyErr()
	if err != nil {
		return ""
	}

	return key
}

// isBlockingCommand reports whether the command may wait server-side.
func isBlockingCommand(cmd string, doc bsoncore.Document) bool {
	switch cmd {
	case "getMore":
		return true
	case "hello", "isMaster", "ismaster":
		_, err := doc.LookupErr("maxAwaitTimeMS")
		return err == nil
	default:
		return false
	}
}

// newOpMsg returns an OP_MSG message with flags 0 and the body section doc.
func newOpMsg(requestID, responseTo int32, doc bsoncore.Document) []byte {
	msg := make([]byte, headerLen, headerLen+5+len(doc))
	msg = binary.LittleEndian.AppendUint32(msg, 0) // flagBits
	msg = append(msg, 0)                           // section kind 0
	msg = append(msg, doc...)

	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.LittleEndian.PutUint32(msg[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(msg[8:12], uint32(responseTo))
	binary.LittleEndian.PutUint32(msg[12:16], uint32(opMsg))

	return msg
}

// opMsgFlags returns the flag bits of a whole OP_MSG message, or 0.
func opMsgFlags(msg []byte) uint32 {
	if len(msg) < headerLen+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[headerLen : headerLen+4])
}
