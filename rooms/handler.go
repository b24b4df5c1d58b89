package rooms

import (
	"time"

	"github.com/wsactor/wsactor/actors"
)

// Handler is a room's code: one value per activation of a room, whose
// methods run one at a time in the room's actor. OnMessage is the only
// required method; the others are discovered by type assertion.
type Handler interface {
	// OnMessage handles a data message from a player. An error it returns
	// is answered to that player as an error envelope (a routing.Error's
	// code, or "internal", logged); the room carries on.
	OnMessage(r *Room, p *Player, m actors.Message) error
}

// Creator is told when a room's activation starts: snapshot is what its
// last activation saved (a Snapshotter's bytes), or nil for a new room. An
// error ends the activation: joins are refused as unavailable.
type Creator interface {
	OnCreate(r *Room, snapshot []byte) error
}

// JoinGate decides who may take a seat, before the seat is given: return
// Refuse(code, reason) (or any error) to refuse; the client is told the code
// and reason. Reconnects to a held seat do not pass through it.
type JoinGate interface {
	OnJoinAttempt(r *Room, req *JoinRequest) error
}

// Joiner is told that a player took a new seat.
type Joiner interface {
	OnJoin(r *Room, p *Player)
}

// Dropper is told that a player's connection ended without leaving: its
// seat is held for Kind.SeatReservation.
type Dropper interface {
	OnDrop(r *Room, p *Player)
}

// Reconnector is told that a dropped player is back in its seat, on a new
// connection (p.ID changed), or attached again to the room after the room
// moved to another node.
type Reconnector interface {
	OnReconnect(r *Room, p *Player)
}

// Leaver is told that a player is gone for good, and why.
type Leaver interface {
	OnLeave(r *Room, p *Player, why LeaveReason)
}

// Ticker is called at Kind.TickRate.
type Ticker interface {
	OnTick(r *Room, t Tick)
}

// Receiver receives any other message sent to the room: Manager.Tell,
// Room.After and Room.Every, other actors.
type Receiver interface {
	Receive(r *Room, msg any)
}

// Snapshotter gives the state of the room, for the store: a room whose
// Handler is one survives the loss of its node (see Kind.SnapshotInterval).
// The runtime saves the seats itself (who sits where, their tokens and join
// metadata): the snapshot is the game's own state.
type Snapshotter interface {
	Snapshot(r *Room) ([]byte, error)
}

// Disposer is told that the room is going away for good: empty for
// Kind.EmptyTimeout, or closed by Room.Close.
type Disposer interface {
	OnDispose(r *Room)
}

// Tick is one run of a room's clock.
type Tick struct {
	// N counts the ticks of this activation, from 1.
	N int64
	// At is when the tick was due.
	At time.Time
	// Delta is the time since the previous tick ran (the period for the
	// first): integrate by it, not by the nominal period, and a late tick
	// moves the game by the time that really passed.
	Delta time.Duration
	// Late is how long after At the tick ran.
	Late time.Duration
}
