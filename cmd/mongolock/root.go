package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mongolock/mongolock"
)

// Exit codes shared by the commands. A command run by "mongolock run" (or
// "elect") adds its own: the child's exit status, 128+n when a signal n
// killed it.
const (
	exitOK         = 0
	exitFailure    = 1   // the operation failed: server unreachable, lock not held, deployment unsafe
	exitUsage      = 2   // bad flags or arguments, unknown command, no server given
	exitLost       = 70  // run, elect: the lock (leadership) was lost while the command ran (EX_SOFTWARE)
	exitConflict   = 75  // run, elect: the lock is held (another candidate leads) (EX_TEMPFAIL), see --conflict-exit-code
	exitCannotExec = 126 // run, elect: the command exists but cannot be executed
	exitNotFound   = 127 // run, elect: the command was not found
)

// Environment variables read when the flags of the same names are absent.
const (
	envURI        = "MONGOLOCK_URI"
	envDatabase   = "MONGOLOCK_DATABASE"
	envCollection = "MONGOLOCK_COLLECTION"
)

// stdio is where a command reads and writes; tests replace it.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// app holds what every command shares: its input and output, the
// environment and the persistent flags.
type app struct {
	io     stdio
	getenv func(string) string

	uri            string
	database       string
	collection     string
	connectTimeout time.Duration
}

// exitError ends a command with an exit code. err, if not nil, is printed
// on standard error; usage adds the command's usage after it.
type exitError struct {
	code  int
	err   error
	usage bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake in the command line: exit 2, with the usage.
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...), usage: true}
}

// failure is an operation that failed: exit 1.
func failure(err error) error {
	if errors.Is(err, mongolock.ErrInvalidArgument) {
		return &exitError{code: exitUsage, err: err}
	}
	return &exitError{code: exitFailure, err: err}
}

// message is err's text for standard error, where "mongolock: " comes
// first once: the library's errors start with it too, and so do those it
// wraps ("mongolock: acquiring \"k\": mongolock: lock lost").
func message(err error) string {
	return withoutTopology(libraryPrefix.ReplaceAllString(err.Error(), "$1"))
}

// withoutTopology removes the driver's dump of its view of the deployment
// (", current topology: { ... }") from an error's text: it is for
// debugging the driver, and connectError says what matters in it.
func withoutTopology(s string) string {
	const marker = ", current topology: {"
	for {
		i := strings.Index(s, marker)
		if i < 0 {
			return s
		}
		depth, end := 0, len(s)
		for j := i + len(marker) - 1; j < len(s); j++ {
			if s[j] == '{' {
				depth++
			} else if s[j] == '}' {
				if depth--; depth == 0 {
					end = j + 1
					break
				}
			}
		}
		s = s[:i] + s[end:]
	}
}

// libraryPrefix matches the library's "mongolock: " at the start of an
// error's text or of a wrapped error's (after ": ").
var libraryPrefix = regexp.MustCompile(`(^|: )(?:mongolock: )+`)

// exitWith ends with code, printing err if it is not nil.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// run runs the command line args (without the program name) and returns
// the exit code.
func run(args ...string) int {
	return execute(stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv, args)
}

// execute runs args with the given input, output and environment.
func execute(sio stdio, getenv func(string) string, args []string) int {
	a := &app{io: sio, getenv: getenv}
	return executeRoot(a.rootCommand(), sio, args)
}

// executeRoot runs the command tree root with args and maps its outcome to
// an exit code, printing the error (and usage, for usage errors).
func executeRoot(root *cobra.Command, sio stdio, args []string) int {
	root.SetArgs(args)
	root.SetIn(sio.in)
	root.SetOut(sio.out)
	root.SetErr(sio.err)

	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}

	var ee *exitError
	if !errors.As(err, &ee) {
		// Every command returns an *exitError; anything else comes from
		// cobra's parsing: an unknown command, flag or argument.
		ee = &exitError{code: exitUsage, err: err, usage: true}
	}
	if ee.err != nil {
		fmt.Fprintf(sio.err, "mongolock: %s\n", message(ee.err))
	}
	if ee.usage && cmd != nil {
		fmt.Fprint(sio.err, shortUsage(cmd))
	}
	return ee.code
}

