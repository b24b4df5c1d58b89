// Package swarm runs bots that play the game of examples/game: each bot is
// one WebSocket connection to /ws/game that takes a seat, reads its welcome
// and every state, and plays: each time it chooses a direction it decodes
// the next state and mostly heads for the nearest coin, sometimes wanders
// for 0.5–2 s (only one state in several is decoded, so that the bots cost
// the machine little next to the servers they measure). When its
// connection is lost it takes its seat back with its reconnection token on
// the next target, then on the nodes the targets list in GET /api/peers.
//
// The swarm measures what the players get: states per bot per second, the
// time between two states of a bot (inter-arrival), reconnects, and, per
// room, the longest time in which none of its bots got a state (what a
// node's failure costs a room).
//
// A run has three phases. The ramp opens the bots' connections at
// Config.DialRate and waits until every bot has a seat (at most
// Config.RampTimeout). The window, Config.Duration long, is what the Report
// measures. Then every bot closes its connection (1000) and Run returns.
// Every phase is bounded in time, and the number of bots by the process's
// file limit.
//
// The command examples/game/bots runs a swarm from flags; the load run
// (examples/game/bots/loadrun) runs game nodes and swarm processes together.
package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// Config configures a swarm. Targets, Rooms, PerRoom and Duration are
// required; the rest has defaults.
type Config struct {
	// Targets are the game's nodes, as ws://host:port or wss://host:port
	// (the path /ws/game is added). Bot i starts on target i mod
	// len(Targets), so that a room's players are spread over the nodes, and
	// moves to the next target each time its connection is lost: the next
	// of Targets, then of the nodes the targets list in GET /api/peers.
	Targets []string
	// NoDiscovery keeps the bots on Targets: they do not ask the targets
	// for the game's other nodes (GET /api/peers) to fall back on.
	NoDiscovery bool
	// Rooms and PerRoom size the swarm: Rooms × PerRoom bots in all
	// (PerRoom at most the game's 8), of which this process runs its Part.
	Rooms, PerRoom int
	// Create makes each bot join a named room, RoomPrefix + K for K in
	// [0, Rooms), so that exactly Rooms rooms of PerRoom bots exist. Without
	// it the bots play quick play, which fills rooms of 8 in whatever order
	// the joins reach the nodes (so PerRoom is then only a multiplier).
	Create bool
	// RoomPrefix names the rooms of Create. Default "bot-room-".
	RoomPrefix string
	// Part and Parts split one swarm over several processes: this process
	// runs the rooms K (Create) or the bots (quick play) whose index is Part
	// modulo Parts. Bot names (bot<N>) and room names are those of the whole
	// swarm, so that the processes together make the same rooms as one
	// would. Default 0 of 1.
	Part, Parts int
	// Duration is the measured window, after the ramp.
	Duration time.Duration
	// RampTimeout bounds the wait for every bot's seat before the window
	// starts anyway. Default 60 s.
	RampTimeout time.Duration
	// DialRate is how many bots connect per second during the ramp.
	// Default 200.
	DialRate float64
	// Stall is how long a bot waits without any message before it gives up
	// on its connection and reconnects. It must exceed a failover (the
	// member TTL plus the room's move), during which a connection to a
	// surviving node legitimately gets nothing. Default 15 s.
	Stall time.Duration
	// TurnMin and TurnMax bound the time between two direction changes of a
	// bot, drawn uniformly. Default 0.5 s and 2 s.
	TurnMin, TurnMax time.Duration
	// Wander makes the bots only wander, holding random directions, without
	// decoding any state: the cheapest bots. By default a bot looks at
	// the arena each time it chooses a direction and mostly heads for the
	// nearest coin.
	Wander bool
	// WanderShare is the share of a chasing bot's choices that are a
	// random direction instead of the nearest coin. Default 0.2; negative
	// for none.
	WanderShare float64
	// ReportEvery is the period of Progress. Default 5 s.
	ReportEvery time.Duration
	// Progress, if set, receives a progress report every ReportEvery during
	// the ramp and the window, and at their ends.
	Progress func(Progress)
	// Measuring, if set, is called once when the window starts.
	Measuring func(seated, bots int)
}

