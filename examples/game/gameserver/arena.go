package gameserver

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"time"

	"github.com/wsactor/wsactor"
)

// The rules of the game: dots in a 1000 × 600 arena pick up coins that
// respawn elsewhere; each coin scores one. The server is authoritative: a
// client only says which way it holds its keys; the server moves every dot
// at Speed for the time that really passed, keeps it in the arena, and
// decides who picked up what.
const (
	Width, Height = 1000.0, 600.0
	// Speed is how far a dot moves in a second, in arena units (a diagonal
	// is no faster).
	Speed = 240.0
	// PlayerRadius and CoinRadius size the dots; a coin is picked up when
	// the two touch.
	PlayerRadius = 14.0
	CoinRadius   = 9.0
	// Coins is how many coins are in the arena at any time.
	Coins = 5
	// MaxPlayers is the room's size.
	MaxPlayers = 8
	// TickRate is the server's simulation and broadcast rate.
	TickRate = 20
	// SeatHold is how long a dropped player keeps its seat, dot and score.
	SeatHold = 15 * time.Second
	// SnapshotEvery is how often a room's state is saved, for a survivor
	// to take it over if its node dies: at most this much play is lost.
	SnapshotEvery = 250 * time.Millisecond
)

// KindName is the room kind of the game.
const KindName = "arena"

// Kind is the game's room kind.
func Kind() wsactor.RoomKind {
	return wsactor.RoomKind{
		Name:             KindName,
		New:              func() wsactor.RoomHandler { return &arena{} },
		MaxPlayers:       MaxPlayers,
		TickRate:         TickRate,
		SeatReservation:  SeatHold,
		SnapshotInterval: SnapshotEvery,
		EmptyTimeout:     time.Minute,
	}
}

// arena is one room's game. Its methods run in the room's actor, one at a
// time: no locks.
type arena struct {
	State
	dirs map[int][2]int // seat → held direction; not saved: a player re-sends it
	rng  *rand.Rand
}

// State is what a room saves: enough to go on after a move to another node.
type State struct {
	Tick    int64        `json:"tick"`
	Players map[int]*Dot `json:"players"` // by seat
	Items   []Coin       `json:"items"`
}

// Dot is a player in the arena.
type Dot struct {
	Name  string  `json:"name"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	Score int     `json:"score"`
}

// Coin is an item to pick up.
type Coin struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

func (a *arena) OnCreate(r *wsactor.Room, snapshot []byte) error {
	a.dirs = map[int][2]int{}
	a.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	a.Players = map[int]*Dot{}
	if snapshot != nil {
		if err := json.Unmarshal(snapshot, &a.State); err != nil {
			return err
		}
		if a.Players == nil {
			a.Players = map[int]*Dot{}
		}
	}
	for len(a.Items) < Coins {
		a.Items = append(a.Items, a.randomCoin())
	}
	r.SetLabel(map[string]string{"game": "coins"})
	return nil
}

func (a *arena) randomCoin() Coin {
	m := CoinRadius * 2
	return Coin{X: m + a.rng.Float64()*(Width-2*m), Y: m + a.rng.Float64()*(Height-2*m)}
}

// OnJoin gives a new player a dot in a free spot.
func (a *arena) OnJoin(r *wsactor.Room, p *wsactor.Player) {
	m := PlayerRadius * 2
	a.Players[p.Seat] = &Dot{Name: p.Meta["name"], X: m + a.rng.Float64()*(Width-2*m), Y: m + a.rng.Float64()*(Height-2*m)}
}

// OnDrop stops a dropped player's dot; it stays, offline, until its seat
// expires.
func (a *arena) OnDrop(r *wsactor.Room, p *wsactor.Player) { delete(a.dirs, p.Seat) }

// OnReconnect: a player is back (its client re-sends its direction).
func (a *arena) OnReconnect(r *wsactor.Room, p *wsactor.Player) {
	if a.Players[p.Seat] == nil { // the room moved before its first snapshot with this player
		a.OnJoin(r, p)
	}
}

// OnLeave removes a player for good.
func (a *arena) OnLeave(r *wsactor.Room, p *wsactor.Player, _ wsactor.LeaveReason) {
	delete(a.Players, p.Seat)
	delete(a.dirs, p.Seat)
}

// OnMessage takes a player's input, already checked by its connection
// (see conn.go): {"type":"input","dx":-1|0|1,"dy":-1|0|1}.
func (a *arena) OnMessage(r *wsactor.Room, p *wsactor.Player, m wsactor.Message) error {
	in, err := decodeInput(m)
	if err != nil {
		return err
	}
	a.dirs[p.Seat] = [2]int{in.DX, in.DY}
	return nil
}

// OnTick moves every dot by the time that passed, picks up coins, and
// sends everyone the state.
func (a *arena) OnTick(r *wsactor.Room, t wsactor.Tick) {
	a.Tick++
	dt := min(t.Delta, 250*time.Millisecond).Seconds() // a long stall does not teleport anyone
	for seat, d := range a.dirs {
		dot := a.Players[seat]
		if dot == nil || (d[0] == 0 && d[1] == 0) {
			continue
		}
		dx, dy := float64(d[0]), float64(d[1])
		n := math.Hypot(dx, dy)
		dot.X = clamp(dot.X+dx/n*Speed*dt, PlayerRadius, Width-PlayerRadius)
		dot.Y = clamp(dot.Y+dy/n*Speed*dt, PlayerRadius, Height-PlayerRadius)
		for i, c := range a.Items {
			if math.Hypot(c.X-dot.X, c.Y-dot.Y) < PlayerRadius+CoinRadius {
				dot.Score++
				a.Items[i] = a.randomCoin()
			}
		}
	}
	_ = r.BroadcastJSON(a.stateMessage(r))
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }

// stateMessage is the state sent every tick (see README.md).
func (a *arena) stateMessage(r *wsactor.Room) StateMsg {
	msg := StateMsg{Type: "state", Tick: a.Tick, Players: make([]PlayerState, 0, len(a.Players)), Items: a.Items}
	for _, p := range r.Players() {
		dot := a.Players[p.Seat]
		if dot == nil {
			continue
		}
		msg.Players = append(msg.Players, PlayerState{Seat: p.Seat, Name: dot.Name, X: round(dot.X), Y: round(dot.Y), Score: dot.Score, Online: p.Online})
	}
	return msg
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

// Snapshot saves the game: dots, scores, coins, tick.
func (a *arena) Snapshot(*wsactor.Room) ([]byte, error) { return json.Marshal(a.State) }
