package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/mongolock/mongolock"
)

// runInProcess runs the command line in this process, with the given
// environment, and returns its exit code and output.
func runInProcess(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = execute(stdio{in: strings.NewReader(""), out: &out, err: &errb}, func(k string) string { return env[k] }, args)
	return code, out.String(), errb.String()
}

// Usage errors exit 2 with a message and the usage, before any lock is
// touched.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	srv, flags := server(t)
	c := newClient(t, srv)
	const key = "untouched"

	tests := []struct {
		name string
		args []string
		want string // in standard error
	}{
		{"unknown command", []string{"lockk"}, `unknown command "lockk"`},
		{"no command", nil, "no command given"},
		{"run without --", []string{"run", "--key", key, "echo", "hi"}, "put the command after --"},
		{"run with nothing after --", []string{"run", "--key", key, "--"}, "no command given"},
		{"run with --key and an argument before --", []string{"run", "--key", key, "echo", "--", "hi"}, "given twice"},
		{"run without a key", []string{"run", "--", "true"}, "no lock key given"},
		{"run with a key and a command without --", []string{"run", key, "echo", "hi"}, "mongolock run " + key + " -- echo hi"},
		{"run with two keys", []string{"run", key, "other", "--", "true"}, `unexpected argument "other"`},
		{"run with two different keys", []string{"run", key, "--key", "other", "--", "true"}, "given twice"},
		{"run with a negative timeout", []string{"run", key, "--timeout", "-5s", "--", "true"}, "must not be negative: -1 waits without limit"},
		{"run with a negative wait", []string{"run", key, "-w", "-2", "--", "true"}, "must not be negative"},
		{"run with -n and a wait", []string{"run", key, "-n", "-w", "5", "--", "true"}, "not both"},
		{"run with --timeout and --wait", []string{"run", key, "--timeout", "5s", "--wait", "5s", "--", "true"}, "not both"},
		{"run with --quiet and --verbose", []string{"run", key, "--quiet", "--verbose", "--", "true"}, "not both"},
		{"lock without a key", []string{"lock"}, "no lock key given"},
		{"lock with two keys", []string{"lock", key, "other"}, `unexpected argument "other"`},
		{"lock with an empty key", []string{"lock", ""}, "must not be empty"},
		{"lock with a negative timeout", []string{"lock", key, "--timeout", "-3s"}, "must not be negative"},
		{"run with an unknown flag", []string{"run", "--key", key, "--bogus", "--", "true"}, "unknown flag: --bogus"},
		{"run with a zero expiry", []string{"run", "--key", key, "--expire", "0s", "--", "true"}, "--expire must be at least 1ms"},
		{"run with a bad timeout", []string{"run", "--key", key, "--timeout", "soon", "--", "true"}, "-1 to wait without limit"},
		{"run with a negative kill grace", []string{"run", "--key", key, "--kill-grace", "-1s", "--", "true"}, "--kill-grace"},
		{"run with an exit code out of range", []string{"run", "--key", key, "-E", "300", "--", "true"}, "between 0 and 255"},
		{"run with an empty key", []string{"run", "--key", "", "--", "true"}, "the lock key must not be empty"},
		{"elect without a name", []string{"elect", "--", "true"}, "no election name given"},
		{"elect without a command", []string{"elect", key}, "no command given"},
		{"elect without --", []string{"elect", key, "echo", "hi"}, "mongolock elect " + key + " -- echo hi"},
		{"elect with two names", []string{"elect", key, "other", "--", "true"}, `unexpected argument "other"`},
		{"elect with an empty name", []string{"elect", "", "--", "true"}, "must not be empty"},
		{"elect with an empty value", []string{"elect", key, "--value", "", "--", "true"}, "--value must not be empty"},
		{"elect with -n and a wait", []string{"elect", key, "-n", "--timeout", "5s", "--", "true"}, "not both"},
		{"elect with --min-hold", []string{"elect", key, "--min-hold", "1m", "--", "true"}, "unknown flag: --min-hold"},
		{"elect with --json", []string{"elect", key, "--json", "--", "true"}, "--json is for --observe"},
		{"elect --observe with a command", []string{"elect", key, "--observe", "--", "true"}, "--observe runs no command"},
		{"elect --observe with --value", []string{"elect", key, "--observe", "--value", "v"}, "--value: not with --observe"},
		{"elect --observe without a name", []string{"elect", "--observe"}, "no election name given"},
		{"a zero connect timeout", []string{"status", "--connect-timeout", "0s"}, "--connect-timeout must be positive"},
		{"status with two keys", []string{"status", key, "other"}, "at most one KEY"},
		{"status with key and prefix", []string{"status", key, "--prefix", "p"}, "not both"},
		{"release without owner or force", []string{"release", key}, "--owner OWNER"},
		{"release with owner and force", []string{"release", key, "--owner", "o", "--force"}, "not both"},
		{"release without a key", []string{"release", "--force"}, "exactly one KEY"},
		{"demo with one worker", []string{"demo", "--workers", "1"}, "--workers must be between 2 and 64"},
		{"doctor with arguments", []string{"doctor", "extra"}, "unknown command"},
		{"version with arguments", []string{"version", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The server flags go right after the command's name, before
			// a "--".
			line := append([]string(nil), flags...)
			if len(tt.args) > 0 {
				line = args([]string{tt.args[0]}, flags, tt.args[1:])
			}
			code, _, stderr := runInProcess(nil, line...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, stderr)
			}
			if !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr has no usage:\n%s", stderr)
			}
		})
	}

	if _, err := c.Info(testCtx(t), key); !errors.Is(err, mongolock.ErrNotFound) {
		t.Errorf("after the usage errors, Info(%q) = %v; want ErrNotFound: no lock may be touched", key, err)
	}
}