const (
	// dialTimeout bounds one connection attempt (TCP, HTTP upgrade).
	dialTimeout = 5 * time.Second
	// closeWait bounds the bots' closing handshakes at the end of a run.
	closeWait = 15 * time.Second
	// retryFirst and retryMax bound the wait before a bot's next connection
	// attempt: retryFirst after the first failure, doubling to retryMax.
	// Short, so that the gaps measured are the server's and not the bot's.
	retryFirst = 50 * time.Millisecond
	retryMax   = 500 * time.Millisecond
	// discoveryTimeout bounds the targets' GET /api/peers at the start.
	discoveryTimeout = 3 * time.Second
)

func (c *Config) setDefaults() error {
	if len(c.Targets) == 0 {
		return errors.New("no target: give at least one ws://host:port")
	}
	for i, t := range c.Targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("target %q: want ws://host:port or wss://host:port", t)
		}
		c.Targets[i] = strings.TrimSuffix(t, "/")
	}
	if c.Rooms < 1 || c.PerRoom < 1 || c.PerRoom > gameserver.MaxPlayers {
		return fmt.Errorf("rooms must be at least 1 and per-room 1 to %d", gameserver.MaxPlayers)
	}
	if c.Parts == 0 {
		c.Parts = 1
	}
	if c.Part < 0 || c.Part >= c.Parts {
		return fmt.Errorf("part %d of %d: want 0 ≤ part < parts", c.Part, c.Parts)
	}
	if c.Duration <= 0 {
		return errors.New("duration must be positive")
	}
	if c.RoomPrefix == "" {
		c.RoomPrefix = "bot-room-"
	}
	if c.RampTimeout <= 0 {
		c.RampTimeout = time.Minute
	}
	if c.DialRate <= 0 {
		c.DialRate = 200
	}
	if c.Stall <= 0 {
		c.Stall = 15 * time.Second
	}
	if c.TurnMin <= 0 {
		c.TurnMin = 500 * time.Millisecond
	}
	if c.TurnMax < c.TurnMin {
		c.TurnMax = max(c.TurnMin, 2*time.Second)
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = 5 * time.Second
	}
	if c.WanderShare == 0 {
		c.WanderShare = 0.2
	}
	return nil
}

// maxBots is the most bots one process may run: each holds a socket, and
// the rest of the process needs a few descriptors too.
func maxBots() int { return wsactor.DefaultMaxConnections() }

// swarm is one run.
type swarm struct {
	cfg  Config
	base time.Time // the monotonic origin of every time below
	// targets are Config.Targets, then the other nodes the targets list
	// as their peers: where a bot goes when its node is lost.
	targets []string
	bots    []*bot
	hist    histogram // inter-arrival of states, in the window
	rooms   roomTable

	// The window, as times since base; zero until it starts (ends).
	windowStart, windowEnd atomic.Int64
	seatedOnce             atomic.Int64 // bots that got a first welcome
	seatedAtStart          atomic.Int64 // bots seated when the window started

	dials, dialErrors  atomic.Uint64
	reconnects         atomic.Uint64 // welcomes after a lost connection
	moves              atomic.Uint64 // welcomes again on the same connection: its room moved nodes
	seatsKept          atomic.Uint64 // reconnects that took back the same seat
	seatsLost          atomic.Uint64 // reconnects that had to join anew
	stalls             atomic.Uint64 // connections given up after Stall
	badMessages        atomic.Uint64
	mu                 sync.Mutex
	closeCodes         map[string]uint64 // why connections ended (not at the run's end)
	serverErrors       map[string]uint64 // the codes of error envelopes
	dialErrorSamples   []string
	sessionErrorSample []string
}

// now is the time since the run's start.
func (s *swarm) now() time.Duration { return time.Since(s.base) }

