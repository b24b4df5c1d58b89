package gameserver

import (
	"errors"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
)

// player is one connection of the game: it asks for a seat when it opens,
// tells its client what it got, and passes its inputs to its room.
type player struct {
	*wsactor.Router
	g *Game
}

// Values a connection keeps for its whole life, across handler restarts.
type (
	nameKey  struct{} // its display name
	tokenKey struct{} // the reconnection token of its seat
	roomKey  struct{} // its *wsactor.RoomRef, once seated
)

func (g *Game) router() *wsactor.Router {
	r := &wsactor.Router{}
	wsactor.On(r, "input", g.input)
	wsactor.On(r, "leave", g.leave)
	return r
}

// Connect checks the query: ?name=, and ?room= (join that room) or ?token=
// (take back a seat). A browser cannot read the status of a refused
// upgrade, so a bad query closes at once with 4400 and the reason.
func (p *player) Connect(hs *wsactor.Handshake) wsactor.Decision {
	q := hs.Query()
	name, err := CleanName(q.Get("name"))
	if err != nil {
		return wsactor.AcceptThenClose(CloseBadRequest, "bad_name: "+err.Error())
	}
	if room := q.Get("room"); room != "" && !rooms.ValidName(room) {
		return wsactor.AcceptThenClose(CloseBadRequest, "bad_room: room names are 1-128 of A-Z a-z 0-9 _ . -")
	}
	hs.SetValue(nameKey{}, name)
	return wsactor.Accept()
}

// OnOpen asks for the seat: the token's, the named room's, or quick play's
// (the fullest open room, or a new one). The answer comes to Receive.
func (p *player) OnOpen(c *wsactor.Conn) error {
	q := c.Query()
	meta := map[string]string{"name": c.Value(nameKey{}).(string)}
	var err error
	switch {
	case q.Get("token") != "":
		c.SetValue(tokenKey{}, q.Get("token"))
		err = p.g.rooms().Reconnect(c, q.Get("token"))
	case q.Get("room") != "":
		err = p.g.rooms().Join(c, KindName, q.Get("room"), meta)
	default:
		err = p.g.rooms().JoinOrCreate(c, KindName, map[string]string{"game": "coins"}, meta)
	}
	if errors.Is(err, rooms.ErrBadToken) || errors.Is(err, rooms.ErrUnknownKind) || errors.Is(err, rooms.ErrBadName) {
		return wsactor.CloseWith(CloseNoSeat, "bad_token: "+err.Error())
	}
	return err
}

// Receive tells the client about its seat.
func (p *player) Receive(c *wsactor.Conn, msg any) {
	switch m := msg.(type) {
	case wsactor.RoomJoined:
		c.SetValue(roomKey{}, m.Room)
		if m.Token != "" {
			c.SetValue(tokenKey{}, m.Token)
		}
		tok, _ := c.Value(tokenKey{}).(string)
		_ = c.SendJSON(WelcomeMsg{Type: "welcome", ID: c.ID(), Room: m.Room.Key().Name, Seat: m.Seat, Token: tok,
			Node: p.g.nodeName, Again: m.Reconnected, Width: Width, Height: Height, Speed: Speed})
	case wsactor.RoomJoinFailed:
		code, reason := CloseUnavailable, "unavailable: "+m.Err.Error()
		switch {
		case errors.Is(m.Err, rooms.ErrFull), errors.Is(m.Err, rooms.ErrLocked):
			code, reason = CloseRoomFull, "room_full: the room has no free seat"
		case errors.Is(m.Err, rooms.ErrBadToken):
			code, reason = CloseNoSeat, "bad_token: the seat is gone, or the token is not valid"
		case errors.Is(m.Err, rooms.ErrSeatTaken):
			// An older tab, or an attempt the page gave up whose request
			// came late: the newer connection keeps the seat.
			code, reason = CloseKicked, "seat_taken: a newer tab or window holds the seat"
		}
		_ = c.Close(code, reason)
	case wsactor.RoomLeft:
		c.SetValue(roomKey{}, nil)
		_ = c.Close(CloseKicked, "left: "+string(m.Why))
	}
}

// input passes a checked input to the player's room.
func (g *Game) input(c *wsactor.Conn, in InputMsg) error {
	if in.DX < -1 || in.DX > 1 || in.DY < -1 || in.DY > 1 {
		return wsactor.MessageError(CodeBadInput, "dx and dy must be -1, 0 or 1")
	}
	room, _ := c.Value(roomKey{}).(*wsactor.RoomRef)
	if room == nil {
		return wsactor.MessageError(CodeNoSeat, "no seat yet: wait for the welcome")
	}
	m, err := wsactor.JSON(in)
	if err != nil {
		return err
	}
	switch err := room.Send(c, m); {
	case errors.Is(err, rooms.ErrUnavailable):
		return wsactor.MessageError(CodeMovedRoom, "the room is moving to another node; send again")
	case err != nil:
		return wsactor.MessageError(CodeNoSeat, "no seat: %v", err)
	}
	return nil
}

// leave gives up the player's seat at once ({"type":"leave"}): the others
// see it go now rather than offline until its seat expires. The connection
// closes with 4410 "left: left".
func (g *Game) leave(c *wsactor.Conn, _ struct{}) error {
	room, _ := c.Value(roomKey{}).(*wsactor.RoomRef)
	if room == nil {
		return wsactor.MessageError(CodeNoSeat, "no seat to leave")
	}
	c.SetValue(roomKey{}, nil)
	_ = room.Leave(c)
	_ = c.Close(CloseKicked, "left: left")
	return nil
}
