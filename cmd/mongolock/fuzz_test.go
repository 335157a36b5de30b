package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// fuzzCommands are the commands FuzzFlags picks from (the hidden
// demo-worker is guarded too, though no input can select it).
var fuzzCommands = []string{"run", "status", "release", "devserver", "demo", "doctor", "version", "lock", "completion", "man"}

// fuzzURI is what FuzzFlags forces --uri to once a command's own checks
// have passed: it is not a connection string (no scheme), so parseURI
// rejects it with exit 2 before anything connects.
const fuzzURI = "fuzz-not-a-connection-string"

// fuzzExecute is execute with the side effects made impossible.
//
// Why this is safe. A fuzzed command line must never start a server
// (devserver; demo without a URI), a worker or child process (demo, run),
// or connect anywhere (run, status, release, doctor). Everything those
// commands do before a side effect is flag parsing, argument checks
// (cobra's Args), required flags and the option checks at the start of
// RunE. So the command tree is built by the real rootCommand, and then:
//
//   - devserver, demo-worker and man get a RunE that only records that it
//     was reached: their RunE starts the server, connects or writes files
//     (man --dir) at once, and everything before it (flags, Args) still
//     runs for real; completion runs as it is (it only prints);
//   - every other command's RunE first sets --uri to fuzzURI, which marks
//     the flag as given (so $MONGOLOCK_URI is not read, and demo does not
//     start its own server), then runs the real RunE: its own checks
//     run, and the first thing after them is parseURI (run, lock, status,
//     release, doctor through serverURI, demo directly), which rejects
//     fuzzURI with exit 2 before any connection, signal forwarding, child
//     process or server;
//   - the environment is empty (getenv always returns ""), standard input
//     is empty, and output goes to buffers.
//
// Cobra resolves the subcommand from the first argument, which FuzzFlags
// always sets to one of fuzzCommands, so no input reaches another command
// (help, completion) either. The exit code comes from executeRoot, the same
// mapping execute uses, applied to the guarded tree.
func fuzzExecute(args []string) (code int, stdout, stderr, reached, userURI string) {
	var out, errb bytes.Buffer
	sio := stdio{in: strings.NewReader(""), out: &out, err: &errb}
	a := &app{io: sio, getenv: func(string) string { return "" }}
	root := a.rootCommand()
	for _, c := range root.Commands() {
		name, orig := c.Name(), c.RunE
		switch {
		case name == "devserver" || name == "demo-worker" || name == "man":
			c.RunE = func(*cobra.Command, []string) error {
				reached = name
				return nil
			}
		case orig != nil:
			c.RunE = func(cmd *cobra.Command, args []string) error {
				reached = name
				// A --uri that connstring rejects is left as given: parseURI
				// (the same function on the same string) rejects it before
				// anything connects, and FuzzFlags checks that its
				// password is not printed. Any other --uri is replaced.
				if cmd.Flags().Changed("uri") && a.uri != "" {
					if _, err := connstring.ParseAndValidate(a.uri); err != nil {
						userURI = a.uri
						return orig(cmd, args)
					}
				}
				if err := cmd.Flags().Set("uri", fuzzURI); err != nil {
					return fmt.Errorf("fuzz guard: %w", err)
				}
				return orig(cmd, args)
			}
		case c.Run != nil:
			panic("fuzz guard: command " + name + " has Run, not RunE: guard it")
		}
	}
	code = executeRoot(root, sio, args)
	return code, out.String(), errb.String(), reached, userURI
}