// shortUsage is what follows a usage error: the command's synopsis and
// where to read more, not the whole help.
func shortUsage(cmd *cobra.Command) string {
	var b strings.Builder
	if cmd.HasParent() {
		fmt.Fprintf(&b, "Usage: %s\n", cmd.UseLine())
	} else {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		fmt.Fprintf(&b, "Usage: %s COMMAND [flags]; commands: %s\n", cmd.Name(), strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, "Run \"%s --help\" for more.\n", cmd.CommandPath())
	return b.String()
}

// unknownCommand is the usage error for an unknown command name, with the
// commands it may be a typo of.
func unknownCommand(cmd *cobra.Command, name string) error {
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		return usageError("unknown command %q; did you mean %s?", name, orList(s))
	}
	return usageError("unknown command %q", name)
}

// flagError is the usage error for a flag cobra could not parse, with the
// flags an unknown one may be a typo of.
func flagError(cmd *cobra.Command, err error) error {
	if !cmd.HasParent() && cmd.Flags().NArg() > 0 {
		// "mongolock relase k --force": the flag is unknown because the
		// command is.
		return unknownCommand(cmd, cmd.Flags().Arg(0))
	}
	name, unknown := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !unknown {
		if strings.HasPrefix(err.Error(), "unknown shorthand flag") {
			switch cmd.Name() {
			case "run":
				return usageError("%v; the command and its own flags go after --, as in: mongolock run KEY -- COMMAND [ARG...]", err)
			case "elect":
				return usageError("%v; the command and its own flags go after --, as in: mongolock elect NAME -- COMMAND [ARG...]", err)
			}
		}
		return &exitError{code: exitUsage, err: err, usage: true}
	}
	var similar []string
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if f.Hidden || seen[f.Name] {
			return
		}
		seen[f.Name] = true
		if d := levenshtein(name, f.Name); d <= 2 || len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			similar = append(similar, "--"+f.Name)
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if len(similar) > 0 {
		return usageError("%v; did you mean %s?", err, orList(similar))
	}
	return &exitError{code: exitUsage, err: err, usage: true}
}

// orList joins words as "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mongolock",
		Short: "Distributed locks kept in MongoDB",
		Long: `mongolock runs commands under a distributed lock kept in MongoDB (also a
semaphore or a shared lock) or while leading an election, holds locks for
shell scripts, shows and clears locks, checks whether a deployment is safe
for locking, and runs a local MongoDB-compatible server and a
demonstration.

The server comes from --uri, or from the MONGOLOCK_URI environment variable
when --uri is absent; the lock collection from --database and --collection,
or MONGOLOCK_DATABASE and MONGOLOCK_COLLECTION. Passwords in URIs are never
printed. Connecting gives up after --connect-timeout (10s), or a command's
--timeout when that is shorter; a malformed connection string is a usage
error (exit 2) at once.

Every command exits 2 for a usage error and 1 when the server could not be
used; "mongolock COMMAND --help" lists a command's other exit codes.

New here? Run "mongolock demo": it starts its own server and shows several
processes sharing one lock.`,
		Example: `  mongolock demo
  mongolock devserver &
  export MONGOLOCK_URI='mongodb://127.0.0.1:27017/?directConnection=true'
  mongolock run nightly-report -- ./report.sh
  mongolock status
  mongolock doctor --uri mongodb://db1,db2,db3/?replicaSet=rs0`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError("no command given")
		},
		Version:                    buildVersion().Version,
		SuggestionsMinimumDistance: 2,
		CompletionOptions:          cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.checkGlobalFlags(cmd)
		},
	}
	root.SetFlagErrorFunc(flagError)
	root.SetVersionTemplate("mongolock {{.Version}}\n")
	root.Flags().BoolP("version", "v", false, `print mongolock's version ("mongolock version" says more)`)

	pf := root.PersistentFlags()
	pf.StringVar(&a.uri, "uri", "", "MongoDB connection string (default: $"+envURI+")")
	pf.StringVar(&a.database, "database", mongolock.DefaultDatabase, "database that holds the lock collection (or $"+envDatabase+")")
	pf.StringVar(&a.collection, "collection", mongolock.DefaultCollection, "collection that holds the locks (or $"+envCollection+")")
	pf.DurationVar(&a.connectTimeout, "connect-timeout", defaultConnectTimeout, "give up connecting to the server after this long (a command's --timeout, if shorter, bounds it too)")

	root.AddCommand(
		a.runCommand(),
		a.electCommand(),
		a.lockCommand(),
		a.statusCommand(),
		a.releaseCommand(),
		a.devserverCommand(),
		a.demoCommand(),
		a.demoWorkerCommand(),
		a.doctorCommand(),
		a.versionCommand(),
		a.completionCommand(),
		a.manCommand(),
	)
	for _, c := range root.Commands() {
		switch c.Name() {
		case "run", "elect", "lock", "status", "release":
			c.ValidArgsFunction = a.completeKey
		}
	}
	return root
}

