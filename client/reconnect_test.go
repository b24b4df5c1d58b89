package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/client"
	"github.com/wsactor/wsactor/transport"
)

func TestReconnectAfterGoingAway(t *testing.T) {
	s := newApp(t)
	opts, connected, lost := reconnecting()
	c := dial(t, s.url, opts)
	ctx := testContext(t)
	recv(t, connected, "OnConnect")
	if got := recv(t, s.events, "the first join"); got != "join:lobby" {
		t.Fatalf("server saw %q", got)
	}
	first := receiveWelcome(t, c)

	s.closeConn(t, first.ID, wsactor.StatusGoingAway, "moving")
	if err := recv(t, lost, "OnDisconnect"); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("OnDisconnect got %v", err)
	}
	recv(t, connected, "OnConnect again")
	if got := recv(t, s.events, "the join again"); got != "join:lobby" {
		t.Fatalf("server saw %q", got)
	}
	if err := c.WaitOpen(ctx); err != nil {
		t.Fatal(err)
	}
	second := receiveWelcome(t, c) // Receive works across connections
	if second.ID == first.ID {
		t.Fatal("the same connection ID after reconnecting")
	}
	var sum int
	if err := c.Request(ctx, "add", addMsg{A: 20, B: 22}, &sum); err != nil || sum != 42 {
		t.Fatalf("add after reconnecting: %d, %v", sum, err)
	}
	if c.Err() != nil {
		t.Fatalf("Err while connected: %v", c.Err())
	}
}

func TestReconnectToRestartedServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	s1 := serveOn(t, l)
	opts, connected, lost := reconnecting()
	c := dial(t, s1.url, opts)
	ctx := testContext(t)
	recv(t, connected, "OnConnect")
	receiveWelcome(t, c)

	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, lost, "OnDisconnect"); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("OnDisconnect got %v", err)
	}
	// Nothing listens now: the client keeps trying, and a Send waits.
	if st := c.State(); st != client.StateConnecting {
		t.Fatalf("state %v while the server is down", st)
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Send(expired, "note", textMsg{Text: "never"}); !errors.Is(err, client.ErrDisconnected) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with an ended ctx while reconnecting: %v", err)
	}
	if err := c.WaitOpen(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitOpen with an ended ctx: %v", err)
	}
	sent := make(chan error, 1)
	go func() { sent <- c.Send(ctx, "note", textMsg{Text: "queued"}) }()

	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	s2 := serveOn(t, l2)
	recv(t, connected, "OnConnect on the new server")
	if err := recv(t, sent, "the waiting Send"); err != nil {
		t.Fatal(err)
	}
	// The re-join comes first: Sends wait until OnConnect has returned.
	if got := recv(t, s2.events, "the join"); got != "join:lobby" {
		t.Fatalf("the new server saw %q first", got)
	}
	if got := recv(t, s2.events, "the note"); got != "note:queued" {
		t.Fatalf("the new server saw %q", got)
	}
	receiveWelcome(t, c)
	if st := c.State(); st != client.StateOpen {
		t.Fatalf("state %v", st)
	}
}

