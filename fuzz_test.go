package mongolock

import (
	"encoding/binary"
	"errors"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// Fuzz targets for every input that reaches the library from outside:
// stored lock documents (decodeLock), caller arguments (the validators and
// buildLockConfig) and connection strings (RedactURI). The seed corpus is
// in testdata/fuzz/<FuzzName>/ and the f.Add calls below; "go test ./..."
// runs it, "go test -run '^$' -fuzz '^FuzzX$' -parallel 1 ." fuzzes.

// ---------------------------------------------------------------------------
// FuzzDecodeLock

// fuzzDocFields are the field names a generated document may contain: the
// eight of a lock document and two that decodeLock must ignore.
var fuzzDocFields = []string{
	fieldKey, fieldLocked, fieldOwner, fieldCreated, fieldExpire,
	fieldToken, fieldFence, fieldReleased, "extra", "",
}

// fuzzBytes hands out the fuzzer's bytes; once they run out it hands out
// zeros.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzBytes) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = f.byte()
	}
	return out
}

func (f *fuzzBytes) u64() uint64 { return binary.LittleEndian.Uint64(f.bytes(8)) }

// str takes a length byte and that many bytes (so strings may be invalid
// UTF-8 and contain NULs, which BSON string values allow).
func (f *fuzzBytes) str() string { return string(f.bytes(int(f.byte() % 40))) }

// appendFuzzValue appends one element named name whose BSON type and value
// the fuzzer's bytes choose.
func appendFuzzValue(dst []byte, name string, fb *fuzzBytes) []byte {
	switch fb.byte() % 18 {
	case 0:
		return bsoncore.AppendNullElement(dst, name)
	case 1:
		return bsoncore.AppendBooleanElement(dst, name, fb.byte()&1 == 1)
	case 2:
		return bsoncore.AppendStringElement(dst, name, fb.str())
	case 3:
		return bsoncore.AppendInt32Element(dst, name, int32(uint32(fb.u64())))
	case 4:
		return bsoncore.AppendInt64Element(dst, name, int64(fb.u64()))
	case 5:
		// A double: small whole numbers, fractions, huge values, NaN, ±Inf,
		// -0 all come out of arbitrary bits, but small ones are likelier
		// from a byte.
		if fb.byte()&1 == 0 {
			return bsoncore.AppendDoubleElement(dst, name, float64(int8(fb.byte()))/float64(1+fb.byte()%4))
		}
		return bsoncore.AppendDoubleElement(dst, name, math.Float64frombits(fb.u64()))
	case 6:
		return bsoncore.AppendDateTimeElement(dst, name, int64(fb.u64()))
	case 7:
		return bsoncore.AppendDateTimeElement(dst, name, int64(int32(uint32(fb.u64()))))
	case 8:
		// (BSON keys are C strings: no NULs.)
		doc := bsoncore.NewDocumentBuilder().AppendString(strings.ReplaceAll(fb.str(), "\x00", ""), fb.str()).Build()
		return bsoncore.AppendDocumentElement(dst, name, doc)
	case 9:
		arr := bsoncore.NewArrayBuilder().AppendBoolean(fb.byte()&1 == 1).AppendInt64(int64(fb.u64())).Build()
		return bsoncore.AppendArrayElement(dst, name, arr)
	case 10:
		return bsoncore.AppendBinaryElement(dst, name, fb.byte(), fb.bytes(int(fb.byte()%16)))
	case 11:
		var oid bson.ObjectID
		copy(oid[:], fb.bytes(12))
		return bsoncore.AppendObjectIDElement(dst, name, oid)
	case 12:
		return bsoncore.AppendTimestampElement(dst, name, uint32(fb.u64()), uint32(fb.u64()))
	case 13:
		return bsoncore.AppendDecimal128Element(dst, name, fb.u64(), fb.u64())
	case 14:
		return bsoncore.AppendSymbolElement(dst, name, fb.str())
	case 15:
		return bsoncore.AppendUndefinedElement(dst, name)
	case 16:
		return bsoncore.AppendJavaScriptElement(dst, name, fb.str())
	default:
		if fb.byte()&1 == 0 {
			return bsoncore.AppendMinKeyElement(dst, name)
		}
		return bsoncore.AppendMaxKeyElement(dst, name)
	}
}

