package gameserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

const testTimeout = 10 * time.Second

type game struct {
	url string // http://…
}

func newGame(t *testing.T) *game {
	t.Helper()
	return newGameWith(t, wsactor.TransportOptions{})
}

// newGameWith is newGame with the connections' limits adjusted.
func newGameWith(t *testing.T, transport wsactor.TransportOptions) *game {
	t.Helper()
	g := &game{}
	mux, s := gameserver.New(gameserver.Config{AdminToken: "admin", Address: "test-node", Logger: slog.New(slog.DiscardHandler), Transport: transport})
	hs := httptest.NewServer(mux)
	g.url = hs.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	return g
}

// player is a test client of /ws/game.
type player struct {
	t *testing.T
	c *websocket.Conn
}

func (g *game) dial(t *testing.T, query string) *player {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.url, "http")+"/ws/game?"+query, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", query, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &player{t: t, c: c}
}

func (p *player) read() map[string]any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, b, err := p.c.Read(ctx)
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		p.t.Fatalf("%s is not JSON: %v", b, err)
	}
	return m
}

// next returns the next message of type typ, skipping others.
func (p *player) next(typ string) map[string]any {
	p.t.Helper()
	for {
		if m := p.read(); m["type"] == typ {
			return m
		}
	}
}

func (p *player) send(s string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// closed reads until the connection closes and returns its close error.
func (p *player) closed() websocket.CloseError {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, _, err := p.c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			p.t.Fatalf("want a close frame, got %v", err)
		}
		return ce
	}
}

// me returns the player's entry in a state message.
func me(state map[string]any, seat float64) map[string]any {
	for _, p := range state["players"].([]any) {
		if e := p.(map[string]any); e["seat"] == seat {
			return e
		}
	}
	return nil
}

func TestQuickPlayWelcomeAndState(t *testing.T) {
	g := newGame(t)
	ann := g.dial(t, "name=Ann")
	w := ann.next("welcome")
	if w["seat"] != 0.0 || w["room"] == "" || w["token"] == "" || w["node"] != "test-node" || !strings.HasPrefix(w["id"].(string), "game.") {
		t.Fatalf("welcome: %v", w)
	}
	st := ann.next("state")
	if st["tick"].(float64) < 1 || len(st["items"].([]any)) != gameserver.Coins {
		t.Fatalf("state: %v", st)
	}
	if e := me(st, 0); e == nil || e["name"] != "Ann" || e["online"] != true || e["score"] != 0.0 {
		t.Fatalf("Ann in the state: %v", st)
	}
	// A second quick play joins the same room.
	bob := g.dial(t, "name=Bob")
	wb := bob.next("welcome")
	if wb["room"] != w["room"] || wb["seat"] != 1.0 {
		t.Fatalf("Bob's welcome: %v (Ann's room %v)", wb, w["room"])
	}
	// The lobby lists it.
	resp, err := http.Get(g.url + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rooms []gameserver.RoomInfo
	if err := json.NewDecoder(resp.Body).Decode(&rooms); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for len(rooms) != 1 || rooms[0].Players != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("rooms: %+v", rooms)
		}
		time.Sleep(20 * time.Millisecond)
		rooms = listRooms(t, g)
	}
	if rooms[0].Room != w["room"] || rooms[0].Max != 8 || rooms[0].Node != "test-node" {
		t.Fatalf("rooms: %+v", rooms)
	}
}

