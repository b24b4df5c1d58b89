package wsactor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

func TestShutdownClosesEveryConnectionWith1001(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	const n = 20
	got := make(chan error, n)
	ids := map[wsactor.ID]bool{}
	for range n {
		c := dial(t, ts.url+"/ws")
		ids[recv(t, rec.opened, "open")] = true
		readText(t, c)
		go func() { // reads, so it answers the close handshake
			_, _, err := c.Read(context.Background())
			got <- err
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range n {
		err := recv(t, got, "client close")
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Fatalf("client: want 1001, got %v", err)
		}
	}
	// Every OnClose ran before Shutdown returned, exactly once each.
	for range n {
		select {
		case ev := <-rec.closed:
			if !ids[ev.id] || ev.code != 1001 || ev.reason != "going away" {
				t.Fatalf("OnClose: %+v", ev)
			}
			delete(ids, ev.id)
		default:
			t.Fatalf("Shutdown returned before every OnClose ran; missing %d", len(ids))
		}
	}
	select {
	case ev := <-rec.closed:
		t.Fatalf("extra OnClose: %+v", ev)
	default:
	}
	if st := ts.Stats(); st.ConnectionsOpen != 0 {
		t.Fatalf("stats: %+v", st)
	}
	_, err := dialErr(t, ts.url+"/ws", nil)
	wantStatus(t, err, http.StatusServiceUnavailable)
}

func TestShutdownBoundedByContext(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	dial(t, ts.url+"/ws") // never reads, so never completes the close handshake
	recv(t, rec.opened, "open")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1001 {
		t.Fatalf("OnClose: %+v", ev)
	}
}

func TestNoGoroutineLeakAfterShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	s := wsactor.New(wsactor.Options{Logger: discardLogger()})
	s.Handle("/ws", func() wsactor.Handler { return &ticker{} })
	hs := httptest.NewServer(s)
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	for range 10 {
		c := dial(t, url+"/ws")
		write(t, c, websocket.MessageText, "x")
		readText(t, c)
		go func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	hs.Close()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after Shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ticker starts a periodic timer and a child actor, so the leak test covers both.
type ticker struct{}

func (*ticker) OnOpen(c *wsactor.Conn) error {
	c.Every(time.Millisecond, "tick")
	c.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	return nil
}
func (*ticker) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }
func (*ticker) Receive(*wsactor.Conn, any)                         {}

// timers exercises After, Every, Stop, child actors and Conn.Context.
type timers struct {
	ticks int
	every *wsactor.Timer
}

type pong struct {
	from   string
	sender *actor.PID // who the child saw as the sender of the request
}

func (h *timers) OnOpen(c *wsactor.Conn) error {
	c.After(10*time.Millisecond, "once")
	h.every = c.Every(time.Millisecond, "tick")
	return nil
}

func (h *timers) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	if m.Text() == "ask child" {
		child := c.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if s, ok := ctx.Message().(string); ok {
				ctx.Respond(pong{from: "child got " + s, sender: ctx.Sender()})
			}
		}))
		c.Tell(child, "ping")
	}
	return nil
}

func (h *timers) Receive(c *wsactor.Conn, msg any) {
	switch m := msg.(type) {
	case string:
		switch m {
		case "once":
			_ = c.SendText("once")
		case "tick":
			h.ticks++
			if h.ticks == 3 {
				h.every.Stop()
				_ = c.SendText("3 ticks")
			} else if h.ticks > 3 {
				_ = c.SendText("tick after Stop")
			}
		default:
			_ = c.SendText("told: " + m)
		}
	case pong:
		_ = c.SendText(m.from + " / request came from this connection: " + fmt.Sprint(m.sender.Equal(c.Self())))
	}
}

