package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

func TestRelease(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	holder := newClient(t, srv)
	other := newClient(t, srv)
	ctx := testCtx(t)

	lock := func(t *testing.T, key string) *mongolock.Lease {
		t.Helper()
		l, err := holder.TryAcquire(ctx, key, mongolock.Owner("ops-1"), mongolock.Expire(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	locked := func(t *testing.T, key string) bool {
		t.Helper()
		info, err := other.Info(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return info.Locked
	}

	t.Run("by its owner", func(t *testing.T) {
		lock(t, "r1")
		r := runBinary(t, "", nil, args([]string{"release", "r1", "--owner", "ops-1"}, flags)...)
		if r.code != 0 || !strings.Contains(r.stdout, `released the lock "r1"`) {
			t.Fatal(r)
		}
		if locked(t, "r1") {
			t.Error("still locked")
		}
	})

	t.Run("by another owner", func(t *testing.T) {
		lock(t, "r2")
		r := runBinary(t, "", nil, args([]string{"release", "r2", "--owner", "ops-2"}, flags)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, `held by "ops-1"`) {
			t.Errorf("want exit 1 naming the holder:\n%s", r)
		}
		if !locked(t, "r2") {
			t.Error("released by the wrong owner")
		}
	})

	t.Run("forced", func(t *testing.T) {
		l := lock(t, "r3")
		r := runBinary(t, "", nil, args([]string{"release", "r3", "--force"}, flags)...)
		if r.code != 0 {
			t.Fatal(r)
		}
		for _, want := range []string{`force-released the lock "r3"`, `held by "ops-1"`, "since ", "fence " + strconv.FormatInt(l.Fence(), 10)} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		if locked(t, "r3") {
			t.Error("still locked")
		}
		if err := l.Renew(ctx, time.Minute); !errors.Is(err, mongolock.ErrNotHeld) {
			t.Errorf("the former holder's Renew = %v, want ErrNotHeld", err)
		}
	})

	t.Run("forced, not held", func(t *testing.T) {
		l := lock(t, "r4")
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		r := runBinary(t, "", nil, args([]string{"release", "r4", "--force"}, flags)...)
		if r.code != 0 || !strings.Contains(r.stdout, "not held") {
			t.Errorf("want exit 0 saying it was not held:\n%s", r)
		}
	})

	t.Run("no such lock", func(t *testing.T) {
		for _, tt := range []struct {
			how  []string
			code int
			out  string // in standard output or error
		}{
			{[]string{"--force"}, 0, `there is no lock "r-none"`}, // as rm -f
			{[]string{"--force", "--json"}, 0, `"result": "not_found"`},
			{[]string{"--owner", "ops-1"}, exitFailure, `no lock "r-none"`},
			{[]string{"--owner", "ops-1", "--json"}, exitFailure, `"result": "not_found"`},
		} {
			r := runBinary(t, "", nil, args([]string{"release", "r-none"}, tt.how, flags)...)
			if r.code != tt.code || !strings.Contains(r.stdout+r.stderr, tt.out) {
				t.Errorf("release %v of a missing lock: want exit %d and %q:\n%s", tt.how, tt.code, tt.out, r)
			}
			if _, err := other.Info(ctx, "r-none"); !errors.Is(err, mongolock.ErrNotFound) {
				t.Errorf("release %v created a document: %v", tt.how, err)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		l := lock(t, "rj")
		release := func(t *testing.T, how ...string) (releaseJSON, result) {
			t.Helper()
			r := runBinary(t, "", nil, args([]string{"release", "rj", "--json"}, how, flags)...)
			var got releaseJSON
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("%v\n%s", err, r)
			}
			for _, field := range []string{`"key"`, `"result"`, `"owner"`, `"since"`, `"expires"`, `"fence"`} {
				if !strings.Contains(r.stdout, field) {
					t.Errorf("JSON lacks %s:\n%s", field, r.stdout)
				}
			}
			return got, r
		}

		got, r := release(t, "--owner", "ops-2")
		if r.code != exitFailure || got.Result != releaseHeldOther || got.Owner != "ops-1" || got.Fence != l.Fence() || got.Since == nil {
			t.Errorf("the wrong owner: want exit 1 and held_by_other by ops-1:\n%s", r)
		}
		got, r = release(t, "--owner", "ops-1")
		if r.code != 0 || got.Result != releasedLock || got.Owner != "ops-1" || got.Fence != l.Fence() || got.Since == nil || got.Expires == nil {
			t.Errorf("its owner: want exit 0 and released, with what was held:\n%s", r)
		}
		if !regexp.MustCompile(`"since": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`).MatchString(r.stdout) {
			t.Errorf("since is not an RFC 3339 time with milliseconds:\n%s", r.stdout)
		}
		got, r = release(t, "--force")
		if r.code != 0 || got.Result != releaseNotHeld || got.Owner != "" || got.Since != nil {
			t.Errorf("forced, not held: want exit 0 and not_held:\n%s", r)
		}
		l = lock(t, "rj")
		got, r = release(t, "--force")
		if r.code != 0 || got.Result != releasedLock || got.Owner != "ops-1" || got.Fence != l.Fence() {
			t.Errorf("forced: want exit 0 and released, with what was held:\n%s", r)
		}
	})
}
