package wsactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// The examples serve with httptest.NewServer and dial with coder/websocket
// over loopback. In an application the server is mounted in a mux
// (mux.Handle("/ws/", s)) or run with s.ListenAndServe(":8080").
//
// Identifiers in this file start with "ex" so that they do not collide with
// the package's tests.

func ExampleNew() {
	s := wsactor.New(wsactor.Options{})
	s.HandleFunc("/ws/echo", func(c *wsactor.Conn, m wsactor.Message) error {
		return c.Send(m) // text back as text, binary as binary
	})
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws/echo", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()

	_ = c.Write(ctx, websocket.MessageText, []byte("hello"))
	typ, data, _ := c.Read(ctx)
	fmt.Println(typ, string(data))
	_ = c.Write(ctx, websocket.MessageBinary, []byte{0xca, 0xfe})
	typ, data, _ = c.Read(ctx)
	fmt.Println(typ, data)
	// Output:
	// MessageText hello
	// MessageBinary [202 254]
}

// exRoom is a handler with per-connection state: the route's factory makes
// one value per connection, and the mailbox calls its methods one at a time,
// so its fields need no lock.
type exRoom struct {
	room, user string
	count      int
}

func (h *exRoom) Connect(hs *wsactor.Handshake) wsactor.Decision {
	h.room, h.user = hs.PathValue("room"), hs.Query().Get("user")
	if h.user == "" {
		return wsactor.Reject(http.StatusUnauthorized, "who are you?")
	}
	return wsactor.Accept()
}

func (h *exRoom) OnOpen(c *wsactor.Conn) error {
	return c.SendText("welcome " + h.user + " to " + h.room)
}

func (h *exRoom) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	h.count++
	return c.SendText(fmt.Sprintf("#%d %s: %s", h.count, h.user, m.Text()))
}

func ExampleServer_Handle() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/{room}", func() wsactor.Handler { return &exRoom{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws/lobby?user=ann", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()

	_, greeting, _ := c.Read(ctx)
	fmt.Println(string(greeting))
	for _, msg := range []string{"hi", "anyone here?"} {
		_ = c.Write(ctx, websocket.MessageText, []byte(msg))
		_, reply, _ := c.Read(ctx)
		fmt.Println(string(reply))
	}
	// Output:
	// welcome ann to lobby
	// #1 ann: hi
	// #2 ann: anyone here?
}

// exTracked tells the example its connection's ID when it opens and how it
// closed, and forwards exNotice messages from other actors to the client.
type exTracked struct {
	ids    chan<- wsactor.ID
	closes chan<- string
}

// exNotice is an actor message (not a WebSocket message) for exTracked.
type exNotice string

func (h exTracked) OnOpen(c *wsactor.Conn) error {
	h.ids <- c.ID() // in an application: register the ID in a room, a map, a database
	return nil
}

func (h exTracked) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h exTracked) Receive(c *wsactor.Conn, msg any) {
	if n, ok := msg.(exNotice); ok {
		_ = c.SendText("notice: " + string(n))
	}
}

func (h exTracked) OnClose(_ *wsactor.Conn, code wsactor.StatusCode, reason string) {
	if h.closes != nil {
		h.closes <- fmt.Sprintf("OnClose: %d %s", code, reason)
	}
}

func ExampleServer_Send() {
	ids := make(chan wsactor.ID, 1)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exTracked{ids: ids} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	id := <-ids

	// From any goroutine: Send waits until the message is queued for the
	// socket; Post returns at once.
	if err := s.Send(ctx, id, wsactor.Text("pushed from outside")); err != nil {
		fmt.Println(err)
	}
	if err := s.Post(id, wsactor.Binary([]byte{1, 2, 3})); err != nil {
		fmt.Println(err)
	}
	typ, data, _ := c.Read(ctx)
	fmt.Println(typ, string(data))
	typ, data, _ = c.Read(ctx)
	fmt.Println(typ, data)

	err = s.Send(ctx, "not-an-id", wsactor.Text("?"))
	fmt.Println(errors.Is(err, wsactor.ErrInvalidID))
	// Output:
	// MessageText pushed from outside
	// MessageBinary [1 2 3]
	// true
}

func ExampleServer_Tell() {
	ids := make(chan wsactor.ID, 1)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exTracked{ids: ids} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	id := <-ids

	// Tell delivers any value to the handler's Receive, through the
	// mailbox. To a connection on another node, register the value's type
	// first (see RegisterMessage).
	if err := s.Tell(id, exNotice("maintenance at noon")); err != nil {
		fmt.Println(err)
	}
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	// Output: notice: maintenance at noon
}

// exMove is an application message that crosses nodes once registered.
type exMove struct{ X, Y int }

