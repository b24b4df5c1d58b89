//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsactor/wsactor/examples/game/bots/swarm"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// setup is one configuration of game nodes: "1" a single node (no cluster,
// no Redis), "N" a cluster of N nodes, "1c" a cluster of one; a trailing "k"
// kills the last node during the window.
type setup struct {
	Name    string
	Nodes   int
	Cluster bool
	Kill    bool
}

func parseSetups(s string) ([]setup, error) {
	var out []setup
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		rest := name
		su := setup{Name: name}
		su.Kill = strings.HasSuffix(rest, "k")
		rest = strings.TrimSuffix(rest, "k")
		su.Cluster = strings.HasSuffix(rest, "c")
		rest = strings.TrimSuffix(rest, "c")
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > 9 {
			return nil, fmt.Errorf("setup %q: want N, Nc, Nk or Nck with 1 ≤ N ≤ 9", name)
		}
		su.Nodes, su.Cluster = n, su.Cluster || n > 1
		if su.Kill && su.Nodes < 2 {
			return nil, fmt.Errorf("setup %q: killing a node needs another to fail over to", name)
		}
		out = append(out, su)
	}
	return out, nil
}

// node is a game node of a run.
type node struct {
	p       *proc
	http    string // host:port of its HTTP server
	cluster string // its cluster address (host:port of its remote endpoint), in a cluster
}

// runResult is one run of one setup.
type runResult struct {
	Setup string `json:"setup"`
	Round int    `json:"round"`
	Nodes int    `json:"nodes"`
	// LoadBefore and LoadAfter are the load averages (1, 5, 15 min) when
	// the run started and when its window ended; PressureAfter the CPU
	// pressure then (the share of the last 10 s in which runnable tasks
	// waited for a CPU).
	LoadBefore    string `json:"load_before"`
	LoadAfter     string `json:"load_after"`
	PressureAfter string `json:"cpu_pressure_after"`

	Bots              int     `json:"bots"`
	Seated            int     `json:"seated"`
	WindowSec         float64 `json:"window_s"`
	States            uint64  `json:"states"`
	RateMedian        float64 `json:"rate_median"`
	RateP10           float64 `json:"rate_p10"`
	InterArrivalP50Ms float64 `json:"inter_arrival_p50_ms"`
	InterArrivalP99Ms float64 `json:"inter_arrival_p99_ms"`
	InterArrivalMaxMs float64 `json:"inter_arrival_max_ms"`
	// NodeCPUSec is the CPU time of every node over the window (a killed
	// node's until its death); NodeCores the same per second of window.
	NodeCPUSec float64 `json:"node_cpu_s"`
	NodeCores  float64 `json:"node_cores"`
	// CPUPerTickUs is NodeCPUSec divided by the player-ticks delivered
	// (States).
	CPUPerTickUs float64   `json:"cpu_per_player_tick_us"`
	NodeRSSMiB   []float64 `json:"node_rss_mib"`
	NodePeakMiB  []float64 `json:"node_peak_mib"`
	BotsCPUSec   float64   `json:"bots_cpu_s"`

	Reconnects   uint64            `json:"reconnects"`
	SeatsKept    uint64            `json:"seats_kept"`
	SeatsLost    uint64            `json:"seats_lost"`
	Moves        uint64            `json:"moves"`
	Stalls       uint64            `json:"stalls"`
	CloseCodes   map[string]uint64 `json:"close_codes,omitempty"`
	ServerErrors map[string]uint64 `json:"server_errors,omitempty"`
	RoomGapMaxMs float64           `json:"room_gap_max_ms"`

	Failover *failover  `json:"failover,omitempty"`
	Logs     []logCount `json:"logs,omitempty"`
}

