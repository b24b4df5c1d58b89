package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// bot is one player: one connection at a time, to one of the targets.
type bot struct {
	s     *swarm
	index int    // in the whole swarm
	name  string // bot<index>
	room  string // the room it joins (Create), or "" for quick play

	// Owned by the bot's goroutine.
	target     int // index in Targets of its next connection
	token      string
	seat       int
	roomName   string // its room, from its latest welcome
	seatedEver bool
	done       bool // the server refused its request itself (4400): give up

	// Read by the swarm's other goroutines.
	rs     atomic.Pointer[roomStats] // its room's stats (fixed with Create)
	states atomic.Uint64             // states received, from the start
	last   atomic.Int64              // when its latest state came (since base); 0: none yet
	heard  atomic.Int64              // when its latest message of any kind came
	gap    atomic.Int64              // its longest time between two states that ended in the window
	online atomic.Bool               // seated on an open connection
	kill   atomic.Pointer[context.CancelFunc]
	// steer asks the reader to decode the next state and choose a
	// direction from it (play sets it when the held one has run its time).
	steer atomic.Bool
}

// move is a direction to hold, and for how long before the next choice.
type move struct {
	input []byte
	hold  time.Duration
}

// statePrefix starts every state the server sends (encoding/json writes a
// struct's fields in order): the bots count states without decoding them,
// so that a swarm costs the machine little next to the servers it measures.
var statePrefix = []byte(`{"type":"state",`)

// inputs are the nine directions a bot may hold, by (dx+1)*3 + dy+1.
var inputs = func() [][]byte {
	var out [][]byte
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			out = append(out, fmt.Appendf(nil, `{"type":"input","dx":%d,"dy":%d}`, dx, dy))
		}
	}
	return out
}()

func input(dx, dy int) []byte { return inputs[(dx+1)*3+dy+1] }

// stateMsg is the part of a state a bot steers by.
type stateMsg struct {
	Players []struct {
		Seat int     `json:"seat"`
		X    float64 `json:"x"`
		Y    float64 `json:"y"`
	} `json:"players"`
	Items []gameserver.Coin `json:"items"`
}

