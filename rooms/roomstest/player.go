package roomstest

import (
	"encoding/json"
	"errors"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/transport"
)

// Player is a connection handler for tests of rooms: it speaks a small JSON
// protocol with its client, so that a test drives rooms from outside, over
// a real socket, as an application's client would.
//
//	client → server  {"op":"join","kind":…,"name":…}  {"op":"quick","kind":…,"filter":{…}}
//	                 {"op":"create","kind":…}  {"op":"reconnect","token":…}
//	                 {"op":"say","text":…}  {"op":"leave"}
//	                 {"op":"quit"} (leave, then close the connection at once)
//	server → client  {"ev":"joined","room":…,"seat":…,"token":…,"again":…,"id":…}
//	                 {"ev":"failed","room":…,"code":…,"err":…}  {"ev":"left","room":…,"why":…}
//	                 {"ev":"error","err":…}  and whatever the room sends.
//
// Every connection joins with meta {"name": ?name=}.
type Player struct{ m *rooms.Manager }

// NewPlayer returns a Player joining the rooms of m.
func NewPlayer(m *rooms.Manager) *Player { return &Player{m: m} }

type roomKey struct{}

type request struct {
	Op     string            `json:"op"`
	Kind   string            `json:"kind"`
	Name   string            `json:"name"`
	Token  string            `json:"token"`
	Text   string            `json:"text"`
	Filter map[string]string `json:"filter"`
}

// OnMessage does what the client asks.
func (h *Player) OnMessage(c *actors.Conn, m actors.Message) error {
	var req request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return err
	}
	meta := map[string]string{"name": c.Query().Get("name")}
	var err error
	switch req.Op {
	case "join":
		err = h.m.Join(c, req.Kind, req.Name, meta)
	case "quick":
		err = h.m.JoinOrCreate(c, req.Kind, req.Filter, meta)
	case "create":
		err = h.m.Create(c, req.Kind, req.Filter, meta)
	case "reconnect":
		err = h.m.Reconnect(c, req.Token)
	case "say", "leave", "quit":
		ref, _ := c.Value(roomKey{}).(*rooms.Ref)
		switch {
		case ref == nil:
			err = rooms.ErrNotPlayer
		case req.Op == "say":
			err = ref.Send(c, actors.Text(req.Text))
		default:
			err = ref.Leave(c)
			if err == nil && req.Op == "quit" {
				return c.Close(transport.StatusNormalClosure, "quit")
			}
		}
	default:
		err = errors.New("unknown op")
	}
	if err != nil {
		return c.SendJSON(map[string]string{"ev": "error", "err": err.Error()})
	}
	return nil
}

// Receive tells the client what its rooms said.
func (h *Player) Receive(c *actors.Conn, msg any) {
	switch m := msg.(type) {
	case rooms.Joined:
		c.SetValue(roomKey{}, m.Room)
		_ = c.SendJSON(map[string]any{"ev": "joined", "room": m.Room.String(), "seat": m.Seat, "token": m.Token, "again": m.Reconnected, "id": c.ID()})
	case rooms.JoinFailed:
		_ = c.SendJSON(map[string]any{"ev": "failed", "room": m.Room.String(), "code": ErrorCode(m.Err), "err": m.Err.Error()})
	case rooms.Left:
		_ = c.SendJSON(map[string]any{"ev": "left", "room": m.Room.String(), "why": m.Why})
	}
}

// ErrorCode names a join error for the client.
func ErrorCode(err error) string {
	var r *rooms.Refusal
	switch {
	case errors.As(err, &r):
		return r.Code
	case errors.Is(err, rooms.ErrFull):
		return "full"
	case errors.Is(err, rooms.ErrBadToken):
		return "bad_token"
	case errors.Is(err, rooms.ErrSeatTaken):
		return "seat_taken"
	case errors.Is(err, rooms.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, rooms.ErrLocked):
		return "locked"
	case errors.Is(err, rooms.ErrUnknownKind):
		return "unknown_kind"
	}
	return "unknown"
}