// failover is what the bots saw of the node killed during the window.
type failover struct {
	Node      string  `json:"node"`       // its cluster address
	KillAtSec float64 `json:"kill_at_s"`  // since the window's start
	MemberTTL string  `json:"member_ttl"` // and heartbeat, from the config
	// Rooms is how many rooms the node hosted when it was killed; for
	// them, RoomGap is the longest time none of their bots got a state
	// (median and max over the rooms), and RoomsBack how many had states
	// again before the window ended.
	Rooms           int     `json:"rooms"`
	RoomGapMedianMs float64 `json:"room_gap_median_ms"`
	RoomGapMaxMs    float64 `json:"room_gap_max_ms"`
	RoomsBack       int     `json:"rooms_back"`
	// Players are those rooms' bots, grouped by the node they were
	// connected to (those on the killed node reconnect to the next one):
	// each one's longest time without a state.
	Players []gapGroup `json:"players"`
	// Movers are the killed node's bots whose rooms lived elsewhere: their
	// gap is their reconnection alone.
	Movers gapGroup `json:"movers"`
	// RateMedian is the median states per second, over the window, of the
	// bots of the rooms the node hosted; OtherRateMedian of the others'.
	RateMedian      float64 `json:"rate_median"`
	OtherRateMedian float64 `json:"other_rate_median"`
	// OtherRooms is how many rooms lived elsewhere; OtherRoomGapMax their
	// longest gap.
	OtherRooms      int     `json:"other_rooms"`
	OtherRoomGapMax float64 `json:"other_room_gap_max_ms"`
	// RSSMiB and PeakMiB are the killed node's memory just before its death.
	RSSMiB  float64 `json:"rss_mib"`
	PeakMiB float64 `json:"peak_mib"`

	hosted []gameserver.RoomInfo // the rooms and their nodes before the kill
}

