package rooms

import (
	"fmt"
	"regexp"
	"time"
)

// Kind describes a kind of room: how to make one, and its rules. Define
// every kind once, before serving, on every node of a cluster (a node that
// does not know a kind cannot host its rooms). The zero value of each option
// takes the default documented on it.
type Kind struct {
	// Name names the kind: 1–64 characters, a-z, 0-9, '_' and '-', starting
	// with a letter or a digit.
	Name string
	// New makes the Handler of one activation of a room, and of each
	// restart after a panic.
	New func() Handler
	// MaxPlayers bounds the seats, dropped players' held seats included.
	// Default 0: no bound.
	MaxPlayers int
	// TickRate is how many times a second the room's OnTick runs (Ticker).
	// Each tick is scheduled when the previous one has been handled, so
	// ticks never pile up behind a slow one; a late tick is reported in
	// Tick.Late. Default 0: no ticks. At most 1000.
	TickRate float64
	// SeatReservation is how long the seat of a player whose connection
	// ended is held for it to reconnect (OnDrop, then OnReconnect or
	// OnLeave with LeaveSeatExpired). Default 15 s; negative: seats are
	// not held, a player whose connection ends leaves (LeaveClosed).
	SeatReservation time.Duration
	// EmptyTimeout disposes of a room that has had no player, not even a
	// held seat, for this long (OnDispose; its snapshot is deleted).
	// Default 30 s; negative: a room is never disposed for being empty.
	EmptyTimeout time.Duration
	// SnapshotInterval is how often the state of a room whose Handler is a
	// Snapshotter is saved to the store, when it changed (a join, a leave, a
	// message, a tick, or MarkChanged). A room is also saved when it asks
	// (Room.SaveSnapshot) and when its activation stops. Default 1 s;
	// negative: only then.
	SnapshotInterval time.Duration
	// MaxSnapshotSize bounds a snapshot, in bytes: a larger one is not
	// saved, the failure is logged and the room keeps running. Default 1 MiB.
	MaxSnapshotSize int
	// Restart says what happens when the room's code panics. Default
	// RestartFromMemory.
	Restart RestartPolicy
	// MaxRestarts within RestartWithin bound the restarts; one more panic
	// closes the room (its players get LeaveRoomFailed; its last snapshot is
	// kept). Defaults 3 and 1 minute.
	MaxRestarts   int
	RestartWithin time.Duration
}

// RestartPolicy is how a room whose code panicked starts again. The message
// that panicked is not delivered again in any case.
type RestartPolicy int

const (
	// RestartFromMemory makes a new Handler and gives its OnCreate the
	// snapshot the panicking Handler value takes of itself (a Snapshotter),
	// so that nothing since the last saved snapshot is lost; a Handler that
	// is not a Snapshotter starts empty. Players keep their seats.
	RestartFromMemory RestartPolicy = iota
	// RestartFromSnapshot makes a new Handler from the last snapshot saved
	// to the store: the state a panic may have left inconsistent is thrown
	// away, and what changed since that snapshot with it.
	RestartFromSnapshot
	// CloseOnPanic closes the room at the first panic.
	CloseOnPanic
)

// Defaults of Kind's options.
const (
	DefaultSeatReservation  = 15 * time.Second
	DefaultEmptyTimeout     = 30 * time.Second
	DefaultSnapshotInterval = time.Second
	DefaultMaxSnapshotSize  = 1 << 20
	DefaultMaxRestarts      = 3
	DefaultRestartWithin    = time.Minute
	// MaxTickRate bounds Kind.TickRate.
	MaxTickRate = 1000
)

var (
	kindPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// ValidName reports whether name may name a room: 1–128 characters, A-Z,
// a-z, 0-9, '_', '.' and '-', starting with a letter or a digit.
func ValidName(name string) bool { return namePattern.MatchString(name) }

func (k Kind) withDefaults() Kind {
	if k.SeatReservation == 0 {
		k.SeatReservation = DefaultSeatReservation
	}
	if k.EmptyTimeout == 0 {
		k.EmptyTimeout = DefaultEmptyTimeout
	}
	if k.SnapshotInterval == 0 {
		k.SnapshotInterval = DefaultSnapshotInterval
	}
	if k.MaxSnapshotSize <= 0 {
		k.MaxSnapshotSize = DefaultMaxSnapshotSize
	}
	if k.MaxRestarts <= 0 {
		k.MaxRestarts = DefaultMaxRestarts
	}
	if k.RestartWithin <= 0 {
		k.RestartWithin = DefaultRestartWithin
	}
	return k
}

func (k Kind) validate() error {
	switch {
	case !kindPattern.MatchString(k.Name):
		return fmt.Errorf("rooms: kind name %q: use 1-64 characters a-z, 0-9, '_' and '-', starting with a letter or digit", k.Name)
	case k.New == nil:
		return fmt.Errorf("rooms: kind %q has no New", k.Name)
	case k.MaxPlayers < 0:
		return fmt.Errorf("rooms: kind %q: MaxPlayers %d is negative", k.Name, k.MaxPlayers)
	case k.TickRate < 0 || k.TickRate > MaxTickRate:
		return fmt.Errorf("rooms: kind %q: TickRate %v is not within 0-%d", k.Name, k.TickRate, MaxTickRate)
	}
	return nil
}

// tickPeriod is the time between ticks, or 0.
func (k Kind) tickPeriod() time.Duration {
	if k.TickRate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / k.TickRate)
}
