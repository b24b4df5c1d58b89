//go:build linux

// Command loadrun is the game's load run (BENCHMARKS.md, "Game"): game
// nodes, each its own process (a cluster with a real redis-server on
// loopback, or a single node), and bots processes (examples/game/bots) that
// play -rooms rooms of -per-room bots spread over the nodes; it measures
// what the players got and what the nodes spent, and can SIGKILL a node
// during the window to measure a failover.
//
//	go run ./examples/game/bots/loadrun                          # setups 1, 2 and 2k; 2 rounds
//	go run ./examples/game/bots/loadrun -setups 2 -rounds 1 -duration 10s
//
// A setup is "1" (a single node: no cluster, no Redis), "N" (a cluster of N
// nodes configured by -config), "1c" (a cluster of one), and a trailing "k"
// SIGKILLs the last node -kill-after into the window (its rooms fail over to
// the others, its bots reconnect to the next node). Each round runs every
// setup in turn (in reverse order every other round), so that they share
// the machine's drift. For each run it reports the bots' figures (states
// per bot per second, inter-arrival of a bot's states), the nodes' CPU time
// over the window (from /proc) divided by the player-ticks delivered, their
// memory, the warnings and errors in their logs, and for a kill: how long
// the rooms of the killed node, and its bots, went without a state, against
// the config's member TTL. At the end, the medians of each setup over the
// rounds, as Markdown. Everything goes to -out: each process's log, the
// bots' JSON reports, results.json and summary.md.
//
// The bots run in as few processes as the file limit allows (one per
// 18,000 bots under a 20,000-descriptor limit; -bot-procs to choose), each
// with a part of the rooms. Run it from the repository root (the default
// -config and the builds are relative to it), alone on the machine or under
// its benchmark lock.
//
// Every wait is bounded, every process is in its own process group and dies
// with this one, and the nodes, the bots and redis-server are stopped
// (SIGTERM, then SIGKILL of the group) at the end of each run and on any
// exit. Linux only: it reads /proc.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// maxConns is how many connections a process may hold under the file limit
// it passes on to the nodes and the bots processes (-1 where it has none).
var maxConns = func() int {
	if n := wsactor.DefaultMaxConnections(); n > 0 {
		return n
	}
	return 1 << 20
}()

// options are the flags.
type options struct {
	setups    []setup
	rounds    int
	rooms     int
	perRoom   int
	botProcs  int
	duration  time.Duration
	killAfter time.Duration
	dialRate  float64
	config    string
	ttl       string // the config's member TTL and heartbeat, for the report
	out       string
	gameBin   string
	botsBin   string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loadrun: setups %s, %d round(s), %d rooms × %d bots in %d process(es), window %v; output in %s\n",
		setupNames(o.setups), o.rounds, o.rooms, o.perRoom, o.botProcs, o.duration, o.out)
	fmt.Fprintf(stdout, "machine: %d CPUs, %s, load average %s\n", runtime.NumCPU(), runtime.Version(), loadAvg())
	if err := buildBinaries(ctx, o, stdout); err != nil {
		return err
	}
	var results []*runResult
	defer func() {
		if len(results) > 0 {
			_ = writeJSON(filepath.Join(o.out, "results.json"), results)
		}
	}()
	for round := 1; round <= o.rounds; round++ {
		order := slices.Clone(o.setups)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, su := range order {
			fmt.Fprintf(stdout, "\nround %d, setup %s: %s\n", round, su.Name, describe(su))
			res, err := runOne(ctx, o, su, round, stdout)
			if err != nil {
				return fmt.Errorf("round %d, setup %s: %w", round, su.Name, err)
			}
			results = append(results, res)
			printRun(stdout, res)
		}
	}
	var md strings.Builder
	writeSummary(&md, o, results)
	fmt.Fprint(stdout, "\n", md.String())
	return os.WriteFile(filepath.Join(o.out, "summary.md"), []byte(md.String()), 0o644)
}

