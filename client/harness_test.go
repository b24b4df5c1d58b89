package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/client"
)

// These tests run the client against real wsactor servers over loopback.
// Every wait is bounded by testTimeout; nothing sleeps for correctness.

const testTimeout = 10 * time.Second

// TestMain fails the run if any client goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := waitNoClientGoroutines(testTimeout); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "client goroutines left after the tests:\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// clientGoroutines returns the stacks of goroutines running code of package
// client (not client_test).
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/wsactor/wsactor/client.") {
			found = append(found, g)
		}
	}
	return found
}

func waitNoClientGoroutines(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := clientGoroutines()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func waitDone(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testTimeout):
		t.Fatalf("the client did not end; state %v", c.State())
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The test application: a Router with a few message types, and a welcome
// message on open. Every server has its own events channel, on which its
// handlers report what they were asked to do ("join:lobby", "note:hi").

type welcome struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Sub  string `json:"subprotocol"`
}

type textMsg struct {
	Type string `json:"type,omitempty"`
	Text string `json:"text"`
}

type addMsg struct{ A, B int }

type burstMsg struct {
	Tag string `json:"tag"`
	N   int    `json:"n"`
}

type pushMsg struct {
	Type string `json:"type"`
	Tag  string `json:"tag"`
	I    int    `json:"i"`
}

type roomMsg struct {
	Room string `json:"room"`
}

// whoamiReply tells who the server thinks the connection is: the user's ID
// and the "n" claim of its token ("" and 0 when anonymous).
type whoamiReply struct {
	User string `json:"user"`
	N    int    `json:"n"`
}

type app struct {
	*wsactor.Router
	closes chan<- wsactor.CloseError // how each connection ended, as the server saw it
}

func (a *app) OnClose(c *wsactor.Conn, code wsactor.StatusCode, reason string) {
	a.closes <- wsactor.CloseError{Code: code, Reason: reason}
}

func (a *app) OnOpen(c *wsactor.Conn) error {
	return c.SendJSON(welcome{Type: "welcome", ID: string(c.ID()), Sub: c.Subprotocol()})
}

func newRouter(events chan<- string) *wsactor.Router {
	r := &wsactor.Router{}
	r.Binary = func(c *wsactor.Conn, data []byte) error { return c.Send(wsactor.Binary(data)) }
	wsactor.On(r, "echo", func(c *wsactor.Conn, m textMsg) error {
		return c.SendJSON(textMsg{Type: "echoed", Text: m.Text})
	})
	wsactor.On(r, "note", func(c *wsactor.Conn, m textMsg) error {
		events <- "note:" + m.Text
		return nil
	})
	wsactor.OnRequest(r, "add", func(c *wsactor.Conn, m addMsg) (int, error) {
		if m.A < 0 || m.B < 0 {
			return 0, wsactor.MessageError("negative", "only natural numbers")
		}
		return m.A + m.B, nil
	})
	wsactor.OnRequest(r, "join", func(c *wsactor.Conn, m roomMsg) (string, error) {
		events <- "join:" + m.Room
		return m.Room, nil
	})
	// burst pushes n messages, and an answer to a request that is not the
	// client's, before its own reply.
	wsactor.OnRequest(r, "burst", func(c *wsactor.Conn, m burstMsg) (string, error) {
		for i := range m.N {
			if err := c.SendJSON(pushMsg{Type: "push", Tag: m.Tag, I: i}); err != nil {
				return "", err
			}
		}
		if err := c.SendJSON(map[string]any{"type": "reply", "req": "other-" + m.Tag, "data": -1}); err != nil {
			return "", err
		}
		return m.Tag, nil
	})
	// flood pushes large messages until the connection's send queue
	// overflows (or a bound far beyond every buffer on the way).
	wsactor.On(r, "flood", func(c *wsactor.Conn, m struct{}) error {
		big := strings.Repeat("x", 64<<10)
		for i := range 2000 {
			if c.SendJSON(pushMsg{Type: "push", Tag: big, I: i}) != nil {
				return nil // the connection is closing
			}
		}
		return nil
	})
	wsactor.OnRequest(r, "whoami", func(c *wsactor.Conn, m struct{}) (whoamiReply, error) {
		var w whoamiReply
		if u := c.User(); u != nil {
			n, _ := u.Claims["n"].(float64)
			w = whoamiReply{User: u.ID, N: int(n)}
		}
		return w, nil
	})
	wsactor.OnRequest(r, "hang", func(c *wsactor.Conn, m struct{}) (int, error) {
		return 0, wsactor.CloseWith(wsactor.StatusGoingAway, "not today")
	})
	return r
}

type testServer struct {
	*wsactor.Server
	url    string // ws://127.0.0.1:port/ws/lobby
	events chan string
	closes chan wsactor.CloseError
}

func newApp(t *testing.T, opts ...wsactor.RouteOption) *testServer {
	t.Helper()
	events := make(chan string, 100)
	closes := make(chan wsactor.CloseError, 100)
	r := newRouter(events)
	s := wsactor.New(wsactor.Options{Logger: discard()})
	s.Handle("/ws/{room}", func() wsactor.Handler { return &app{Router: r, closes: closes} }, opts...)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	return &testServer{Server: s, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/lobby", events: events, closes: closes}
}

// serveOn serves the test application on l; the server stops at Shutdown.
func serveOn(t *testing.T, l net.Listener) *testServer {
	t.Helper()
	events := make(chan string, 100)
	closes := make(chan wsactor.CloseError, 100)
	r := newRouter(events)
	s := wsactor.New(wsactor.Options{Logger: discard()})
	s.Handle("/ws/{room}", func() wsactor.Handler { return &app{Router: r, closes: closes} })
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	})
	return &testServer{Server: s, url: "ws://" + l.Addr().String() + "/ws/lobby", events: events, closes: closes}
}

// closeConn closes the server side of the connection with this ID.
func (s *testServer) closeConn(t *testing.T, id string, code wsactor.StatusCode, reason string) {
	t.Helper()
	pid, err := wsactor.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(testContext(t), pid, code, reason); err != nil {
		t.Fatalf("closing %s: %v", id, err)
	}
}

func dial(t *testing.T, url string, opts *client.Options) *client.Client {
	t.Helper()
	if opts == nil {
		opts = &client.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discard()
	}
	c, err := client.Dial(testContext(t), url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func receive(t *testing.T, c *client.Client) client.Message {
	t.Helper()
	m, err := c.Receive(testContext(t))
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

func receiveWelcome(t *testing.T, c *client.Client) welcome {
	t.Helper()
	m := receive(t, c)
	if m.Type != "welcome" {
		t.Fatalf("want the welcome, got %s", m.Data)
	}
	w, err := client.Decode[welcome](m)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// reconnecting returns options that reconnect quickly and report every
// OnConnect and OnDisconnect on the returned channels. OnConnect joins the
// lobby, as a chat client re-joins its rooms.
func reconnecting() (*client.Options, <-chan string, <-chan error) {
	connected := make(chan string, 10)
	lost := make(chan error, 10)
	return &client.Options{
		Reconnect:  true,
		MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		OnConnect: func(ctx context.Context, c *client.Client) error {
			var room string
			if err := c.Request(ctx, "join", roomMsg{Room: "lobby"}, &room); err != nil {
				return err
			}
			connected <- room
			return nil
		},
		OnDisconnect: func(err error) { lost <- err },
	}, connected, lost
}
