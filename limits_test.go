package wsactor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
)

func TestOversizedMessageCloses1009(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	limit := 64 << 10
	write(t, c, websocket.MessageBinary, strings.Repeat("x", limit))
	if _, got := read(t, c); len(got) != limit {
		t.Fatalf("a message of exactly the limit must pass, echoed %d bytes", len(got))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_ = c.Write(ctx, websocket.MessageBinary, []byte(strings.Repeat("x", limit+1)))
	wantClose(t, c, websocket.StatusMessageTooBig, "*")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1009 {
		t.Fatalf("OnClose: %+v", ev)
	}
}

func TestInvalidUTF8Closes1007(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	other := dial(t, ts.url+"/ws")
	readText(t, other)
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	write(t, c, websocket.MessageText, "ok \xff\xfe bad")
	wantClose(t, c, websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in text message")
	recv(t, rec.opened, "open")
	id := recv(t, rec.opened, "open")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1007 || ev.id != id {
		t.Fatalf("OnClose: %+v", ev)
	}
	// Binary frames are not text: arbitrary bytes are fine there.
	write(t, other, websocket.MessageBinary, "\xff\xfe")
	if _, got := read(t, other); got != "\xff\xfe" {
		t.Fatalf("other connection: %q", got)
	}
}

// fillUntilFull sends large messages to a client that does not read until the
// server reports its send queue full.
func fillUntilFull(t *testing.T, ts *testServer, id wsactor.ID) error {
	t.Helper()
	big := wsactor.Binary(make([]byte, 256<<10))
	for range 10_000 {
		if err := ts.Send(context.Background(), id, big); err != nil {
			return err
		}
	}
	t.Fatal("the send queue never filled up")
	return nil
}

func TestSlowConsumerIsClosed1013(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 8, WriteTimeout: 2 * time.Second}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	slow := dial(t, ts.url+"/ws") // never reads
	id := recv(t, rec.opened, "open")
	if err := fillUntilFull(t, ts, id); !errors.Is(err, wsactor.ErrSendQueueFull) {
		t.Fatalf("want ErrSendQueueFull, got %v", err)
	}
	ev := recv(t, rec.closed, "OnClose of the slow consumer")
	if ev.id != id || ev.code != websocket.StatusTryAgainLater || ev.reason != "slow consumer: send queue full" {
		t.Fatalf("OnClose: %+v", ev)
	}
	if st := ts.Stats(); st.SlowConsumerCloses != 1 {
		t.Fatalf("stats: %+v", st)
	}
	_ = slow
	if !strings.Contains(ts.logs.String(), "slow consumer") {
		t.Fatalf("the slow-consumer close should be logged:\n%s", ts.logs.String())
	}
}

func TestSlowConsumerDoesNotSlowOthers(t *testing.T) {
	rec := newRecorder()
	// The queue holds 1024 small messages but only 1 MiB: four of the stuck
	// client's 256 KiB messages fill it, none of the others' 500 small ones.
	// The write timeout is long enough not to close the stuck client meanwhile.
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 1024, Overflow: wsactor.OverflowDropNewest, WriteTimeout: time.Minute}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	dial(t, ts.url+"/ws") // a client that never reads
	stuck := recv(t, rec.opened, "open")
	if err := fillUntilFull(t, ts, stuck); !errors.Is(err, wsactor.ErrSendQueueFull) {
		t.Fatalf("want ErrSendQueueFull, got %v", err)
	}

	// While that client's queue is full and its writer blocked, 50 others
	// each receive every message sent to them.
	const clients, perClient = 50, 500
	var wg sync.WaitGroup
	failures := make(chan error, clients)
	for range clients {
		c := dial(t, ts.url+"/ws")
		id := recv(t, rec.opened, "open")
		readText(t, c)
		wg.Go(func() {
			go func() {
				for i := range perClient {
					if err := ts.Send(context.Background(), id, wsactor.Text(fmt.Sprint(i))); err != nil {
						failures <- err
						return
					}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			for i := range perClient {
				_, b, err := c.Read(ctx)
				if err != nil || string(b) != fmt.Sprint(i) {
					failures <- fmt.Errorf("client read %d: %q %v", i, b, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}
	st := ts.Stats()
	if st.ConnectionsOpen != clients+1 || st.Dropped == 0 || st.SlowConsumerCloses != 0 {
		t.Fatalf("the stuck client should still be open with dropped messages: %+v", st)
	}
	// Kernel buffers may have grown meanwhile, so the queue may have room again:
	// what matters is that the stuck connection was neither closed nor let go.
	if err := ts.Send(context.Background(), stuck, wsactor.Text("x")); err != nil && !errors.Is(err, wsactor.ErrSendQueueFull) {
		t.Fatalf("stuck client: want it still open, got %v", err)
	}
}

func TestUnansweredPingsClose(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	alive := dial(t, ts.url+"/ws")
	aliveID := recv(t, rec.opened, "open")
	readText(t, alive)
	go func() { // keeps reading, so it answers pings
		for {
			if _, _, err := alive.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	silent := dial(t, ts.url+"/ws") // never reads: never answers a ping
	silentID := recv(t, rec.opened, "open")
	ev := recv(t, rec.closed, "OnClose of the silent client")
	if ev.id != silentID || ev.code != websocket.StatusInternalError || ev.reason != "ping timeout" {
		t.Fatalf("OnClose: %+v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		if _, _, err := silent.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the silent client's socket was not closed")
			}
			break
		}
	}
	// The answering client survived the same ping rounds.
	if err := ts.Send(context.Background(), aliveID, wsactor.Text("still there?")); err != nil {
		t.Fatalf("answering client was closed: %v", err)
	}
}

func TestIdleTimeoutCloses1001(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{IdleTimeout: 100 * time.Millisecond, PingInterval: -1}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	wantClose(t, c, websocket.StatusGoingAway, "idle timeout")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1001 || ev.reason != "idle timeout" {
		t.Fatalf("OnClose: %+v", ev)
	}
}

func TestMaxConnections503(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{MaxConnections: 2}, func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	a := dial(t, ts.url+"/ws")
	dial(t, ts.url+"/ws")
	_, err := dialErr(t, ts.url+"/ws", nil)
	wantStatus(t, err, http.StatusServiceUnavailable)
	if err := a.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a slot to free up", func() bool { return ts.Stats().ConnectionsOpen == 1 })
	dial(t, ts.url+"/ws")
}

func TestOriginCheck(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return echo{} })
		s.Handle("/partner", func() wsactor.Handler { return echo{} }, wsactor.WithOriginPatterns("*.partner.example"))
	})
	evil := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}}
	_, err := dialErr(t, ts.url+"/ws", evil)
	wantStatus(t, err, http.StatusForbidden)
	_, err = dialErr(t, ts.url+"/partner", evil)
	wantStatus(t, err, http.StatusForbidden)
	partner := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.partner.example"}}}
	if _, err := dialErr(t, ts.url+"/partner", partner); err != nil {
		t.Fatalf("allow-listed origin refused: %v", err)
	}
	same := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {ts.http.URL}}}
	if _, err := dialErr(t, ts.url+"/ws", same); err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
	if st := ts.Stats(); st.ConnectionsRejected != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

