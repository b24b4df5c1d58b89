package wsactor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// noRefill is a rate that adds no token within a test's lifetime, so the
// counts below are exact whatever the machine's speed: only the burst passes.
const noRefill = 0.0001

// burstOf is a message limit that lets n messages through, then none.
func burstOf(n int) wsactor.RateLimit {
	return wsactor.RateLimit{MessagesPerSecond: noRefill, MessageBurst: n}
}

// TestRateLimitRouterEnvelopes: a Router answers each message beyond the
// limit with a rate_limited envelope echoing its "req" and type, and the
// connection stays open.
func TestRateLimitRouterEnvelopes(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		r := chatRouter(wsactor.BadMessageReply)
		s.Handle("/ws/{room}", func() wsactor.Handler { return r }, wsactor.WithRateLimit(burstOf(3)))
	})
	c := dial(t, ts.url+"/ws/lobby")
	for i := range 5 {
		write(t, c, websocket.MessageText, fmt.Sprintf(`{"type":"add","req":%d,"A":%d,"B":1}`, i, i))
	}
	write(t, c, websocket.MessageText, `{"type":"say","text":"no req"}`)
	write(t, c, websocket.MessageText, `not JSON`)
	write(t, c, websocket.MessageBinary, "\x00")
	want := []string{
		`{"data":1,"req":0,"type":"reply"}`,
		`{"data":2,"req":1,"type":"reply"}`,
		`{"data":3,"req":2,"type":"reply"}`,
		`{"code":"rate_limited","error":"rate limit exceeded","message":"rate limit exceeded","ref":"add","req":3,"type":"error"}`,
		`{"code":"rate_limited","error":"rate limit exceeded","message":"rate limit exceeded","ref":"add","req":4,"type":"error"}`,
		`{"code":"rate_limited","error":"rate limit exceeded","message":"rate limit exceeded","ref":"say","type":"error"}`,
		`{"code":"rate_limited","error":"rate limit exceeded","message":"rate limit exceeded","type":"error"}`,
		`{"code":"rate_limited","error":"rate limit exceeded","message":"rate limit exceeded","type":"error"}`,
	}
	for i, w := range want {
		if got := canonicalJSON(t, readText(t, c)); got != w {
			t.Errorf("answer %d = %s, want %s", i, got, w)
		}
	}
	if n := ts.Stats().RateLimited; n != 5 {
		t.Errorf("Stats().RateLimited = %d, want 5", n)
	}
	if err := c.Ping(pingCtx(t, c)); err != nil {
		t.Errorf("the connection did not stay open: %v", err)
	}
}

// pingCtx reads in the background (coder/websocket's Ping needs a reader)
// and returns a context bounded by the test timeout.
func pingCtx(t *testing.T, c *websocket.Conn) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	go func() { _, _, _ = c.Read(ctx) }()
	return ctx
}

// TestRateLimitDefaultEnvelope: a handler without OnRateLimited never sees
// the excess; the client gets the documented envelope instead.
func TestRateLimitDefaultEnvelope(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{RateLimit: burstOf(2)}}, func(s *wsactor.Server) {
		s.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error {
			mu.Lock()
			seen = append(seen, m.Text())
			mu.Unlock()
			return c.Send(m)
		})
	})
	c := dial(t, ts.url+"/ws")
	for i := range 4 {
		write(t, c, websocket.MessageText, fmt.Sprint("m", i))
	}
	const envelope = `{"type":"error","code":"rate_limited","message":"rate limit exceeded","error":"rate limit exceeded"}`
	for i, w := range []string{"m0", "m1", envelope, envelope} {
		if got := readText(t, c); got != w {
			t.Errorf("answer %d = %s, want %s", i, got, w)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[m0 m1]" {
		t.Errorf("OnMessage saw %q, want only the two within the limit", seen)
	}
}

// limitAware answers refused messages itself.
type limitAware struct{}

func (limitAware) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

func (limitAware) OnRateLimited(c *wsactor.Conn, m wsactor.Message) {
	_ = c.SendText("slow down, dropped " + m.Text())
}

var _ wsactor.RateLimitedHandler = limitAware{}