// exPosition is the Conn.SetValue key of a player's last position.
type exPosition struct{}

// exPlayer keeps its last move with Conn.SetValue, which survives handler
// restarts (its fields would not).
type exPlayer struct{ ids chan<- wsactor.ID }

func (h exPlayer) OnOpen(c *wsactor.Conn) error {
	h.ids <- c.ID()
	return nil
}

func (h exPlayer) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h exPlayer) Receive(c *wsactor.Conn, msg any) {
	if m, ok := msg.(exMove); ok {
		c.SetValue(exPosition{}, m)
		_ = c.SendText(fmt.Sprintf("moved to %d,%d", m.X, m.Y))
	}
}

func ExampleRegisterMessage() {
	// At init, on every node, before any node sends one: the name, not the
	// Go type's path, is what crosses the network.
	wsactor.RegisterMessage[exMove]("example.move")

	ids := make(chan wsactor.ID, 1)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exPlayer{ids: ids} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	id := <-ids

	// The same call whether the connection lives on this node or another
	// one of the cluster: there, Receive gets an exMove too.
	if err := s.Tell(id, exMove{X: 1, Y: 2}); err != nil {
		fmt.Println(err)
	}
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))

	// What crosses the network, and what the receiving node makes of it.
	m, _ := wsactor.EncodeValue(exMove{X: 3, Y: 4})
	v, _ := wsactor.DecodeValue(m)
	fmt.Printf("%T %+v\n", v, v)

	// A type never registered cannot reach another node: Tell to a
	// connection there refuses it, naming the type.
	_, err = wsactor.EncodeValue(exNotice("hello"))
	fmt.Println(errors.Is(err, wsactor.ErrNotRegistered))
	// Output:
	// moved to 1,2
	// wsactor_test.exMove {X:3 Y:4}
	// true
}

func ExampleServer_Close() {
	ids, closes := make(chan wsactor.ID, 1), make(chan string, 1)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exTracked{ids: ids, closes: closes} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	id := <-ids

	// The client must keep reading to answer the closing handshake.
	clientErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()

	// Close waits until the connection has closed and its OnClose has run.
	if err := s.Close(ctx, id, 4000, "kicked by admin"); err != nil {
		fmt.Println(err)
	}
	fmt.Println(<-closes)
	var ce websocket.CloseError
	if errors.As(<-clientErr, &ce) {
		fmt.Println("client sees:", int(ce.Code), ce.Reason)
	}
	err = s.Send(ctx, id, wsactor.Text("too late"))
	fmt.Println(errors.Is(err, wsactor.ErrConnectionNotFound))
	// Output:
	// OnClose: 4000 kicked by admin
	// client sees: 4000 kicked by admin
	// true
}

func ExampleServer_Shutdown() {
	ids, closes := make(chan wsactor.ID, 1), make(chan string, 1)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exTracked{ids: ids, closes: closes} })
	ts := httptest.NewServer(s)
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	<-ids

	clientErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()

	// Shutdown closes every connection with 1001, Options.Drain.Batch
	// (10,000) at a time every Options.Drain.Interval (2 s), and returns
	// once every OnClose has run (or shortly after ctx ends).
	if err := s.Shutdown(ctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println(<-closes)
	fmt.Println("client sees:", websocket.CloseStatus(<-clientErr))
	// Output:
	// OnClose: 1001 going away
	// client sees: StatusGoingAway
}

// exTokenGate accepts only handshakes that carry the right token.
type exTokenGate struct{}

func (exTokenGate) Connect(h *wsactor.Handshake) wsactor.Decision {
	if h.Query().Get("token") != "s3cret" {
		return wsactor.Reject(http.StatusUnauthorized, "bad token")
	}
	return wsactor.Accept()
}

func (exTokenGate) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func ExampleConnector() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exTokenGate{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, token := range []string{"guess", "s3cret"} {
		c, resp, err := websocket.Dial(ctx, ts.URL+"/ws?token="+token, nil)
		switch {
		case resp == nil: // no HTTP answer at all
			fmt.Println(err)
			return
		case err != nil:
			fmt.Println(token+":", "refused with HTTP", resp.StatusCode)
			continue
		}
		fmt.Println(token+":", "accepted")
		c.CloseNow()
	}
	// Output:
	// guess: refused with HTTP 401
	// s3cret: accepted
}

// exMaintenance refuses every handshake, as a Connect does during maintenance.
type exMaintenance struct{}

func (exMaintenance) Connect(*wsactor.Handshake) wsactor.Decision {
	return wsactor.Reject(http.StatusServiceUnavailable, "down for maintenance")
}