// Without --uri and MONGOLOCK_URI, commands that need a server exit 2 and
// say how to give one.
func TestNoServerGiven(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "--key", "k", "--", "true"},
		{"lock", "k"},
		{"status"},
		{"release", "k", "--force"},
		{"doctor"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, _, stderr := runInProcess(nil, args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			for _, want := range []string{"--uri", "MONGOLOCK_URI", "mongolock devserver"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not mention %s:\n%s", want, stderr)
				}
			}
		})
	}
}

// MONGOLOCK_URI is used when --uri is absent, and --uri wins over it.
func TestURIFromEnvironment(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)
	env := map[string]string{envURI: srv.URI()}

	code, stdout, stderr := runInProcess(env, "status", "--database", srv.Database())
	if code != 0 || !strings.Contains(stdout, "no locks in") {
		t.Errorf("status with MONGOLOCK_URI: exit %d\n%s%s", code, stdout, stderr)
	}

	unreachable := "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"
	code, _, stderr = runInProcess(env, "status", "--uri", unreachable)
	if code != exitFailure || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("status with --uri and MONGOLOCK_URI: exit %d, want %d (the flag wins)\n%s", code, exitFailure, stderr)
	}
}

// Passwords in URIs are never printed, whatever goes wrong.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "hunter2secret"
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unreachable", []string{"status", "--uri", "mongodb://alice:" + secret + "@127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"}, exitFailure},
		{"unparseable", []string{"status", "--uri", "mongodb://alice:" + secret + "@127.0.0.1:1/?replicaSet=x&directConnection=true&loadBalanced=true"}, exitUsage},
		{"bad scheme", []string{"doctor", "--uri", "mongo://alice:" + secret + "@host"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runInProcess(nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\n%s", code, tt.code, stderr)
			}
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("the password was printed:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runBinary(t, "", nil, "version")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"mongolock", runtime.Version(), "go.mongodb.org/mongo-driver/v2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("version output lacks %q:\n%s", want, r.stdout)
		}
	}
	first, _, _ := strings.Cut(r.stdout, "\n")

	// --version prints the first line.
	for _, flag := range []string{"--version", "-v"} {
		if rv := runBinary(t, "", nil, flag); rv.code != 0 || rv.stdout != first+"\n" {
			t.Errorf("mongolock %s: want exit 0 and %q:\n%s", flag, first, rv)
		}
	}

	// --json, for scripts.
	rj := runBinary(t, "", nil, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(rj.stdout), &v); err != nil || rj.code != 0 {
		t.Fatalf("%v\n%s", err, rj)
	}
	if "mongolock "+v.Version != first || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH || !strings.HasPrefix(v.Driver, "v2.") {
		t.Errorf("version --json = %+v; the text said %q", v, r.stdout)
	}
	for _, field := range []string{`"version"`, `"revision"`, `"modified"`, `"driver"`, `"go"`, `"platform"`} {
		if !strings.Contains(rj.stdout, field) {
			t.Errorf("JSON lacks %s:\n%s", field, rj.stdout)
		}
	}
}