// FuzzFlags runs the command line "mongolock CMD ARGS..." in process, with
// CMD picked by cmdIdx from fuzzCommands and ARGS the fuzzed line split at
// newlines, and with no server anywhere (see fuzzExecute for why nothing
// can start or connect). Properties:
//   - it never panics and the exit code is one of the documented ones;
//     since no server is reachable, in fact only 0 or 2;
//   - 0 only for help (--help/-h), version, completion (a script), or a
//     devserver or man command line that would have started the server or
//     printed or written the pages;
//   - every other outcome is a usage error: exit 2, with a message on
//     standard error;
//   - a command line that passed the command's own checks (reached its
//     RunE) and needs a server ends in parseURI's exit 2 ("invalid
//     connection string"), i.e. before any side effect;
//   - an unknown flag or a bad flag value exits 2;
//   - a --uri the driver rejects ends in exit 2 without its password on
//     standard output or error ("passwords in URIs are never printed").
func FuzzFlags(f *testing.F) {
	seeds := []struct {
		cmd  uint8
		line string
	}{
		{0, "--key\nnightly-report\n--\n./report.sh\n--full"},
		{0, "--key\nbackup\n--timeout\n10m\n--min-hold\n1h\n--\n./backup.sh"},
		{0, "--key\ndeploy\n--timeout\n-1\n--shell\n--\ndeploy --fence \"$MONGOLOCK_FENCE\""},
		{0, "--key\nsync\n-E\n0\n--quiet\n--\n./sync.sh"},
		{0, "--key\nk\n-E\n256\n--\ntrue"},
		{0, "--key=\n--\ntrue"},
		{0, "--key\nk\n--expire\n0s\n--\ntrue"},
		{0, "--key\nk\ntrue"},
		{0, "--key\nk\n--uri\nmongodb://u:secret@127.0.0.1:1/\n--\ntrue"},
		{1, ""},
		{1, "nightly-report\n--json"},
		{1, "--prefix\njobs/\n--json\n--uri\nmongodb://localhost"},
		{2, "nightly-report\n--owner\nworker-1"},
		{2, "nightly-report\n--force"},
		{2, ""},
		{3, ""},
		{3, "--listen\n127.0.0.1:0\n--data\n./x"},
		{3, "extra"},
		{4, ""},
		{4, "--workers\n10\n--duration\n1m"},
		{4, "--workers\n1"},
		{4, "--uri\nmongodb://localhost:27017"},
		{5, "--probe-time\n0s"},
		{5, "--uri\nmongodb://app:secret@db1,db2,db3/?replicaSet=rs0"},
		{6, ""},
		{6, "--help"},
		{6, "extra"},
		{0, "--help"},
		{0, "--no-such-flag"},
		{1, "--database\n\n--collection\n"},
		{1, "--uri\nmongodb://u:secret@h:notaport/"},
		{2, "k\n--force\n--uri=mongodb://u:sec%zzret@h/"},
		{5, "--uri\nmongodb://app:hunter2@db1/?replicaSet=rs0&w=bogus"},
		{0, "--key\nk\n--uri\nmongodb+srv://u:s3cr3t@h1,h2/\n--\ntrue"},
		{0, "nightly-report\n-n\n--\n./report.sh"},
		{0, "backup\n-w\n10\n--verbose\n--\n./backup.sh"},
		{0, "k\n--timeout\n-5s\n--\ntrue"},
		{0, "k\n-n\n-w\n1\n--\ntrue"},
		{0, "k\n--key\nj\n--\ntrue"},
		{7, "k"},
		{7, "k\n--json\n-w\n-1"},
		{7, ""},
		{7, "k\nj"},
		{7, "k\n--quiet\n--verbose"},
		{8, "bash"},
		{8, "powershell"},
		{8, ""},
		{9, ""},
		{9, "run"},
		{9, "--dir\n/tmp/x"},
		{9, "nosuch"},
	}
	for _, s := range seeds {
		f.Add(s.cmd, s.line)
	}

	documented := map[int]bool{exitOK: true, exitFailure: true, exitUsage: true, exitLost: true,
		exitConflict: true, exitCannotExec: true, exitNotFound: true}

	f.Fuzz(func(t *testing.T, cmdIdx uint8, line string) {
		name := fuzzCommands[int(cmdIdx)%len(fuzzCommands)]
		args := []string{name}
		if line != "" {
			args = append(args, strings.Split(line, "\n")...)
		}
		code, stdout, stderr, reached, userURI := fuzzExecute(args)
		desc := fmt.Sprintf("mongolock %q: exit %d (reached %q)\nstdout: %s\nstderr: %s", args, code, reached, stdout, stderr)

		if testing.Verbose() {
			t.Logf("mongolock %q: exit %d (reached %q)", args, code, reached)
		}
		if !documented[code] {
			t.Fatalf("undocumented exit code: %s", desc)
		}
		if code != exitOK && code != exitUsage {
			t.Fatalf("without a server only 0 or 2 are possible: %s", desc)
		}
		if reached != "" && reached != name {
			t.Fatalf("picked %s but reached %s: %s", name, reached, desc)
		}
		helped := strings.Contains(stdout, "Usage:")
		switch code {
		case exitOK:
			switch {
			case reached == "version":
				if !strings.Contains(stdout, "mongolock ") {
					t.Fatalf("version printed no version: %s", desc)
				}
			case reached == "devserver", reached == "man":
			case reached == "completion":
				if !strings.Contains(stdout, "mongolock") {
					t.Fatalf("completion printed no script: %s", desc)
				}
			case reached == "" && helped:
			default:
				t.Fatalf("exit 0 without help, version or devserver: %s", desc)
			}
		case exitUsage:
			if !strings.HasPrefix(stderr, "mongolock: ") {
				t.Fatalf("usage error without a message: %s", desc)
			}
			if reached != "" && reached != "version" && reached != "completion" && !strings.Contains(stderr, "invalid connection string") {
				// The command's own checks passed; what stopped it must
				// be the guard's URI, or one of its own usage errors.
				if !strings.Contains(stderr, "must") && !strings.Contains(stderr, "not both") && !strings.Contains(stderr, "demo-worker needs") {
					t.Fatalf("exit 2 after the command's checks, but not from parseURI: %s", desc)
				}
			}
			if strings.Contains(stderr, fuzzURI) && !strings.Contains(stderr, "invalid connection string") {
				t.Fatalf("guard URI reported oddly: %s", desc)
			}
		}
		if userURI != "" && name != "version" && name != "completion" && name != "man" { // they do not use --uri
			// The command's own checks (in its RunE) may reject the line
			// first; either way it is a usage error.
			if code != exitUsage {
				t.Fatalf("a rejected --uri did not end in exit 2: %s", desc)
			}
			// Its password, if it occurs nowhere else, must not be printed.
			// The password is found as the driver finds it: in a
			// mongodb:// or mongodb+srv:// URI, the authority ends at the
			// first '/', '?' or '#'; the user info ends at its last '@';
			// the password starts after the user info's first ':'.
			rest, ok := strings.CutPrefix(userURI, "mongodb://")
			if !ok {
				rest, ok = strings.CutPrefix(userURI, "mongodb+srv://")
			}
			if i := strings.IndexAny(rest, "/?#"); ok && i >= 0 {
				rest = rest[:i]
			}
			if ok {
				if at := strings.LastIndex(rest, "@"); at >= 0 {
					// The user info with its password, as it appears in the
					// URI: echoing the URI unredacted shows it. (The bare
					// password may occur in the usage text by chance, and
					// the usage's examples contain "app:secret@".)
					if _, pw, ok := strings.Cut(rest[:at], ":"); ok && len(pw) >= 3 &&
						strings.Count(strings.Join(args, "\n"), pw) == 1 {
						userinfo := rest[:at+1]
						msg, _, _ := strings.Cut(stderr, "\n") // the error, not the usage's examples
						if strings.Contains(msg, userinfo) || strings.Contains(stdout, userinfo) {
							t.Fatalf("the password %q of --uri %q was printed: %s", pw, userURI, desc)
						}
					}
				}
			}
		}
		for _, bad := range []string{"unknown flag", "unknown shorthand flag", "invalid argument \"", "flag needs an argument"} {
			if strings.Contains(stderr, bad) && code != exitUsage {
				t.Fatalf("%q but exit %d: %s", bad, code, desc)
			}
		}
	})
}
