package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
)

// testTimeout bounds every wait; nothing sleeps for correctness.
const testTimeout = 10 * time.Second

// The tests' connection handler speaks a small JSON protocol with the test
// client, so that a test drives rooms from outside, as an application's
// client would:
//
//	client → server  {"op":"join","kind":…,"name":…}  {"op":"quick","kind":…,"filter":{…}}
//	                 {"op":"create","kind":…}  {"op":"reconnect","token":…}
//	                 {"op":"say","text":…}  {"op":"leave"}
//	server → client  {"ev":"joined","room":…,"seat":…,"token":…,"again":…}
//	                 {"ev":"failed","room":…,"code":…,"err":…}  {"ev":"left","why":…}
//	                 {"ev":"error","err":…}  and whatever the room sends.
type player struct{ m *rooms.Manager }

type roomKey struct{}

type request struct {
	Op     string            `json:"op"`
	Kind   string            `json:"kind"`
	Name   string            `json:"name"`
	Token  string            `json:"token"`
	Text   string            `json:"text"`
	Filter map[string]string `json:"filter"`
}

func (h *player) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
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
	case "say", "leave":
		ref, _ := c.Value(roomKey{}).(*rooms.Ref)
		if ref == nil {
			err = rooms.ErrNotPlayer
		} else if req.Op == "say" {
			err = ref.Send(c, wsactor.Text(req.Text))
		} else {
			err = ref.Leave(c)
		}
	}
	if err != nil {
		return c.SendJSON(map[string]string{"ev": "error", "err": err.Error()})
	}
	return nil
}

func (h *player) Receive(c *wsactor.Conn, msg any) {
	switch m := msg.(type) {
	case rooms.Joined:
		c.SetValue(roomKey{}, m.Room)
		_ = c.SendJSON(map[string]any{"ev": "joined", "room": m.Room.String(), "seat": m.Seat, "token": m.Token, "again": m.Reconnected})
	case rooms.JoinFailed:
		code := "unknown"
		var r *rooms.Refusal
		switch {
		case errors.As(m.Err, &r):
			code = r.Code
		case errors.Is(m.Err, rooms.ErrFull):
			code = "full"
		case errors.Is(m.Err, rooms.ErrBadToken):
			code = "bad_token"
		case errors.Is(m.Err, rooms.ErrUnavailable):
			code = "unavailable"
		case errors.Is(m.Err, rooms.ErrLocked):
			code = "locked"
		}
		_ = c.SendJSON(map[string]any{"ev": "failed", "room": m.Room.String(), "code": code, "err": m.Err.Error()})
	case rooms.Left:
		_ = c.SendJSON(map[string]any{"ev": "left", "room": m.Room.String(), "why": m.Why})
	}
}

type testServer struct {
	*wsactor.Server
	url  string
	logs *logBuffer
}

func newServer(t *testing.T, kinds ...rooms.Kind) *testServer {
	t.Helper()
	return newServerWith(t, wsactor.Options{}, kinds...)
}

func newServerWith(t *testing.T, opts wsactor.Options, kinds ...rooms.Kind) *testServer {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := wsactor.New(opts)
	for _, k := range kinds {
		s.Rooms().Define(k)
	}
	s.Handle("/play", func() wsactor.Handler { return &player{m: s.Rooms()} },
		wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}))
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &testServer{Server: s, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/play", logs: logs}
}

// client is a test client of /play.
type client struct {
	t    *testing.T
	name string
	c    *websocket.Conn
}

func (s *testServer) dial(t *testing.T, name string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.url+"?name="+name, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: t, name: name, c: c}
}

func (cl *client) send(v any) {
	cl.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cl.c.Write(ctx, websocket.MessageText, b); err != nil {
		cl.t.Fatalf("%s: write: %v", cl.name, err)
	}
}

func (cl *client) read() string {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, b, err := cl.c.Read(ctx)
	if err != nil {
		cl.t.Fatalf("%s: read: %v", cl.name, err)
	}
	return string(b)
}

// event reads until a message that is a JSON object with "ev" == ev, and
// returns it; other messages (what rooms broadcast) are skipped.
func (cl *client) event(ev string) map[string]any {
	cl.t.Helper()
	for {
		s := cl.read()
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil && m["ev"] == ev {
			return m
		}
		if m["ev"] != nil && ev != "" {
			cl.t.Fatalf("%s: got %s, want an %q event", cl.name, s, ev)
		}
	}
}

// expect reads until the text want, which must come before any event.
func (cl *client) expect(want string) {
	cl.t.Helper()
	for {
		s := cl.read()
		if s == want {
			return
		}
		if strings.HasPrefix(s, `{"ev":`) {
			cl.t.Fatalf("%s: got %s while waiting for %q", cl.name, s, want)
		}
	}
}

func (cl *client) join(kind, name string) map[string]any {
	cl.t.Helper()
	cl.send(map[string]string{"op": "join", "kind": kind, "name": name})
	return cl.event("joined")
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a room handler that tells every player what happens, as text:
// "join:<seat>:<name>", "drop:<seat>", "back:<seat>", "leave:<seat>:<why>",
// "<seat>:<text>" for messages; and records its ticks.
type recorder struct {
	ticks chan rooms.Tick
}

func (h *recorder) OnMessage(r *rooms.Room, p *rooms.Player, m wsactor.Message) error {
	switch m.Text() {
	case "panic":
		panic("asked to")
	case "fail":
		return wsactor.MessageError("no_way", "asked to fail")
	case "close":
		r.Close()
		return nil
	}
	r.Broadcast(wsactor.Text(fmt.Sprintf("%d:%s", p.Seat, m.Text())))
	return nil
}

func (h *recorder) OnJoin(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("join:%d:%s", p.Seat, p.Meta["name"])))
}

func (h *recorder) OnDrop(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("drop:%d", p.Seat)))
}

func (h *recorder) OnReconnect(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("back:%d", p.Seat)))
}

func (h *recorder) OnLeave(r *rooms.Room, p *rooms.Player, why rooms.LeaveReason) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("leave:%d:%s", p.Seat, why)))
}

func (h *recorder) OnTick(r *rooms.Room, t rooms.Tick) {
	if h.ticks != nil {
		select {
		case h.ticks <- t:
		default:
		}
	}
}
