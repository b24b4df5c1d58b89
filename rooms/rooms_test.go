package rooms_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/wire"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

func recorderKind(name string, adjust ...func(*rooms.Kind)) rooms.Kind {
	k := rooms.Kind{Name: name, New: func() rooms.Handler { return &recorder{} }}
	for _, f := range adjust {
		f(&k)
	}
	return k
}

func TestJoinMessagesAndLeave(t *testing.T) {
	s := newServer(t, recorderKind("arena", func(k *rooms.Kind) { k.MaxPlayers = 4 }))
	ann, bob := s.dial(t, "ann"), s.dial(t, "bob")
	ja := ann.Join("arena", "r1")
	if ja["seat"] != 0.0 || ja["token"] == "" || ja["room"] != "arena/r1" || ja["again"] != false {
		t.Fatalf("ann's joined: %v", ja)
	}
	ann.Expect("join:0:ann")
	jb := bob.Join("arena", "r1")
	if jb["seat"] != 1.0 {
		t.Fatalf("bob's joined: %v", jb)
	}
	ann.Expect("join:1:bob")
	bob.Expect("join:1:bob")

	bob.Send(map[string]string{"op": "say", "text": "hi"})
	ann.Expect("1:hi")
	bob.Expect("1:hi")

	// A handler error is answered to the sender only; the room carries on.
	ann.Send(map[string]string{"op": "say", "text": "fail"})
	if got := ann.Read(); got != `{"code":"no_way","error":"asked to fail","type":"error"}` {
		t.Fatalf("error envelope: %s", got)
	}
	ann.Send(map[string]string{"op": "say", "text": "still"})
	bob.Expect("0:still")

	bob.Send(map[string]string{"op": "leave"})
	ann.Expect("leave:1:left")
	// After leaving, bob is no longer a player.
	bob.Send(map[string]string{"op": "say", "text": "ghost"})
	if ev := bob.Event("error"); ev["err"] != rooms.ErrNotPlayer.Error() {
		t.Fatalf("say after leave: %v", ev)
	}
	ann.Send(map[string]string{"op": "say", "text": "next"})
	ann.Expect("0:next")
}

// TestLastWordsThenLeaveAndClose: what a player sends just before it leaves
// and closes its connection (a game's leave button) reaches the room in the
// order sent, before the close, even when the room is busy. The close's
// Terminated is a system message, which overtakes user messages in a
// mailbox: a CI run of the game's TestLeaveFreesTheSeat saw the leave lost
// so, and the seat held, offline, for the seat reservation (15 s); the
// player's last message was lost the same way. Here the room is stopped in
// a handler until the connection is gone, so that all three wait in its
// mailbox together.
func TestLastWordsThenLeaveAndClose(t *testing.T) {
	h := &recorder{hold: make(chan struct{}), held: make(chan struct{})}
	s := newServer(t, rooms.Kind{Name: "arena", New: func() rooms.Handler { return h }})
	ann, bob := s.dial(t, "ann"), s.dial(t, "bob")
	ann.Join("arena", "r1")
	ann.Expect("join:0:ann")
	bobID := bob.Join("arena", "r1")["id"].(string)
	ann.Expect("join:1:bob")

	ann.Send(map[string]string{"op": "say", "text": "block"})
	select {
	case <-h.held:
	case <-time.After(testTimeout):
		t.Fatal("the room did not take the message that stops it")
	}
	bob.Send(map[string]string{"op": "say", "text": "bye"})
	bob.Send(map[string]string{"op": "quit"}) // leave, then close
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for { // read up to the close, which the client answers
		if _, _, err := bob.Conn.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("bob's quit: %v, want a close with 1000", err)
			}
			break
		}
	}
	waitFor(t, "bob's connection gone", func() bool {
		err := s.Post(wsactor.ID(bobID), wsactor.Text("?"))
		return errors.Is(err, wsactor.ErrConnectionNotFound)
	})
	close(h.hold)

	for _, want := range []string{"0:block", "1:bye", "leave:1:left"} {
		if got := ann.Read(); got != want {
			t.Fatalf("ann got %q, want %q: bob's last message, his leave, in that order, and no drop", got, want)
		}
	}
	carol := s.dial(t, "carol")
	if j := carol.Join("arena", "r1"); j["seat"] != 1.0 {
		t.Fatalf("the seat bob gave up was not free: carol joined %v", j)
	}
}