func listRooms(t *testing.T, g *game) []gameserver.RoomInfo {
	t.Helper()
	resp, err := http.Get(g.url + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rooms []gameserver.RoomInfo
	if err := json.NewDecoder(resp.Body).Decode(&rooms); err != nil {
		t.Fatal(err)
	}
	return rooms
}

// TestMovementIsTheServers: input moves a dot at the game's speed, however
// many inputs the client sends; positions never come from the client.
func TestMovementIsTheServers(t *testing.T) {
	g := newGame(t)
	p := g.dial(t, "name=Zed")
	seat := p.next("welcome")["seat"].(float64)
	start := me(p.next("state"), seat)
	// Towards the farther wall: a dot that starts near one wall could
	// reach it in the first tick that moves it (up to 60 units when the
	// tick is late), and a dot at the wall does not move on.
	dir, claim := 1.0, 999
	if start["x"].(float64) > gameserver.Width/2 {
		dir, claim = -1.0, 1
	}
	for range 200 { // a flood of inputs, and a claimed position beyond the wall
		p.send(fmt.Sprintf(`{"type":"input","dx":%d,"dy":0,"x":%d,"y":0}`, int(dir), claim))
	}
	var first, last map[string]any
	var t0, t1 float64
	deadline := time.Now().Add(testTimeout)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the dot did not move for 10 ticks")
		}
		st := p.next("state")
		e := me(st, seat)
		if e["x"].(float64) == start["x"].(float64) {
			continue // the inputs have not reached the room yet
		}
		if first == nil {
			first, t0 = e, st["tick"].(float64)
			continue
		}
		last, t1 = e, st["tick"].(float64)
		if t1-t0 >= 10 {
			break
		}
	}
	dx := (last["x"].(float64) - first["x"].(float64)) * dir
	// Each tick moves at most Speed × its real time, which the server caps
	// at 250 ms; at 20 Hz that is Speed/20 on time.
	if max := gameserver.Speed * 0.25 * (t1 - t0); dx <= 0 || dx > max+0.5 || last["y"] != first["y"] {
		t.Fatalf("moved %.1f in %v ticks (at most %.1f allowed), y %v → %v", dx, t1-t0, max, first["y"], last["y"])
	}
	if x := last["x"].(float64); x < gameserver.PlayerRadius || x > gameserver.Width-gameserver.PlayerRadius {
		t.Fatalf("left the arena: x %v", last["x"])
	}
}

// TestBadInputs: each bad message gets an error envelope, and the player
// plays on.
func TestBadInputs(t *testing.T) {
	g := newGame(t)
	p := g.dial(t, "name=Bad")
	p.next("welcome")
	for _, tc := range []struct{ msg, code string }{
		{`{"type":"input","dx":`, "bad_json"},
		{`not json`, "bad_json"},
		{`{"dx":1}`, "missing_type"},
		{`{"type":"fly"}`, "unknown_type"},
		{`{"type":"input","dx":2,"dy":0}`, "bad_input"},
		{`{"type":"input","dx":0,"dy":-5}`, "bad_input"},
		{`{"type":"input","dx":"1","dy":0}`, "bad_payload"},
		{`{"type":"input","dx":0.5,"dy":0}`, "bad_payload"},
	} {
		p.send(tc.msg)
		if e := p.next("error"); e["code"] != tc.code {
			t.Fatalf("%s: got %v, want code %s", tc.msg, e, tc.code)
		} else if m, _ := e["message"].(string); m == "" {
			t.Fatalf("%s: got %v, want a \"message\" for people (the protocol's error envelope)", tc.msg, e)
		}
	}
	p.next("state") // still playing
	p.send(`{"type":"input","dx":0,"dy":1}`)
	p.next("state")
}

func TestHandshakeRefusals(t *testing.T) {
	g := newGame(t)
	for _, tc := range []struct {
		query string
		code  websocket.StatusCode
	}{
		{"name=" + strings.Repeat("x", 17), gameserver.CloseBadRequest},
		{"name=a%00b", gameserver.CloseBadRequest},
		{"name=a&room=bad/room", gameserver.CloseBadRequest},
		{"name=a&token=garbage", gameserver.CloseNoSeat},
	} {
		if ce := g.dial(t, tc.query).closed(); ce.Code != tc.code {
			t.Fatalf("%s: closed with %v, want %d", tc.query, ce, tc.code)
		}
	}
}

