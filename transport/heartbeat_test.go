package transport_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// readingClient reads in a goroutine (so it answers pings) and forwards data
// messages to msgs; done receives the error that ended the reads.
type readingClient struct {
	c     *websocket.Conn
	msgs  chan []byte
	done  chan error
	pings atomic.Int64
}

// dialReading dials a client that keeps reading. When answerPings is false it
// reads but refuses to send pongs.
func dialReading(t *testing.T, ts *testServer, answerPings bool) (*readingClient, *serverConn) {
	t.Helper()
	rc := &readingClient{msgs: make(chan []byte, 1024), done: make(chan error, 1)}
	c, sc := ts.dial(t, &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			rc.pings.Add(1)
			return answerPings
		},
	})
	rc.c = c
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				rc.done <- err
				return
			}
			rc.msgs <- b
		}
	}()
	return rc, sc
}

// echo checks a round trip through an echoing server.
func (rc *readingClient) echo(t *testing.T, msg string) {
	t.Helper()
	writeMsg(t, rc.c, websocket.MessageText, []byte(msg))
	if got := recv(t, rc.msgs, "the echo"); string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// TestPingTimeout: a client that does not answer pings is closed with 1011
// after PongTimeout; one that answers is not. The healthy client's pongs
// take well under a millisecond, but a timeout of 100 ms is within what a
// whole race-enabled suite on 2 cores stalls a goroutine (TestIdleTimeout
// once failed so): the timeout is a second.
func TestPingTimeout(t *testing.T) {
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  time.Second,
	}})

	// Dialled first: it lives through every ping interval of the others.
	healthy, healthySC := dialReading(t, ts, true)

	// A client that never reads never answers pings.
	_, silentSC := ts.dial(t, nil)
	wantInfo(t, silentSC.fin(t), transport.StatusInternalError, transport.ReasonPingTimeout, true)

	// A client that reads but refuses to pong is timed out the same way.
	mute, muteSC := dialReading(t, ts, false)
	wantInfo(t, muteSC.fin(t), transport.StatusInternalError, transport.ReasonPingTimeout, true)
	if mute.pings.Load() == 0 {
		t.Error("the mute client was timed out without ever being pinged")
	}
	// The server gives up without a closing handshake: no close code.
	if err := recv(t, mute.done, "the mute client's read to fail"); websocket.CloseStatus(err) != -1 {
		t.Errorf("mute client saw close code %v, want none", websocket.CloseStatus(err))
	}

	// The healthy client has answered several pings and is still open.
	eventually(t, "the healthy client answered 5 pings", func() bool { return healthy.pings.Load() >= 5 })
	if healthySC.isFinished() {
		t.Fatalf("the client that answers pings was closed: %+v", healthySC.fin(t))
	}
	healthy.echo(t, "still here")
	if healthySC.isFinished() {
		t.Fatal("the client that answers pings was closed")
	}
}

// TestIdleTimeout: a client that sends nothing for IdleTimeout is closed
// with 1001; one that keeps sending is not. The active client's round trips
// take well under a millisecond, but a whole `go test -race ./...` on 2
// cores once stalled one for over 100 ms, the timeout this test had: the
// timeout is now a second, and a failure says the longest gap seen.
func TestIdleTimeout(t *testing.T) {
	const idleTimeout = time.Second
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		IdleTimeout:  idleTimeout,
		PingInterval: -1,
	}})

	// The active client sends, waits for the echo, and sends again until stopped.
	active, activeSC := dialReading(t, ts, true)
	stop := make(chan struct{})
	activeDone := make(chan error, 1)
	rounds := atomic.Int64{}
	var lastRound, longestGap atomic.Int64 // unix nanoseconds, nanoseconds
	lastRound.Store(time.Now().UnixNano())
	go func() {
		for {
			select {
			case <-stop:
				activeDone <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			err := active.c.Write(ctx, websocket.MessageText, []byte("tick"))
			cancel()
			if err != nil {
				activeDone <- err
				return
			}
			select {
			case <-active.msgs:
				rounds.Add(1)
				now := time.Now().UnixNano()
				if gap := now - lastRound.Swap(now); gap > longestGap.Load() {
					longestGap.Store(gap)
				}
			case err := <-active.done:
				activeDone <- err
				return
			}
		}
	}()
	eventually(t, "the active client completed a round trip", func() bool { return rounds.Load() > 0 })

	// The idle client reads but never sends.
	idle, idleSC := dialReading(t, ts, true)
	err := recv(t, idle.done, "the idle client to be closed")
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != transport.ReasonIdleTimeout {
		t.Errorf("idle client read error = %v, want close 1001 %q", err, transport.ReasonIdleTimeout)
	}
	wantInfo(t, idleSC.fin(t), transport.StatusGoingAway, transport.ReasonIdleTimeout, true)

	// The active client, connected for longer, is still open.
	if activeSC.isFinished() {
		t.Fatalf("the client that keeps sending was idle-closed (its longest gap between round trips: %v; the timeout: %v)",
			time.Duration(longestGap.Load()), idleTimeout)
	}
	close(stop)
	if err := recv(t, activeDone, "the active client's loop to stop"); err != nil {
		t.Fatalf("active client failed: %v", err)
	}
	active.echo(t, "last")
	if activeSC.isFinished() {
		t.Fatal("the client that keeps sending was closed")
	}
}