// serverMsg is any message of the game's server but a state, decoded.
type serverMsg struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Seat    int    `json:"seat"`
	Token   string `json:"token"`
	Again   bool   `json:"again"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// run plays until ctx ends: a connection, and when it is lost the next one,
// on the next target, after a short wait that grows while attempts fail.
func (b *bot) run(ctx context.Context) {
	failures := 0
	for {
		seated := b.session(ctx)
		if ctx.Err() != nil || b.done {
			return
		}
		b.target = (b.target + 1) % len(b.s.targets)
		wait := retryFirst / 2 // after a loss, go again at once (spread a little)
		if seated {
			failures = 0
		} else {
			failures++
			wait = min(retryFirst<<(min(failures, 8)-1), retryMax)
		}
		wait = wait/2 + rand.N(wait/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// session is one connection: it asks for the bot's seat (by token, by room
// name, or quick play), reads until the connection ends, and reports
// whether it got a seat.
func (b *bot) session(ctx context.Context) (seated bool) {
	s := b.s
	q := url.Values{"name": {b.name}}
	switch {
	case b.token != "":
		q.Set("token", b.token)
	case b.room != "":
		q.Set("room", b.room)
	}
	s.dials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, _, err := websocket.Dial(dctx, s.targets[b.target]+"/ws/game?"+q.Encode(), &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.dialErrors.Add(1)
			s.sample(&s.dialErrorSamples, err.Error())
		}
		return false
	}
	sctx, end := context.WithCancel(ctx)
	b.steer.Store(false)
	b.heard.Store(int64(s.now()))
	b.kill.Store(&end)
	welcomed := make(chan struct{})
	moves := make(chan move, 1)
	nudge := make(chan struct{}, 1)
	played := make(chan struct{})
	go func() {
		defer close(played)
		b.play(ctx, sctx, c, welcomed, moves, nudge)
	}()
	seated, err = b.read(c, welcomed, moves, nudge)
	end()
	<-played
	b.kill.Store(nil)
	b.online.Store(false)
	if ctx.Err() == nil {
		b.ended(err)
	}
	return seated
}

// ended records why a connection ended, and what the bot does next.
func (b *bot) ended(err error) {
	s := b.s
	code := websocket.CloseStatus(err)
	switch code {
	case -1:
		s.count(s.closeCodes, "no close frame")
		s.sample(&s.sessionErrorSample, err.Error())
		return
	case gameserver.CloseNoSeat: // the seat is gone: join anew
		b.token = ""
	case gameserver.CloseBadRequest: // the server refuses this bot's query itself
		b.done = true
	}
	s.count(s.closeCodes, fmt.Sprint(int(code)))
	var ce websocket.CloseError
	if code >= 4000 && errors.As(err, &ce) {
		s.sample(&s.sessionErrorSample, fmt.Sprintf("%d %s", int(code), ce.Reason))
	}
}

// play sends the bot's inputs once it has a seat, and closes the
// connection when the session ends: with 1000 when the run is over, at once
// otherwise. Each time the held direction has run its time it asks the
// reader for a new one, chosen from the next state (steer); it wanders on
// its own if no state comes within a tick or two.
func (b *bot) play(ctx, sctx context.Context, c *websocket.Conn, welcomed <-chan struct{}, moves <-chan move, nudge <-chan struct{}) {
	defer func() {
		if ctx.Err() != nil {
			_ = c.Close(websocket.StatusNormalClosure, "bots done")
		} else {
			_ = c.CloseNow()
		}
	}()
	select {
	case <-welcomed:
	case <-sctx.Done():
		return
	}
	cfg := b.s.cfg
	t := time.NewTimer(0) // a new connection re-sends its direction at once
	defer t.Stop()
	asked := false // steer is set and play waits for the reader's move
	for {
		var m move
		turn := false // the held direction has run its time (or the room lost it)
		select {
		case <-nudge:
			if asked {
				continue // a move from the next state is coming
			}
			turn = true
		case <-t.C:
			turn = true
		case m = <-moves:
		case <-sctx.Done():
			return
		}
		if turn {
			if !cfg.Wander && !asked {
				asked = true
				b.steer.Store(true)
				t.Reset(steerWait)
				continue
			}
			b.steer.Store(false) // no state came within steerWait: wander
			m = b.wander()
		}
		asked = false
		if err := c.Write(sctx, websocket.MessageText, m.input); err != nil {
			return
		}
		t.Reset(m.hold)
	}
}

// steerWait is how long play waits for the reader to steer by a state
// before it wanders: a room that is moving nodes sends none.
const steerWait = 150 * time.Millisecond

// wander is a random direction, held TurnMin–TurnMax.
func (b *bot) wander() move {
	cfg := b.s.cfg
	return move{input: inputs[rand.IntN(len(inputs))], hold: cfg.TurnMin + rand.N(cfg.TurnMax-cfg.TurnMin+1)}
}

// chase is the choice a player makes looking at the arena: most of the time
// it heads for the nearest coin, until it is level with it on one axis (then
// it chooses again); sometimes it wanders. ok is false if the state does
// not hold the bot's own dot.
func (b *bot) chase(st *stateMsg) (m move, ok bool) {
	var x, y float64
	for _, p := range st.Players {
		if p.Seat == b.seat {
			x, y, ok = p.X, p.Y, true
		}
	}
	if !ok || len(st.Items) == 0 || rand.Float64() < b.s.cfg.WanderShare {
		return b.wander(), ok
	}
	best := st.Items[0]
	for _, c := range st.Items[1:] {
		if math.Hypot(c.X-x, c.Y-y) < math.Hypot(best.X-x, best.Y-y) {
			best = c
		}
	}
	ddx, ddy := best.X-x, best.Y-y
	dx, dy := axis(ddx), axis(ddy)
	// Hold the direction until one axis is level with the coin: a diagonal
	// covers Speed/√2 on each.
	var d float64
	switch {
	case dx != 0 && dy != 0:
		d = min(math.Abs(ddx), math.Abs(ddy)) * math.Sqrt2
	case dx != 0:
		d = math.Abs(ddx)
	default:
		d = math.Abs(ddy)
	}
	hold := time.Duration(d / gameserver.Speed * float64(time.Second))
	return move{input: input(dx, dy), hold: min(max(hold, chaseMin), b.s.cfg.TurnMax)}, true
}

// chaseMin is the shortest time a chasing bot holds a direction: a player
// does not react faster than a few ticks.
const chaseMin = 150 * time.Millisecond

// axis is the direction, on one axis, toward a point delta away: none when
// it is within a coin's reach.
func axis(delta float64) int {
	switch {
	case delta > gameserver.CoinRadius/2:
		return 1
	case delta < -gameserver.CoinRadius/2:
		return -1
	}
	return 0
}

// read reads the connection until it ends. It closes welcomed at the first
// welcome, and reports whether there was one.
func (b *bot) read(c *websocket.Conn, welcomed chan struct{}, moves chan<- move, nudge chan<- struct{}) (seated bool, err error) {
	s := b.s
	var buf bytes.Buffer
	for {
		// No context: play closes the connection to end this read, and a
		// context here would cost a registration per message.
		_, r, err := c.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			return seated, err
		}
		now := s.now()
		b.heard.Store(int64(now))
		msg := buf.Bytes()
		if bytes.HasPrefix(msg, statePrefix) {
			b.state(now)
			if b.steer.CompareAndSwap(true, false) {
				b.steerBy(msg, moves)
			}
			continue
		}
		var m serverMsg
		if err := json.Unmarshal(msg, &m); err != nil {
			s.badMessages.Add(1)
			continue
		}
		switch m.Type {
		case "state":
			b.state(now)
		case "welcome":
			if !b.welcome(m, seated) {
				s.badMessages.Add(1)
				continue
			}
			if !seated {
				seated = true
				close(welcomed)
			} else {
				poke(nudge) // a room that moved starts with no direction held
			}
		case "error":
			s.count(s.serverErrors, m.Code)
			if m.Code == gameserver.CodeMovedRoom {
				poke(nudge) // the input was dropped: send one again
			}
		case "notice":
		default:
			s.badMessages.Add(1)
		}
	}
}

// poke signals ch without blocking: one pending signal is enough.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// steerBy decodes a state and hands play the direction chosen from it.
// Only one state in several is decoded, so that a swarm costs the machine
// little next to the servers it measures.
func (b *bot) steerBy(msg []byte, moves chan<- move) {
	var st stateMsg
	if err := json.Unmarshal(msg, &st); err != nil {
		b.s.badMessages.Add(1)
		return
	}
	m, _ := b.chase(&st)
	select {
	case moves <- m:
	default: // play has a move it has not sent yet
	}
}

// welcome takes a seat's details; again is true for a second welcome on the
// same connection (its room moved to another node). It reports whether the
// welcome was whole.
func (b *bot) welcome(m serverMsg, again bool) bool {
	s := b.s
	if m.Room == "" || m.Token == "" {
		return false
	}
	switch {
	case again:
		s.moves.Add(1)
	case b.seatedEver:
		s.reconnects.Add(1)
		if m.Again && m.Room == b.roomName && m.Seat == b.seat {
			s.seatsKept.Add(1)
		} else {
			s.seatsLost.Add(1)
		}
	}
	b.token, b.seat, b.roomName = m.Token, m.Seat, m.Room
	if b.room == "" {
		b.rs.Store(s.rooms.get(m.Room))
	}
	if !b.seatedEver {
		b.seatedEver = true
		s.seatedOnce.Add(1)
	}
	b.online.Store(true)
	return true
}

// state counts a state that came at now.
func (b *bot) state(now time.Duration) {
	s := b.s
	b.states.Add(1)
	prev := time.Duration(b.last.Swap(int64(now)))
	if prev != 0 && s.inWindow(now) {
		gap := now - prev
		s.hist.record(gap)
		if int64(gap) > b.gap.Load() {
			b.gap.Store(int64(gap))
		}
	}
	if rs := b.rs.Load(); rs != nil {
		rs.state(s, now)
	}
}

// stalled ends the bot's connection if it has heard nothing for stall, and
// reports whether it did.
func (b *bot) stalled(now, stall time.Duration) bool {
	end := b.kill.Load()
	if end == nil || now-time.Duration(b.heard.Load()) < stall {
		return false
	}
	b.heard.Store(int64(now))
	(*end)()
	return true
}
