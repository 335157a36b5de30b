package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/description"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/mongolock/mongolock"
)

// defaultConnectTimeout is --connect-timeout's default.
const defaultConnectTimeout = 10 * time.Second

// codeAuthenticationFailed is the server's error code for a failed
// authentication (AuthenticationFailed).
const codeAuthenticationFailed = 18

// conn is a connection to a MongoDB deployment and the lock client that
// uses it. close releases what the client holds and disconnects.
type conn struct {
	*mongolock.Client
	mc *mongo.Client
}

// close closes the lock client (releasing its leases) and disconnects,
// bounded in time; errors are of no use to the user at that point.
func (c *conn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Client.Close(ctx)
	_ = c.mc.Disconnect(ctx)
}

// target is a connection string that parsed, and what the messages about
// it may show: its hosts, never its password.
type target struct {
	uri string
	cs  *connstring.ConnString
}

// hosts lists the hosts of the connection string for people.
func (t target) hosts() string {
	if len(t.cs.Hosts) == 0 {
		return mongolock.RedactURI(t.uri)
	}
	return strings.Join(t.cs.Hosts, ", ")
}

// validCompressors are the compressors the driver knows.
var validCompressors = []string{"snappy", "zlib", "zstd", "noop"}

// parseURI checks a connection string before anything connects. A string
// that does not parse, or that names an option, host or compressor the
// driver does not know, is a usage error (exit 2). A mongodb+srv:// string
// whose DNS records cannot be looked up is a failure (exit 1): the string
// is fine, the network is not. No message shows the password.
func parseURI(uri string) (target, error) {
	invalid := func(format string, a ...any) (target, error) {
		return target{}, &exitError{code: exitUsage, err: fmt.Errorf("invalid connection string %s: %s",
			mongolock.RedactURI(uri), redactSecret(fmt.Sprintf(format, a...), uri))}
	}
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return target{}, failure(fmt.Errorf("cannot look up the servers of %s in DNS: %s",
				mongolock.RedactURI(uri), redactSecret(dnsErr.Error(), uri)))
		}
		return invalid("%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "error parsing uri: "), "error validating uri: "))
	}
	for _, h := range cs.Hosts {
		if err := checkHost(h); err != nil {
			return invalid("host %q: %v", h, err)
		}
	}
	if len(cs.UnknownOptions) > 0 {
		names := make([]string, 0, len(cs.UnknownOptions))
		for k := range cs.UnknownOptions {
			names = append(names, k)
		}
		slices.Sort(names)
		return invalid("unknown option %s (options are listed at https://www.mongodb.com/docs/manual/reference/connection-string-options/)", strings.Join(names, ", "))
	}
	for _, c := range cs.Compressors {
		if !slices.Contains(validCompressors, c) {
			return invalid("unknown compressor %q (want snappy, zlib or zstd)", c)
		}
	}
	// What the driver checks when it builds its options: TLS files, read
	// preferences, heartbeat intervals.
	if err := options.Client().ApplyURI(uri).Validate(); err != nil {
		return invalid("%s", err)
	}
	return target{uri: uri, cs: cs}, nil
}

// checkHost checks one host of a connection string: host[:port], or a
// Unix socket path.
func checkHost(h string) error {
	if strings.HasSuffix(h, ".sock") {
		return nil
	}
	if strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("contains a space or a control character")
	}
	host := h
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if host, _, err = net.SplitHostPort(h); err != nil {
			return err
		}
	}
	if host == "" {
		return errors.New("the host name is missing")
	}
	return nil
}

// connectURI connects to the deployment at uri, with the --database and
// --collection flags, and checks that a primary answers. Connecting is
// bounded by --connect-timeout and by ctx's deadline (the command's
// --timeout, timeout, or 0 if it has none), whichever comes first; the
// error says which. The returned connection must be closed.
func (a *app) connectURI(ctx context.Context, uri string, timeout time.Duration) (*conn, error) {
	t, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	within, limit := a.connectTimeout, "--connect-timeout"
	if d, ok := ctx.Deadline(); ok && time.Until(d) < within {
		within, limit = max(time.Until(d), 0), "--timeout"
		if timeout > 0 {
			within = timeout // as the user gave it, not what is left of it
		}
	}
	cctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()

	copts := options.Client().ApplyURI(uri)
	switch {
	case !t.cs.ServerSelectionTimeoutSet:
		// The driver's own default (30s) would cut a longer
		// --connect-timeout short.
		copts.SetServerSelectionTimeout(a.connectTimeout)
	case t.cs.ServerSelectionTimeout < within:
		within, limit = t.cs.ServerSelectionTimeout, "serverSelectionTimeoutMS in the connection string"
	}
	mc, err := mongo.Connect(copts)
	if err != nil {
		return nil, failure(fmt.Errorf("connecting to %s: %s", t.hosts(), redactSecret(err.Error(), uri)))
	}
	if err := mc.Ping(cctx, readpref.Primary()); err != nil {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = mc.Disconnect(dctx)
		dcancel()
		if ctx.Err() != nil && cctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, failure(fmt.Errorf("connecting to %s: %w", t.hosts(), ctx.Err())) // cancelled by the caller
		}
		return nil, failure(connectError(err, t, fmtDuration(within), limit))
	}
	c, err := mongolock.New(mc, mongolock.WithDatabase(a.database), mongolock.WithCollection(a.collection))
	if err != nil {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = mc.Disconnect(dctx)
		dcancel()
		return nil, failure(err)
	}
	return &conn{Client: c, mc: mc}, nil
}

