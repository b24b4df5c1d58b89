package swarm_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/examples/game/bots/swarm"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// runSwarm runs a swarm in the background; the returned function ends its
// window (as Ctrl-C does) and returns its report.
func runSwarm(t *testing.T, cfg swarm.Config) (stop func() *swarm.Report) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		r   *swarm.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := swarm.Run(ctx, cfg)
		done <- result{r, err}
	}()
	var once sync.Once
	var res result
	stop = func() *swarm.Report {
		t.Helper()
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(testTimeout):
				t.Fatal("the swarm did not stop")
			}
		})
		if res.err != nil {
			t.Fatalf("swarm.Run: %v", res.err)
		}
		return res.r
	}
	t.Cleanup(func() { cancel() })
	return stop
}

// progress collects a swarm's progress reports.
type progress struct {
	mu     sync.Mutex
	last   swarm.Progress
	seated bool
}

func (p *progress) hook(cfg *swarm.Config) {
	cfg.ReportEvery = 20 * time.Millisecond
	cfg.Progress = func(pr swarm.Progress) {
		p.mu.Lock()
		p.last = pr
		p.mu.Unlock()
	}
	cfg.Measuring = func(int, int) {
		p.mu.Lock()
		p.seated = true
		p.mu.Unlock()
	}
}

func (p *progress) get() (swarm.Progress, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.seated
}

// watch joins a room as a player of its own and reports, from the states it
// reads, whether the bots' dots moved and whether one picked up a coin.
func watch(t *testing.T, g *game, room string) (moved, scored func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, _, err := websocket.Dial(ctx, g.ws()+"/ws/game?name=watcher&room="+room, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	var mu sync.Mutex
	first := map[int][2]float64{}
	var didMove, didScore bool
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		_ = c.CloseNow()
		<-done
	})
	go func() {
		defer close(done)
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var st gameserver.StateMsg
			if json.Unmarshal(b, &st) != nil || st.Type != "state" {
				continue
			}
			mu.Lock()
			for _, p := range st.Players {
				if !strings.HasPrefix(p.Name, "bot") {
					continue
				}
				if f, ok := first[p.Seat]; !ok {
					first[p.Seat] = [2]float64{p.X, p.Y}
				} else if f != [2]float64{p.X, p.Y} {
					didMove = true
				}
				didScore = didScore || p.Score > 0
			}
			mu.Unlock()
		}
	}()
	get := func(v *bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return *v
		}
	}
	return get(&didMove), get(&didScore)
}

// TestSwarmPlays runs bots in named rooms: every bot gets a seat in its
// room, the bots move and pick up coins (seen by another player of the
// room), every bot receives states, and the report adds up.
func TestSwarmPlays(t *testing.T) {
	g := newGame(t)
	cfg := swarm.Config{Targets: []string{g.ws()}, Rooms: 2, PerRoom: 3, Create: true, Duration: time.Minute}
	var pr progress
	pr.hook(&cfg)
	stop := runSwarm(t, cfg)
	waitFor(t, "every bot seated", func() bool { p, ok := pr.get(); return ok && p.Online == 6 })
	// A room publishes its listing after it has seated a player, from its
	// saver's goroutine: the last seat taken may be listed a moment after
	// its bot is seated.
	var rooms []gameserver.RoomInfo
	waitFor(t, "the listing of 2 rooms of 3 players", func() bool {
		rooms = g.rooms(t)
		return len(rooms) == 2 && rooms[0].Players == 3 && rooms[1].Players == 3
	})
	for _, r := range rooms {
		if !strings.HasPrefix(r.Room, "bot-room-") {
			t.Errorf("room %+v: want 3 players in bot-room-N", r)
		}
	}
	moved, scored := watch(t, g, "bot-room-0")
	waitFor(t, "a bot to move", moved)
	waitFor(t, "a bot to pick up a coin", scored)
	waitFor(t, "states in the window", func() bool { p, _ := pr.get(); return p.RateP10 > 0 })
	r := stop()

	if r.Bots != 6 || r.Seated != 6 || r.Mode != "rooms" {
		t.Errorf("bots %d, seated %d, mode %q: want 6, 6, rooms", r.Bots, r.Seated, r.Mode)
	}
	var sum uint64
	for _, b := range r.PerBot {
		if b.Rate <= 0 || !strings.HasPrefix(b.Room, "bot-room-") {
			t.Errorf("bot %+v: want states, in its room", b)
		}
	}
	if sum = r.States; sum == 0 || r.RateMedian <= 0 || r.InterArrival.Count == 0 || r.InterArrivalP50Ms <= 0 {
		t.Errorf("states %d, rate median %.2f, inter-arrival %+v: want states measured", sum, r.RateMedian, r.InterArrival)
	}
	if len(r.RoomGaps) != 2 {
		t.Errorf("room gaps %+v: want the 2 rooms", r.RoomGaps)
	}
	if r.Reconnects != 0 || r.BadMessages != 0 || len(r.ServerErrors) != 0 || r.DialErrors != 0 {
		t.Errorf("reconnects %d, bad messages %d, server errors %v, dial errors %d: want none",
			r.Reconnects, r.BadMessages, r.ServerErrors, r.DialErrors)
	}
	t.Logf("states/bot/s median %.1f, inter-arrival p50 %.1f ms (not asserted: timing)", r.RateMedian, r.InterArrivalP50Ms)
	if !strings.Contains(r.String(), "states/bot/s:") {
		t.Errorf("the summary lacks the rates:\n%s", r)
	}
}