// Pongs are not messages: a client that answers pings but sends nothing is
// still idle.
func TestIdleTimeoutIgnoresPongs(t *testing.T) {
	ts := newServer(t, serverConfig{opts: transport.Options{
		IdleTimeout:  200 * time.Millisecond,
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  time.Second,
	}})
	rc, sc := dialReading(t, ts, true)
	err := recv(t, rc.done, "the idle client to be closed")
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Errorf("client read error = %v, want close 1001", err)
	}
	wantInfo(t, sc.fin(t), transport.StatusGoingAway, transport.ReasonIdleTimeout, true)
	if rc.pings.Load() < 2 {
		t.Errorf("client answered %d pings before the idle close, want several", rc.pings.Load())
	}
}

// With pings disabled and no idle timeout, nothing closes a quiet client.
// A second connection with pings enabled proves time has passed.
func TestNoHeartbeatWhenDisabled(t *testing.T) {
	quietTS := newServer(t, serverConfig{echo: true, opts: transport.Options{PingInterval: -1}})
	quiet, quietSC := dialReading(t, quietTS, true)

	pingTS := newServer(t, serverConfig{opts: transport.Options{
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  50 * time.Millisecond,
	}})
	_, silentSC := pingTS.dial(t, nil)
	wantInfo(t, silentSC.fin(t), transport.StatusInternalError, transport.ReasonPingTimeout, true)

	if n := quiet.pings.Load(); n != 0 {
		t.Errorf("server pinged %d times with PingInterval < 0", n)
	}
	if quietSC.isFinished() {
		t.Fatal("a connection without heartbeat was closed")
	}
	quiet.echo(t, "alive")

	// Two servers share this test's goroutine check: end the quiet client
	// before the cleanups run.
	_ = quiet.c.CloseNow()
	recv(t, quiet.done, "the quiet client's read to end")
	wantInfo(t, quietSC.fin(t), transport.StatusAbnormalClosure, transport.ReasonConnLost, false)
}

// A client that keeps sending is known to be alive: the server does not ping
// it, while a silent client on the same server is pinged every interval.
func TestNoPingsWhileTheClientSends(t *testing.T) {
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  5 * time.Second,
	}})
	chatty, _ := dialReading(t, ts, true)
	silent, _ := dialReading(t, ts, true)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := chatty.c.Write(context.Background(), websocket.MessageText, []byte("x")); err != nil {
				return
			}
			<-chatty.msgs // one in flight: the echo paces the loop
		}
	}()
	eventually(t, "the silent client to be pinged 5 times", func() bool { return silent.pings.Load() >= 5 })
	close(stop)
	<-sent
	// Machine stalls longer than an interval may let a ping through; never one per interval.
	if got := chatty.pings.Load(); got >= silent.pings.Load() {
		t.Fatalf("a client that kept sending was pinged %d times, as often as a silent one (%d)", got, silent.pings.Load())
	}
}

// TestReaderHandsOverAfterPong: the read loop hands over to a fresh
// goroutine (which waits on the minimum stack) when the pong to a heartbeat
// comes alone, never for messages, and the connection goes on as before.
func TestReaderHandsOverAfterPong(t *testing.T) {
	quietTS := newServer(t, serverConfig{echo: true, opts: transport.Options{PingInterval: -1}})
	busy, busySC := dialReading(t, quietTS, true)
	for i := range 100 {
		busy.echo(t, strconv.Itoa(i))
	}
	if n := transport.ReaderHandovers(busySC.c); n != 0 {
		t.Fatalf("%d hand-overs for 100 messages and no pings, want none", n)
	}
	_ = busy.c.Close(websocket.StatusNormalClosure, "")
	wantInfo(t, busySC.fin(t), transport.StatusNormalClosure, "", false)

	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  time.Second,
	}})
	rc, sc := dialReading(t, ts, true)
	rc.echo(t, "one")
	if !waitFor(func() bool { return transport.ReaderHandovers(sc.c) >= 2 }) {
		t.Fatalf("%d hand-overs after %d pings, want 2 or more", transport.ReaderHandovers(sc.c), rc.pings.Load())
	}
	rc.echo(t, "two")
	rc.echo(t, "three")
	_ = rc.c.Close(websocket.StatusNormalClosure, "")
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "", false)
}