// TestNinthPlayer: a room of 8 refuses a ninth by name with 4409; quick play
// opens another room instead.
func TestNinthPlayer(t *testing.T) {
	g := newGame(t)
	for i := range gameserver.MaxPlayers {
		g.dial(t, fmt.Sprintf("name=p%d&room=full", i)).next("welcome")
	}
	if ce := g.dial(t, "name=ninth&room=full").closed(); ce.Code != gameserver.CloseRoomFull {
		t.Fatalf("ninth player: %v", ce)
	}
	if w := g.dial(t, "name=quick").next("welcome"); w["room"] == "full" {
		t.Fatalf("quick play put a ninth player in the full room: %v", w)
	}
}

// TestReconnectKeepsSeatAndScore: a player whose connection ends shows
// offline, and takes its seat and score back with its token; a forged token
// takes nothing.
func TestReconnectKeepsSeatAndScore(t *testing.T) {
	g := newGame(t)
	ann, bob := g.dial(t, "name=Ann"), g.dial(t, "name=Bob")
	wa := ann.next("welcome")
	wb := bob.next("welcome")
	if wa["room"] != wb["room"] {
		t.Fatalf("quick play put Ann (%v) and Bob (%v) in different rooms", wa, wb)
	}
	_ = ann.c.Close(websocket.StatusGoingAway, "reload")
	deadline := time.Now().Add(testTimeout)
	for {
		if time.Now().After(deadline) {
			t.Fatal("Ann never showed offline")
		}
		if e := me(bob.next("state"), wa["seat"].(float64)); e != nil && e["online"] == false {
			break
		}
	}
	forged := wa["token"].(string)
	forged = forged[:len(forged)-3] + "AAA"
	if ce := g.dial(t, "name=Ann&token="+forged).closed(); ce.Code != gameserver.CloseNoSeat {
		t.Fatalf("forged token: %v", ce)
	}
	again := g.dial(t, "name=Ann&token="+wa["token"].(string))
	w := again.next("welcome")
	if w["seat"] != wa["seat"] || w["room"] != wa["room"] || w["token"] != wa["token"] || w["again"] != true {
		t.Fatalf("welcome after reconnecting: %v (first: %v)", w, wa)
	}
	if e := me(again.next("state"), w["seat"].(float64)); e == nil || e["online"] != true || e["name"] != "Ann" {
		t.Fatalf("Ann after reconnecting: %v", e)
	}

}

