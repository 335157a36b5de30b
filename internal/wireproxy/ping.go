package wireproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// errNotOK reports a reply to ping without ok: 1.
var errNotOK = errors.New("wireproxy: ping reply is not ok")

// Ping opens a connection to the MongoDB wire-protocol server at addr,
// sends one OP_MSG {ping: 1, $db: "admin"} and checks that the reply has
// ok: 1. Without a deadline in ctx it gives up after 10 seconds. It needs
// no driver and leaves no goroutine behind; it is meant for
// waiting until a server (or a proxy in front of one) is ready.
func Ping(ctx context.Context, addr string) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("wireproxy: ping %s: %w", addr, err)
	}
	defer nc.Close()

	if _, ok := ctx.Deadline(); !ok {
		if err := nc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return fmt.Errorf("wireproxy: ping %s: %w", addr, err)
		}
	}

	// Make the end of ctx interrupt the exchange below.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	const requestID = 1
	doc := bsoncore.NewDocumentBuilder().
		AppendInt32("ping", 1).
		AppendString("$db", "admin").
		Build()

	msg := newOpMsg(requestID, 0, doc)

	if _, err := nc.Write(msg); err != nil {
		return fmt.Errorf("wireproxy: ping %s: %w", addr, pingErr(ctx, err))
	}

	reply, h, err := readMessage(bufio.NewReader(nc), nil)
	if err != nil {
		return fmt.Errorf("wireproxy: ping %s: %w", addr, pingErr(ctx, err))
	}
	if h.opCode != opMsg || h.responseTo != requestID || len(reply) < headerLen+4 {
		return fmt.Errorf("wireproxy: ping %s: unexpected reply (opcode %d)", addr, h.opCode)
	}

	body, ok := opMsgBody(reply[headerLen+4:])
	if !ok {
		return fmt.Errorf("wireproxy: ping %s: malformed reply", addr)
	}
	if v, ok := body.Lookup("ok").AsFloat64OK(); !ok || v != 1 {
		return fmt.Errorf("%w: %s", errNotOK, body.String())
	}

	return nil
}

// pingErr prefers the context's error over the I/O error it caused.
func pingErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}