// TestLateLeaveGivesUpAHeldSeat: a leave that reaches the room after it
// handled the end of the player's connection (from another node the two
// take different ways) still gives the held seat up; one from a connection
// that is not the seat's any more does nothing.
func TestLateLeaveGivesUpAHeldSeat(t *testing.T) {
	s := newServer(t, recorderKind("arena"))
	ann, bob := s.dial(t, "ann"), s.dial(t, "bob")
	ann.Join("arena", "r1")
	ann.Expect("join:0:ann")
	bobID := bob.Join("arena", "r1")["id"].(string)
	ann.Expect("join:1:bob")
	_ = bob.Conn.CloseNow()
	ann.Expect("drop:1")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// A leave from a connection the room never seated, then bob's own.
	if err := s.Rooms().Tell(ctx, "arena", "r1", &wire.RoomLeave{Conn: "arena.AAAAAAAAAAAAAAAAAAAAAA"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Rooms().Tell(ctx, "arena", "r1", &wire.RoomLeave{Conn: bobID}); err != nil {
		t.Fatal(err)
	}
	if got := ann.Read(); got != "leave:1:left" {
		t.Fatalf("ann got %q after bob's late leave, want leave:1:left", got)
	}
}

// TestNewestConnectionKeepsTheSeat: a second connection with a seat's token
// takes the seat from the first (another tab), which is told; but a
// request with the token that reaches the room after a newer one (a tab
// opened earlier, or an attempt its client gave up and sent to another
// node meanwhile, whose request came late) is refused with ErrSeatTaken,
// and the newer connection keeps the seat. The game's failover test saw
// the page's abandoned attempt take its seat from its live connection.
func TestNewestConnectionKeepsTheSeat(t *testing.T) {
	s := newServer(t, recorderKind("arena"))
	ann, carl := s.dial(t, "ann"), s.dial(t, "carl")
	asked := time.Now().UnixNano() // ann's first tab asks
	j := ann.Join("arena", "r1")
	token, annID := j["token"].(string), j["id"].(string)
	carl.Join("arena", "r1")
	carl.Expect("join:1:carl")

	// Ann's second tab takes the seat; her first is told.
	tab := s.dial(t, "ann")
	tab.Send(map[string]string{"op": "reconnect", "token": token})
	if j := tab.Event("joined"); j["seat"] != 0.0 || j["again"] != true {
		t.Fatalf("the second tab's reconnect: %v", j)
	}
	if ev := ann.Event("left"); ev["why"] != string(rooms.LeaveKicked) {
		t.Fatalf("the first tab was told %v, want kicked", ev)
	}
	carl.Expect("back:0")

	// The first tab's request comes again, late: it asked before the
	// second tab did.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Rooms().Tell(ctx, "arena", "r1", &wire.RoomJoin{Conn: annID, Token: token, Asked: asked}); err != nil {
		t.Fatal(err)
	}
	tab.Send(map[string]string{"op": "say", "text": "still mine"})
	carl.Expect("0:still mine") // the room takes it from the second tab, its player
}

func TestJoinErrors(t *testing.T) {
	s := newServer(t,
		recorderKind("duo", func(k *rooms.Kind) { k.MaxPlayers = 2 }),
		rooms.Kind{Name: "gated", New: func() rooms.Handler { return &gate{} }},
	)
	a := s.dial(t, "a")
	a.Send(map[string]string{"op": "join", "kind": "nope", "name": "r"})
	if ev := a.Event("error"); !containsAll(ev["err"], "unknown room kind", "nope") {
		t.Fatalf("unknown kind: %v", ev)
	}
	a.Send(map[string]string{"op": "join", "kind": "duo", "name": "bad/name"})
	if ev := a.Event("error"); !containsAll(ev["err"], "invalid room name") {
		t.Fatalf("bad name: %v", ev)
	}
	a.Send(map[string]string{"op": "reconnect", "token": "garbage"})
	if ev := a.Event("error"); ev["err"] != rooms.ErrBadToken.Error() {
		t.Fatalf("malformed token: %v", ev)
	}

	a.Join("duo", "full")
	s.dial(t, "b").Join("duo", "full")
	c := s.dial(t, "c")
	c.Send(map[string]string{"op": "join", "kind": "duo", "name": "full"})
	if ev := c.Event("failed"); ev["code"] != "full" {
		t.Fatalf("third player of a two-seat room: %v", ev)
	}

	// The room's own refusal reaches the client with its code and reason.
	d := s.dial(t, "mallory")
	d.Send(map[string]string{"op": "join", "kind": "gated", "name": "g"})
	if ev := d.Event("failed"); ev["code"] != "banned" || !containsAll(ev["err"], "no mallories") {
		t.Fatalf("refused join: %v", ev)
	}
	e := s.dial(t, "eve")
	e.Join("gated", "g")
}

type gate struct{ recorder }

func (g *gate) OnJoinAttempt(r *rooms.Room, req *rooms.JoinRequest) error {
	if req.Meta["name"] == "mallory" {
		return rooms.Refuse("banned", "no mallories")
	}
	return nil
}

func containsAll(v any, parts ...string) bool {
	s, _ := v.(string)
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestDropReconnectAndExpiry: a player whose connection ends keeps its seat
// for the reservation window and takes it back with its token; after the
// window, the seat is gone.
func TestDropReconnectAndExpiry(t *testing.T) {
	s := newServer(t, recorderKind("arena", func(k *rooms.Kind) { k.SeatReservation = 400 * time.Millisecond }))
	ann, bob := s.dial(t, "ann"), s.dial(t, "bob")
	ann.Join("arena", "r")
	tok := bob.Join("arena", "r")["token"].(string)
	ann.Expect("join:1:bob")
	_ = bob.Conn.Close(websocket.StatusGoingAway, "reload")
	ann.Expect("drop:1")

	again := s.dial(t, "bob-again")
	again.Send(map[string]string{"op": "reconnect", "token": tok})
	j := again.Event("joined")
	if j["seat"] != 1.0 || j["again"] != true || j["token"] != "" {
		t.Fatalf("reconnect: %v", j)
	}
	ann.Expect("back:1")
	again.Send(map[string]string{"op": "say", "text": "back"})
	ann.Expect("1:back")

	// A token is for its room's seat only: a forged secret, or another
	// room's token, takes nothing.
	x := s.dial(t, "x")
	x.Send(map[string]string{"op": "reconnect", "token": tok[:len(tok)-4] + "AAAA"})
	if ev := x.Event("failed"); ev["code"] != "bad_token" {
		t.Fatalf("forged token: %v", ev)
	}

	// Past the window the seat is released.
	_ = again.Conn.Close(websocket.StatusGoingAway, "")
	ann.Expect("drop:1")
	ann.Expect("leave:1:seat_expired")
	late := s.dial(t, "late")
	late.Send(map[string]string{"op": "reconnect", "token": tok})
	if ev := late.Event("failed"); ev["code"] != "bad_token" {
		t.Fatalf("reconnect after the window: %v", ev)
	}
}

// TestJoinOrCreateRace: 50 clients racing for quick play in rooms of 8 fill
// 7 rooms, none over 8.
func TestJoinOrCreateRace(t *testing.T) {
	s := newServer(t, recorderKind("quick", func(k *rooms.Kind) { k.MaxPlayers = 8 }))
	const n = 50
	clients := make([]*roomstest.Client, n)
	for i := range clients {
		clients[i] = s.dial(t, fmt.Sprintf("p%d", i))
	}
	var wg sync.WaitGroup
	seats := make(map[string][]float64)
	var mu sync.Mutex
	for _, c := range clients {
		wg.Go(func() {
			c.Send(map[string]any{"op": "quick", "kind": "quick", "filter": map[string]string{"mode": "ffa"}})
			j := c.Event("joined")
			mu.Lock()
			seats[j["room"].(string)] = append(seats[j["room"].(string)], j["seat"].(float64))
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(seats) != 7 {
		t.Fatalf("%d rooms for %d players of rooms of 8, want 7: %v", len(seats), n, seats)
	}
	for room, ss := range seats {
		if len(ss) > 8 {
			t.Fatalf("room %s has %d players", room, len(ss))
		}
		slices.Sort(ss)
		if len(slices.Compact(ss)) != len(ss) {
			t.Fatalf("room %s gave a seat twice: %v", room, ss)
		}
	}
	// A room publishes its listing after it answers the join (through its
	// saver, one write at a time), so the last joins may show a moment later.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	waitFor(t, "the listing of 7 rooms and 50 players", func() bool {
		ls, err := s.Rooms().List(ctx, "quick", map[string]string{"mode": "ffa"})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, l := range ls {
			total += l.Players
		}
		return len(ls) == 7 && total == n
	})
}

// TestTicks: ticks come one at a time, numbered, no sooner than the period.
func TestTicks(t *testing.T) {
	ticks := make(chan rooms.Tick, 100)
	s := newServer(t, rooms.Kind{Name: "clock", TickRate: 50, New: func() rooms.Handler { return &recorder{ticks: ticks} }})
	s.dial(t, "a").Join("clock", "c")
	var got []rooms.Tick
	for len(got) < 20 {
		select {
		case tk := <-ticks:
			got = append(got, tk)
		case <-time.After(testTimeout):
			t.Fatalf("only %d ticks", len(got))
		}
	}
	for i, tk := range got {
		if tk.N != got[0].N+int64(i) || tk.Late < 0 {
			t.Fatalf("tick %d: %+v", i, tk)
		}
		if i > 0 && tk.At.Before(got[i-1].At.Add(20*time.Millisecond-time.Millisecond)) {
			t.Fatalf("tick %d due at %v, %v after the previous: sooner than the period", i, tk.At, tk.At.Sub(got[i-1].At))
		}
	}
	if st := s.Rooms().Stats(); st.TickLateness.Count < 20 {
		t.Fatalf("tick lateness counted %d ticks", st.TickLateness.Count)
	}
}

func TestNotAPlayer(t *testing.T) {
	s := newServer(t, recorderKind("arena"))
	a := s.dial(t, "a")
	a.Send(map[string]string{"op": "say", "text": "x"})
	if ev := a.Event("error"); ev["err"] != rooms.ErrNotPlayer.Error() {
		t.Fatalf("say without a room: %v", ev)
	}
}