func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadrun", flag.ContinueOnError)
	fs.SetOutput(out)
	setups := fs.String("setups", "1,2,2k", "comma-separated setups: N nodes (1: a single node without cluster), Nc a cluster even of 1, a trailing k kills the last node during the window")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds; each runs every setup once")
	fs.IntVar(&o.rooms, "rooms", 125, "rooms")
	fs.IntVar(&o.perRoom, "per-room", 8, "bots per room")
	fs.IntVar(&o.botProcs, "bot-procs", 0, "bots processes, sharing the rooms (default: as few as the file limit allows)")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "the measured window")
	fs.DurationVar(&o.killAfter, "kill-after", 15*time.Second, "with a k setup, SIGKILL the last node this long into the window")
	fs.Float64Var(&o.dialRate, "dial-rate", 200, "bots connecting per second during the ramp, all processes together")
	fs.StringVar(&o.config, "config", "examples/game/bots/loadrun/cluster.yaml", "the nodes' cluster configuration (its redis.addr is replaced by the run's own Redis)")
	fs.StringVar(&o.out, "out", "", "directory for logs and results (default: a new temporary directory)")
	fs.StringVar(&o.gameBin, "game-bin", "", "the game's binary (default: built from ./examples/game into -out)")
	fs.StringVar(&o.botsBin, "bots-bin", "", "the bots' binary (default: built from ./examples/game/bots into -out)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if o.setups, err = parseSetups(*setups); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.rounds < 1 || o.rounds > 20:
		return nil, errors.New("-rounds: 1 to 20")
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return nil, errors.New("-duration: more than 0, at most 10m")
	case o.rooms < 1 || o.perRoom < 1 || o.perRoom > gameserver.MaxPlayers:
		return nil, fmt.Errorf("-rooms at least 1, -per-room 1 to %d", gameserver.MaxPlayers)
	case o.rooms*o.perRoom > maxConns:
		// After a kill one node holds every bot: its file limit bounds the run.
		return nil, fmt.Errorf("%d bots: at most %d, what one node's file limit allows", o.rooms*o.perRoom, maxConns)
	case o.botProcs < 0 || o.botProcs > o.rooms:
		return nil, errors.New("-bot-procs: at most -rooms")
	case slices.ContainsFunc(o.setups, func(s setup) bool { return s.Kill }) && (o.killAfter <= 0 || o.killAfter >= o.duration):
		return nil, errors.New("-kill-after must fall inside the window")
	}
	if o.botProcs == 0 {
		o.botProcs = min((o.rooms*o.perRoom+maxConns-1)/maxConns, o.rooms)
	}
	if slices.ContainsFunc(o.setups, func(s setup) bool { return s.Cluster }) {
		cfg, err := cluster.Load(o.config)
		if err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		o.ttl = fmt.Sprintf("member TTL %v, heartbeat %v", cfg.Membership.MemberTTL, cfg.Membership.HeartbeatInterval)
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "loadrun-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	return o, nil
}