// countingConnector counts Connect calls.
type countingConnector struct {
	echo
	calls *atomic.Int32
}

func (h countingConnector) Connect(*wsactor.Handshake) wsactor.Decision {
	h.calls.Add(1)
	return wsactor.Accept()
}

func TestCrossOriginNeverReachesConnectOrAuth(t *testing.T) {
	var connects, auths atomic.Int32
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return countingConnector{calls: &connects} },
			wsactor.WithAuthenticator(auth.AuthenticatorFunc(func(*http.Request) (*auth.User, error) {
				auths.Add(1)
				return nil, nil
			})))
	})
	_, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	wantStatus(t, err, http.StatusForbidden)
	if connects.Load() != 0 || auths.Load() != 0 {
		t.Fatalf("a cross-origin request ran Connect %d times and the authenticator %d times", connects.Load(), auths.Load())
	}
	dial(t, ts.url+"/ws")
	if connects.Load() != 1 || auths.Load() != 1 {
		t.Fatalf("same-origin: Connect %d, authenticator %d", connects.Load(), auths.Load())
	}
}

func TestPlainHTTPAndUnknownPaths(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/{room}", func() wsactor.Handler { return echo{} })
	})
	for path, status := range map[string]int{"/ws/lobby": http.StatusUpgradeRequired, "/nope": http.StatusNotFound, "/ws": http.StatusNotFound} {
		resp, err := http.Get(ts.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("GET %s: want %d, got %d", path, status, resp.StatusCode)
		}
		if status == http.StatusUpgradeRequired && resp.Header.Get("Upgrade") != "websocket" {
			t.Fatalf("426 without Upgrade: websocket header")
		}
	}
	_, err := dialErr(t, ts.url+"/nope", nil)
	wantStatus(t, err, http.StatusNotFound)
}

