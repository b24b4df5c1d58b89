package wsactor

import "github.com/wsactor/wsactor/rooms"

// Rooms: stateful actors addressed by kind and name, with players who are
// connections (see package rooms and Server.Rooms). The types a handler
// meets most, re-exported so that applications import only wsactor; the
// optional room interfaces (rooms.Ticker, rooms.Snapshotter...) need no
// import: a room handler just has the methods.
type (
	// RoomKind describes a kind of room: its Handler factory and its rules.
	RoomKind = rooms.Kind
	// RoomHandler is a room's code; see rooms.Handler.
	RoomHandler = rooms.Handler
	// Room is a live room, as its Handler sees it.
	Room = rooms.Room
	// Player is a seat of a room and who holds it.
	Player = rooms.Player
	// Tick is one run of a room's clock.
	Tick = rooms.Tick
	// RoomRef is a connection's handle on a room it plays in.
	RoomRef = rooms.Ref
	// RoomJoined reaches a connection's Receive when it has a seat.
	RoomJoined = rooms.Joined
	// RoomJoinFailed reaches a connection's Receive when a join failed.
	RoomJoinFailed = rooms.JoinFailed
	// RoomLeft reaches a connection's Receive when its room let it go.
	RoomLeft = rooms.Left
	// RoomListing is what listing says of a room.
	RoomListing = rooms.Listing
	// LeaveReason says why a player left a room.
	LeaveReason = rooms.LeaveReason
)