func TestFinalCloseCodes(t *testing.T) {
	cases := []struct {
		name      string
		code      wsactor.StatusCode
		final     func(websocket.StatusCode, string) bool
		reconnect bool
	}{
		{"policy violation", wsactor.StatusPolicyViolation, nil, false},
		{"application code", 4000, nil, false},
		{"normal closure", wsactor.StatusNormalClosure, nil, false},
		{"internal error", wsactor.StatusInternalError, nil, true},
		{"application code made retryable", 4001, func(code websocket.StatusCode, reason string) bool {
			return code != 4001 && client.DefaultFinalClose(code, reason)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newApp(t)
			opts, connected, lost := reconnecting()
			opts.FinalClose = tc.final
			c := dial(t, s.url, opts)
			recv(t, connected, "OnConnect")
			w := receiveWelcome(t, c)

			s.closeConn(t, w.ID, tc.code, "because")
			if err := recv(t, lost, "OnDisconnect"); websocket.CloseStatus(err) != websocket.StatusCode(tc.code) {
				t.Fatalf("OnDisconnect got %v", err)
			}
			if tc.reconnect {
				recv(t, connected, "OnConnect again")
				receiveWelcome(t, c)
				return
			}
			waitDone(t, c)
			err := c.Err()
			if !errors.Is(err, client.ErrDisconnected) || websocket.CloseStatus(err) != websocket.StatusCode(tc.code) {
				t.Fatalf("Err() = %v", err)
			}
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Reason != "because" {
				t.Fatalf("close error %+v", ce)
			}
			if c.State() != client.StateClosed {
				t.Fatalf("state %v", c.State())
			}
			if len(connected) != 0 {
				t.Fatal("OnConnect ran again after a final code")
			}
			if err := c.Send(testContext(t), "echo", nil); !errors.Is(err, client.ErrDisconnected) {
				t.Fatalf("Send after the end: %v", err)
			}
			if _, err := c.Receive(testContext(t)); !errors.Is(err, client.ErrDisconnected) {
				t.Fatalf("Receive after the end: %v", err)
			}
			if err := c.WaitOpen(testContext(t)); !errors.Is(err, client.ErrDisconnected) {
				t.Fatalf("WaitOpen after the end: %v", err)
			}
		})
	}
}

func TestNoReconnectAfterUnauthorized(t *testing.T) {
	var allow atomic.Bool
	allow.Store(true)
	authn := auth.AuthenticatorFunc(func(r *http.Request) (*auth.User, error) {
		if !allow.Load() {
			return nil, fmt.Errorf("%w: revoked", auth.ErrInvalidCredentials)
		}
		return &auth.User{ID: "bot"}, nil
	})
	s := newApp(t, wsactor.WithAuthenticator(authn), wsactor.RequireAuth())
	opts, connected, lost := reconnecting()
	c := dial(t, s.url, opts)
	recv(t, connected, "OnConnect")
	w := receiveWelcome(t, c)

	allow.Store(false)
	s.closeConn(t, w.ID, wsactor.StatusGoingAway, "")
	recv(t, lost, "OnDisconnect")
	waitDone(t, c)
	var he *client.HandshakeError
	if err := c.Err(); !errors.Is(err, client.ErrDisconnected) || !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Err() = %v", err)
	}
}

func TestWithoutReconnect(t *testing.T) {
	s := newApp(t)
	lost := make(chan error, 1)
	c := dial(t, s.url, &client.Options{OnDisconnect: func(err error) { lost <- err }})
	w := receiveWelcome(t, c)
	ctx := testContext(t)
	if err := c.Send(ctx, "echo", textMsg{Text: "before"}); err != nil {
		t.Fatal(err)
	}
	// The server handles one connection's messages in order: once the add
	// is answered, the echo is on its way.
	if err := c.Request(ctx, "add", addMsg{}, nil); err != nil {
		t.Fatal(err)
	}
	// The echo, received but not yet returned by Receive, outlives the
	// connection.
	s.closeConn(t, w.ID, wsactor.StatusGoingAway, "bye")
	recv(t, lost, "OnDisconnect")
	waitDone(t, c)
	if err := c.Send(testContext(t), "echo", nil); !errors.Is(err, client.ErrDisconnected) || websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("Send: %v", err)
	}
	if m := receive(t, c); m.Type != "echoed" {
		t.Fatalf("got %s", m.Data)
	}
	if _, err := c.Receive(testContext(t)); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("Receive: %v", err)
	}
}

func TestRequestConnectionLost(t *testing.T) {
	s := newApp(t)
	opts, connected, _ := reconnecting()
	c := dial(t, s.url, opts)
	recv(t, connected, "OnConnect")
	ctx := testContext(t)
	err := c.Request(ctx, "hang", nil, nil)
	if !errors.Is(err, client.ErrDisconnected) || websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("Request: %v", err)
	}
	// The next one goes out on the next connection.
	var sum int
	if err := c.Request(ctx, "add", addMsg{A: 1, B: 1}, &sum); err != nil || sum != 2 {
		t.Fatalf("add: %d, %v", sum, err)
	}
	recv(t, connected, "OnConnect again")
}

