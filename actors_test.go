package wsactor_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// echo echoes text as text and binary as binary.
type echo struct{}

func (echo) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

// closeEvent is what a recorder saw in OnClose.
type closeEvent struct {
	id     wsactor.ID
	code   wsactor.StatusCode
	reason string
}

// recorder is a handler that reports its lifecycle on channels.
type recorder struct {
	opened chan wsactor.ID
	closed chan closeEvent
}

func newRecorder() *recorder {
	return &recorder{opened: make(chan wsactor.ID, 1024), closed: make(chan closeEvent, 1024)}
}

func (r *recorder) factory() func() wsactor.Handler {
	return func() wsactor.Handler { return &recorded{r: r} }
}

type recorded struct{ r *recorder }

func (h *recorded) OnOpen(c *wsactor.Conn) error {
	h.r.opened <- c.ID()
	return c.SendText("id:" + string(c.ID()))
}

func (h *recorded) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

func (h *recorded) OnClose(c *wsactor.Conn, code wsactor.StatusCode, reason string) {
	h.r.closed <- closeEvent{c.ID(), code, reason}
}

func TestEchoTextAndBinary(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/echo", func() wsactor.Handler { return echo{} })
	})
	c := dial(t, ts.url+"/ws/echo")
	write(t, c, websocket.MessageText, "héllo")
	if typ, got := read(t, c); typ != websocket.MessageText || got != "héllo" {
		t.Fatalf("text echo: got %v %q", typ, got)
	}
	write(t, c, websocket.MessageBinary, "\x00\x01\xff")
	if typ, got := read(t, c); typ != websocket.MessageBinary || got != "\x00\x01\xff" {
		t.Fatalf("binary echo: got %v %q", typ, got)
	}
	// MessagesOut counts a message once its write returned, which may be
	// after the client has read it.
	waitFor(t, "stats to count both echoes", func() bool {
		st := ts.Stats()
		return st.MessagesIn == 2 && st.MessagesOut == 2 && st.BytesIn == int64(len("héllo")+3) && st.ConnectionsOpen == 1 && st.ConnectionsAccepted == 1
	})
}

func TestCloseCallbackExactlyOnceWithClientCode(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	c := dial(t, ts.url+"/ws")
	id := recv(t, rec.opened, "open")
	if got := readText(t, c); got != "id:"+string(id) {
		t.Fatalf("OnOpen message: %q", got)
	}
	if err := c.Close(4002, "bye"); err != nil {
		t.Fatalf("client close: %v", err)
	}
	ev := recv(t, rec.closed, "OnClose")
	if ev.id != id || ev.code != 4002 || ev.reason != "bye" {
		t.Fatalf("OnClose got %+v", ev)
	}
	waitFor(t, "connection count to drop", func() bool { return ts.Stats().ConnectionsOpen == 0 })
	select {
	case ev := <-rec.closed:
		t.Fatalf("OnClose ran twice: %+v", ev)
	default:
	}
	if err := ts.Send(context.Background(), id, wsactor.Text("late")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("send to closed connection: want ErrConnectionNotFound, got %v", err)
	}
}

