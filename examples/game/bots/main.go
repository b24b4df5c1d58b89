// Command bots plays the game of examples/game with bots, for load and for
// the demo: each bot is one WebSocket connection to /ws/game that takes a
// seat, reads its welcome and every state, and plays: it mostly heads for
// the nearest coin, sometimes wanders for 0.5–2 s. When its connection is
// lost it takes its seat back with its reconnection token on the next
// node: the next -target, then the nodes the targets list in /api/peers.
//
//	go run ./examples/game/bots -target ws://localhost:8080 -rooms 100 -per-room 8
//	go run ./examples/game/bots -target ws://127.0.0.1:8081,ws://127.0.0.1:8082 -rooms 125 -per-room 8 -duration 30s
//	go run ./examples/game/bots -target ws://localhost:8080 -rooms 3 -per-room 5 -duration 10m   # the demo: join bot-room-0 from the lobby
//
// Flags:
//
//	-target URLS      the game's nodes, comma-separated ws://host:port (required).
//	                  Bot i starts on target i mod n; a bot whose connection
//	                  is lost reconnects to the next one, and after the
//	                  last to the other nodes of GET /api/peers.
//	-discover         ask the targets for the game's other nodes (GET
//	                  /api/peers) to fall back on (default true).
//	-wander           only wander (random directions, no state decoded):
//	                  the cheapest bots, for the largest loads.
//	-rooms N          rooms (default 100); -rooms × -per-room bots in all.
//	                  The bots join named rooms, <room-prefix>0 …
//	                  <room-prefix>N-1, so that exactly -rooms rooms of
//	                  -per-room bots exist, their players spread over the
//	                  targets, with seats left for people to join them.
//	-per-room N       bots per room, 1–8 (default 8).
//	-room-prefix S    the rooms' names (default "bot-room-").
//	-quick            use quick play (join or create) instead of named rooms:
//	                  it fills rooms of 8 in whatever order the joins come,
//	                  so -per-room is then only a multiplier.
//	-part I/N         run part I (1-based) of N of the swarm: the rooms K
//	                  with K mod N = I-1 (with -quick, every N-th bot);
//	                  names stay those of the whole swarm, so N processes
//	                  with the same flags make the rooms one would (default 1/1).
//	-duration D       the measured window, after every bot has a seat (default
//	                  30s, at most 24h); then the bots close (1000) and exit.
//	-ramp-timeout D   the longest wait for every bot's seat (default 1m).
//	-dial-rate R      connections opened per second during the ramp (default 200).
//	-stall D          reconnect after this long without any message (default
//	                  15s; longer than a failover).
//	-report-every D   a progress line every D (default 5s).
//	-json FILE        also write the final report as JSON (for the load run).
//
// It prints a progress line every -report-every (bots online, states per bot
// per second since the last line, inter-arrival so far, reconnects, the
// longest gap of a room so far), the line "measuring: S of N bots seated"
// when the window starts, and at the end the report: states per bot per
// second (median, p10, min), inter-arrival of a bot's states (p50, p99, max),
// reconnects (seat kept or lost), why connections ended, the longest time
// without a state per room (median and max over rooms, which shows a
// failover), and its own CPU time. A process runs at most as many bots as
// its file limit allows (wsactor.DefaultMaxConnections); use -part beyond.
// Ctrl-C ends the window early and still reports.
//
// The load run of BENCHMARKS.md ("Game") drives this command and the game's
// nodes together: examples/game/bots/loadrun.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsactor/wsactor/examples/game/bots/swarm"
)

// maxDuration bounds a run.
const maxDuration = 24 * time.Hour

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bots:", err)
		os.Exit(1)
	}
}

// run parses the flags, runs the swarm and prints its report.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, jsonPath, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	cfg.Progress = func(p swarm.Progress) { fmt.Fprintln(stdout, p) }
	cfg.Measuring = func(seated, bots int) { fmt.Fprintf(stdout, "measuring: %d of %d bots seated\n", seated, bots) }
	r, err := swarm.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, "\n", r)
	if jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}

func parseFlags(args []string, out io.Writer) (cfg swarm.Config, jsonPath string, err error) {
	fs := flag.NewFlagSet("bots", flag.ContinueOnError)
	fs.SetOutput(out)
	targets := fs.String("target", "", "the game's nodes, comma-separated ws://host:port (required)")
	fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms; -rooms × -per-room bots in all")
	fs.IntVar(&cfg.PerRoom, "per-room", 8, "bots per room, 1-8")
	quick := fs.Bool("quick", false, "use quick play instead of the named rooms <room-prefix>K")
	fs.StringVar(&cfg.RoomPrefix, "room-prefix", "bot-room-", "the rooms' names")
	discover := fs.Bool("discover", true, "fall back on the nodes the targets list in GET /api/peers")
	fs.BoolVar(&cfg.Wander, "wander", false, "only wander (random directions, no state decoded): the cheapest bots")
	part := fs.String("part", "1/1", "run part I of N of the swarm (I/N, 1-based)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "the measured window, after every bot has a seat")
	fs.DurationVar(&cfg.RampTimeout, "ramp-timeout", time.Minute, "the longest wait for every bot's seat")
	fs.Float64Var(&cfg.DialRate, "dial-rate", 200, "connections opened per second during the ramp")
	fs.DurationVar(&cfg.Stall, "stall", 15*time.Second, "reconnect after this long without any message")
	fs.DurationVar(&cfg.ReportEvery, "report-every", 5*time.Second, "period of the progress lines")
	fs.StringVar(&jsonPath, "json", "", "also write the final report to this file as JSON")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.NoDiscovery, cfg.Create = !*discover, !*quick
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	if len(cfg.Targets) == 0 {
		return cfg, "", errors.New("-target is required: the game's nodes, e.g. ws://localhost:8080")
	}
	if cfg.Duration > maxDuration {
		return cfg, "", fmt.Errorf("-duration %v: at most %v", cfg.Duration, maxDuration)
	}
	if cfg.Part, cfg.Parts, err = parsePart(*part); err != nil {
		return cfg, "", err
	}
	return cfg, jsonPath, nil
}

// parsePart reads "I/N" (1-based) as part I-1 of N.
func parsePart(s string) (part, parts int, err error) {
	i, n, ok := strings.Cut(s, "/")
	pi, err1 := strconv.Atoi(i)
	pn, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || pn < 1 || pi < 1 || pi > pn {
		return 0, 0, fmt.Errorf("-part %q: want I/N with 1 ≤ I ≤ N", s)
	}
	return pi - 1, pn, nil
}