// The flood, seen from the members: a burst of 3,000 broadcasts to a
// room arrives in every member's send queue at once, more than ten times the
// old count bound of 256. Members that read promptly get all of it, in order,
// and stay open: the default queue is judged by bytes and by lag.
func TestBurstDoesNotCloseMembersThatRead(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{})
	const members, burst = 5, 3000
	var clients []*websocket.Conn
	for i := range members {
		c, _ := joined(t, ts, opened, "", "room", fmt.Sprint("m", i))
		clients = append(clients, c)
	}
	errs := make(chan error, members)
	for i, c := range clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			next := 0
			for next < burst {
				_, b, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("member %d after %d messages: %w", i, next, err)
					return
				}
				s, ok := strings.CutPrefix(string(b), "b ")
				if !ok {
					continue // a presence event
				}
				if s != fmt.Sprint(next) {
					errs <- fmt.Errorf("member %d got %q, want %d: lost or reordered", i, b, next)
					return
				}
				next++
			}
			errs <- nil
		}()
	}
	for i := range burst {
		if n, err := ts.Groups().Broadcast(context.Background(), "room", wsactor.Text(fmt.Sprint("b ", i))); err != nil || n != members {
			t.Fatalf("broadcast %d: posted to %d members, %v", i, n, err)
		}
	}
	for range members {
		if err := recv(t, errs, "a member's reads"); err != nil {
			t.Fatal(err)
		}
	}
	if st := ts.Stats(); st.SlowConsumerCloses != 0 || st.ConnectionsOpen != members {
		t.Fatalf("members that read were closed: %+v", st)
	}
}

// Over TLS, a page served over plain HTTP on the same host is another origin:
// it gets 403 before the upgrade, as does one that a proxy reports as TLS.
func TestOriginSchemeOverTLS(t *testing.T) {
	s := wsactor.New(wsactor.Options{Logger: discardLogger()})
	s.Handle("/ws", func() wsactor.Handler { return echo{} })
	hs := httptest.NewTLSServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	host := strings.TrimPrefix(hs.URL, "https://")
	dialTLS := func(origin string) error {
		_, err := dialErr(t, "wss://"+host+"/ws", &websocket.DialOptions{
			HTTPClient: hs.Client(),
			HTTPHeader: http.Header{"Origin": {origin}},
		})
		return err
	}
	wantStatus(t, dialTLS("http://"+host), http.StatusForbidden)
	if err := dialTLS("https://" + host); err != nil {
		t.Fatalf("the https page of the same host was refused: %v", err)
	}

	// Plain HTTP behind a proxy that terminated TLS and says so.
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) { s.Handle("/ws", func() wsactor.Handler { return echo{} }) })
	plainHost := strings.TrimPrefix(ts.http.URL, "http://")
	viaProxy := func(origin string) error {
		_, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{
			"Origin": {origin}, "X-Forwarded-Proto": {"https"},
		}})
		return err
	}
	wantStatus(t, viaProxy("http://"+plainHost), http.StatusForbidden)
	if err := viaProxy("https://" + plainHost); err != nil {
		t.Fatalf("an https origin behind a TLS proxy was refused: %v", err)
	}
	// Without the proxy's word, either scheme is accepted.
	if _, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://" + plainHost}}}); err != nil {
		t.Fatalf("an https origin over plain HTTP was refused: %v", err)
	}
}

// A client that stops reading is closed 1013 "slow consumer: stopped
// reading" once the socket has taken no bytes for WriteTimeout, counted and
// logged at Warn, while the other connections carry on.
func TestStalledReaderIsClosed1013(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Transport: wsactor.TransportOptions{WriteTimeout: 300 * time.Millisecond, PingInterval: -1}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	// A client with small kernel buffers that never reads.
	small := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(32 << 10)
		}
		return c, err
	}}}
	if _, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{HTTPClient: small}); err != nil {
		t.Fatal(err)
	}
	stalled := recv(t, rec.opened, "open")
	other := dial(t, ts.url+"/ws")
	otherID := recv(t, rec.opened, "open")
	readText(t, other)

	// More than any kernel buffers on the way: the writer stalls on it.
	if err := ts.Send(context.Background(), stalled, wsactor.Binary(make([]byte, 16<<20))); err != nil {
		t.Fatal(err)
	}
	ev := recv(t, rec.closed, "OnClose of the stalled reader")
	if ev.id != stalled || ev.code != websocket.StatusTryAgainLater || ev.reason != "slow consumer: stopped reading" {
		t.Fatalf("OnClose: %+v", ev)
	}
	if st := ts.Stats(); st.SlowConsumerCloses != 1 {
		t.Fatalf("stats: %+v", st)
	}
	warned := false
	for line := range strings.Lines(ts.logs.String()) {
		warned = warned || strings.Contains(line, "level=WARN") && strings.Contains(line, "stopped reading")
	}
	if !warned {
		t.Fatalf("the stalled reader's close should be logged at Warn:\n%s", ts.logs.String())
	}
	if err := ts.Send(context.Background(), otherID, wsactor.Text("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, other); got != "still here" {
		t.Fatalf("the other client got %q", got)
	}
}
