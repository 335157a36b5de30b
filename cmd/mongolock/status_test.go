package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	ctx := testCtx(t)

	held, err := c.TryAcquire(ctx, "st/held", mongolock.Owner("alice"), mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Lock(ctx, "st/expired", "bob", mongolock.Expire(50*time.Millisecond)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := c.Lock(ctx, "st/forever", "carol"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	released, err := c.TryAcquire(ctx, "st/released", mongolock.Owner("dave"), mongolock.Expire(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := released.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Lock(ctx, "other", "erin"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	time.Sleep(200 * time.Millisecond) // st/expired expires

	t.Run("json", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"status", "--prefix", "st/", "--json"}, flags)...)
		if r.code != 0 {
			t.Fatal(r)
		}
		var got statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v:\n%s", err, r.stdout)
		}
		if d := time.Since(got.ServerTime.Time()); d < -time.Minute || d > time.Minute {
			t.Errorf("server_time %v is not now", got.ServerTime)
		}
		want := []struct {
			key, state, owner   string
			since, expires      bool
			fence               int64
			expiresInMin, inMax int64
		}{
			{"st/expired", stateExpired, "bob", true, true, -1, -60_000, 0},
			{"st/forever", stateHeld, "carol", true, false, -1, 0, 0},
			{"st/held", stateHeld, "alice", true, true, held.Fence(), 50_000, 60_000},
			{"st/released", stateReleased, "", false, false, released.Fence(), 0, 0},
		}
		if len(got.Locks) != len(want) {
			t.Fatalf("%d locks, want %d:\n%s", len(got.Locks), len(want), r.stdout)
		}
		for i, w := range want {
			l := got.Locks[i]
			if l.Key != w.key || l.State != w.state || l.Owner != w.owner {
				t.Errorf("lock %d = %s %s %q; want %s %s %q", i, l.Key, l.State, l.Owner, w.key, w.state, w.owner)
			}
			if (l.Since != nil) != w.since || (l.Expires != nil) != w.expires || (l.ExpiresInMS != nil) != w.expires {
				t.Errorf("%s: since %v, expires %v, expires_in_ms %v; want since %v, expires %v", w.key, l.Since, l.Expires, l.ExpiresInMS, w.since, w.expires)
			}
			if w.fence >= 0 && l.Fence != w.fence || l.Fence <= 0 {
				t.Errorf("%s: fence %d, want %d", w.key, l.Fence, w.fence)
			}
			if w.expires && l.ExpiresInMS != nil && (*l.ExpiresInMS < w.expiresInMin || *l.ExpiresInMS > w.inMax) {
				t.Errorf("%s: expires_in_ms %d, want within [%d, %d]", w.key, *l.ExpiresInMS, w.expiresInMin, w.inMax)
			}
		}
		// An exclusive lock: its holder in holders while locked, no
		// limit, no waiters, no leader.
		for _, l := range got.Locks {
			wantHolders := 1
			if l.State == stateReleased {
				wantHolders = 0
			}
			if l.Kind != kindExclusive || l.Limit != nil || l.Leader != nil || l.Waiters == nil || len(l.Waiters) != 0 || l.Holders == nil || len(l.Holders) != wantHolders {
				t.Errorf("%s: kind %q, limit %v, leader %v, waiters %v, holders %v; want exclusive, %d holders", l.Key, l.Kind, l.Limit, l.Leader, l.Waiters, l.Holders, wantHolders)
				continue
			}
			if h := l.Holders; wantHolders == 1 && (h[0].Owner != l.Owner || h[0].State != l.State || h[0].Fence != l.Fence || (h[0].Expires == nil) != (l.Expires == nil)) {
				t.Errorf("%s: holder %+v differs from the lock %+v", l.Key, h[0], l)
			}
		}
		// The documented field names, spelled as scripts use them.
		for _, field := range []string{`"server_time"`, `"locks"`, `"key"`, `"state"`, `"owner"`, `"since"`, `"expires"`, `"expires_in_ms"`, `"fence"`, `"min_hold"`,
			`"kind"`, `"limit"`, `"holders"`, `"waiters"`, `"leader"`} {
			if !strings.Contains(r.stdout, field) {
				t.Errorf("JSON lacks %s", field)
			}
		}
		// Times in UTC with milliseconds, as the README shows them.
		times := regexp.MustCompile(`"(server_time|since|expires)": "([^"]*)"`).FindAllStringSubmatch(r.stdout, -1)
		if len(times) < 4 {
			t.Errorf("too few times in:\n%s", r.stdout)
		}
		for _, m := range times {
			if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(m[2]) {
				t.Errorf("%s is %q, want UTC with milliseconds (2026-01-02T15:04:05.123Z)", m[1], m[2])
			}
		}
	})

	t.Run("one key", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"status", "st/held", "--json"}, flags)...)
		var got statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("%v\n%s", err, r)
		}
		if len(got.Locks) != 1 || got.Locks[0].Key != "st/held" {
			t.Errorf("want only st/held:\n%s", r.stdout)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"status"}, flags)...)
		if r.code != 0 {
			t.Fatal(r)
		}
		for _, want := range []string{"KEY", "STATE", "OWNER", "SINCE", "EXPIRES IN", "FENCE", "other", "alice", "never", "expired", "released"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("missing key", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"status", "st/none"}, flags)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, `no lock "st/none"`) {
			t.Errorf("want exit 1 and a message:\n%s", r)
		}
		r = runBinary(t, "", nil, args([]string{"status", "st/none", "--json"}, flags)...)
		var got statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != exitFailure || got.Locks == nil || len(got.Locks) != 0 {
			t.Errorf("want exit 1 and an empty list: %v\n%s", err, r)
		}
	})

	t.Run("empty prefix match", func(t *testing.T) {
		r := runBinary(t, "", nil, args([]string{"status", "--prefix", "zzz", "--json"}, flags)...)
		if r.code != 0 || !strings.Contains(r.stdout, `"locks": []`) {
			t.Errorf("want exit 0 and an empty list:\n%s", r)
		}
	})
}