// TestSwarmQuickPlay: without named rooms, bots use quick play, which fills
// rooms of 8.
func TestSwarmQuickPlay(t *testing.T) {
	g := newGame(t)
	cfg := swarm.Config{Targets: []string{g.ws()}, Rooms: 2, PerRoom: 5, Duration: time.Minute, Wander: true}
	var pr progress
	pr.hook(&cfg)
	stop := runSwarm(t, cfg)
	waitFor(t, "every bot seated", func() bool { p, ok := pr.get(); return ok && p.Online == 10 })
	r := stop()
	if r.Mode != "quick play" || r.Seated != 10 || len(r.RoomGaps) != 2 {
		t.Fatalf("mode %q, seated %d, rooms %+v: want quick play, 10 bots in 2 rooms", r.Mode, r.Seated, r.RoomGaps)
	}
}

// TestSwarmReconnectKeepsSeat: the server closes every bot's connection
// (1001, idle timeout: the bots hold their direction longer than the
// server waits); each bot takes its seat back with its token, many times,
// and the rooms never hold more than their bots.
func TestSwarmReconnectKeepsSeat(t *testing.T) {
	g := newGameWith(t, gameserver.Config{Transport: wsactor.TransportOptions{IdleTimeout: 300 * time.Millisecond}})
	cfg := swarm.Config{Targets: []string{g.ws()}, Rooms: 1, PerRoom: 3, Create: true, Duration: time.Minute,
		Wander: true, TurnMin: time.Hour, TurnMax: time.Hour}
	var pr progress
	pr.hook(&cfg)
	stop := runSwarm(t, cfg)
	waitFor(t, "every bot back twice", func() bool { p, _ := pr.get(); return p.Reconnects >= 6 })
	rooms := g.rooms(t)
	r := stop()
	if len(rooms) != 1 || rooms[0].Players != 3 {
		t.Errorf("rooms %+v: want one room of the 3 bots", rooms)
	}
	if r.Reconnects < 6 || r.SeatsKept != r.Reconnects || r.SeatsLost != 0 {
		t.Errorf("reconnects %d, seats kept %d, lost %d: want every seat kept", r.Reconnects, r.SeatsKept, r.SeatsLost)
	}
	if r.CloseCodes["1001"] == 0 {
		t.Errorf("close codes %v: want the server's 1001", r.CloseCodes)
	}
}

// TestSwarmMovesToPeerOnNodeLoss: the bots know one node, which lists
// another in GET /api/peers; when their node goes (connections cut, new
// ones refused), they take their seats back through the other.
func TestSwarmMovesToPeerOnNodeLoss(t *testing.T) {
	first, second := newProxy(t, ""), newProxy(t, "")
	g := newGameWith(t, gameserver.Config{Peers: []string{"http://" + first.l.Addr().String(), "http://" + second.l.Addr().String()}})
	first.backend.Store(g.addr())
	second.backend.Store(g.addr())
	cfg := swarm.Config{Targets: []string{first.ws()}, Rooms: 1, PerRoom: 4, Create: true, Duration: time.Minute}
	var pr progress
	pr.hook(&cfg)
	stop := runSwarm(t, cfg)
	waitFor(t, "every bot seated", func() bool { p, ok := pr.get(); return ok && p.Online == 4 })
	if n := second.dialed.Load(); n != 0 {
		t.Fatalf("%d connections through the second node before the first went", n)
	}
	first.close()
	waitFor(t, "every bot back", func() bool { p, _ := pr.get(); return p.Reconnects >= 4 && p.Online == 4 })
	r := stop()
	if r.SeatsKept != 4 || r.SeatsLost != 0 {
		t.Errorf("seats kept %d, lost %d: want the 4 kept", r.SeatsKept, r.SeatsLost)
	}
	if second.dialed.Load() < 4 {
		t.Errorf("%d connections through the peer, want the 4 bots'", second.dialed.Load())
	}
	if len(r.Targets) != 2 || r.Targets[1] != second.ws() {
		t.Errorf("targets %q: want the given one, then the peer", r.Targets)
	}
	if r.CloseCodes["no close frame"] == 0 {
		t.Errorf("close codes %v: want the cut connections", r.CloseCodes)
	}
}

// TestSwarmBadTarget: a target that is not a WebSocket URL is refused at
// once; one where nothing listens ends the ramp with the dial error.
func TestSwarmBadTarget(t *testing.T) {
	for _, target := range []string{"http://127.0.0.1:8080", "127.0.0.1:8080", "ws://"} {
		_, err := swarm.Run(context.Background(), swarm.Config{Targets: []string{target}, Rooms: 1, PerRoom: 1, Duration: time.Second})
		if err == nil || !strings.Contains(err.Error(), "want ws://host:port") {
			t.Errorf("target %q: error %v, want one naming the form", target, err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + l.Addr().String()
	_ = l.Close()
	_, err = swarm.Run(context.Background(), swarm.Config{Targets: []string{dead}, Rooms: 1, PerRoom: 2, Duration: time.Second, RampTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no bot got a seat") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dead target: error %v, want no seat, connection refused", err)
	}
}

// TestSwarmBadConfig: sizes out of range are refused before any dial.
func TestSwarmBadConfig(t *testing.T) {
	for _, cfg := range []swarm.Config{
		{Rooms: 1, PerRoom: 1, Duration: time.Second},
		{Targets: []string{"ws://127.0.0.1:1"}, Rooms: 0, PerRoom: 1, Duration: time.Second},
		{Targets: []string{"ws://127.0.0.1:1"}, Rooms: 1, PerRoom: 9, Duration: time.Second},
		{Targets: []string{"ws://127.0.0.1:1"}, Rooms: 1, PerRoom: 1},
		{Targets: []string{"ws://127.0.0.1:1"}, Rooms: 1, PerRoom: 1, Duration: time.Second, Part: 2, Parts: 2},
	} {
		if _, err := swarm.Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