// gapGroup summarizes the longest gaps of a group of bots.
type gapGroup struct {
	Node     string  `json:"node"` // the node they were connected to
	Bots     int     `json:"bots"`
	MedianMs float64 `json:"median_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func (g gapGroup) String() string {
	return fmt.Sprintf("%s: %d bots, median %.0f ms, max %.0f ms", g.Node, g.Bots, g.MedianMs, g.MaxMs)
}

// runOne runs one setup once: Redis (in a cluster), the nodes, the bots
// processes; the kill, if any; then stops everything, in bounded time.
func runOne(ctx context.Context, o *options, su setup, round int, out io.Writer) (res *runResult, err error) {
	dir := filepath.Join(o.out, fmt.Sprintf("round%d-%s", round, su.Name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	res = &runResult{Setup: su.Name, Round: round, Nodes: su.Nodes, LoadBefore: loadAvg()}
	var stops []func() error // in reverse order of start
	defer func() {
		for _, stop := range slices.Backward(stops) {
			err = errors.Join(err, stop())
		}
	}()

	var redisAddr string
	if su.Cluster {
		redis, addr, err := startRedis(dir)
		if err != nil {
			return nil, err
		}
		redisAddr = addr
		stops = append(stops, func() error { return redis.stop(syscall.SIGTERM, 5*time.Second) })
	}
	nodes, err := startNodes(ctx, o, su, dir, redisAddr)
	for _, n := range nodes {
		stops = append(stops, func() error { return n.p.stop(syscall.SIGTERM, 20*time.Second) })
	}
	if err != nil {
		return nil, err
	}
	targets := make([]string, len(nodes))
	for i, n := range nodes {
		targets[i] = "ws://" + n.http
	}

	bots := make([]*proc, o.botProcs)
	for i := range bots {
		args := []string{"-target", strings.Join(targets, ","), "-rooms", fmt.Sprint(o.rooms), "-per-room", fmt.Sprint(o.perRoom),
			"-part", fmt.Sprintf("%d/%d", i+1, o.botProcs), "-duration", o.duration.String(),
			"-dial-rate", fmt.Sprint(o.dialRate / float64(o.botProcs)), "-report-every", "5s",
			"-json", filepath.Join(dir, fmt.Sprintf("bots%d.json", i+1))}
		var echo io.Writer
		if i == 0 {
			echo = out
		}
		if bots[i], err = startProc(fmt.Sprintf("bots%d", i+1), filepath.Join(dir, fmt.Sprintf("bots%d.log", i+1)), echo, o.botsBin, args...); err != nil {
			return nil, err
		}
		stops = append(stops, func() error { return bots[i].stop(syscall.SIGKILL, time.Second) })
	}
	for _, b := range bots {
		if _, err := b.expect(ctx, "measuring:", 2*time.Minute); err != nil {
			return nil, err
		}
	}
	windowStart := time.Now()
	cpu0, err := nodesCPU(nodes)
	if err != nil {
		return nil, err
	}
	cpu1 := make([]float64, len(nodes))
	var fo *failover
	if su.Kill {
		victim := nodes[len(nodes)-1]
		if fo, err = killNode(ctx, o, nodes, windowStart, cpu1); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "  killed node %s (%s) %.1f s into the window; it hosted %d rooms\n", victim.http, victim.cluster, fo.KillAtSec, fo.Rooms)
	}
	select {
	case <-time.After(time.Until(windowStart.Add(o.duration))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.LoadAfter, res.PressureAfter = loadAvg(), cpuPressure()
	for i, n := range nodes {
		if su.Kill && i == len(nodes)-1 {
			continue // sampled before the kill
		}
		if cpu1[i], err = cpuSeconds(n.p.cmd.Process.Pid); err != nil {
			return nil, err
		}
		rss, peak, err := memory(n.p.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		res.NodeRSSMiB, res.NodePeakMiB = append(res.NodeRSSMiB, rss), append(res.NodePeakMiB, peak)
	}
	logEnd := make([]int, len(nodes))
	for i, n := range nodes {
		logEnd[i] = len(n.p.output())
	}

	var reports []*swarm.Report
	for i, b := range bots {
		if err := b.wait(time.Minute); err != nil {
			return nil, fmt.Errorf("%s: %w%s", b.name, err, b.tail())
		}
		r, err := readReport(filepath.Join(dir, fmt.Sprintf("bots%d.json", i+1)))
		if err != nil {
			return nil, err
		}
		reports = append(reports, r)
	}
	rep := swarm.MergeReports(reports...)
	if err := writeJSON(filepath.Join(dir, "bots.json"), rep); err != nil {
		return nil, err
	}
	res.fill(rep)
	for i := range nodes {
		res.NodeCPUSec += cpu1[i] - cpu0[i]
	}
	res.NodeCores = res.NodeCPUSec / o.duration.Seconds()
	if res.States > 0 {
		res.CPUPerTickUs = res.NodeCPUSec / float64(res.States) * 1e6
	}
	if fo != nil {
		fo.fill(rep, nodes)
		res.Failover = fo
	}

	// Stop the nodes now, to count the warnings of their shutdown apart.
	for _, stop := range slices.Backward(stops) {
		err = errors.Join(err, stop())
	}
	stops = nil
	for i, n := range nodes {
		res.Logs = append(res.Logs, countLogs(n.http, n.p.output(), logEnd[i])...)
	}
	return res, err
}

// startNodes starts the setup's game nodes and waits until each serves.
func startNodes(ctx context.Context, o *options, su setup, dir, redisAddr string) ([]*node, error) {
	nodes := make([]*node, su.Nodes)
	var peers []string
	for i := range nodes {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		nodes[i] = &node{http: fmt.Sprintf("127.0.0.1:%d", port)}
		peers = append(peers, "http://"+nodes[i].http)
	}
	var started []*node
	for i, n := range nodes {
		args := []string{"-addr", n.http, "-peers", strings.Join(peers, ",")}
		if su.Cluster {
			port, err := freePort()
			if err != nil {
				return started, err
			}
			n.cluster = fmt.Sprintf("127.0.0.1:%d", port)
			args = append(args, "-config", o.config, "-redis-addr", redisAddr, "-node-port", fmt.Sprint(port))
		}
		p, err := startProc(fmt.Sprintf("node%d", i+1), filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)), nil, o.gameBin, args...)
		if err != nil {
			return started, err
		}
		n.p = p
		started = append(started, n)
	}
	for _, n := range nodes {
		if _, err := n.p.expect(ctx, `msg="game: starting"`, time.Minute); err != nil {
			return started, err
		}
	}
	return nodes, nil
}

// killNode waits until KillAfter into the window, lists the rooms and where
// they live, samples the last node's CPU time and memory, and SIGKILLs it.
func killNode(ctx context.Context, o *options, nodes []*node, windowStart time.Time, cpu []float64) (*failover, error) {
	victim := nodes[len(nodes)-1]
	select {
	case <-time.After(time.Until(windowStart.Add(o.killAfter))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rooms, err := listRooms(ctx, nodes[0].http)
	if err != nil {
		return nil, err
	}
	pid := victim.p.cmd.Process.Pid
	if cpu[len(nodes)-1], err = cpuSeconds(pid); err != nil {
		return nil, err
	}
	rss, peak, err := memory(pid)
	if err != nil {
		return nil, err
	}
	victim.p.kill()
	fo := &failover{Node: victim.cluster, KillAtSec: time.Since(windowStart).Seconds(), MemberTTL: o.ttl, RSSMiB: rss, PeakMiB: peak}
	for _, r := range rooms {
		if r.Node == victim.cluster {
			fo.Rooms++
		}
	}
	fo.hosted = rooms
	return fo, nil
}

// listRooms asks a node for the cluster's rooms (GET /api/rooms).
func listRooms(ctx context.Context, addr string) ([]gameserver.RoomInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/rooms", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rooms []gameserver.RoomInfo
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/rooms: %s", resp.Status)
	}
	return rooms, json.NewDecoder(resp.Body).Decode(&rooms)
}

func nodesCPU(nodes []*node) ([]float64, error) {
	out := make([]float64, len(nodes))
	for i, n := range nodes {
		var err error
		if out[i], err = cpuSeconds(n.p.cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *runResult) fill(rep *swarm.Report) {
	r.Bots, r.Seated, r.WindowSec, r.States = rep.Bots, rep.Seated, rep.WindowSec, rep.States
	r.RateMedian, r.RateP10 = rep.RateMedian, rep.RateP10
	r.InterArrivalP50Ms, r.InterArrivalP99Ms, r.InterArrivalMaxMs = rep.InterArrivalP50Ms, rep.InterArrivalP99Ms, rep.InterArrivalMaxMs
	r.BotsCPUSec = rep.ClientCPUSec
	r.Reconnects, r.SeatsKept, r.SeatsLost, r.Moves, r.Stalls = rep.Reconnects, rep.SeatsKept, rep.SeatsLost, rep.Moves, rep.Stalls
	r.CloseCodes, r.ServerErrors, r.RoomGapMaxMs = rep.CloseCodes, rep.ServerErrors, rep.RoomGapMaxMs
}

// fill computes the failover's figures from the bots' report: the rooms the
// killed node hosted and their players by node, the killed node's other
// bots, and the other rooms.
func (f *failover) fill(rep *swarm.Report, nodes []*node) {
	victim := len(nodes) - 1
	onVictim := map[string]bool{}
	for _, r := range f.hosted {
		onVictim[r.Room] = r.Node == nodes[victim].cluster
	}
	var roomGaps []float64
	for _, g := range rep.RoomGaps {
		if !onVictim[g.Room] {
			f.OtherRooms++
			f.OtherRoomGapMax = max(f.OtherRoomGapMax, g.GapMs)
			continue
		}
		roomGaps = append(roomGaps, g.GapMs)
		if !g.Open {
			f.RoomsBack++
		}
	}
	f.RoomGapMedianMs, f.RoomGapMaxMs = medianMax(roomGaps)
	players := make([][]float64, len(nodes))
	var movers, rates, otherRates []float64
	for _, b := range rep.PerBot {
		if onVictim[b.Room] {
			rates = append(rates, b.Rate)
		} else {
			otherRates = append(otherRates, b.Rate)
		}
		switch {
		case onVictim[b.Room]:
			players[b.Target] = append(players[b.Target], b.GapMs)
		case b.Target == victim:
			movers = append(movers, b.GapMs)
		}
	}
	for i, gaps := range players {
		name := fmt.Sprintf("node%d", i+1)
		if i == victim {
			name += " (killed)"
		}
		f.Players = append(f.Players, newGapGroup(name, gaps))
	}
	f.Movers = newGapGroup(fmt.Sprintf("node%d (killed)", victim+1), movers)
	slices.Sort(rates)
	slices.Sort(otherRates)
	f.RateMedian, f.OtherRateMedian = median0(rates), median0(otherRates)
}

func newGapGroup(node string, gaps []float64) gapGroup {
	g := gapGroup{Node: node, Bots: len(gaps)}
	g.MedianMs, g.MaxMs = medianMax(gaps)
	return g
}

func medianMax(v []float64) (median, maximum float64) {
	if len(v) == 0 {
		return 0, 0
	}
	sort.Float64s(v)
	return median0(v), v[len(v)-1]
}

// median0 is the median of sorted values (the mean of the middle two for an
// even count), 0 for none.
func median0(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func readReport(path string) (*swarm.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r swarm.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// isSignalled reports whether a process ended by a signal, as a node
// killed on purpose does.
func isSignalled(err error) bool {
	var ee interface{ Sys() any }
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
