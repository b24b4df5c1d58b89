package wsactor_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// duel is a room of two: it relays each player's moves to both, numbered by
// seat. Its methods run one at a time in the room's actor.
type duel struct{ moves int }

func (d *duel) OnJoin(r *wsactor.Room, p *wsactor.Player) {
	if len(r.Players()) == 2 {
		r.Lock() // full: no more joins
		r.Broadcast(wsactor.Text("start"))
	}
}

func (d *duel) OnMessage(r *wsactor.Room, p *wsactor.Player, m wsactor.Message) error {
	d.moves++
	r.Broadcast(wsactor.Text(fmt.Sprintf("move %d by seat %d: %s", d.moves, p.Seat, m.Text())))
	return nil
}

// duelist is a connection: it asks for a seat when it opens, relays its
// client's messages to the room, and learns its seat in Receive.
type duelist struct{ s *wsactor.Server }

type duelKey struct{}

func (h *duelist) OnOpen(c *wsactor.Conn) error {
	// Any open duel, or a new one; the answer comes to Receive.
	return h.s.Rooms().JoinOrCreate(c, "duel", nil, map[string]string{"name": c.Query().Get("name")})
}

func (h *duelist) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	room, _ := c.Value(duelKey{}).(*wsactor.RoomRef)
	if room == nil {
		return c.SendText("not seated yet")
	}
	return room.Send(c, m)
}

func (h *duelist) Receive(c *wsactor.Conn, msg any) {
	switch m := msg.(type) {
	case wsactor.RoomJoined:
		c.SetValue(duelKey{}, m.Room) // survives handler restarts
		_ = c.SendText(fmt.Sprintf("seat %d", m.Seat))
	case wsactor.RoomJoinFailed:
		_ = c.Close(4000, m.Err.Error())
	}
}

func ExampleServer_Rooms() {
	s := wsactor.New(wsactor.Options{})
	s.Rooms().Define(wsactor.RoomKind{Name: "duel", MaxPlayers: 2, New: func() wsactor.RoomHandler { return &duel{} }})
	s.Handle("/play", func() wsactor.Handler { return &duelist{s: s} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	read := func(c *websocket.Conn) string {
		_, b, _ := c.Read(ctx)
		return string(b)
	}
	ann, _, _ := websocket.Dial(ctx, ts.URL+"/play?name=Ann", nil)
	defer ann.CloseNow()
	fmt.Println("Ann:", read(ann))
	bob, _, _ := websocket.Dial(ctx, ts.URL+"/play?name=Bob", nil)
	defer bob.CloseNow()
	fmt.Println("Bob:", read(bob))
	fmt.Println("Ann:", read(ann), "/ Bob:", read(bob))

	_ = bob.Write(ctx, websocket.MessageText, []byte("e4"))
	fmt.Println("Ann:", read(ann))
	fmt.Println("Bob:", read(bob))

	// Output:
	// Ann: seat 0
	// Bob: seat 1
	// Ann: start / Bob: start
	// Ann: move 1 by seat 1: e4
	// Bob: move 1 by seat 1: e4
}