// buildFuzzDoc builds a valid BSON document from the fuzzer's bytes: a
// count, then for each element a field name (possibly repeated, in any
// order) and a typed value.
func buildFuzzDoc(spec []byte) bson.Raw {
	fb := &fuzzBytes{b: spec}
	n := int(fb.byte() % 16)
	idx, doc := bsoncore.ReserveLength(nil)
	for range n {
		name := fuzzDocFields[int(fb.byte())%len(fuzzDocFields)]
		doc = appendFuzzValue(doc, name, fb)
	}
	doc = append(doc, 0x00)
	doc = bsoncore.UpdateLength(doc, idx, int32(len(doc)))
	return bson.Raw(doc)
}

// expectedLock is what decodeLock must return for raw, worked out
// independently from the documented rules: the first field (in decodeLock's
// order) whose value has the wrong type, or the decoded values. Lookups take
// a field's first occurrence, as MongoDB and the driver do.
func expectedLock(key string, raw bson.Raw) (want LockInfo, wantToken, badField string) {
	want.Key = key
	elems, err := raw.Elements()
	if err != nil {
		return want, "", "?"
	}
	first := map[string]bson.RawValue{}
	for _, e := range elems {
		k := e.Key()
		if _, seen := first[k]; !seen {
			first[k] = e.Value()
		}
	}
	if v, ok := first[fieldKey]; ok && v.Type == bson.TypeString {
		want.Key = v.StringValue()
	}
	v, ok := first[fieldLocked]
	if !ok || v.Type != bson.TypeBoolean {
		return want, "", fieldLocked
	}
	want.Locked = v.Boolean()

	optStr := func(field string) (string, bool) {
		v, ok := first[field]
		switch {
		case !ok || v.Type == bson.TypeNull:
			return "", true
		case v.Type == bson.TypeString:
			return v.StringValue(), true
		}
		return "", false
	}
	optDate := func(field string) (time.Time, bool) {
		v, ok := first[field]
		switch {
		case !ok || v.Type == bson.TypeNull:
			return time.Time{}, true
		case v.Type == bson.TypeDateTime:
			return time.UnixMilli(v.DateTime()).UTC(), true
		}
		return time.Time{}, false
	}
	if want.Owner, ok = optStr(fieldOwner); !ok {
		return want, "", fieldOwner
	}
	if wantToken, ok = optStr(fieldToken); !ok {
		return want, "", fieldToken
	}
	if want.Created, ok = optDate(fieldCreated); !ok {
		return want, "", fieldCreated
	}
	if want.Expire, ok = optDate(fieldExpire); !ok {
		return want, "", fieldExpire
	}
	// fence: a 32- or 64-bit integer below 2^62, or null/missing for none
	// (a double is refused: the write filters cannot tell a whole one).
	if v, ok := first[fieldFence]; ok && v.Type != bson.TypeNull {
		switch {
		case v.Type == bson.TypeInt32:
			want.Fence = int64(v.Int32())
		case v.Type == bson.TypeInt64 && v.Int64() < 1<<62:
			want.Fence = v.Int64()
		default:
			return want, "", fieldFence
		}
	}
	return want, wantToken, ""
}

