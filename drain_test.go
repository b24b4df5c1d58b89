package wsactor_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// closedAt is when a client saw its connection end, and how.
type closedAt struct {
	at  time.Time
	err error
}

// readUntilClosed keeps c reading (so it answers the closing handshake)
// and reports on ch when and how it ended.
func readUntilClosed(c *websocket.Conn, ch chan<- closedAt) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
		defer cancel()
		for {
			if _, _, err := c.Read(ctx); err != nil {
				ch <- closedAt{time.Now(), err}
				return
			}
		}
	}()
}

// TestDrainClosesInBatches: 30 connections, batches of 10 every 400 ms.
// Every client gets 1001 "going away". A batch is asked to close no earlier
// than its time, so by the time batch k+1 starts, at most 10k clients can
// have seen their close: the assertion holds however slow the machine is,
// and fails if the server closes more than a batch at a time.
func TestDrainClosesInBatches(t *testing.T) {
	const n, batch, interval = 30, 10, 400 * time.Millisecond
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Drain: wsactor.DrainOptions{Batch: batch, Interval: interval}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	got := make(chan closedAt, n)
	for range n {
		c := dial(t, ts.url+"/ws")
		recv(t, rec.opened, "open")
		readText(t, c)
		readUntilClosed(c, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(start)
	var times []time.Time
	for range n {
		c := recv(t, got, "a client's close")
		if code := websocket.CloseStatus(c.err); code != websocket.StatusGoingAway {
			t.Fatalf("client: want 1001, got %v", c.err)
		}
		times = append(times, c.at)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for k := 1; k < n/batch; k++ {
		next := start.Add(time.Duration(k) * interval) // batch k+1 is asked no earlier
		if early := len(slices.DeleteFunc(slices.Clone(times), func(at time.Time) bool { return !at.Before(next) })); early > k*batch {
			t.Fatalf("%d clients were closed before batch %d was due; want at most %d", early, k+1, k*batch)
		}
	}
	if min := time.Duration(n/batch-1) * interval; took < min {
		t.Fatalf("Shutdown returned after %v; three batches %v apart take at least %v", took, interval, min)
	}
	for i := 1; i < n; i++ {
		if gap := times[i].Sub(times[i-1]); i%batch == 0 {
			t.Logf("between batches %d and %d: %v", i/batch, i/batch+1, gap.Round(time.Millisecond))
		}
	}
	if st := ts.Stats(); st.ConnectionsOpen != 0 {
		t.Fatalf("after Shutdown: %+v", st)
	}
}

// TestDrainRefusesUpgrades: while the drain runs, an upgrade gets 503 with
// a body that says why, before the upgrade. The drain's plan (3 batches an
// hour apart) is far longer than Shutdown's context: the batches come
// faster so that the drain ends within it, every connection with 1001, and
// Shutdown succeeds.
func TestDrainRefusesUpgrades(t *testing.T) {
	rec := newRecorder()
	ts := newTestServer(t, wsactor.Options{Drain: wsactor.DrainOptions{Batch: 1, Interval: time.Hour}},
		func(s *wsactor.Server) { s.Handle("/ws", rec.factory()) })
	got := make(chan closedAt, 3)
	for range 3 {
		c := dial(t, ts.url+"/ws")
		recv(t, rec.opened, "open")
		readText(t, c)
		readUntilClosed(c, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	first := recv(t, got, "the first batch")
	if code := websocket.CloseStatus(first.err); code != websocket.StatusGoingAway {
		t.Fatalf("first client: want 1001, got %v", first.err)
	}
	_, err := dialErr(t, ts.url+"/ws", nil)
	wantStatus(t, err, http.StatusServiceUnavailable)
	if he := (*httpError)(nil); errors.As(err, &he) && !strings.Contains(he.body, "shutting down") {
		t.Fatalf("503 body: %q; want it to say the server is shutting down", he.body)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while the drain had two batches to go", err)
	default:
	}
	if err := recv(t, done, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v; the drain should have fitted its context", err)
	}
	for range 2 {
		c := recv(t, got, "a client's close")
		if code := websocket.CloseStatus(c.err); code != websocket.StatusGoingAway {
			t.Fatalf("client: want 1001, got %v", c.err)
		}
	}
}

// stuck is a handler whose OnMessage blocks until the test ends: its actor
// can neither close nor stop while Shutdown runs.
type stuck struct{ release <-chan struct{} }

func (s stuck) OnMessage(*wsactor.Conn, wsactor.Message) error {
	<-s.release
	return nil
}

// TestShutdownShortContextReturnsPromptly: clients that never answer the
// closing handshake and a handler stuck in OnMessage hold a graceful
// shutdown up forever. Shutdown with a short context must return its error
// shortly after it ends (it used to wait 2 s for OnClose, then up to 5 s for
// the actors to stop), with every socket closed.
func TestShutdownShortContextReturnsPromptly(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return stuck{release} })
	})
	addr := strings.TrimPrefix(ts.url, "ws://")
	var raws []*rawWebSocket
	for range 10 {
		raws = append(raws, rawUpgrade(t, addr, "/ws"))
	}
	raws[0].send(t, "block") // the handler of this one is stuck
	waitFor(t, "the connections to open", func() bool { return ts.Stats().MessagesIn == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	err := ts.Shutdown(ctx)
	over := time.Since(deadline)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: want DeadlineExceeded, got %v", err)
	}
	t.Logf("Shutdown returned %v after its context's deadline", over.Round(time.Millisecond))
	// Generous for a loaded machine, and far short of the 7 s it could take.
	if over > time.Second {
		t.Fatalf("Shutdown returned %v after its context ended", over)
	}
	frames := 0
	for i, r := range raws {
		// The server has closed the socket: the client reads to EOF (what
		// the server sent first: a close frame, if the socket took it).
		_ = r.SetReadDeadline(time.Now().Add(testTimeout))
		b, err := io.ReadAll(r.br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("client %d: its socket is still open after Shutdown returned", i)
		}
		if len(b) >= 4 && b[0] == 0x88 && b[2] == 0x03 && b[3] == 0xe9 { // close frame, 1001
			frames++
		}
	}
	t.Logf("%d of %d clients got a close frame 1001 before their socket closed", frames, len(raws))
}

// rawWebSocket is an upgraded connection that never reads unless told to:
// it never answers a closing handshake.
type rawWebSocket struct {
	net.Conn
	br *bufio.Reader
}

func rawUpgrade(t *testing.T, addr, path string) *rawWebSocket {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return &rawWebSocket{Conn: c, br: br}
}

// send writes a masked text frame (under 126 bytes).
func (r *rawWebSocket) send(t *testing.T, s string) {
	t.Helper()
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(s))}, mask[:]...)
	for i := range len(s) {
		frame = append(frame, s[i]^mask[i%4])
	}
	if _, err := r.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownRightAfterConnecting shuts a server down as soon as its
// clients' handshakes have returned, without waiting for their OnOpen: the
// drain finds connections whose actors may not be spawned yet (they are live
// from Open on), and its close requests must reach them once they are,
// neither racing protoactor's spawn (-race reported it) nor lost as dead
// letters. Every client is closed with 1001, and Shutdown returns in time.
func TestShutdownRightAfterConnecting(t *testing.T) {
	for round := range 10 {
		s := wsactor.New(wsactor.Options{Logger: discardLogger(), Drain: wsactor.DrainOptions{Batch: 1000, Interval: time.Millisecond}})
		s.Handle("/ws", func() wsactor.Handler { return echo{} })
		hs := httptest.NewServer(s)
		url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		closes := make(chan error, 5)
		for range 5 {
			c := dial(t, url)
			go func() {
				_, _, err := c.Read(ctx) // answers the closing handshake
				closes <- err
				_ = c.CloseNow()
			}()
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
		for i := range 5 {
			if err := recv(t, closes, "a client's close"); websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("round %d, client %d: want close 1001, got %v", round, i, err)
			}
		}
		if n := s.Stats().ConnectionsOpen; n != 0 {
			t.Fatalf("round %d: %d connections still open after Shutdown", round, n)
		}
		cancel()
		hs.Close()
	}
}