// MONGOLOCK_DATABASE and MONGOLOCK_COLLECTION are used when --database and
// --collection are absent; the flags win over them.
func TestCollectionFromEnvironment(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)
	c := newClient(t, srv, mongolock.WithCollection("jobs"))
	if ok, err := c.Lock(testCtx(t), "env-k", "env-owner"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	env := []string{envURI + "=" + srv.URI(), envDatabase + "=" + srv.Database(), envCollection + "=jobs"}

	r := runBinary(t, "", env, "status", "env-k")
	if r.code != 0 || !strings.Contains(r.stdout, "env-owner") {
		t.Errorf("status with MONGOLOCK_DATABASE and MONGOLOCK_COLLECTION: want the lock:\n%s", r)
	}
	r = runBinary(t, "", env, "status", "env-k", "--collection", "lock")
	if r.code != exitFailure || !strings.Contains(r.stderr, "no lock \"env-k\" in "+srv.Database()+".lock") {
		t.Errorf("--collection does not win over MONGOLOCK_COLLECTION:\n%s", r)
	}
	r = runBinary(t, "", env, "run", "env-k", "--", "true")
	if r.code != exitConflict {
		t.Errorf("run with MONGOLOCK_COLLECTION: want exit 75, the lock is held there:\n%s", r)
	}
	r = runBinary(t, "", append(env, envDatabase+"="), "status", "--database", "")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--database must not be empty") {
		t.Errorf("an empty --database: want exit 2:\n%s", r)
	}
}

// Every command has help with examples, and the ones that can fail list
// their exit codes.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"run", "elect", "lock", "status", "release", "devserver", "demo", "doctor", "version", "completion", "man"} {
		t.Run(cmd, func(t *testing.T) {
			code, stdout, stderr := runInProcess(nil, cmd, "--help")
			if code != 0 {
				t.Fatalf("exit code %d\n%s", code, stderr)
			}
			for _, want := range []string{"Usage:", "Examples:", "Exit code"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
	r := runBinary(t, "", nil, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "mongolock demo") {
		t.Errorf("mongolock --help:\n%s", r)
	}
}

// Typos get "did you mean" and a short hint, not the whole help.
func TestTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"statsu"}, []string{`unknown command "statsu"; did you mean status?`, `Run "mongolock --help"`}},
		{[]string{"relase", "k", "--force"}, []string{"did you mean release?"}},
		{[]string{"run", "k", "--timout", "5s", "--", "true"}, []string{"unknown flag: --timout; did you mean --timeout?", "Usage: mongolock run KEY", `Run "mongolock run --help"`}},
		{[]string{"status", "--jsno"}, []string{"did you mean --json?"}},
		{[]string{"status", "--databse", "x"}, []string{"did you mean --database?"}},
		{[]string{"run", "k", "ls", "-l"}, []string{"the command and its own flags go after --"}},
		{nil, []string{"no command given", "commands: completion, demo, devserver, doctor, elect, lock, man, release, run, status, version"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, "", nil, tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			for _, want := range tt.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
				}
			}
			if n := strings.Count(r.stderr, "\n"); n > 4 {
				t.Errorf("%d lines on standard error, want a short hint:\n%s", n, r.stderr)
			}
		})
	}
}