// buildBinaries builds the game and the bots, unless given: a built binary
// keeps edits made to the tree during the run from leaking in.
func buildBinaries(ctx context.Context, o *options, stdout io.Writer) error {
	for _, b := range []struct {
		bin *string
		pkg string
	}{{&o.gameBin, "github.com/wsactor/wsactor/examples/game"}, {&o.botsBin, "github.com/wsactor/wsactor/examples/game/bots"}} {
		if *b.bin != "" {
			continue
		}
		*b.bin = filepath.Join(o.out, filepath.Base(b.pkg))
		fmt.Fprintf(stdout, "building %s\n", b.pkg)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", *b.bin, b.pkg).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func describe(su setup) string {
	s := fmt.Sprintf("a cluster of %d nodes", su.Nodes)
	if !su.Cluster {
		s = "a single node (no cluster)"
	}
	if su.Kill {
		s += fmt.Sprintf(", node %d SIGKILLed during the window", su.Nodes)
	}
	return s
}

func setupNames(s []setup) string {
	var names []string
	for _, su := range s {
		names = append(names, su.Name)
	}
	return strings.Join(names, ",")
}

// printRun prints one run's results.
func printRun(w io.Writer, r *runResult) {
	fmt.Fprintf(w, "  result: %d/%d bots seated; states/bot/s median %.2f p10 %.2f; inter-arrival p50 %.1f ms p99 %.1f ms max %.0f ms\n",
		r.Seated, r.Bots, r.RateMedian, r.RateP10, r.InterArrivalP50Ms, r.InterArrivalP99Ms, r.InterArrivalMaxMs)
	fmt.Fprintf(w, "          nodes: %.1f CPU s in %.0f s (%.2f cores), %.1f µs per player-tick (%d delivered); RSS %s MiB (peak %s); bots %.1f CPU s\n",
		r.NodeCPUSec, r.WindowSec, r.NodeCores, r.CPUPerTickUs, r.States, floats(r.NodeRSSMiB), floats(r.NodePeakMiB), r.BotsCPUSec)
	fmt.Fprintf(w, "          reconnects %d (seat kept %d, lost %d), moves %d, stalls %d, closes %v, server errors %v; longest room gap %.0f ms; load %s → %s, CPU pressure %s\n",
		r.Reconnects, r.SeatsKept, r.SeatsLost, r.Moves, r.Stalls, r.CloseCodes, r.ServerErrors, r.RoomGapMaxMs, r.LoadBefore, r.LoadAfter, r.PressureAfter)
	if f := r.Failover; f != nil {
		fmt.Fprintf(w, "          failover (%s): node %s killed %.1f s into the window, hosting %d rooms: their gap median %.0f ms, max %.0f ms, %d/%d back; states/bot/s median %.2f in them, %.2f in the others\n",
			f.MemberTTL, f.Node, f.KillAtSec, f.Rooms, f.RoomGapMedianMs, f.RoomGapMaxMs, f.RoomsBack, f.Rooms, f.RateMedian, f.OtherRateMedian)
		for _, g := range f.Players {
			fmt.Fprintf(w, "            their players on %s\n", g)
		}
		fmt.Fprintf(w, "            players of other rooms on %s; other %d rooms: longest gap %.0f ms\n", f.Movers, f.OtherRooms, f.OtherRoomGapMax)
	}
	for _, l := range r.Logs {
		fmt.Fprintf(w, "          log %s %s %s ×%d: %s\n", l.Node, l.Phase, l.Level, l.Count, l.Msg)
	}
}

func floats(v []float64) string {
	var parts []string
	for _, f := range v {
		parts = append(parts, fmt.Sprintf("%.0f", f))
	}
	return strings.Join(parts, "/")
}

// writeSummary writes the medians of each setup over its runs, then every
// run, as Markdown.
func writeSummary(w io.Writer, o *options, results []*runResult) {
	fmt.Fprintf(w, "## Medians over %d round(s): %d rooms × %d bots, window %v\n\n", o.rounds, o.rooms, o.perRoom, o.duration)
	fmt.Fprintln(w, "| setup | runs | states/bot/s median (p10) | inter-arrival p50 / p99 / max (ms) | node CPU (cores) | CPU per player-tick (µs) | RSS per node (MiB) | bots CPU (cores) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, su := range o.setups {
		var rs []*runResult
		for _, r := range results {
			if r.Setup == su.Name {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		med := func(f func(*runResult) float64) float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			slices.Sort(v)
			return median0(v)
		}
		fmt.Fprintf(w, "| %s | %d | %.2f (%.2f) | %.1f / %.1f / %.0f | %.2f | %.1f | %.0f | %.2f |\n", su.Name, len(rs),
			med(func(r *runResult) float64 { return r.RateMedian }), med(func(r *runResult) float64 { return r.RateP10 }),
			med(func(r *runResult) float64 { return r.InterArrivalP50Ms }), med(func(r *runResult) float64 { return r.InterArrivalP99Ms }),
			med(func(r *runResult) float64 { return r.InterArrivalMaxMs }),
			med(func(r *runResult) float64 { return r.NodeCores }), med(func(r *runResult) float64 { return r.CPUPerTickUs }),
			med(func(r *runResult) float64 { return meanOf(r.NodeRSSMiB) }), med(func(r *runResult) float64 { return r.BotsCPUSec / r.WindowSec }))
	}
	fmt.Fprintln(w, "\n## Every run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | setup | seated | states/bot/s median (p10) | inter-arrival p50 / p99 / max (ms) | node CPU (cores) | µs per player-tick | RSS per node (MiB) | reconnects (seat kept) | load avg before → after | CPU pressure |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %d | %s | %d/%d | %.2f (%.2f) | %.1f / %.1f / %.0f | %.2f | %.1f | %s | %d (%d) | %s → %s | %s |\n",
			r.Round, r.Setup, r.Seated, r.Bots, r.RateMedian, r.RateP10, r.InterArrivalP50Ms, r.InterArrivalP99Ms, r.InterArrivalMaxMs,
			r.NodeCores, r.CPUPerTickUs, floats(r.NodeRSSMiB), r.Reconnects, r.SeatsKept, r.LoadBefore, r.LoadAfter, r.PressureAfter)
	}
	var fos []*runResult
	for _, r := range results {
		if r.Failover != nil {
			fos = append(fos, r)
		}
	}
	if len(fos) > 0 {
		fmt.Fprintf(w, "\n## Failovers (%s)\n\n", o.ttl)
		fmt.Fprintln(w, "| round | setup | killed at (s) | rooms it hosted | their gap median / max (ms) | back | their players' gap median / max (ms), by node | its players of other rooms: gap median / max (ms) | other rooms' max gap (ms) | states/bot/s median: its rooms / others |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|")
		for _, r := range fos {
			f := r.Failover
			var players []string
			for _, g := range f.Players {
				players = append(players, fmt.Sprintf("%s %.0f / %.0f", g.Node, g.MedianMs, g.MaxMs))
			}
			fmt.Fprintf(w, "| %d | %s | %.1f | %d | %.0f / %.0f | %d/%d | %s | %.0f / %.0f | %.0f | %.2f / %.2f |\n",
				r.Round, r.Setup, f.KillAtSec, f.Rooms, f.RoomGapMedianMs, f.RoomGapMaxMs, f.RoomsBack, f.Rooms,
				strings.Join(players, "; "), f.Movers.MedianMs, f.Movers.MaxMs, f.OtherRoomGapMax, f.RateMedian, f.OtherRateMedian)
		}
	}
	fmt.Fprintln(w, "\n## Warnings and errors in the nodes' logs (run: until the window's end; stop: the shutdown after)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | setup | node | phase | level | count | message |")
	fmt.Fprintln(w, "|---:|---|---|---|---|---:|---|")
	for _, r := range results {
		for _, l := range r.Logs {
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %d | %s |\n", r.Round, r.Setup, l.Node, l.Phase, l.Level, l.Count, strings.ReplaceAll(l.Msg, "|", `\|`))
		}
	}
}

func meanOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, f := range v {
		s += f
	}
	return s / float64(len(v))
}