// errAuthentication is matched by the error connectError returns when the
// server refused the credentials.
var errAuthentication = errors.New("authentication failed")

// errUnreachable is matched by the error connectError returns when no
// suitable server answered in time.
var errUnreachable = errors.New("no answer")

// connectError turns the driver's error from the first command into a
// message for people: an authentication failure as such, an unreachable
// deployment with each server's last error (not the driver's topology
// dump), and never the password.
func connectError(err error, t target, within, limit string) error {
	secret := func(s string) string { return redactSecret(s, t.uri) }
	if isAuthError(err) {
		user := t.cs.Username
		source := t.cs.AuthSource
		if source == "" {
			source = "admin"
		}
		return fmt.Errorf("%w for user %q (authSource %q) at %s; check the user name, password, authSource and authMechanism: %s",
			errAuthentication, user, source, t.hosts(), secret(authReason(err)))
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w from %s within %s (%s)%s", errUnreachable, t.hosts(), within, limit, secret(serverStates(sse.Desc)))
	}
	return fmt.Errorf("connecting to %s: %s", t.hosts(), secret(err.Error()))
}

// isAuthError reports whether err is the driver's or the server's refusal
// of the credentials.
func isAuthError(err error) bool {
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.Code == codeAuthenticationFailed || ce.Name == "AuthenticationFailed") {
		return true
	}
	var ae *auth.Error
	return errors.As(err, &ae)
}

// authReason is the most specific reason given for an authentication
// failure: the server's message if there is one.
func authReason(err error) string {
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Message != "" {
		return strings.Join(strings.Fields(ce.Message), " ")
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae.Error()
	}
	return err.Error()
}

// serverStates describes, after ": ", what the driver last knew of each
// server: its last error, or its kind when it answered but is not a
// primary. It is "" when the driver knew nothing.
func serverStates(topo description.Topology) string {
	var parts []string
	for _, s := range topo.Servers {
		switch {
		case s.LastError != nil:
			parts = append(parts, fmt.Sprintf("%s: %s", s.Addr, lastErrorText(s.LastError)))
		case s.Kind == description.ServerKindRSSecondary:
			parts = append(parts, fmt.Sprintf("%s: a secondary (no primary answered)", s.Addr))
		case s.Kind != description.Unknown:
			parts = append(parts, fmt.Sprintf("%s: %s, not usable for writes", s.Addr, s.Kind))
		default:
			parts = append(parts, fmt.Sprintf("%s: no reply", s.Addr))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, "; ")
}

// lastErrorText shortens a server's last error: the innermost network
// error when there is one ("dial tcp 127.0.0.1:1: connect: connection
// refused"), else the error's text.
func lastErrorText(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) {
		return ne.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	return err.Error()
}

// redactSecret removes uri's password from text wherever it stands as a
// word of its own (so that a one-letter password does not blank that
// letter everywhere), as written in uri and in its escaped forms.
func redactSecret(text, uri string) string {
	raw, pw := passwordOf(uri)
	if pw == "" {
		return text
	}
	for _, s := range []string{raw, pw, url.QueryEscape(pw), url.PathEscape(pw)} {
		text = replaceWord(text, s, "xxxxx")
	}
	return text
}

// replaceWord replaces the occurrences of word in text that are not part
// of a longer run of letters and digits.
func replaceWord(text, word, with string) string {
	isAlnum := func(b byte) bool {
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	var b strings.Builder
	for {
		i := strings.Index(text, word)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		end := i + len(word)
		before := i > 0 && isAlnum(text[i-1]) && isAlnum(word[0])
		after := end < len(text) && isAlnum(text[end]) && isAlnum(word[len(word)-1])
		b.WriteString(text[:i])
		if before || after {
			b.WriteString(word[:1])
			text = text[i+1:]
			continue
		}
		b.WriteString(with)
		text = text[end:]
	}
}

// passwordOf returns the password of a connection string as written in it
// and unescaped, as the driver reads it; "" if there is none. A mistyped
// scheme does not hide it.
func passwordOf(uri string) (raw, unescaped string) {
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+len("://"):]
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || pw == "" {
		return "", ""
	}
	if u, err := url.PathUnescape(pw); err == nil && u != "" {
		return pw, u
	}
	return pw, pw
}
