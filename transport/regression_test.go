package transport_test

// Regression tests for defects found in transport/*.go: each failed against
// the code it was written for.

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// RFC 6455 §8.1: after an invalid UTF-8 text message the endpoint fails the
// connection and must not process further data from the peer.
func TestNoDeliveryAfterInvalidUTF8(t *testing.T) {
	// The close waits for the queue to drain, which this client never lets
	// happen: a short WriteTimeout gives up on it.
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20, WriteTimeout: time.Second}})
	client, sc := ts.dial(t, nil) // never reads

	// Keep the writer busy on a write the client does not read, so the
	// closing handshake (which would read and discard the frames itself)
	// cannot start before the reader has seen every frame.
	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the message", func() bool { m, _ := sc.c.Queued(); return m == 0 })

	writeMsg(t, client, websocket.MessageText, []byte("before"))
	writeMsg(t, client, websocket.MessageText, []byte{0xff})
	const after = 30
	for i := range after {
		writeMsg(t, client, websocket.MessageText, fmt.Appendf(nil, "after %d", i))
	}
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8, true)
	if got := len(sc.frames); got != 1 {
		var data []string
		for range got {
			data = append(data, string((<-sc.frames).Data))
		}
		t.Errorf("delivered %q, want only the frame before the invalid one", data)
	}
}

// Write's documentation: ErrClosed means "the connection is closing or
// closed; the message was not queued".
func TestWriteAfterFinishedReturnsErrClosed(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)
	if err := client.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "bye", false)
	if err := sc.c.Write(websocket.MessageText, []byte("to nobody")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after finished = %v, want ErrClosed", err)
	}
}

// Options.SendQueueBytes "bounds the bytes of outbound messages waiting for
// the socket", whatever the policy.
func TestDropOldestRespectsSendQueueBytes(t *testing.T) {
	const limit = 4 * bigMsg
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 1000,
		SendQueueBytes:    limit,
		Overflow:          transport.OverflowDropOldest,
	}})
	_, sc := ts.dial(t, nil) // never reads

	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	for i := 1; i <= 3; i++ { // 1 in flight + 3 queued = limit
		if err := sc.c.Write(websocket.MessageBinary, numbered(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.c.Write(websocket.MessageBinary, make([]byte, 2*bigMsg+1)); err != nil {
		t.Fatal(err)
	}
	if m, b := sc.c.Queued(); b > limit {
		t.Errorf("Queued() = (%d messages, %d bytes), over SendQueueBytes = %d", m, b, limit)
	}
}

// Counters.SlowConsumerCloses counts connections closed because their queue
// overflowed: one per connection, however many writers race.
func TestSlowConsumerClosesCountedOncePerConnection(t *testing.T) {
	const conns = 20
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 2,
		SendQueueBytes:    64 << 20,
		WriteTimeout:      500 * time.Millisecond,
	}})
	counters := ts.opts.Counters
	for range conns {
		_, sc := ts.dial(t, nil) // never reads
		if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				for sc.c.Write(websocket.MessageText, []byte("x")) == nil {
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if got := counters.SlowConsumerCloses.Load(); got != conns {
		t.Errorf("SlowConsumerCloses = %d after %d connections overflowed once each", got, conns)
	}
}

// MaxInflight back-pressure ("the reader stops reading until the handler
// catches up") must not be mistaken for a dead client: this client answers
// every ping, but the server does not read the pongs while its reader is
// parked on a full inflight window, and closes the connection with 1011.
func TestBackpressureIsNotAPingTimeout(t *testing.T) {
	ts := newServer(t, serverConfig{manualRelease: true, opts: transport.Options{
		MaxInflight:  1,
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  time.Second, // the parked client's pongs must not miss it for a stalled goroutine
	}})
	parked, parkedSC := dialReading(t, ts, true)
	writeMsg(t, parked.c, websocket.MessageText, []byte("one"))
	writeMsg(t, parked.c, websocket.MessageText, []byte("two"))
	parkedSC.frame(t) // "one" is held; "two" parks the reader
	eventually(t, "the reader is parked", func() bool { return ts.opts.Counters.MessagesIn.Load() == 2 })

	// Two clients that never read time out one after the other; by then the
	// parked connection, older, has lived through two ping intervals plus
	// pong timeouts.
	for range 2 {
		_, silentSC := ts.dial(t, nil)
		wantInfo(t, silentSC.fin(t), transport.StatusInternalError, transport.ReasonPingTimeout, true)
	}
	if parkedSC.isFinished() {
		t.Errorf("a client that answers pings was closed while the handler was busy: %+v", parkedSC.fin(t))
	}
	parkedSC.c.Release()
	parkedSC.c.Release()
}

// opaqueWriter hides Hijack and offers no Unwrap: upgrading is impossible.
type opaqueWriter struct{ http.ResponseWriter }

// coder/websocket answers 501 when the ResponseWriter cannot hijack, before
// it writes any upgrade header. The client must not believe it is connected.
func TestAcceptOnNonHijackableWriterFailsCleanly(t *testing.T) {
	ts := newServer(t, serverConfig{wrap: func(w http.ResponseWriter) http.ResponseWriter {
		return opaqueWriter{w}
	}})
	_, err := ts.dialErr(t, nil)
	if aerr := recv(t, ts.acceptErrs, "Accept's error"); aerr == nil {
		t.Error("Accept succeeded on a ResponseWriter that cannot hijack")
	}
	var de *dialError
	if !errors.As(err, &de) || de.status != http.StatusNotImplemented {
		t.Errorf("dial = %v, want a clean 501 Not Implemented response", err)
	}
}