// checkDecodeLock calls decodeLock on raw and checks its result against
// expectedLock.
func checkDecodeLock(t *testing.T, key string, raw bson.Raw) {
	t.Helper()
	d, err := decodeLock(key, raw)
	if err != nil {
		if d != nil {
			t.Errorf("decodeLock returned both %+v and error %v", d, err)
		}
		if !errors.Is(err, ErrInvalidDocument) {
			t.Fatalf("error %v (%T) does not match ErrInvalidDocument", err, err)
		}
		var de *DocumentError
		if !errors.As(err, &de) {
			t.Fatalf("error %v is a %T, not a *DocumentError", err, err)
		}
		if de.Field == "" || de.Problem == "" {
			t.Errorf("DocumentError %#v does not name the field and the problem", de)
		}
		if de.Key != key {
			t.Errorf("DocumentError.Key = %q, want %q", de.Key, key)
		}
		if err.Error() == "" {
			t.Errorf("empty error text")
		}
	} else if d == nil {
		t.Fatalf("decodeLock returned neither a document nor an error")
	}

	if raw.Validate() != nil {
		if err == nil {
			t.Fatalf("decodeLock accepted invalid BSON %x: %+v", []byte(raw), d)
		}
		return
	}
	want, wantToken, badField := expectedLock(key, raw)
	if badField != "" {
		if err == nil {
			t.Fatalf("decodeLock accepted a document whose field %q has the wrong type: %v\ngot %+v", badField, raw, d)
		}
		var de *DocumentError
		errors.As(err, &de)
		if de.Field != badField {
			t.Fatalf("DocumentError names field %q, want %q (the first bad one): %v\ndocument: %v", de.Field, badField, err, raw)
		}
		return
	}
	if err != nil {
		t.Fatalf("decodeLock rejected a well-formed document: %v\ndocument: %v", err, raw)
	}
	if d.Key != want.Key || d.Locked != want.Locked || d.Owner != want.Owner ||
		!d.Created.Equal(want.Created) || !d.Expire.Equal(want.Expire) || d.Fence != want.Fence ||
		d.token != wantToken {
		t.Fatalf("decodeLock(%v)\n got %+v token %q\nwant %+v token %q", raw, d.LockInfo, d.token, want, wantToken)
	}
	if d.Created.IsZero() != want.Created.IsZero() || d.Expire.IsZero() != want.Expire.IsZero() {
		t.Fatalf("zero-ness of times differs: got %+v, want %+v", d.LockInfo, want)
	}
}

// FuzzDecodeLock feeds decodeLock both the fuzzer's raw bytes as a BSON
// document and a well-formed document built from the fuzzer's choice of
// fields, types and values (spec). Properties: it never panics; an error is
// a *DocumentError matching ErrInvalidDocument that names the key and the
// first offending field; a success reports exactly what was stored (Locked
// the stored bool, Owner/token the stored string or "" for null/missing,
// times the stored date or zero, Fence the stored integer, Key the
// stored string _id or else the key asked for).
func FuzzDecodeLock(f *testing.F) {
	doc := func(d bson.D) []byte {
		b, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	now := bson.DateTime(1767366215001)
	f.Add("k", doc(bson.D{{Key: "_id", Value: "k"}, {Key: "locked", Value: true}, {Key: "owner", Value: "w1"}, {Key: "created", Value: now}, {Key: "expire", Value: now}, {Key: "token", Value: "0123456789abcdef0123456789abcdef"}, {Key: "fence", Value: int64(1767366215001000)}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "_id", Value: "k"}, {Key: "locked", Value: false}, {Key: "owner", Value: nil}, {Key: "created", Value: nil}, {Key: "expire", Value: nil}, {Key: "released", Value: now}, {Key: "fence", Value: int64(7)}}), []byte{})
	f.Add("py", doc(bson.D{{Key: "_id", Value: "py"}, {Key: "locked", Value: true}, {Key: "owner", Value: "py"}, {Key: "created", Value: now}, {Key: "expire", Value: nil}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: 1}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "fence", Value: 3.0}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "fence", Value: int64(math.MaxInt64)}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "fence", Value: int64(1<<62 - 1)}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "fence", Value: 3.5}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "fence", Value: math.NaN()}}), []byte{})
	f.Add("k", doc(bson.D{{Key: "locked", Value: true}, {Key: "expire", Value: "2026-01-01"}}), []byte{})
	f.Add("k", []byte{}, []byte{3, 1, 1, 1, 2, 2, 3, 'a', 'b', 'c', 6, 5, 0, 7})
	f.Add("k", []byte{5, 0, 0, 0, 0}, []byte{8, 1, 1, 0, 1, 1, 1, 6, 4, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add("", []byte{0xff, 0xff, 0xff, 0x7f, 0}, []byte{15, 0, 14, 2, 1, 'x', 1, 1, 1})

	f.Fuzz(func(t *testing.T, key string, raw, spec []byte) {
		checkDecodeLock(t, key, bson.Raw(raw))
		checkDecodeLock(t, key, buildFuzzDoc(spec))
	})
}

// ---------------------------------------------------------------------------
// FuzzArguments

// argErr checks that err is an *ArgumentError matching ErrInvalidArgument
// with a non-empty Arg and Rule, and returns its Arg.
func argErr(t *testing.T, what string, err error) string {
	t.Helper()
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("%s: error %v (%T) does not match ErrInvalidArgument", what, err, err)
	}
	var ae *ArgumentError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: error %v is a %T, not an *ArgumentError", what, err, err)
	}
	if ae.Arg == "" || ae.Rule == "" {
		t.Fatalf("%s: ArgumentError %#v lacks Arg or Rule", what, ae)
	}
	if !strings.Contains(err.Error(), ae.Arg) {
		t.Errorf("%s: error text %q does not name %q", what, err.Error(), ae.Arg)
	}
	return ae.Arg
}

