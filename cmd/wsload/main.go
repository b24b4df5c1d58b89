// Command wsload is wsactor's load tool. It holds thousands of WebSocket
// connections against a wsactor server and against a bare coder/websocket
// server (a goroutine per connection) in the same run, and compares them:
// echo latency, throughput, server CPU per message, and the server's memory
// and goroutines per connection.
//
// Three subcommands; run is the one to start with:
//
//	wsload run -quick                                   # smoke test, ~15 s
//	wsload run -kinds bare,wsactor -conns 15000 -rounds 3 -duration 30s
//	wsload serve -kind wsactor -addr 127.0.0.1:9000     # one server process
//	wsload clients -target ws://127.0.0.1:9000/ws -conns 5000 -source 127.0.0.2,127.0.0.3 -rate 1 -duration 30s
//
// serve runs one server: every binary or text message is echoed, the text
// "push N" makes the server push N stamped binary messages, and -push-every
// pushes to every connection periodically. GET /stats (?gc=1 to collect
// first) reports its RSS, heap, stacks, goroutines, fds, open connections,
// messages and CPU time as JSON.
//
// clients opens connections from one process (at most ~9,000: a process may
// hold 20,000 fds here), spread over loopback source addresses, sends at a
// fixed rate per connection (or in a closed loop), and prints a JSON summary
// with latency percentiles, throughput, errors and close codes.
//
// run is the orchestrator. Each round runs every kind in turn, so the kinds
// alternate while the machine's load drifts: it starts a server process and
// enough client processes, ramps up, measures the idle server, runs the
// steady phase, collects the summaries and stops everything, killing what
// does not stop in time. It prints each round and a table of medians with
// each kind's ratio to the first. Every phase is bounded in time; children
// are in their own process groups and die with the orchestrator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(wsload(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  wsload run     [flags]   compare server kinds: servers and client processes, rounds, table
  wsload serve   [flags]   one server process (bare or wsactor)
  wsload clients [flags]   one client process
Run "wsload <command> -h" for a command's flags.
`

// wsload runs a subcommand and returns the exit code.
func wsload(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = runMain(ctx, args[1:], stdout, stderr)
	case "serve":
		err = serveMain(ctx, args[1:], stdout, stderr)
	case "clients":
		err = clientsMain(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wsload: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "wsload %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