// A lock its holder released before its minimum hold time ended is held
// until then and cannot be renewed; status and run say so, not "expires
// in 3s unless renewed".
func TestStatusMinHold(t *testing.T) {
	t.Parallel()
	_, flags := server(t)
	if r := runBinary(t, "", nil, args([]string{"run", "cron-job", "--min-hold", "10m"}, flags, []string{"--", "true"})...); r.code != 0 {
		t.Fatal(r)
	}

	r := runBinary(t, "", nil, args([]string{"status", "cron-job"}, flags)...)
	if r.code != 0 || !strings.Contains(r.stdout, "(min-hold)") || !regexp.MustCompile(`cron-job: held until \S+ \S+: its holder released it before its minimum hold time \(--min-hold\) ended; it cannot be renewed`).MatchString(r.stdout) {
		t.Errorf("status: want the lock held until a time, not renewable:\n%s", r)
	}

	r = runBinary(t, "", nil, args([]string{"status", "cron-job", "--json"}, flags)...)
	var got statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got.Locks) != 1 {
		t.Fatalf("%v\n%s", err, r)
	}
	if l := got.Locks[0]; l.State != stateHeld || !l.MinHold || l.Expires == nil || *l.ExpiresInMS < 9*60*1000 {
		t.Errorf("status --json: %+v, want held, min_hold, expiring in about 10m", l)
	}

	r = runBinary(t, "", nil, args([]string{"run", "cron-job"}, flags, []string{"--", "true"})...)
	if r.code != exitConflict || !strings.Contains(r.stderr, "cannot be renewed") || strings.Contains(r.stderr, "unless renewed") {
		t.Errorf("run: want exit 75 saying the lock is held until a time, not renewable:\n%s", r)
	}

	// An ordinary held lock is not min_hold.
	if r := runBinary(t, "", nil, args([]string{"run", "plain"}, flags, []string{"--", "sh", "-c", `"$0" status plain --json "$@"`, binary}, flags)...); r.code != 0 || !strings.Contains(r.stdout, `"min_hold": false`) {
		t.Errorf("a lock held by run: want min_hold false:\n%s", r)
	}
}
