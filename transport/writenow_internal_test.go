//go:build unix

package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// tcpPair returns both ends of a loopback TCP connection with small kernel
// buffers, so that a peer that does not read fills them quickly.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	if server == nil {
		t.Fatal("accept failed")
	}
	for _, c := range []*net.TCPConn{server, client} {
		_ = c.SetReadBuffer(32 << 10)
		_ = c.SetWriteBuffer(32 << 10)
		t.Cleanup(func() { _ = c.Close() })
	}
	return server, client
}

// TestWriteNowLeavesWhatTheSocketCannotTake checks the non-waiting write
// beneath writeNonblocking: against a peer that does not read, it returns at once
// with a remainder, which flushRemainder sends whole and in order once the
// peer reads; a frame written meanwhile by another goroutine goes after it.
func TestWriteNowLeavesWhatTheSocketCannotTake(t *testing.T) {
	server, client := tcpPair(t)
	w, err := watch(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.raw == nil {
		t.Fatal("a TCP socket has no raw access: nothing would be written without the writer goroutine")
	}
	// Far more than the kernel's buffers on both ends hold.
	first := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if !w.tryCorkNonblocking() {
		t.Fatal("tryCorkNonblocking: the socket is held")
	}
	if n, err := w.Write(first); err != nil || n != len(first) {
		t.Fatalf("gathering: %d, %v", n, err)
	}
	left, err := w.uncorkNonblocking()
	if err != nil || !left {
		t.Fatalf("uncorkNonblocking = %v, %v; want a remainder, no error", left, err)
	}
	if w.off == 0 || w.off >= len(first) {
		t.Fatalf("%d of %d bytes taken: want some, not all", w.off, len(first))
	}

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	second := []byte("after the remainder")
	written := make(chan error, 1)
	go func() { // another goroutine's frame, as a pong would be
		_, err := w.Write(second)
		written <- err
	}()
	if err := w.flushRemainder(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second write never finished")
	}
	if w.pend != nil || w.off != 0 {
		t.Errorf("a buffer is held after the flush: %d bytes, offset %d", len(w.pend), w.off)
	}
	_ = server.CloseWrite()
	var b []byte
	select {
	case b = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never read to the end")
	}
	if want := append(bytes.Clone(first), second...); !bytes.Equal(b, want) {
		t.Fatalf("the peer read %d bytes, want %d in order", len(b), len(want))
	}
}

// TestWriteNowIsNotTriedWhileAWriteWaits checks canTryWrite's guard: while
// a frame waits for a peer that does not read, the next message goes to the
// writer goroutine instead of waiting behind it.
func TestWriteNowIsNotTriedWhileAWriteWaits(t *testing.T) {
	server, client := tcpPair(t)
	w, err := watch(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !w.canTryWrite(100) {
		t.Fatal("an idle socket refuses a small non-waiting write")
	}
	if w.canTryWrite(ioBufSize) {
		t.Error("a message larger than a pooled buffer would be written without the writer goroutine")
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 4<<20)) // blocks: nobody reads
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for w.canTryWrite(100) {
		if time.Now().After(deadline) {
			t.Fatal("a waiting write never showed")
		}
		time.Sleep(time.Millisecond)
	}
	_ = client.Close() // the waiting write fails
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting write never returned")
	}
	if !w.canTryWrite(100) {
		t.Error("the guard stayed up after the write returned")
	}
}

// countingRaw counts the writes made through a socket's raw access.
type countingRaw struct {
	syscall.RawConn
	writes *atomic.Int64
}

func (r countingRaw) Write(f func(fd uintptr) bool) error {
	r.writes.Add(1)
	return r.RawConn.Write(f)
}

// TestFlushGathersQueuedMessagesIntoFewWrites checks that a flusher sends
// the messages queued for a connection together, one write per pooled
// buffer, not one per message, and that the client gets them all in order.
func TestFlushGathersQueuedMessagesIntoFewWrites(t *testing.T) {
	var writes atomic.Int64
	accepted := make(chan *Conn, 1)
	opts := Options{}.WithDefaults()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, &opts)
		if err != nil {
			return
		}
		if c.netConn.raw == nil {
			t.Error("the accepted TCP socket has no raw access")
		}
		c.netConn.raw = countingRaw{c.netConn.raw, &writes}
		c.Start(func(Frame) {}, func(CloseInfo) {})
		accepted <- c
	}))
	defer srv.Close()
	client, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	var c *Conn
	select {
	case c = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}

	// Queue a burst while holding the right to write, as a flusher would
	// find it, then hand it over.
	const n, size = 200, 100
	c.sendQueue.mu.Lock()
	c.sendQueue.writing = true
	c.sendQueue.mu.Unlock()
	for i := range n {
		msg := append(fmt.Appendf(nil, "%04d", i), bytes.Repeat([]byte{'x'}, size-4)...)
		if err := c.Enqueue(MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
	}
	c.sendQueue.mu.Lock()
	flushers.push(&c.sendQueue)
	c.sendQueue.mu.Unlock()

	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := client.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := fmt.Sprintf("%04d", i); len(b) != size || string(b[:4]) != want {
			t.Fatalf("message %d: got %.4q (%d bytes)", i, b, len(b))
		}
	}
	// 200 frames of 102 bytes fill five 4 KiB buffers.
	if got := writes.Load(); got > 8 {
		t.Errorf("%d socket writes for %d queued messages of %d bytes; want them gathered (about 5)", got, n, size)
	}
	t.Logf("%d socket writes for %d messages", writes.Load(), n)
	c.CloseNow(StatusNormalClosure, "")
}
