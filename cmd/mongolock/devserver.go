package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mongolock/mongolock/internal/embedded"
)

// stopTimeout bounds stopping the embedded server.
const stopTimeout = 15 * time.Second

func (a *app) devserverCommand() *cobra.Command {
	var (
		listen  string
		data    string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "devserver [--listen ADDR] [--data DIR]",
		Short: "Run a local MongoDB-compatible server for development",
		Long: `Devserver runs a MongoDB-compatible server in the foreground, for trying
mongolock and for development: FerretDB 1.x on SQLite, behind a proxy that
executes one command at a time (FerretDB 1.x alone does not execute
findAndModify atomically; "mongolock doctor" shows it). It is one node, in one
process: not for production.

It prints the URI to use on standard output (alone on its line, for scripts)
and how to use it on standard error. Data is kept in --data DIR; without it,
in a temporary directory that is removed when the server stops. SIGINT
(Ctrl-C) or SIGTERM stops it cleanly.

Exit codes: 0 after a clean stop; 1 if it could not start (for example the
address is in use: try --listen 127.0.0.1:0 for a free port); 2 for a usage
error (an --listen that is not HOST:PORT with a port from 0 to 65535, or
whose host does not resolve).`,
		Example: `  mongolock devserver
  mongolock devserver --listen 127.0.0.1:27018 --data ./mongolock-data

  # In a script: start it, read its URI, use it, stop it.
  mongolock devserver --listen 127.0.0.1:0 > uri.txt &
  sleep 1; export MONGOLOCK_URI=$(cat uri.txt)
  mongolock run demo -- echo hello
  kill %1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkListen(listen); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()

			var logger *slog.Logger
			if verbose {
				logger = slog.New(slog.NewTextHandler(a.io.err, nil))
			}
			startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
			srv, err := embedded.Start(startCtx, embedded.Config{Dir: data, Listen: listen, Logger: logger})
			cancel()
			var dnsErr *net.DNSError
			switch {
			case errors.As(err, &dnsErr):
				return usageError("--listen %s: %v", listen, dnsErr)
			case err != nil:
				return failure(fmt.Errorf("starting the server on %s: %w", listen, err))
			}

			fmt.Fprintln(a.io.out, srv.URI())
			fmt.Fprintf(a.io.err, "mongolock devserver: FerretDB on SQLite, behind a serializing proxy\n"+
				"  URI:  %s\n", srv.URI())
			if data == "" {
				fmt.Fprintf(a.io.err, "  data: %s (temporary: removed when the server stops; --data DIR keeps it)\n", srv.Dir())
			} else {
				fmt.Fprintf(a.io.err, "  data: %s (kept)\n", srv.Dir())
			}
			fmt.Fprintf(a.io.err, "Use it with:\n  export %s='%s'\nStop it with Ctrl-C or SIGTERM.\n", envURI, srv.URI())

			<-ctx.Done()
			stop() // a second Ctrl-C kills at once
			fmt.Fprintln(a.io.err, "mongolock devserver: stopping")
			cctx, ccancel := context.WithTimeout(context.Background(), stopTimeout)
			defer ccancel()
			if err := srv.Close(cctx); err != nil {
				return failure(fmt.Errorf("stopping the server: %w", err))
			}
			fmt.Fprintln(a.io.err, "mongolock devserver: stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:27017", "address to listen on (port 0: any free port)")
	cmd.Flags().StringVar(&data, "data", "", "directory for the data, kept after exit (default: a temporary directory, removed at exit)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log FerretDB's messages on standard error")
	return cmd
}

// checkListen checks --listen before anything starts: HOST:PORT, where
// HOST is empty (every interface), an IP address or a host name, and PORT
// a number from 0 (any free port) to 65535.
func checkListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return usageError("--listen %q: want HOST:PORT, such as 127.0.0.1:27017, or 127.0.0.1:0 for any free port (%v)", listen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usageError("--listen %q: the port must be a number from 0 (any free port) to 65535", listen)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return usageError("--listen %q: %q is neither an IP address nor a host name", listen, host)
	}
	return nil
}

// hostName matches a DNS host name.
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)
