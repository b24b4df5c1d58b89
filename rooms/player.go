package rooms

import (
	"errors"
	"fmt"
	"time"

	"github.com/wsactor/wsactor/actors"
)

// Player is a seat of a room and who holds it. The room's code may read it
// and keep pointers to it for as long as the player stays; it must not
// change the fields.
type Player struct {
	// Seat is the player's seat, from 0: it stays the same across
	// reconnects and moves of the room.
	Seat int
	// ID is the player's current connection. A reconnect changes it.
	ID actors.ID
	// User is the connection's authenticated user, or "".
	User string
	// Meta is what the player joined with (a display name...).
	Meta map[string]string
	// Online is false while the player's connection is gone and its seat
	// held.
	Online bool
	// Joined is when the player took the seat.
	Joined time.Time

	tokenHash  [32]byte
	asked      int64 // when its connection asked for the seat (wire.RoomJoin.asked), or 0: unknown
	droppedAt  time.Time
	expiry     *time.Timer
	generation uint64 // a seat reused later gets a new generation, so a stale expiry does nothing
}

// JoinRequest is a connection asking for a seat (JoinGate).
type JoinRequest struct {
	// ID is the connection's.
	ID actors.ID
	// User is its authenticated user, or "".
	User string
	// Meta is what it asks to join with; OnJoinAttempt may change it.
	Meta map[string]string
}

// LeaveReason says why a player left.
type LeaveReason string

// The reasons a player leaves.
const (
	// LeaveLeft: the player asked (Ref.Leave).
	LeaveLeft LeaveReason = "left"
	// LeaveClosed: its connection ended and the kind holds no seats.
	LeaveClosed LeaveReason = "closed"
	// LeaveSeatExpired: it dropped and did not reconnect within
	// Kind.SeatReservation.
	LeaveSeatExpired LeaveReason = "seat_expired"
	// LeaveKicked: the room removed it (Room.Kick).
	LeaveKicked LeaveReason = "kicked"
	// LeaveRoomClosed: the room closed (Room.Close).
	LeaveRoomClosed LeaveReason = "room_closed"
	// LeaveRoomFailed: the room's code panicked more than its restart
	// budget allows, or the room lost its store fence to a newer
	// activation.
	LeaveRoomFailed LeaveReason = "room_failed"
)

// Errors of joining and using rooms. JoinFailed.Err wraps one of them; a
// Refusal from OnJoinAttempt is returned as is.
var (
	// ErrUnknownKind: no kind of that name was defined (on the node that
	// hosts the room).
	ErrUnknownKind = errors.New("rooms: unknown room kind")
	// ErrBadName: the room name breaks ValidName.
	ErrBadName = errors.New("rooms: invalid room name")
	// ErrFull: every seat is taken.
	ErrFull = errors.New("rooms: room full")
	// ErrLocked: the room takes no new players (Room.Lock).
	ErrLocked = errors.New("rooms: room locked")
	// ErrBadToken: the reconnection token is malformed, unknown, expired,
	// or for another room.
	ErrBadToken = errors.New("rooms: invalid reconnection token")
	// ErrUnavailable: the room could not be reached or activated (its
	// store is unreachable, its OnCreate failed, it is closing).
	ErrUnavailable = errors.New("rooms: room unavailable")
	// ErrNotPlayer: the connection has no seat in that room.
	ErrNotPlayer = errors.New("rooms: not a player of this room")
	// ErrClosed: the room was closed or disposed of.
	ErrClosed = errors.New("rooms: room closed")
	// ErrSeatTaken: a reconnection with the token of a seat that a
	// connection which asked later holds (another tab, or this client's
	// newer attempt): the newest keeps the seat.
	ErrSeatTaken = errors.New("rooms: a newer connection holds the seat")
)

// Refusal is an application's refusal of a join (JoinGate), told to the
// client as its code and reason.
type Refusal struct {
	Code   string
	Reason string
}

// Refuse returns a Refusal for OnJoinAttempt.
func Refuse(code, reason string) *Refusal { return &Refusal{Code: code, Reason: reason} }

// Error returns the code and reason.
func (r *Refusal) Error() string { return fmt.Sprintf("rooms: join refused: %s: %s", r.Code, r.Reason) }

// Wire codes of the join errors, in RoomJoined.code and JoinFailed.
const (
	codeUnknownKind = "unknown_kind"
	codeBadName     = "bad_name"
	codeFull        = "full"
	codeLocked      = "locked"
	codeBadToken    = "bad_token"
	codeSeatTaken   = "seat_taken"
	codeUnavailable = "unavailable"
	codeRefused     = "refused"
)

// joinError is what a join error becomes on the wire, and back.
func joinErrorCode(err error) (code, reason string) {
	var r *Refusal
	switch {
	case errors.As(err, &r):
		return r.Code, r.Reason
	case errors.Is(err, ErrUnknownKind):
		return codeUnknownKind, err.Error()
	case errors.Is(err, ErrBadName):
		return codeBadName, err.Error()
	case errors.Is(err, ErrFull):
		return codeFull, "the room is full"
	case errors.Is(err, ErrLocked):
		return codeLocked, "the room takes no new players"
	case errors.Is(err, ErrBadToken):
		return codeBadToken, "invalid reconnection token"
	case errors.Is(err, ErrSeatTaken):
		return codeSeatTaken, "a newer connection holds the seat"
	case errors.Is(err, ErrUnavailable):
		return codeUnavailable, err.Error()
	}
	return codeRefused, err.Error()
}

func joinErrorFromCode(code, reason string) error {
	switch code {
	case codeUnknownKind:
		return fmt.Errorf("%w (%s)", ErrUnknownKind, reason)
	case codeBadName:
		return fmt.Errorf("%w (%s)", ErrBadName, reason)
	case codeFull:
		return ErrFull
	case codeLocked:
		return ErrLocked
	case codeBadToken:
		return ErrBadToken
	case codeSeatTaken:
		return ErrSeatTaken
	case codeUnavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, reason)
	}
	return &Refusal{Code: code, Reason: reason}
}
