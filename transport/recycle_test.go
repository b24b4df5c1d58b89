package transport_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// numberedBytes is message i of a test: its length varies over every size
// class of CopyBuffer, some exactly a class's (so that they are recycled
// and drawn again) and past the largest, and every byte depends on i, so
// that a buffer given back and reused while its message was still queued
// or being written shows as a corrupt message.
func numberedBytes(i int) []byte {
	sizes := [...]int{4, 64, 100, 128, 256, 300, 512, 1000, 1024, 2000, 2048, 4000, 4096, 6000}
	b := make([]byte, sizes[i%len(sizes)])
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

// recycledMessage is numberedBytes(i) in a buffer from CopyBuffer.
func recycledMessage(i int) []byte { return transport.CopyBuffer(numberedBytes(i)) }

func checkRecycledMessage(t *testing.T, i int, b []byte) {
	t.Helper()
	want := numberedBytes(i)
	if len(b) != len(want) || string(b) != string(want) {
		t.Fatalf("message %d: got %d bytes starting %x, want %d bytes starting %x", i, len(b), b[:min(len(b), 8)], len(want), want[:min(len(want), 8)])
	}
}

// enqueueRecycledAndRead queues n numbered messages with EnqueueRecycled,
// has the client read and check them only then (so the socket fills up and
// the writer goroutine takes over, while the buffers of what was written
// are already back in the pool and drawn again by recycledMessage), and
// waits until n buffers have been given back.
func enqueueRecycledAndRead(t *testing.T, sc *serverConn, client *websocket.Conn, recycled *atomic.Int64, n int) {
	t.Helper()
	for i := range n {
		if err := sc.c.EnqueueRecycled(websocket.MessageBinary, recycledMessage(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	for i := range n {
		_, b := readMsg(t, client)
		checkRecycledMessage(t, i, b)
	}
	eventually(t, fmt.Sprintf("%d buffers given back", n), func() bool { return recycled.Load() == int64(n) })
}

// TestEnqueueRecycledGivesEveryBufferBackOnce checks that a message queued
// with EnqueueRecycled reaches the client whole, on every way a message is
// written (on a flusher, and on the writer goroutine once the client's
// socket is full, with a remainder left), and that its buffer is given back
// exactly once, after it was written.
func TestEnqueueRecycledGivesEveryBufferBackOnce(t *testing.T) {
	recycled := transport.CountRecycled(t)
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20}})
	client, sc := ts.dial(t, nil)
	const n = 2000 // about 4 MiB: far more than the small socket buffers hold
	enqueueRecycledAndRead(t, sc, client, recycled, n)
	if got := recycled.Load(); got != n {
		t.Fatalf("%d buffers given back for %d messages", got, n)
	}
	if m, b := sc.c.Queued(); m != 0 || b != 0 {
		t.Errorf("Queued() = %d, %d after every message was read", m, b)
	}
}

// TestEnqueueRecycledGivesBackWhatIsDropped checks that the buffers of
// messages that are never written come back too: refused by a full queue
// (OverflowDropNewest), pushed out of it (OverflowDropOldest), dropped when
// the connection closes, and refused by a closed connection.
func TestEnqueueRecycledGivesBackWhatIsDropped(t *testing.T) {
	for _, policy := range []transport.OverflowPolicy{transport.OverflowDropNewest, transport.OverflowDropOldest, transport.OverflowClose} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			recycled := transport.CountRecycled(t)
			ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
				SendQueueMessages: 8,
				SendQueueBytes:    64 << 20,
				Overflow:          policy,
			}})
			client, sc := ts.dial(t, nil) // never reads
			// A 1 MiB message holds the writer on the full socket, so the
			// queue behind it fills up.
			if err := sc.c.Write(websocket.MessageBinary, make([]byte, bigMsg)); err != nil {
				t.Fatal(err)
			}
			const n = 100
			refused := 0
			for i := range n {
				if err := sc.c.EnqueueRecycled(websocket.MessageBinary, recycledMessage(i)); err != nil {
					if !errors.Is(err, transport.ErrQueueFull) && !errors.Is(err, transport.ErrClosed) {
						t.Fatalf("message %d: %v", i, err)
					}
					refused++
				}
			}
			if refused == 0 && policy != transport.OverflowDropOldest {
				t.Fatalf("the queue of 8 took all %d messages behind a stuck write", n)
			}
			// Closing drops what is still queued; after it a message is
			// refused at once.
			_ = client.CloseNow()
			sc.fin(t)
			if err := sc.c.EnqueueRecycled(websocket.MessageBinary, recycledMessage(n)); !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("EnqueueRecycled after the close = %v, want ErrClosed", err)
			}
			eventually(t, fmt.Sprintf("%d buffers given back", n+1), func() bool { return recycled.Load() == n+1 })
			if got := recycled.Load(); got != n+1 {
				t.Fatalf("%d buffers given back for %d messages", got, n+1)
			}
		})
	}
}

// TestEnqueueRecycledWithCompression is TestEnqueueRecycledGivesEveryBufferBackOnce
// with permessage-deflate: coder/websocket's flate writer must not keep a
// reference to a message's bytes once Write returns, or a buffer given back
// and drawn again would change what the client decompresses.
func TestEnqueueRecycledWithCompression(t *testing.T) {
	recycled := transport.CountRecycled(t)
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20, CompressionNoContextTakeover: true}})
	client, sc := ts.dial(t, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	client.SetReadLimit(1 << 20)
	enqueueRecycledAndRead(t, sc, client, recycled, 2000)
}