// adminPost is POST /api/send with body, and the bearer token if not "".
func (g *game) adminPost(t *testing.T, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.url+"/api/send", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAdminSend(t *testing.T) {
	g := newGame(t)
	p := g.dial(t, "name=Pat")
	id := p.next("welcome")["id"].(string)
	post := func(token, body string) int { return g.adminPost(t, token, body).StatusCode }
	if code := post("", `{"to":"`+id+`","text":"hi"}`); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	if code := post("admin", `{"to":"nope","text":"hi"}`); code != http.StatusBadRequest {
		t.Fatalf("a bad ID: %d", code)
	}
	if code := post("admin", `{"to":"`+id+`","text":"hello Pat"}`); code != http.StatusNoContent {
		t.Fatalf("send: %d", code)
	}
	if n := p.next("notice"); n["text"] != "hello Pat" {
		t.Fatalf("notice: %v", n)
	}
}

// TestAdminSendErrors: the admin API's answers to bad requests, to a player
// who does not keep up (503 with Retry-After while the player's send queue
// is full), and to a connection that has closed (404). With the default
// policy, OverflowClose, whichever message finds the queue full closes the
// player (1013): the room's state, 20 a second, often comes first, and the
// notice then gets 404. So this player's connections drop what does not
// fit instead, and stay open.
func TestAdminSendErrors(t *testing.T) {
	g := newGameWith(t, wsactor.TransportOptions{SendQueueBytes: 16 << 10, Overflow: wsactor.OverflowDropNewest})
	p := g.dial(t, "name=Pat")
	id := p.next("welcome")["id"].(string)
	for _, bad := range []struct{ what, body string }{
		{"a body that is not JSON", `{"to":`},
		{"no text", `{"to":"` + id + `"}`},
		{"an empty text", `{"to":"` + id + `","text":""}`},
		{"no ID", `{"text":"hi"}`},
		{"a body over 64 KiB", `{"to":"` + id + `","text":"` + strings.Repeat("x", 64<<10) + `"}`},
	} {
		if code := g.adminPost(t, "admin", bad.body).StatusCode; code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad.what, code)
		}
	}
	if code := g.adminPost(t, "wrong", `{"to":"`+id+`","text":"hi"}`).StatusCode; code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}

	// Pat stops reading: notices of 60 KB fill the socket's buffers, then
	// the send queue of 16 KiB.
	notice := `{"to":"` + id + `","text":"` + strings.Repeat("n", 60_000) + `"}`
	var full *http.Response
	for i := 0; full == nil; i++ {
		if i == 2000 {
			t.Fatal("2000 notices of 60 KB were all taken for a player who does not read")
		}
		switch resp := g.adminPost(t, "admin", notice); resp.StatusCode {
		case http.StatusNoContent:
		case http.StatusServiceUnavailable:
			full = resp
		default:
			t.Fatalf("notice %d to a player who does not read: %d", i, resp.StatusCode)
		}
	}
	if got := full.Header.Get("Retry-After"); got != "1" {
		t.Errorf("503 with Retry-After %q, want 1", got)
	}
	_ = p.c.CloseNow()
	deadline := time.Now().Add(testTimeout)
	for {
		code := g.adminPost(t, "admin", `{"to":"`+id+`","text":"hi"}`).StatusCode
		if code == http.StatusNotFound {
			break
		}
		if code != http.StatusServiceUnavailable && code != http.StatusNoContent || time.Now().After(deadline) {
			t.Fatalf("a notice to a connection closed by its client: %d, want 404 once the server has seen the close", code)
		}
	}
	// The others carry on.
	q := g.dial(t, "name=Quin")
	qid := q.next("welcome")["id"].(string)
	if code := g.adminPost(t, "admin", `{"to":"`+qid+`","text":"hello Quin"}`).StatusCode; code != http.StatusNoContent {
		t.Fatalf("a notice to another player: %d", code)
	}
	if n := q.next("notice"); n["text"] != "hello Quin" {
		t.Fatalf("notice: %v", n)
	}
}

// TestLeaveFreesTheSeat: {"type":"leave"} gives the seat up at once (the
// others see the player go, not offline for SeatHold) and closes with 4410;
// the token takes nothing back.
func TestLeaveFreesTheSeat(t *testing.T) {
	g := newGame(t)
	ann, bob := g.dial(t, "name=Ann&room=lv"), g.dial(t, "name=Bob&room=lv")
	wa := ann.next("welcome")
	wb := bob.next("welcome")
	bob.send(`{"type":"leave"}`)
	if ce := bob.closed(); ce.Code != gameserver.CloseKicked || ce.Reason != "left: left" {
		t.Fatalf("leave: closed with %v", ce)
	}
	deadline := time.Now().Add(testTimeout)
	for {
		if time.Now().After(deadline) {
			t.Fatal("Bob is still in the state after leaving")
		}
		if st := ann.next("state"); len(st["players"].([]any)) == 1 && me(st, wa["seat"].(float64)) != nil {
			break
		}
	}
	if ce := g.dial(t, "name=Bob&token="+wb["token"].(string)).closed(); ce.Code != gameserver.CloseNoSeat {
		t.Fatalf("the token of a seat given up: %v", ce)
	}
}

// TestPeersMayOpenTheSocket: a page served by one peer may open the game's
// WebSocket on another (failover); other origins get 403.
func TestPeersMayOpenTheSocket(t *testing.T) {
	mux, s := gameserver.New(gameserver.Config{Address: "n", Peers: []string{"http://peer.example:8081", "http://[::1]:8082"},
		Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"http://peer.example:8081", true},
		{"http://[::1]:8082", true},
		{"http://peer.example:9999", false},
		{"http://evil.example", false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws/game?name=o",
			&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {tc.origin}}})
		cancel()
		if tc.ok {
			if err != nil {
				t.Fatalf("origin %s: %v", tc.origin, err)
			}
			_ = c.CloseNow()
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %s: want 403, got %v", tc.origin, err)
		}
	}
}