// FuzzArguments checks the argument rules on fuzzed keys, owners and
// durations, in both directions: validKey accepts exactly the non-empty,
// at most 1024-byte, valid UTF-8 keys; validOwner exactly the non-empty, at
// most 512-byte, valid UTF-8 owners; validExpire exactly durations of at
// least 1ms; buildLockConfig, given any subset (mask) of Expire, Timeout,
// Owner, MinHold, accepts exactly when every given one obeys its rule
// (Expire ≥ 1ms, Timeout ≥ 0, Owner as validOwner, MinHold ≥ 0), then
// records the values given, and otherwise names one of the broken ones.
// Errors are *ArgumentError matching ErrInvalidArgument with Arg and Rule.
func FuzzArguments(f *testing.F) {
	ms := int64(time.Millisecond)
	f.Add("nightly-report", "worker-1", int64(time.Hour), int64(0), int64(0), uint8(0xff))
	f.Add("", "", int64(0), int64(-1), int64(-1), uint8(0xff))
	f.Add("k", "o", ms, int64(0), int64(0), uint8(0x0f))
	f.Add("k", "o", ms-1, int64(0), int64(0), uint8(0x01))
	f.Add("\xff", "\xc3", int64(-1), int64(1), int64(1), uint8(0x0e))
	f.Add(strings.Repeat("k", 1024), strings.Repeat("o", 512), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), uint8(0xff))
	f.Add(strings.Repeat("k", 1025), strings.Repeat("o", 513), int64(math.MinInt64), int64(math.MinInt64), int64(math.MinInt64), uint8(0xff))
	f.Add(strings.Repeat("é", 512), strings.Repeat("é", 256), int64(0), int64(0), int64(0), uint8(0x04))
	f.Add("a\x00b", "ö", int64(1), int64(0), int64(0), uint8(0x00))

	f.Fuzz(func(t *testing.T, key, owner string, expire, timeout, minHold int64, mask uint8) {
		keyOK := key != "" && len(key) <= 1024 && utf8.ValidString(key)
		ownerOK := owner != "" && len(owner) <= 512 && utf8.ValidString(owner)
		expireOK := expire >= ms
		timeoutOK := timeout >= 0
		minHoldOK := minHold >= 0

		if err := validKey(key); (err == nil) != keyOK {
			t.Fatalf("validKey(%q) (len %d) = %v, want valid=%v", key, len(key), err, keyOK)
		} else if err != nil {
			if arg := argErr(t, "validKey", err); arg != "key" {
				t.Errorf("validKey error names %q, want key", arg)
			}
		}
		if err := validOwner(owner); (err == nil) != ownerOK {
			t.Fatalf("validOwner(%q) (len %d) = %v, want valid=%v", owner, len(owner), err, ownerOK)
		} else if err != nil {
			if arg := argErr(t, "validOwner", err); arg != "owner" {
				t.Errorf("validOwner error names %q, want owner", arg)
			}
		}
		if err := validExpire("Expire", time.Duration(expire)); (err == nil) != expireOK {
			t.Fatalf("validExpire(%v) = %v, want valid=%v", time.Duration(expire), err, expireOK)
		} else if err != nil {
			if arg := argErr(t, "validExpire", err); arg != "Expire" {
				t.Errorf("validExpire error names %q, want Expire", arg)
			}
		}

		var opts []LockOption
		broken := map[string]bool{}
		if mask&1 != 0 {
			opts = append(opts, Expire(time.Duration(expire)))
			if !expireOK {
				broken["Expire"] = true
			}
		}
		if mask&2 != 0 {
			opts = append(opts, Timeout(time.Duration(timeout)))
			if !timeoutOK {
				broken["Timeout"] = true
			}
		}
		if mask&4 != 0 {
			opts = append(opts, Owner(owner))
			if !ownerOK {
				broken["owner"] = true
			}
		}
		if mask&8 != 0 {
			opts = append(opts, MinHold(time.Duration(minHold)))
			if !minHoldOK {
				broken["MinHold"] = true
			}
		}
		if mask&16 != 0 {
			opts = append(opts, nil, KeepAlive(mask&32 != 0))
		}
		if mask&64 != 0 { // the same options again, in reverse order
			for i := len(opts) - 1; i >= 0; i-- {
				opts = append(opts, opts[i])
			}
		}
		c, err := buildLockConfig(opts)
		if err != nil {
			arg := argErr(t, "buildLockConfig", err)
			if !broken[arg] {
				t.Fatalf("buildLockConfig(mask %#x, expire %v, timeout %v, owner %q, minHold %v) = %v; names %q, but the broken ones are %v",
					mask, time.Duration(expire), time.Duration(timeout), owner, time.Duration(minHold), err, arg, broken)
			}
			return
		}
		if len(broken) > 0 {
			t.Fatalf("buildLockConfig(mask %#x, expire %v, timeout %v, owner %q, minHold %v) accepted broken %v",
				mask, time.Duration(expire), time.Duration(timeout), owner, time.Duration(minHold), broken)
		}
		if mask&1 != 0 && (!c.expireSet || c.expire != time.Duration(expire)) {
			t.Errorf("Expire(%v) recorded as %v (set %v)", time.Duration(expire), c.expire, c.expireSet)
		}
		if mask&1 == 0 && (c.expireSet || c.expire != 0) {
			t.Errorf("no Expire, but expire %v (set %v)", c.expire, c.expireSet)
		}
		if mask&2 != 0 && (!c.timeoutSet || c.timeout != time.Duration(timeout)) {
			t.Errorf("Timeout(%v) recorded as %v (set %v)", time.Duration(timeout), c.timeout, c.timeoutSet)
		}
		if mask&4 != 0 && (!c.ownerSet || c.owner != owner) {
			t.Errorf("Owner(%q) recorded as %q (set %v)", owner, c.owner, c.ownerSet)
		}
		if mask&4 == 0 && c.ownerSet {
			t.Errorf("no Owner, but owner %q set", c.owner)
		}
		if mask&8 != 0 && c.minHold != time.Duration(minHold) {
			t.Errorf("MinHold(%v) recorded as %v", time.Duration(minHold), c.minHold)
		}
	})
}