// inWindow reports whether t is inside the measured window.
func (s *swarm) inWindow(t time.Duration) bool {
	ws, we := s.windowStart.Load(), s.windowEnd.Load()
	return ws != 0 && int64(t) >= ws && (we == 0 || int64(t) <= we)
}

// Run runs a swarm until its window ends (or ctx does) and returns what it
// measured. It returns an error for a bad configuration, or when no bot got
// a seat during the ramp.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &swarm{cfg: cfg, base: time.Now(), closeCodes: map[string]uint64{}, serverErrors: map[string]uint64{}}
	s.targets = slices.Clone(cfg.Targets)
	if !cfg.NoDiscovery {
		s.targets = append(s.targets, discoverPeers(ctx, cfg.Targets)...)
	}
	s.rooms.m = map[string]*roomStats{}
	for g := range cfg.Rooms * cfg.PerRoom {
		b := &bot{s: s, index: g, name: fmt.Sprintf("bot%d", g), target: g % len(cfg.Targets)}
		part := g
		if cfg.Create {
			part = g / cfg.PerRoom
			b.room = cfg.RoomPrefix + fmt.Sprint(part)
		}
		if part%cfg.Parts != cfg.Part {
			continue
		}
		if b.room != "" {
			b.rs.Store(s.rooms.get(b.room))
		}
		s.bots = append(s.bots, b)
	}
	if len(s.bots) == 0 {
		return nil, fmt.Errorf("part %d of %d has no bots", cfg.Part, cfg.Parts)
	}
	if n := maxBots(); n > 0 && len(s.bots) > n {
		return nil, fmt.Errorf("%d bots in one process: its file limit allows %d; split them with parts", len(s.bots), n)
	}

	botsCtx, stopBots := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBots()
		waitBounded(&wg, closeWait)
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watch(watchCtx)

	rampEnd := s.ramp(ctx, botsCtx, &wg)
	if s.seatedOnce.Load() == 0 {
		return nil, fmt.Errorf("no bot got a seat within %v: %s", cfg.RampTimeout, s.failureSummary())
	}
	s.windowStart.Store(int64(s.now()))
	startTotals, cpu := s.totals(), cpuTime()
	s.seatedAtStart.Store(int64(s.online()))
	if cfg.Measuring != nil {
		cfg.Measuring(int(s.seatedAtStart.Load()), len(s.bots))
	}
	s.progressLoop(ctx, "window", time.Duration(s.windowStart.Load())+cfg.Duration)
	end := s.now()
	s.windowEnd.Store(int64(end))
	return s.report(rampEnd, startTotals, end, cpuTime()-cpu), nil
}

