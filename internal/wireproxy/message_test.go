package wireproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// buildOpMsg returns an OP_MSG with the given flags, body document and
// optional kind 1 section placed before the body.
func buildOpMsg(requestID, responseTo int32, flags uint32, body bsoncore.Document, seq bool) []byte {
	msg := make([]byte, headerLen)
	msg = binary.LittleEndian.AppendUint32(msg, flags)

	if seq {
		item := bsoncore.NewDocumentBuilder().AppendInt32("x", 1).Build()
		id := "documents\x00"
		msg = append(msg, 1)
		msg = binary.LittleEndian.AppendUint32(msg, uint32(4+len(id)+len(item)))
		msg = append(msg, id...)
		msg = append(msg, item...)
	}

	msg = append(msg, 0)
	msg = append(msg, body...)

	if flags&msgChecksumPresent != 0 {
		msg = binary.LittleEndian.AppendUint32(msg, 0xdeadbeef)
	}

	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.LittleEndian.PutUint32(msg[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(msg[8:12], uint32(responseTo))
	binary.LittleEndian.PutUint32(msg[12:16], uint32(opMsg))

	return msg
}

// buildOpQuery returns a legacy OP_QUERY on collection.
func buildOpQuery(requestID int32, flags uint32, collection string, query bsoncore.Document) []byte {
	msg := make([]byte, headerLen)
	msg = binary.LittleEndian.AppendUint32(msg, flags)
	msg = append(msg, collection...)
	msg = append(msg, 0)
	msg = binary.LittleEndian.AppendUint32(msg, 0)                  // numberToSkip
	msg = binary.LittleEndian.AppendUint32(msg, uint32(0xffffffff)) // numberToReturn = -1
	msg = append(msg, query...)

	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.LittleEndian.PutUint32(msg[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(msg[12:16], uint32(opQuery))

	return msg
}

// withOpCode returns a copy of msg with its opcode replaced.
func withOpCode(msg []byte, op int32) []byte {
	out := bytes.Clone(msg)
	binary.LittleEndian.PutUint32(out[12:16], uint32(op))
	return out
}

func doc(f func(b *bsoncore.DocumentBuilder)) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	f(b)
	return b.Build()
}

func TestParseRequest(t *testing.T) {
	t.Parallel()

	ping := doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt32("ping", 1).AppendString("$db", "admin") })
	hello := doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt32("hello", 1) })
	awaitHello := doc(func(b *bsoncore.DocumentBuilder) {
		b.AppendInt32("hello", 1).AppendInt64("maxAwaitTimeMS", 10000)
	})
	awaitIsMaster := doc(func(b *bsoncore.DocumentBuilder) {
		b.AppendInt32("ismaster", 1).AppendInt64("maxAwaitTimeMS", 10000)
	})
	getMore := doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt64("getMore", 42).AppendString("collection", "c") })
	fam := doc(func(b *bsoncore.DocumentBuilder) { b.AppendString("findAndModify", "c") })
	insert := doc(func(b *bsoncore.DocumentBuilder) { b.AppendString("insert", "c") })
	wrapped := doc(func(b *bsoncore.DocumentBuilder) {
		b.AppendDocument("$query", doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt32("isMaster", 1) })).
			AppendDocument("$readPreference", doc(func(b *bsoncore.DocumentBuilder) { b.AppendString("mode", "primary") }))
	})
	find := doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt32("x", 1) })

	tests := []struct {
		name string
		msg  []byte
		want request
	}{
		{"ping", buildOpMsg(1, 0, 0, ping, false), request{cmd: "ping"}},
		{"hello", buildOpMsg(1, 0, 0, hello, false), request{cmd: "hello"}},
		{"awaitable hello", buildOpMsg(1, 0, msgExhaustAllowed, awaitHello, false), request{cmd: "hello", blocking: true}},
		{"awaitable ismaster", buildOpMsg(1, 0, 0, awaitIsMaster, false), request{cmd: "ismaster", blocking: true}},
		{"getMore", buildOpMsg(1, 0, 0, getMore, false), request{cmd: "getMore", blocking: true}},
		{"exhaustAllowed", buildOpMsg(1, 0, msgExhaustAllowed, fam, false), request{cmd: "findAndModify", blocking: true}},
		{"moreToCome", buildOpMsg(1, 0, msgMoreToCome, insert, false), request{cmd: "insert", noReply: true}},
		{"checksum", buildOpMsg(1, 0, msgChecksumPresent, fam, false), request{cmd: "findAndModify"}},
		{"sequence first", buildOpMsg(1, 0, 0, insert, true), request{cmd: "insert"}},
		{"query isMaster", buildOpQuery(1, 0, "admin.$cmd", hello), request{cmd: "hello"}},
		{"query wrapped", buildOpQuery(1, 0, "admin.$cmd", wrapped), request{cmd: "isMaster"}},
		{"query awaitable", buildOpQuery(1, 0, "admin.$cmd", awaitHello), request{cmd: "hello", blocking: true}},
		{"query collection", buildOpQuery(1, 0, "db.c", find), request{}},
		{"query exhaust", buildOpQuery(1, queryExhaust, "db.c", find), request{blocking: true}},
		{"query tailable await", buildOpQuery(1, queryTailableCursor|queryAwaitData, "db.c", find), request{blocking: true}},
		{"legacy getMore", withOpCode(buildOpMsg(1, 0, 0, ping, false), opGetMore), request{cmd: "getMore", blocking: true}},
		{"legacy insert", withOpCode(buildOpMsg(1, 0, 0, ping, false), opInsert), request{cmd: "insert", noReply: true}},
		{"compressed", withOpCode(buildOpMsg(1, 0, 0, ping, false), opCompressed), request{opaque: true}},
		{"truncated msg", buildOpMsg(1, 0, 0, ping, false)[:headerLen+6], request{opaque: true}},
		{"bad section kind", func() []byte {
			m := buildOpMsg(1, 0, 0, ping, false)
			m[headerLen+4] = 7
			return m
		}(), request{opaque: true}},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			h := parseHeader(tc.msg)
			if got := parseRequest(tc.msg, h); got != tc.want {
				t.Errorf("parseRequest() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadMessage(t *testing.T) {
	t.Parallel()

	ping := doc(func(b *bsoncore.DocumentBuilder) { b.AppendInt32("ping", 1) })
	m1 := buildOpMsg(7, 3, 0, ping, false)
	m2 := buildOpMsg(8, 0, 0, ping, true)

	r := bufio.NewReader(bytes.NewReader(append(bytes.Clone(m1), m2...)))

	got, h, err := readMessage(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, m1) || h.requestID != 7 || h.responseTo != 3 || h.opCode != opMsg || int(h.length) != len(m1) {
		t.Fatalf("first message: header %+v", h)
	}

	got, h, err = readMessage(r, got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, m2) || h.requestID != 8 {
		t.Fatalf("second message: header %+v", h)
	}

	if _, _, err := readMessage(r, got); err == nil {
		t.Fatal("readMessage at EOF: no error")
	}

	bad := binary.LittleEndian.AppendUint32(nil, 3)
	if _, _, err := readMessage(bufio.NewReader(bytes.NewReader(bad)), nil); !errors.Is(err, errMessageLength) {
		t.Fatalf("short length: got %v, want errMessageLength", err)
	}

	if _, _, err := readMessage(bufio.NewReader(bytes.NewReader(m1[:20])), nil); err == nil {
		t.Fatal("truncated message: no error")
	}
}