// checkGlobalFlags takes --database and --collection from the
// environment when they are not given, and checks the flags every command
// has.
func (a *app) checkGlobalFlags(cmd *cobra.Command) error {
	for _, f := range []struct {
		flag, env string
		v         *string
	}{
		{"database", envDatabase, &a.database},
		{"collection", envCollection, &a.collection},
	} {
		if !cmd.Flags().Changed(f.flag) {
			if v := a.getenv(f.env); v != "" {
				*f.v = v
			}
		}
		if *f.v == "" {
			return usageError("--%s must not be empty", f.flag)
		}
	}
	if a.connectTimeout <= 0 {
		return usageError("--connect-timeout must be positive, got %v", a.connectTimeout)
	}
	return nil
}

// serverURI returns the URI to connect to: --uri if given, else
// $MONGOLOCK_URI, checked by parseURI. Without either it is a usage error
// that says how to give one.
func (a *app) serverURI(cmd *cobra.Command) (string, error) {
	uri := a.uri
	if !cmd.Flags().Changed("uri") {
		uri = a.getenv(envURI)
	}
	if uri == "" {
		return "", &exitError{code: exitUsage, err: fmt.Errorf(
			"no MongoDB server given: pass --uri mongodb://HOST:PORT or set %s.\n"+
				"For a local server to try things on, run \"mongolock devserver\" in another terminal", envURI)}
	}
	if _, err := parseURI(uri); err != nil {
		return "", err
	}
	return uri, nil
}

// connect connects a lock client to the server of cmd's flags (see
// connectURI; timeout is the command's --timeout, 0 if none). The returned
// connection must be closed.
func (a *app) connect(ctx context.Context, cmd *cobra.Command, timeout time.Duration) (*conn, string, error) {
	uri, err := a.serverURI(cmd)
	if err != nil {
		return nil, "", err
	}
	c, err := a.connectURI(ctx, uri, timeout)
	return c, uri, err
}

// checkKey rejects an empty key before any server is contacted.
func checkKey(key string) error {
	if key == "" {
		return usageError("the lock key must not be empty")
	}
	return nil
}

// fmtDuration formats d for people: milliseconds below a second, tenths
// of a second below a minute, whole seconds above.
func fmtDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Millisecond:
		s = d.Round(time.Microsecond).String()
	case d < time.Second:
		s = d.Round(time.Millisecond).String()
	case d < time.Minute:
		s = d.Round(100 * time.Millisecond).String()
	default:
		s = d.Round(time.Second).String()
	}
	if neg {
		return "-" + s
	}
	return s
}

// fmtTime formats a server time for people (UTC, to the second).
func fmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