func TestTimersAndActorMessages(t *testing.T) {
	rec := newRecorder()
	var ctxDone = make(chan struct{})
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &timers{} })
		s.Handle("/ctx", func() wsactor.Handler {
			return wsactor.HandlerFunc(func(c *wsactor.Conn, m wsactor.Message) error {
				go func() { <-c.Context().Done(); close(ctxDone) }()
				return c.Close(4001, "done")
			})
		})
		s.Handle("/rec", rec.factory())
	})
	c := dial(t, ts.url+"/ws")
	got := map[string]bool{readText(t, c): true, readText(t, c): true}
	if !got["once"] || !got["3 ticks"] {
		t.Fatalf("timer messages: %v", got)
	}
	write(t, c, websocket.MessageText, "ask child")
	if m := readText(t, c); m != "child got ping / request came from this connection: true" {
		t.Fatalf("child actor round trip: %q", m)
	}

	r := dial(t, ts.url+"/rec")
	id := recv(t, rec.opened, "open")
	readText(t, r)
	// A handler without Receive logs and drops actor messages.
	if err := ts.Tell(id, "hello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dropped message to be logged", func() bool { return strings.Contains(ts.logs.String(), "has no Receive method") })

	x := dial(t, ts.url+"/ctx")
	write(t, x, websocket.MessageText, "go")
	wantClose(t, x, 4001, "done")
	recv(t, ctxDone, "Conn.Context to be cancelled")
	// No "tick after Stop" ever arrived on the first connection.
	write(t, c, websocket.MessageText, "noop")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, b, err := c.Read(ctx); err == nil {
		t.Fatalf("unexpected message after the timer stopped: %q", b)
	}
}

// counter has unsynchronised state touched by frames, actor messages and
// timers: the race detector fails the test if the mailbox ever lets two of
// them run at once.
type counter struct{ n int }

func (h *counter) OnOpen(c *wsactor.Conn) error {
	c.Every(time.Millisecond, "tick")
	return nil
}

func (h *counter) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	if m.Text() == "count" {
		return c.SendText(fmt.Sprint(h.n))
	}
	h.n++
	return nil
}

func (h *counter) Receive(c *wsactor.Conn, msg any) {
	if msg == "tick" {
		return
	}
	h.n++
}

func TestMailboxSerializesEverything(t *testing.T) {
	rec := newRecorder()
	var opened = make(chan wsactor.ID, 1)
	// 500 frames in a burst: beyond the default rate limit's burst of 400.
	noLimit := wsactor.TransportOptions{RateLimit: wsactor.RateLimit{MessagesPerSecond: -1}}
	ts := newTestServer(t, wsactor.Options{Transport: noLimit}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &openNotifier{counter: &counter{}, opened: opened} })
	})
	_ = rec
	c := dial(t, ts.url+"/ws")
	id := recv(t, opened, "open")
	const tellers, perTeller, frames = 20, 200, 500
	var wg sync.WaitGroup
	for range tellers {
		wg.Go(func() {
			for i := range perTeller {
				if err := ts.Tell(id, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range frames {
		write(t, c, websocket.MessageText, "+")
	}
	wg.Wait()
	want := fmt.Sprint(tellers*perTeller + frames)
	// Tells and frames travel different paths; poll until all are counted.
	deadline := time.Now().Add(testTimeout)
	for {
		write(t, c, websocket.MessageText, "count")
		if got := readText(t, c); got == want {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("count %s, want %s", got, want)
		}
	}
}

type openNotifier struct {
	*counter
	opened chan wsactor.ID
}

func (h *openNotifier) OnOpen(c *wsactor.Conn) error {
	h.opened <- c.ID()
	return h.counter.OnOpen(c)
}

func TestHandshakeTimeout(t *testing.T) {
	s := wsactor.New(wsactor.Options{HandshakeTimeout: 100 * time.Millisecond, Logger: discardLogger()})
	s.Handle("/ws", func() wsactor.Handler { return echo{} })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := recv(t, served, "Serve to return"); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	// A client that connects and never sends its request headers is cut off.
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := raw.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want the server to close the silent connection, got %v", err)
	}
	// A normal client on the same listener works.
	c := dial(t, "ws://"+l.Addr().String()+"/ws")
	write(t, c, websocket.MessageText, "hi")
	if got := readText(t, c); got != "hi" {
		t.Fatalf("got %q", got)
	}
}

func TestNewServerWithTheSameNameAfterShutdown(t *testing.T) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }))
	t.Cleanup(system.Shutdown)
	for i := range 2 {
		s := wsactor.New(wsactor.Options{ActorSystem: system, Name: "again", Logger: discardLogger()})
		s.Handle("/ws", func() wsactor.Handler { return echo{} })
		hs := httptest.NewServer(s)
		c := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws")
		write(t, c, websocket.MessageText, fmt.Sprint("round ", i))
		if got := readText(t, c); got != fmt.Sprint("round ", i) {
			t.Fatalf("got %q", got)
		}
		go func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		hs.Close()
	}
}
