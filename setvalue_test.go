package wsactor_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// valueKeeper keeps a value with Conn.SetValue: "set V" sets it, "get"
// answers it, "panic" panics. It hands its Conn to the test in OnOpen.
type valueKeeper struct {
	conns chan *wsactor.Conn
}

type (
	seatKey      struct{}
	handshakeKey struct{}
)

func (h *valueKeeper) Connect(hs *wsactor.Handshake) wsactor.Decision {
	hs.SetValue(handshakeKey{}, "from the handshake")
	return wsactor.Accept()
}

func (h *valueKeeper) OnOpen(c *wsactor.Conn) error {
	select {
	case h.conns <- c:
	default:
	}
	return c.SendText("open")
}

func (h *valueKeeper) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	cmd, arg, _ := strings.Cut(m.Text(), " ")
	switch cmd {
	case "set":
		c.SetValue(seatKey{}, arg)
	case "clear":
		c.SetValue(seatKey{}, nil)
	case "panic":
		panic("boom")
	}
	return c.SendText(fmt.Sprintf("seat=%v handshake=%v", c.Value(seatKey{}), c.Value(handshakeKey{})))
}

func valueKeeperServer(t *testing.T) (*testServer, chan *wsactor.Conn) {
	conns := make(chan *wsactor.Conn, 1)
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &valueKeeper{conns: conns} })
	})
	return ts, conns
}

func TestSetValueSurvivesHandlerRestart(t *testing.T) {
	ts, _ := valueKeeperServer(t)
	c := dial(t, ts.url+"/ws")
	if got := readText(t, c); got != "open" {
		t.Fatalf("got %q", got)
	}
	write(t, c, websocket.MessageText, "set 12A")
	if got := readText(t, c); got != "seat=12A handshake=from the handshake" {
		t.Fatalf("got %q", got)
	}
	write(t, c, websocket.MessageText, "panic")
	if got := readText(t, c); got != "open" {
		t.Fatalf("the handler should restart after a panic, got %q", got)
	}
	write(t, c, websocket.MessageText, "get")
	if got := readText(t, c); got != "seat=12A handshake=from the handshake" {
		t.Fatalf("after a restart: got %q", got)
	}
	if st := ts.Stats(); st.Restarts != 1 {
		t.Fatalf("the handler should have restarted once: %+v", st)
	}
	write(t, c, websocket.MessageText, "clear")
	if got := readText(t, c); got != "seat=<nil> handshake=from the handshake" {
		t.Fatalf("a nil value removes the key: got %q", got)
	}
}

func TestValueIsSafeWithConcurrentSetValue(t *testing.T) {
	ts, conns := valueKeeperServer(t)
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	conn := recv(t, conns, "the Conn")
	type key int
	const writes = 200
	var wg sync.WaitGroup
	wg.Go(func() { // another goroutine sets its own keys
		for i := range writes {
			conn.SetValue(key(i%10), i)
		}
	})
	wg.Go(func() { // and another reads while the handler sets
		for range writes {
			if v := conn.Value(handshakeKey{}); v != "from the handshake" {
				t.Errorf("the handshake's value changed: %v", v)
				return
			}
			_ = conn.Value(seatKey{})
			_ = conn.Value(key(3))
		}
	})
	for i := range writes / 10 {
		write(t, c, websocket.MessageText, fmt.Sprintf("set %d", i))
		readText(t, c)
	}
	wg.Wait()
	if v := conn.Value(seatKey{}); v != fmt.Sprint(writes/10-1) {
		t.Fatalf("seat: %v", v)
	}
	for k := range key(10) {
		if v := conn.Value(k); v != writes-10+int(k) {
			t.Fatalf("key %d: %v", k, v)
		}
	}
}
