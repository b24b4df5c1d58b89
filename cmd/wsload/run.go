package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxConnsPerProc keeps a client process well under the 20,000 file
// descriptors a process may hold here.
const maxConnsPerProc = 9000

// altSuffix marks a kind served by -alt-exe.
const altSuffix = "-old"

// fdMargin is what a server process needs besides its connections: the
// listener, the stats requests, stdio, the runtime's own.
const fdMargin = 200

type runConfig struct {
	Kinds          []string      `json:"kinds"`
	Conns          int           `json:"conns"`
	Procs          int           `json:"procs"`
	Rounds         int           `json:"rounds"`
	Duration       time.Duration `json:"duration"`
	Rate           float64       `json:"rate_per_conn"`
	MsgSize        int           `json:"msg_size"`
	Mode           string        `json:"mode"`
	PushN          int           `json:"push_n"`
	PushEvery      time.Duration `json:"push_every"`
	PingInterval   time.Duration `json:"ping_interval"`
	Sources        []string      `json:"sources"`
	DialRate       float64       `json:"dial_rate"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	Settle         time.Duration `json:"settle"`
	// Group makes every connection a member of one group (implied by the
	// broadcast mode).
	Group bool `json:"group"`
	// Broadcasts is how many broadcasts each round of -mode broadcast
	// makes, one at a time; BroadcastTimeout bounds the wait for each.
	Broadcasts       int           `json:"broadcasts"`
	BroadcastTimeout time.Duration `json:"broadcast_timeout"`
	// Centrifugo is the binary of the centrifugo kind ("": found as
	// wsload serve finds it).
	Centrifugo string `json:"centrifugo,omitempty"`
	// AltExe runs the kinds named with the suffix altSuffix (wsactor-old):
	// another build of wsload, to compare two versions of a server in the
	// same run.
	AltExe string `json:"alt_exe,omitempty"`

	// Exe and Env run the children: wsload itself, or a test binary that
	// acts as wsload when Env says so.
	Exe    string   `json:"-"`
	Env    []string `json:"-"`
	LogDir string   `json:"log_dir"`
}

// quickConfig is the smoke test: a few seconds per server kind.
func quickConfig(c runConfig) runConfig {
	c.Conns, c.Procs, c.Rounds = 200, 2, 1
	// Settle outlasts the second for which wsactor keeps the goroutines
	// that ran a burst of messages (its mailbox workers and flushers), so
	// that the idle measurement sees one goroutine per connection.
	c.Duration, c.Rate, c.Settle = 2*time.Second, 5, 1500*time.Millisecond
	c.DialRate, c.ConnectTimeout = 2000, 30*time.Second
	return c
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg runConfig
	var kinds, sources, jsonPath string
	var quick bool
	fs.StringVar(&kinds, "kinds", "bare,wsactor", "server `kinds` to compare, in the order each round runs them: bare, wsactor, centrifugo (-mode broadcast only)")
	fs.IntVar(&cfg.Conns, "conns", 10000, "total connections, held by one server process (< its fd limit)")
	fs.IntVar(&cfg.Procs, "procs", 0, "client processes (0: enough for ≤ 9,000 connections each)")
	fs.IntVar(&cfg.Rounds, "rounds", 2, "rounds; each runs every kind once")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "steady phase of each run")
	fs.Float64Var(&cfg.Rate, "rate", 1, "messages per second per connection (0: closed loop)")
	fs.IntVar(&cfg.MsgSize, "msg-size", 256, "echo message size in `bytes`")
	fs.StringVar(&cfg.Mode, "mode", modeEcho, "client mode: echo, push, listen or broadcast (see wsload clients)")
	fs.BoolVar(&cfg.Group, "group", false, "every connection joins one group (the broadcast mode implies it)")
	fs.IntVar(&cfg.Broadcasts, "broadcasts", 50, "broadcast mode: broadcasts per round, one at a time")
	fs.DurationVar(&cfg.BroadcastTimeout, "broadcast-timeout", 30*time.Second, "broadcast mode: bound on each broadcast reaching every member")
	fs.StringVar(&cfg.AltExe, "alt-exe", "", "another wsload `binary` (an older build) that serves the kinds named with the suffix \""+altSuffix+"\", e.g. -kinds wsactor,wsactor"+altSuffix)
	fs.StringVar(&cfg.Centrifugo, "centrifugo", "", "centrifugo `binary` (default: on $PATH, else $GOBIN or $GOPATH/bin; install with cmd/wsload/install-centrifugo.sh)")
	fs.IntVar(&cfg.PushN, "push-n", 1, "N of \"push N\" in push mode")
	fs.DurationVar(&cfg.PushEvery, "push-every", 0, "servers push to every connection this often (for -mode listen)")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 0, "wsactor's heartbeat ping interval (0: its default, 30 s; negative: no pings, like bare)")
	fs.StringVar(&sources, "source", "127.0.0.2,127.0.0.3,127.0.0.4", "loopback source `addresses` the clients spread their connections over")
	fs.Float64Var(&cfg.DialRate, "dial-rate", 2000, "connections opened per second, all client processes together")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 2*time.Minute, "bound on each ramp")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "pause between the last connection and the idle measurement")
	fs.StringVar(&cfg.LogDir, "logdir", "", "directory for the children's logs (default: a new temporary directory)")
	fs.StringVar(&jsonPath, "json", "", "also write every round's results to this `file`")
	fs.BoolVar(&quick, "quick", false, "smoke test: 200 connections, 2 client processes, 1 round, 2 s (explicit flags still win)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := quickConfig(cfg)
		for name, apply := range map[string]func(){
			"conns": func() { cfg.Conns = q.Conns }, "procs": func() { cfg.Procs = q.Procs },
			"rounds": func() { cfg.Rounds = q.Rounds }, "duration": func() { cfg.Duration = q.Duration },
			"rate": func() { cfg.Rate = q.Rate }, "settle": func() { cfg.Settle = q.Settle },
			"dial-rate": func() { cfg.DialRate = q.DialRate }, "connect-timeout": func() { cfg.ConnectTimeout = q.ConnectTimeout },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	cfg.Kinds = splitList(kinds)
	cfg.Sources = splitList(sources)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Exe, cfg.Env = exe, os.Environ()
	rep, err := runLoad(ctx, cfg, stdout)
	if jsonPath != "" && rep != nil {
		b, jerr := json.MarshalIndent(rep, "", "  ")
		err = errors.Join(err, jerr, os.WriteFile(jsonPath, b, 0o644))
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (c *runConfig) validate() error {
	if len(c.Kinds) == 0 {
		return errors.New("-kinds is empty")
	}
	for _, k := range c.Kinds {
		if base, ok := strings.CutSuffix(k, altSuffix); ok {
			if c.AltExe == "" {
				return fmt.Errorf("kind %q needs -alt-exe", k)
			}
			k = base
		}
		switch k {
		case "bare", "wsactor":
		case "centrifugo":
			if c.Mode != modeBroadcast {
				return fmt.Errorf("kind centrifugo runs -mode %s only (it has no echo)", modeBroadcast)
			}
			if _, err := findCentrifugo(c.Centrifugo); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown kind %q (want bare, wsactor or centrifugo)", k)
		}
	}
	if c.Mode == modeBroadcast {
		c.Group = true
		if c.Broadcasts < 1 || c.Broadcasts > maxBroadcasts || c.BroadcastTimeout <= 0 {
			return fmt.Errorf("-broadcasts must be between 1 and %d and -broadcast-timeout positive", maxBroadcasts)
		}
	}
	if c.Conns < 1 || c.Rounds < 1 || c.Duration <= 0 {
		return errors.New("-conns, -rounds and -duration must be positive")
	}
	if c.Procs == 0 {
		c.Procs = (c.Conns + maxConnsPerProc - 1) / maxConnsPerProc
	}
	if c.Procs < 1 || c.Procs > c.Conns {
		return fmt.Errorf("-procs %d does not fit %d connections", c.Procs, c.Conns)
	}
	if per := (c.Conns + c.Procs - 1) / c.Procs; per > maxConnsPerProc {
		return fmt.Errorf("%d connections per client process is more than %d: raise -procs", per, maxConnsPerProc)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(c.Conns+fdMargin) > lim.Max {
		return fmt.Errorf("the server process holds one fd per connection and may hold at most %d: %d connections do not fit in one server", lim.Max, c.Conns)
	}
	return nil
}

// runLoad runs every round, prints each result as it comes and the
// comparison at the end, and returns the report (partial on error).
func runLoad(ctx context.Context, cfg runConfig, out io.Writer) (*report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "wsload-")
		if err != nil {
			return nil, err
		}
		cfg.LogDir = dir
	} else if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, err
	}
	rep := &report{Config: cfg, Machine: readMachine(), Started: time.Now()}
	fmt.Fprintf(out, "wsload run: %s; %d connections over %d client process(es) and sources %s; %d round(s) of %v; logs in %s\n",
		rep.Machine, cfg.Conns, cfg.Procs, strings.Join(cfg.Sources, ","), cfg.Rounds, cfg.Duration, cfg.LogDir)
	for r := 1; r <= cfg.Rounds; r++ {
		for _, k := range cfg.Kinds {
			res, err := runRound(ctx, cfg, k, r)
			if err != nil {
				return rep, fmt.Errorf("round %d, %s: %w", r, k, err)
			}
			rep.Rounds = append(rep.Rounds, res)
			fmt.Fprintln(out, res.oneLine())
		}
	}
	rep.Finished = time.Now()
	rep.writeTables(out)
	return rep, nil
}

// runRound starts a server of kind k and the client processes, ramps up,
// measures the idle server, runs the steady phase, and stops everything.
func runRound(ctx context.Context, cfg runConfig, k string, round int) (res roundResult, err error) {
	res = roundResult{Kind: k, Round: round, Conns: cfg.Conns, LoadAvgBefore: readLoadAvg()}
	logPath := func(name string) string {
		return filepath.Join(cfg.LogDir, fmt.Sprintf("r%d-%s-%s.log", round, k, name))
	}
	kind, exe := k, cfg.Exe
	if base, ok := strings.CutSuffix(k, altSuffix); ok {
		kind, exe = base, cfg.AltExe
	}
	serveArgs := []string{"serve", "-kind", kind, "-addr", "127.0.0.1:0"}
	if cfg.PushEvery > 0 {
		serveArgs = append(serveArgs, "-push-every", cfg.PushEvery.String())
	}
	if cfg.PingInterval != 0 {
		serveArgs = append(serveArgs, "-ping-interval", cfg.PingInterval.String())
	}
	if cfg.Group {
		serveArgs = append(serveArgs, "-group")
	}
	if cfg.Mode == modeBroadcast {
		serveArgs = append(serveArgs, "-push-size", strconv.Itoa(cfg.MsgSize))
	}
	if kind == "centrifugo" && cfg.Centrifugo != "" {
		serveArgs = append(serveArgs, "-centrifugo", cfg.Centrifugo)
	}
	srv, err := startChild(ctx, exe, cfg.Env, k+" server", logPath("server"), serveArgs...)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := srv.stop(syscall.SIGTERM, 20*time.Second); serr != nil && err == nil {
			err = serr
		}
	}()
	target, err := srv.expect(ctx, "target ", time.Minute)
	if err != nil {
		return res, err
	}
	addr, err := srv.expect(ctx, "listening ", 30*time.Second)
	if err != nil {
		return res, err
	}
	stats := func(collect bool) (serverStats, error) { return getStats(ctx, addr, collect) }
	if res.Server.Base, err = stats(true); err != nil {
		return res, err
	}

	clients := make([]*child, 0, cfg.Procs)
	defer func() {
		for _, c := range clients { // normally done already, after "close"
			if cerr := c.stop(syscall.SIGTERM, 20*time.Second); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	rampStart := time.Now()
	for i := range cfg.Procs {
		n := cfg.Conns / cfg.Procs
		if i < cfg.Conns%cfg.Procs {
			n++
		}
		args := []string{"clients", "-orchestrated",
			"-target", target,
			"-conns", strconv.Itoa(n),
			"-source", strings.Join(cfg.Sources, ","),
			"-rate", strconv.FormatFloat(cfg.Rate, 'g', -1, 64),
			"-duration", cfg.Duration.String(),
			"-msg-size", strconv.Itoa(cfg.MsgSize),
			"-mode", cfg.Mode,
			"-push-n", strconv.Itoa(cfg.PushN),
			"-dial-rate", strconv.FormatFloat(cfg.DialRate/float64(cfg.Procs), 'g', -1, 64),
			"-connect-timeout", cfg.ConnectTimeout.String(),
		}
		if cfg.Mode == modeBroadcast {
			// The clients' steady phase ends with the orchestrator's
			// "end N"; the duration only bounds it.
			bound := time.Duration(cfg.Broadcasts)*cfg.BroadcastTimeout + time.Minute
			args = append(args, "-broadcasts", strconv.Itoa(cfg.Broadcasts), "-duration", bound.String())
		}
		if kind == "centrifugo" {
			args = append(args, "-protocol", protoCentrifugo, "-channel", groupName)
		}
		c, err := startChild(ctx, cfg.Exe, cfg.Env, fmt.Sprintf("client process %d", i+1), logPath(fmt.Sprintf("clients%d", i+1)), args...)
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
	}
	connected := 0
	for _, c := range clients {
		line, err := c.expect(ctx, "connected ", cfg.ConnectTimeout+30*time.Second)
		if err != nil {
			return res, err
		}
		var ok, failed int
		if _, err := fmt.Sscanf(line, "%d %d", &ok, &failed); err != nil {
			return res, fmt.Errorf("%s: bad line %q", c.name, line)
		}
		connected += ok
	}
	res.RampSec = time.Since(rampStart).Seconds()

	// The clients' dials have returned; wait for the server to count them
	// all (wsactor counts a connection once its actor has started).
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := stats(false)
		if err != nil {
			return res, err
		}
		if st.Open >= int64(connected) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	sleepUntil(ctx, time.Now().Add(cfg.Settle))
	if res.Server.Idle, err = stats(true); err != nil {
		return res, err
	}

	if res.Server.Start, err = stats(false); err != nil {
		return res, err
	}
	for _, c := range clients {
		if err := c.send("start"); err != nil {
			return res, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	summaryWait := cfg.Duration + time.Minute
	if cfg.Mode == modeBroadcast {
		if res.Broadcast, err = runBroadcasts(ctx, cfg, addr, clients, &res.Server.Load, connected); err != nil {
			return res, err
		}
		for _, c := range clients {
			if err := c.send(fmt.Sprintf("end %d", cfg.Broadcasts)); err != nil {
				return res, fmt.Errorf("%s: %w", c.name, err)
			}
		}
		summaryWait = time.Minute
	} else {
		// Under load, without a forced collection: what the process holds
		// while serving.
		sleepUntil(ctx, time.Now().Add(cfg.Duration*6/10))
		if res.Server.Load, err = stats(false); err != nil {
			return res, err
		}
	}
	for _, c := range clients {
		line, err := c.expect(ctx, "summary ", summaryWait)
		if err != nil {
			return res, err
		}
		var s clientSummary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			return res, fmt.Errorf("%s: summary: %w", c.name, err)
		}
		res.Clients = append(res.Clients, s)
	}
	if res.Server.End, err = stats(false); err != nil {
		return res, err
	}
	res.LoadAvgAfter, res.CPUPressure = readLoadAvg(), readCPUPressure()
	for _, c := range clients {
		_ = c.send("close")
	}
	for _, c := range clients {
		if err := c.stop(0, 30*time.Second); err != nil {
			return res, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	res.derive()
	return res, nil
}

// runBroadcasts makes cfg.Broadcasts broadcasts, one at a time: it asks the
// server for one, waits for every client process to report it complete (or
// for cfg.BroadcastTimeout), and goes on. It reads the server's stats into
// load halfway.
func runBroadcasts(ctx context.Context, cfg runConfig, addr string, clients []*child, load *serverStats, connected int) (*broadcastRound, error) {
	br := &broadcastRound{Broadcasts: cfg.Broadcasts, Members: -1}
	var first []float64
	var call time.Duration
	start := time.Now()
	for seq := 1; seq <= cfg.Broadcasts; seq++ {
		if seq == cfg.Broadcasts/2+1 {
			st, err := getStats(ctx, addr, false)
			if err != nil {
				return br, err
			}
			*load = st
		}
		rep, err := requestBroadcast(ctx, addr, seq)
		if err != nil {
			return br, err
		}
		call += time.Duration(rep.CallNs)
		if seq == 1 {
			br.Members = rep.Members
			if rep.Members >= 0 && rep.Members != connected {
				return br, fmt.Errorf("the server broadcast to %d members; %d connections are open", rep.Members, connected)
			}
		}
		var last, firstNs int64
		complete := true
		deadline := time.Now().Add(cfg.BroadcastTimeout)
		for _, c := range clients {
			l, f, err := expectBroadcast(ctx, c, seq, time.Until(deadline))
			if err != nil {
				complete = false
				break
			}
			last = max(last, l)
			if firstNs == 0 || f < firstNs {
				firstNs = f
			}
		}
		if !complete {
			continue // the clients count what never arrived as lost
		}
		br.Complete++
		br.LastMs = append(br.LastMs, float64(last)/1e6)
		first = append(first, float64(firstNs)/1e6)
	}
	wall := time.Since(start)
	sorted := slices.Sorted(slices.Values(br.LastMs))
	slices.Sort(first)
	br.LastP50Ms, br.LastP99Ms = nearestRank(sorted, 0.5), nearestRank(sorted, 0.99)
	if len(sorted) > 0 {
		br.LastMaxMs = sorted[len(sorted)-1]
	}
	br.FirstP50Ms = nearestRank(first, 0.5)
	br.CallMeanMs = float64(call) / float64(cfg.Broadcasts) / 1e6
	br.DeliveriesPS = float64(connected) * float64(br.Complete) / wall.Seconds()
	return br, nil
}

// expectBroadcast waits for the client process's report of broadcast seq
// and returns its latest and earliest arrival, in ns after the stamp.
// Reports of earlier broadcasts (complete after their timeout) are skipped.
func expectBroadcast(ctx context.Context, c *child, seq int, timeout time.Duration) (last, first int64, err error) {
	for {
		line, err := c.expect(ctx, "bcast ", max(timeout, time.Millisecond))
		if err != nil {
			return 0, 0, err
		}
		var s int
		if _, err := fmt.Sscanf(line, "%d %d %d", &s, &last, &first); err != nil {
			return 0, 0, fmt.Errorf("%s: bad line %q", c.name, line)
		}
		if s == seq {
			return last, first, nil
		}
	}
}

var statsClient = &http.Client{Timeout: time.Minute}

func getStats(ctx context.Context, addr string, collect bool) (serverStats, error) {
	u := "http://" + addr + statsPath
	if collect {
		u += "?gc=1"
	}
	var st serverStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, err
	}
	resp, err := statsClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("server stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("server stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