func TestRateLimitHandlerAnswers(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return limitAware{} }, wsactor.WithRateLimit(burstOf(1)))
	})
	c := dial(t, ts.url+"/ws")
	write(t, c, websocket.MessageText, "a")
	write(t, c, websocket.MessageText, "b")
	for _, w := range []string{"a", "slow down, dropped b"} {
		if got := readText(t, c); got != w {
			t.Errorf("got %q, want %q", got, w)
		}
	}
}

// TestRateLimitPerRoute: the server's limit applies to its routes unless a
// route sets its own, with WithRateLimit or WithTransport.
func TestRateLimitPerRoute(t *testing.T) {
	echo := func(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{RateLimit: burstOf(2)}}, func(s *wsactor.Server) {
		s.HandleFunc("/server", echo)
		s.HandleFunc("/off", echo, wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: -1}))
		s.HandleFunc("/transport", echo, wsactor.WithTransport(func(o *wsactor.TransportOptions) { o.RateLimit.MessageBurst = 4 }))
		s.HandleFunc("/close", echo, wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: noRefill, MessageBurst: 1,
			Policy: wsactor.RateLimitClose}))
	})
	for _, tc := range []struct {
		path   string
		passed int
	}{{"/server", 2}, {"/off", 10}, {"/transport", 4}} {
		t.Run(tc.path, func(t *testing.T) {
			c := dial(t, ts.url+tc.path)
			for i := range 10 {
				write(t, c, websocket.MessageText, fmt.Sprint(i))
			}
			passed := 0
			for range 10 {
				if readText(t, c)[0] != '{' {
					passed++
				}
			}
			if passed != tc.passed {
				t.Errorf("%d of 10 passed, want %d", passed, tc.passed)
			}
		})
	}
	t.Run("/close", func(t *testing.T) {
		c := dial(t, ts.url+"/close")
		write(t, c, websocket.MessageText, "fine")
		write(t, c, websocket.MessageText, "too much")
		wantClose(t, c, wsactor.StatusPolicyViolation, "rate limit exceeded")
	})
}

// TestFloodingClientDoesNotReachOthers: a client that floods a room gets its
// excess refused; the other member receives exactly what the limit let
// through, is not closed, and still gets later messages.
func TestFloodingClientDoesNotReachOthers(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.HandleFunc("/ws/room", func(c *wsactor.Conn, m wsactor.Message) error {
			if m.Text() == "join" {
				if err := c.Join("room", nil); err != nil {
					return err
				}
				return c.SendText("joined")
			}
			return c.Broadcast("room", m, c.ID())
		}, wsactor.WithRateLimit(burstOf(51)), // the join, then 50 messages
			// Room for every refusal: the flooder's own fate (a burst of
			// refusals can overflow the default queue) is not this test's.
			wsactor.WithTransport(func(o *wsactor.TransportOptions) { o.SendQueueMessages = 4096 }))
	})
	member := dial(t, ts.url+"/ws/room")
	write(t, member, websocket.MessageText, "join")
	if got := readText(t, member); got != "joined" {
		t.Fatalf("member: %q", got)
	}
	flooder := dial(t, ts.url+"/ws/room")
	write(t, flooder, websocket.MessageText, "join")
	if got := readText(t, flooder); got != "joined" {
		t.Fatalf("flooder: %q", got)
	}
	go func() { // the flooder reads its refusals, as a browser would
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		for {
			if _, _, err := flooder.Read(ctx); err != nil {
				return
			}
		}
	}()
	const flood = 3000
	for i := range flood {
		write(t, flooder, websocket.MessageText, fmt.Sprint("flood ", i))
	}
	for i := range 50 {
		if got, want := readText(t, member), fmt.Sprint("flood ", i); got != want {
			t.Fatalf("member got %q, want %q", got, want)
		}
	}
	waitFor(t, "every excess message refused", func() bool { return ts.Stats().RateLimited == flood-50 })
	// Nothing beyond the 50 was broadcast: the next message the member gets
	// is one the server sends the room now.
	if _, err := ts.Groups().Broadcast(context.Background(), "room", wsactor.Text("marker"), "x"); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, member); got != "marker" {
		t.Fatalf("member got %q after the flood, want the marker", got)
	}
	if st := ts.Stats(); st.SlowConsumerCloses != 0 || st.ConnectionsOpen != 2 {
		t.Errorf("stats after the flood: %+v", st)
	}
}