func (exMaintenance) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func ExampleReject() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exMaintenance{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err == nil || resp == nil {
		fmt.Println("want an HTTP refusal, got", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	fmt.Println(s.Stats().ConnectionsRejected)
	// Output:
	// 503 down for maintenance
	// 1
}

// exRoomClosed accepts the upgrade only to close it with a reason a browser
// can read: a browser cannot see the HTTP status of a refused upgrade.
type exRoomClosed struct{}

func (exRoomClosed) Connect(*wsactor.Handshake) wsactor.Decision {
	return wsactor.AcceptThenClose(4403, "room is closed")
}

func (exRoomClosed) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func ExampleAcceptThenClose() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exRoomClosed{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		fmt.Println(int(ce.Code), ce.Reason)
	}
	// Output: 4403 room is closed
}

// exTicker sends three ticks, one per timer tick, then closes.
type exTicker struct {
	n     int
	timer *wsactor.Timer
}

type exTick struct{}

func (h *exTicker) OnOpen(c *wsactor.Conn) error {
	h.timer = c.Every(10*time.Millisecond, exTick{})
	return nil
}

func (h *exTicker) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

// Receive gets the ticks through the mailbox, never concurrently with
// OnMessage, so h.n needs no lock.
func (h *exTicker) Receive(c *wsactor.Conn, msg any) {
	if _, ok := msg.(exTick); !ok {
		return
	}
	h.n++
	_ = c.SendText(fmt.Sprintf("tick %d", h.n))
	if h.n == 3 {
		h.timer.Stop()
		_ = c.Close(wsactor.StatusNormalClosure, "done") // after the queued ticks
	}
}

func ExampleConn_Every() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return &exTicker{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			fmt.Println("closed:", websocket.CloseStatus(err))
			return
		}
		fmt.Println(string(data))
	}
	// Output:
	// tick 1
	// tick 2
	// tick 3
	// closed: StatusNormalClosure
}

// exReminder sends a reminder once, after a delay, and shows that a stopped
// timer never delivers.
type exReminder struct{}

func (exReminder) OnOpen(c *wsactor.Conn) error {
	c.After(20*time.Millisecond, "reminder: drink water")
	cancelled := c.After(time.Millisecond, "this one was cancelled")
	cancelled.Stop()
	return nil
}

func (exReminder) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (exReminder) Receive(c *wsactor.Conn, msg any) {
	if s, ok := msg.(string); ok {
		_ = c.SendText(s)
		_ = c.Close(wsactor.StatusNormalClosure, "")
	}
}

func ExampleConn_After() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws", func() wsactor.Handler { return exReminder{} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			fmt.Println("closed:", websocket.CloseStatus(err))
			return
		}
		fmt.Println(string(data))
	}
	// Output:
	// reminder: drink water
	// closed: StatusNormalClosure
}

func ExampleCloseWith() {
	s := wsactor.New(wsactor.Options{})
	s.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error {
		if m.Text() != "ping" {
			// Codes 4000–4999 belong to the application.
			return wsactor.CloseWith(4001, "unknown command: "+m.Text())
		}
		return c.SendText("pong")
	})
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for _, cmd := range []string{"ping", "jump"} {
		_ = c.Write(ctx, websocket.MessageText, []byte(cmd))
		_, data, err := c.Read(ctx)
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			fmt.Println("closed:", int(ce.Code), ce.Reason)
			break
		}
		fmt.Println(string(data))
	}
	// Output:
	// pong
	// closed: 4001 unknown command: jump
}

// exSum is the JSON request of ExampleDecodeJSON.
type exSum struct {
	A int `json:"a"`
	B int `json:"b"`
}

func ExampleDecodeJSON() {
	s := wsactor.New(wsactor.Options{})
	s.HandleFunc("/ws/sum", func(c *wsactor.Conn, m wsactor.Message) error {
		req, err := wsactor.DecodeJSON[exSum](m)
		if err != nil {
			return wsactor.CloseWith(4400, "want {\"a\":…,\"b\":…}")
		}
		return c.SendJSON(map[string]int{"sum": req.A + req.B})
	})
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws/sum", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"a": 2, "b": 40}`))
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	// Output: {"sum":42}
}

func ExampleServer_Stats() {
	s := wsactor.New(wsactor.Options{})
	s.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) })
	ts := httptest.NewServer(s)
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = c.Write(ctx, websocket.MessageText, []byte("hello"))
	_, _, _ = c.Read(ctx)
	_ = c.CloseNow()

	// Counters move while connections run; after Shutdown (which waits for
	// every OnClose) they are final.
	_ = s.Shutdown(ctx)
	st := s.Stats()
	fmt.Printf("accepted=%d rejected=%d in=%d open=%d\n",
		st.ConnectionsAccepted, st.ConnectionsRejected, st.MessagesIn, st.ConnectionsOpen)
	// Output: accepted=1 rejected=0 in=1 open=0
}