// ramp starts the bots at the dial rate and waits until every one has a
// seat, the ramp times out, or ctx ends. It returns the ramp's length.
func (s *swarm) ramp(ctx, botsCtx context.Context, wg *sync.WaitGroup) time.Duration {
	deadline := s.now() + s.cfg.RampTimeout
	started := make(chan struct{})
	go func() {
		defer close(started)
		every := time.Duration(float64(time.Second) / s.cfg.DialRate)
		next := time.Now()
		for _, b := range s.bots {
			if ctx.Err() != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.run(botsCtx)
			}()
			next = next.Add(every)
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	s.progressLoop(ctx, "ramp", deadline, func() bool { return int(s.seatedOnce.Load()) == len(s.bots) })
	<-started
	return s.now()
}

// progressLoop reports progress every ReportEvery until the time until
// (since base), ctx's end, or one of done returns true; and once at the end.
func (s *swarm) progressLoop(ctx context.Context, phase string, until time.Duration, done ...func() bool) {
	tick := time.NewTicker(min(s.cfg.ReportEvery, 50*time.Millisecond))
	defer tick.Stop()
	prev := s.totals()
	last := s.now()
	for {
		now := s.now()
		finished := now >= until || ctx.Err() != nil
		for _, f := range done {
			finished = finished || f()
		}
		if finished || now-last >= s.cfg.ReportEvery {
			cur := s.totals()
			if s.cfg.Progress != nil {
				s.cfg.Progress(s.progress(phase, now, now-last, prev, cur))
			}
			prev, last = cur, now
		}
		if finished {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// watch gives up on the connections of bots that have heard nothing for
// Stall: each such bot reconnects.
func (s *swarm) watch(ctx context.Context) {
	tick := time.NewTicker(min(time.Second, s.cfg.Stall/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := s.now()
		for _, b := range s.bots {
			if b.stalled(now, s.cfg.Stall) {
				s.stalls.Add(1)
			}
		}
	}
}

// online counts the bots seated on an open connection.
func (s *swarm) online() int {
	n := 0
	for _, b := range s.bots {
		if b.online.Load() {
			n++
		}
	}
	return n
}

// totals returns every bot's state count so far.
func (s *swarm) totals() []uint64 {
	out := make([]uint64, len(s.bots))
	for i, b := range s.bots {
		out[i] = b.states.Load()
	}
	return out
}

func (s *swarm) count(m map[string]uint64, key string) {
	s.mu.Lock()
	m[key]++
	s.mu.Unlock()
}

// sample keeps the first few texts of a kind of error for the report.
func (s *swarm) sample(to *[]string, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*to) < 5 && !slices.Contains(*to, text) {
		*to = append(*to, text)
	}
}

func (s *swarm) failureSummary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf("%d connection attempts, %d failed", s.dials.Load(), s.dialErrors.Load())
	if len(s.dialErrorSamples) > 0 {
		msg += " (" + strings.Join(s.dialErrorSamples, "; ") + ")"
	}
	if len(s.closeCodes) > 0 {
		msg += fmt.Sprintf("; connections closed: %v", s.closeCodes)
	}
	if len(s.sessionErrorSample) > 0 {
		msg += " (" + strings.Join(s.sessionErrorSample, "; ") + ")"
	}
	return msg
}

// discoverPeers asks each target for the game's nodes (GET /api/peers, a
// list of http:// or https:// base URLs) and returns those that are not
// targets already, as ws:// or wss:// URLs. A target that does not answer
// is skipped: the bots' own dials report it.
func discoverPeers(ctx context.Context, targets []string) []string {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	var out []string
	for _, t := range targets {
		for _, p := range getPeers(ctx, t) {
			u, err := url.Parse(strings.TrimSuffix(p, "/"))
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				continue
			}
			u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
			if w := u.String(); !slices.Contains(targets, w) && !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	return out
}

// getPeers returns a target's GET /api/peers, or nothing if it fails.
func getPeers(ctx context.Context, target string) []string {
	u := "http" + strings.TrimPrefix(target, "ws") + "/api/peers"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var peers []string
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&peers) != nil {
		return nil
	}
	return peers
}

// waitBounded waits for wg at most d.
func waitBounded(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// roomStats is what a room's bots saw.
type roomStats struct {
	name string
	mu   sync.Mutex
	last time.Duration // the latest state any of its bots got
	// gap is the longest time, ended in the window, in which none of its bots
	// got a state; gapEnd is when it ended.
	gap, gapEnd time.Duration
}

// state records that one of the room's bots got a state at now.
func (r *roomStats) state(s *swarm, now time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != 0 && s.inWindow(now) && now-r.last > r.gap {
		r.gap, r.gapEnd = now-r.last, now
	}
	r.last = now
}

// roomTable holds the rooms by name: fixed with Create, found in welcomes
// with quick play.
type roomTable struct {
	mu sync.Mutex
	m  map[string]*roomStats
}

func (t *roomTable) get(name string) *roomStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.m[name]
	if r == nil {
		r = &roomStats{name: name}
		t.m[name] = r
	}
	return r
}

func (t *roomTable) sorted() []*roomStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*roomStats, 0, len(t.m))
	for _, r := range t.m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