func TestSendAndCloseByIDFromOutside(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	c := dial(t, ts.url+"/ws")
	id := recv(t, rec.opened, "open")
	readText(t, c)

	ctx := context.Background()
	if err := ts.Send(ctx, id, wsactor.Text("from outside")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := readText(t, c); got != "from outside" {
		t.Fatalf("got %q", got)
	}
	if err := ts.Post(id, wsactor.Binary([]byte{7})); err != nil {
		t.Fatalf("Post: %v", err)
	}
	if typ, got := read(t, c); typ != websocket.MessageBinary || got != "\x07" {
		t.Fatalf("got %v %q", typ, got)
	}
	parsed, err := wsactor.ParseID(string(id))
	if err != nil || parsed != id {
		t.Fatalf("ParseID(%q) = %q, %v", id, parsed, err)
	}

	// An ID that is well-formed but belongs to no connection.
	unknown := wsactor.ID(strings.Replace(string(id), string(id)[3:8], "AAAAA", 1))
	if err := ts.Send(ctx, unknown, wsactor.Text("x")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("unknown ID: want ErrConnectionNotFound, got %v", err)
	}
	if err := ts.Close(ctx, unknown, 1000, ""); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("close unknown ID: want ErrConnectionNotFound, got %v", err)
	}
	for _, bad := range []string{"", "garbage", "ws..", "ws.short.bm9uaG9zdA", string(id) + "!", "WS" + string(id)[2:], strings.Repeat("a", 5000)} {
		if err := ts.Send(ctx, wsactor.ID(bad), wsactor.Text("x")); !errors.Is(err, wsactor.ErrInvalidID) {
			t.Fatalf("malformed ID %q: want ErrInvalidID, got %v", bad, err)
		}
		if _, err := wsactor.ParseID(bad); !errors.Is(err, wsactor.ErrInvalidID) {
			t.Fatalf("ParseID(%q): want ErrInvalidID, got %v", bad, err)
		}
	}
	if err := ts.Close(ctx, id, 1005, "reserved"); !errors.Is(err, wsactor.ErrInvalidCloseCode) {
		t.Fatalf("close with 1005: want ErrInvalidCloseCode, got %v", err)
	}

	clientSaw := make(chan error, 1)
	go func() { // the client reads, so it answers the closing handshake
		_, _, err := c.Read(context.Background())
		clientSaw <- err
	}()
	if err := ts.Close(ctx, id, 4100, "kicked"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var ce websocket.CloseError
	if err := recv(t, clientSaw, "client close"); !errors.As(err, &ce) || ce.Code != 4100 || ce.Reason != "kicked" {
		t.Fatalf("client: want close 4100 kicked, got %v", err)
	}
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 4100 || ev.reason != "kicked" {
		t.Fatalf("OnClose got %+v", ev)
	}
}

func TestConcurrentSendersKeepPerSenderOrder(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 1 << 16, SendQueueBytes: 64 << 20}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	c := dial(t, ts.url+"/ws")
	id := recv(t, rec.opened, "open")
	readText(t, c)

	const senders, perSender = 100, 200
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				if err := ts.Send(context.Background(), id, wsactor.Text(fmt.Sprintf("%d:%d", s, i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * perSender {
		var s, i int
		msg := readText(t, c)
		if _, err := fmt.Sscanf(msg, "%d:%d", &s, &i); err != nil {
			t.Fatalf("bad message %q", msg)
		}
		if i != next[s] {
			t.Fatalf("sender %d: got message %d, want %d (out of order or lost)", s, i, next[s])
		}
		next[s]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
}

func TestRejectBeforeUpgrade(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/{room}", func() wsactor.Handler { return &gate{} })
	})
	for _, tc := range []struct {
		room   string
		status int
	}{
		{"open", 0}, {"private", 401}, {"banned", 403}, {"full", 429}, {"down", 503}, {"nothing", 403},
	} {
		t.Run(tc.room, func(t *testing.T) {
			c, err := dialErr(t, ts.url+"/ws/"+tc.room+"?who=ann", nil)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if got := readText(t, c); got != "hello ann in open" {
					t.Fatalf("got %q", got)
				}
				return
			}
			wantStatus(t, err, tc.status)
		})
	}
	if st := ts.Stats(); st.ConnectionsRejected != 5 || st.ConnectionsAccepted != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// gate decides by path variable at the handshake.
type gate struct{ greeting string }

func (g *gate) Connect(h *wsactor.Handshake) wsactor.Decision {
	switch h.PathValue("room") {
	case "open":
		g.greeting = "hello " + h.Query().Get("who") + " in open"
		return wsactor.Accept()
	case "private":
		return wsactor.Reject(http.StatusUnauthorized, "log in first")
	case "banned":
		return wsactor.Reject(http.StatusForbidden, "banned")
	case "full":
		return wsactor.Reject(http.StatusTooManyRequests, "room full")
	case "down":
		return wsactor.Reject(http.StatusServiceUnavailable, "maintenance")
	case "later":
		return wsactor.AcceptThenClose(4403, "room is closed")
	}
	return wsactor.Decision{} // not accepting means rejecting
}

func (g *gate) OnOpen(c *wsactor.Conn) error { return c.SendText(g.greeting) }

func (g *gate) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func TestAcceptThenClose(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/{room}", func() wsactor.Handler { return &gate{} })
	})
	c := dial(t, ts.url+"/ws/later")
	wantClose(t, c, 4403, "room is closed")
	waitFor(t, "the refused connection to be released", func() bool {
		st := ts.Stats()
		return st.ConnectionsRejected == 1 && st.ConnectionsOpen == 0
	})
}

// TestAClosedConnectionIsNoLongerCounted checks Close's promise as Stats
// and Shutdown see it: once Close returns, the connection no longer counts
// as open. The socket's reader and the connection's actor each release the
// connection; the reader used to release only after it had told the actor,
// so Close could return (the actor stopped) while the reader had yet to,
// and Stats still counted the connection for a moment.
func TestAClosedConnectionIsNoLongerCounted(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 300 {
		c := dial(t, ts.url+"/ws")
		id := recv(t, rec.opened, "open")
		readText(t, c)
		go func() { // answer the closing handshake
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		if err := ts.Close(ctx, id, 4000, ""); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		if open := ts.Stats().ConnectionsOpen; open != 0 {
			t.Fatalf("after Close %d returned, Stats counts %d connections open", i, open)
		}
		recv(t, rec.closed, "OnClose")
	}
}