// ---------------------------------------------------------------------------
// FuzzRedactURI

// FuzzRedactURI checks that RedactURI never panics and never lets a
// password through. Two sources of URIs: (1) the fuzzer's string as is,
// checked whenever the driver's own parser (connstring) finds a password in
// it; (2) a URI built with net/url from a fuzzed user, password, host and
// query, so that the password is known. A password is checked only if it
// is at least 3 bytes long, occurs once in the URI, and could not appear
// in the output for another reason (it is part of "xxxxx", or of the rest
// of the URI).
func FuzzRedactURI(f *testing.F) {
	f.Add("mongodb://app:secret@db1/?replicaSet=rs0", "app", "secret", "db1:27017", "w=majority")
	f.Add("mongodb://app:s%40cret@db1,db2,db3/?replicaSet=rs0", "u", "p@ss:w/rd", "localhost", "")
	f.Add("mongodb+srv://u:pässwörd@cluster0.example.net/db", "", "pässwörd", "[::1]:27017", "authSource=admin")
	f.Add("mongodb://:pw123@h/", "user", "xxx", "h", "")
	f.Add("mongodb:u:secret@h", "a b", "%zz", "h%20", "a=%")
	f.Add("not a uri \x7f", "u", "pw pw", "h", "")
	f.Add("mongodb://u:p@ss@h/", "u", "#frag?", "h", "#")

	f.Fuzz(func(t *testing.T, uri, user, pass, host, query string) {
		out := RedactURI(uri)
		if cs, err := connstring.ParseAndValidate(uri); err == nil && cs.PasswordSet {
			pw := cs.Password
			if len(pw) >= 3 && strings.Count(uri, pw) == 1 && !strings.Contains("xxxxx", pw) &&
				!strings.Contains(strings.Replace(uri, pw, "", 1), pw) && strings.Contains(out, pw) {
				t.Fatalf("RedactURI(%q) = %q shows the password %q", uri, out, pw)
			}
		}

		u := &url.URL{Scheme: "mongodb", User: url.UserPassword(user, pass), Host: host, Path: "/", RawQuery: query}
		built := u.String()
		out = RedactURI(built)
		if len(pass) < 3 {
			return
		}
		// The forms the password can take in a URI's text.
		forms := []string{pass, url.QueryEscape(pass), url.PathEscape(pass)}
		if _, esc, ok := strings.Cut(u.User.String(), ":"); ok {
			forms = append(forms, esc) // as net/url escapes it in userinfo
		}
		// What the output may legitimately contain: the URI with the
		// password replaced.
		u.User = url.UserPassword(user, "xxxxx")
		redacted := u.String()
		for _, p := range forms {
			if len(p) < 3 || strings.Contains(redacted, p) || strings.Contains("xxxxx", p) {
				return
			}
		}
		for _, p := range forms {
			if strings.Contains(out, p) {
				t.Fatalf("RedactURI(%q) = %q shows the password %q (as %q)", built, out, pass, p)
			}
		}
		if pu, err := url.Parse(out); err == nil && pu.User != nil {
			if pw, ok := pu.User.Password(); ok && pw != "xxxxx" {
				t.Fatalf("RedactURI(%q) = %q: password %q, want xxxxx", built, out, pw)
			}
		}
	})
}

// TestRedactShortPassword: a password of a character or two is hidden where
// it stands as a word, without mangling every word that contains it.
func TestRedactShortPassword(t *testing.T) {
	err := redactErr(errors.New("connection() error: server selection: unreachable; auth as u with p failed"), "mongodb://u:p@host")
	got := err.Error()
	if want := "connection() error: server selection: unreachable; auth as u with xxxxx failed"; got != want {
		t.Fatalf("redacted %q; want %q", got, want)
	}
	long := redactErr(errors.New("bad password s3cret-pw in s3cret-pwd"), "mongodb://u:s3cret-pw@host").Error()
	if strings.Contains(long, "s3cret-pw") {
		t.Fatalf("a long password is shown: %q", long)
	}
}
