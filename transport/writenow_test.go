package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// sized is message i of TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder:
// sizes the writing goroutine writes itself until the socket is long full,
// then some it always leaves to the writer goroutine (over a pooled
// buffer), all numbered.
func sized(i int) []byte {
	n := 1 + (i*397)%4000
	if i >= 500 && i%50 == 49 {
		n = 20_000
	}
	head := fmt.Appendf(nil, "%06d:", i)
	return append(head, bytes.Repeat([]byte{byte('a' + i%26)}, n)...)
}

// TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder checks the write on the
// caller's goroutine against a client that reads nothing for a while: the
// socket fills mid-message, the remainder and everything queued after it
// go out through the writer goroutine, and the client gets every message
// whole and in order, answers to its pings meanwhile, and then the close
// frame.
func TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder(t *testing.T) {
	for _, how := range []string{"Write", "Enqueue", "both"} {
		t.Run(how, func(t *testing.T) { testWritesKeepTheirOrder(t, how) })
	}
}

func testWritesKeepTheirOrder(t *testing.T, how string) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20}})
	client, sc := ts.dial(t, &websocket.DialOptions{HTTPClient: smallBufClient(t)})

	const n = 1000 // about 2.4 MB: the small socket buffers hold about 128 KiB
	for i := range n {
		write := sc.c.Write
		if how == "Enqueue" || (how == "both" && i%2 == 1) {
			write = sc.c.Enqueue
		}
		if err := write(websocket.MessageBinary, sized(i)); err != nil {
			t.Fatalf("%s %d: %v", how, i, err)
		}
	}
	if m, _ := sc.c.Queued(); m == 0 {
		t.Fatal("nothing queued: the socket took 2.4 MB that nobody read")
	}
	sc.c.Close(transport.StatusNormalClosure, "done")

	pinged := make(chan error, 1)
	read := make(chan error, 1)
	go func() {
		for i := range n {
			_, b, err := client.Read(t.Context())
			switch {
			case err != nil:
				read <- fmt.Errorf("message %d: %w", i, err)
				return
			case !bytes.Equal(b, sized(i)):
				read <- fmt.Errorf("message %d: got %.7q (%d bytes), want %.7q (%d bytes)", i, b, len(b), sized(i), len(sized(i)))
				return
			}
			if i == 10 {
				go func() { pinged <- client.Ping(t.Context()) }()
			}
		}
		_, _, err := client.Read(t.Context())
		read <- err
	}()
	err := recv(t, read, "the client to read everything")
	if ce := closeErr(t, err); ce.Code != websocket.StatusNormalClosure || ce.Reason != "done" {
		t.Fatalf("after the messages: %v", err)
	}
	if err := recv(t, pinged, "the pong"); err != nil {
		t.Errorf("ping while the server's writes waited: %v", err)
	}
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "done", true)
}

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestEnqueueFansOutWithoutAGoroutinePerMessage checks the flushers: a
// message enqueued to each of many connections, round after round, reaches
// every client in order, and the writes start no goroutine per message
// (a connection's writer goroutine used to start for each).
func TestEnqueueFansOutWithoutAGoroutinePerMessage(t *testing.T) {
	ts := newServer(t, serverConfig{})
	const conns, rounds = 40, 25
	clients := make([]*websocket.Conn, conns)
	servers := make([]*serverConn, conns)
	for i := range conns {
		clients[i], servers[i] = ts.dial(t, nil)
	}
	got := make(chan error, conns)
	for _, c := range clients {
		go func() {
			for r := range rounds {
				_, b, err := c.Read(context.Background())
				if err == nil && string(b) != fmt.Sprint(r) {
					err = fmt.Errorf("got %q, want %d", b, r)
				}
				if err != nil {
					got <- err
					return
				}
			}
			got <- nil
		}()
	}
	before := goroutinesCreated()
	for r := range rounds {
		msg := []byte(fmt.Sprint(r))
		for _, sc := range servers {
			if err := sc.c.Enqueue(websocket.MessageText, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range conns {
		if err := recv(t, got, "a client to read every round"); err != nil {
			t.Fatal(err)
		}
	}
	perMessage := float64(goroutinesCreated()-before) / (conns * rounds)
	t.Logf("%.3f goroutines created per message", perMessage)
	if perMessage > 0.2 {
		t.Errorf("%.3f goroutines created per enqueued message; want next to none", perMessage)
	}
}

// TestFlushersDoNotWaitForAHeldSocket: a shared flusher must never wait for
// a socket. A control frame (a pong, a close reply) written to a client
// that does not read holds the connection's socket for up to 5 s; when it
// takes the socket just after a flusher checked that nobody waits on it,
// the flusher must hand the connection to its own writer goroutine rather
// than wait. Here every flusher gets such a connection at once, and another
// connection's message must still go out while they are held.
func TestFlushersDoNotWaitForAHeldSocket(t *testing.T) {
	ts := newServer(t, serverConfig{})
	held := runtime.GOMAXPROCS(0) // at least as many as there are flushers
	clients := make([]*websocket.Conn, held)
	releases := make([]func(), held)
	for i := range held {
		var sc *serverConn
		clients[i], sc = ts.dial(t, nil)
		releases[i] = transport.HoldSocket(sc.c)
		t.Cleanup(releases[i])
		if err := sc.c.Enqueue(websocket.MessageText, []byte(fmt.Sprint("held ", i))); err != nil {
			t.Fatal(err)
		}
	}
	free, sc := ts.dial(t, nil)
	if err := sc.c.Enqueue(websocket.MessageText, []byte("free")); err != nil {
		t.Fatal(err)
	}
	if _, b := readMsg(t, free); string(b) != "free" {
		t.Fatalf("got %q", b)
	}
	for i, release := range releases {
		release()
		if _, b := readMsg(t, clients[i]); string(b) != fmt.Sprint("held ", i) {
			t.Fatalf("connection %d: got %q after its socket was released", i, b)
		}
	}
}