func TestMaxAttempts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveOn(t, l)
	opts, connected, _ := reconnecting()
	opts.MaxAttempts = 3
	c := dial(t, s.url, opts)
	recv(t, connected, "OnConnect")
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	err = c.Err()
	if !errors.Is(err, client.ErrDisconnected) || !strings.Contains(err.Error(), "3 reconnection attempts") {
		t.Fatalf("Err() = %v", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close after the end: %v", err)
	}
}

func TestOnConnectErrorFailsDial(t *testing.T) {
	s := newApp(t)
	boom := errors.New("boom")
	_, err := client.Dial(testContext(t), s.url, &client.Options{
		Logger:    discard(),
		OnConnect: func(context.Context, *client.Client) error { return boom },
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Dial: %v", err)
	}
	if left := waitNoClientGoroutines(testTimeout); len(left) > 0 {
		t.Fatalf("goroutines left:\n%s", strings.Join(left, "\n\n"))
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	s := newApp(t)
	ctx := testContext(t)

	// An open client, closed with the handshake while a Receive waits.
	open := dial(t, s.url, &client.Options{Reconnect: true})
	receiveWelcome(t, open)
	received := make(chan error, 1)
	go func() {
		_, err := open.Receive(ctx)
		received <- err
	}()

	// A client whose server is gone, in the middle of reconnecting, with
	// a Send waiting for the connection.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := serveOn(t, l)
	opts, connected, lost := reconnecting()
	opts.MinBackoff, opts.MaxBackoff = time.Millisecond, time.Millisecond
	retrying := dial(t, gone.url, opts)
	recv(t, connected, "OnConnect")
	if err := gone.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, lost, "OnDisconnect")
	sent := make(chan error, 1)
	go func() { sent <- retrying.Send(ctx, "echo", nil) }()

	// A client whose reader is blocked on a full buffer.
	full := dial(t, s.url, &client.Options{ReceiveBuffer: 1})
	// The welcome fills the buffer; the pushes block the reader.
	if err := full.Send(ctx, "burst", burstMsg{Tag: "y", N: 3}); err != nil {
		t.Fatal(err)
	}

	if err := open.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := recv(t, received, "the waiting Receive"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if err := retrying.CloseNow(); err != nil {
		t.Fatalf("CloseNow while reconnecting: %v", err)
	}
	if err := recv(t, sent, "the waiting Send"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := full.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close with a blocked reader: %v", err)
	}
	if err := open.Close(websocket.StatusNormalClosure, ""); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := open.Send(ctx, "echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	for _, c := range []*client.Client{open, retrying, full} {
		if c.State() != client.StateClosed || !errors.Is(c.Err(), client.ErrClosed) {
			t.Fatalf("state %v, Err %v", c.State(), c.Err())
		}
	}
	// Close returned after the client's own goroutines exited; poll only
	// for the runtime to finish tearing down their stacks.
	if left := waitNoClientGoroutines(testTimeout); len(left) > 0 {
		t.Fatalf("goroutines left after Close:\n%s", strings.Join(left, "\n\n"))
	}
}

func TestSlowConsumerReconnects(t *testing.T) {
	s := newApp(t)
	opts, connected, _ := reconnecting()
	opts.ReceiveBuffer = 1
	c := dial(t, s.url, opts)
	recv(t, connected, "OnConnect")
	if err := c.Send(testContext(t), "flood", nil); err != nil {
		t.Fatal(err)
	}
	// Nobody calls Receive: the welcome fills the buffer, the reader stops,
	// the socket pushes back, and the server's send queue overflows.
	if ce := recv(t, s.closes, "the server's close"); ce.Code != wsactor.StatusTryAgainLater || ce.Reason != transport.ReasonSlowConsumer {
		t.Fatalf("the server closed with %d %q", ce.Code, ce.Reason)
	}
	// What arrived is intact and in order; then comes the next connection.
	receiveWelcome(t, c)
	for i := 0; ; i++ {
		m := receive(t, c)
		if m.Type == "welcome" {
			break
		}
		p, err := client.Decode[pushMsg](m)
		if err != nil || p.I != i || len(p.Tag) != 64<<10 {
			t.Fatalf("push %d: got %d, %v", i, p.I, err)
		}
	}
	recv(t, connected, "OnConnect again")
}
