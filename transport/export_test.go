package transport

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EncodeClientFrame encodes a masked client frame, for the external tests.
var EncodeClientFrame = encodeFrame

// SetRateClock replaces the rate limiters' clock of connections accepted
// with o, so that tests decide when tokens refill.
func SetRateClock(o *Options, now func() time.Time) { o.now = now }

// HeldBuffers reports whether c holds a pooled read-ahead buffer or a
// gathered write.
func HeldBuffers(c *Conn) (read, write bool) {
	if c.in != nil {
		c.in.mu.Lock()
		read = c.in.buf != nil
		c.in.mu.Unlock()
	}
	if c.netConn != nil {
		c.netConn.mu.Lock()
		write = c.netConn.pend != nil
		c.netConn.mu.Unlock()
	}
	return read, write
}

// ReaderHandovers reports how many times c's read loop has handed over to a
// fresh goroutine.
func ReaderHandovers(c *Conn) int { return int(c.handovers.Load()) }

// CountRecycled counts the buffers that connections give back to
// CopyBuffer's pool until the test ends, and overwrites each with 0xEE bytes
// as it comes back, so that a buffer given back while its message is still
// to be written sends the client garbage. Call it before the test starts a
// server, so that it ends after every connection has finished.
func CountRecycled(t testing.TB) *atomic.Int64 {
	var n atomic.Int64
	put := putBuffer
	putBuffer = func(b []byte) {
		n.Add(1)
		b = b[:cap(b)]
		for i := range b {
			b[i] = 0xEE
		}
		put(b)
	}
	t.Cleanup(func() { putBuffer = put })
	return &n
}

// HoldSocket takes c's socket as a goroutine writing a control frame to a
// client that does not read would, just before it counts as waiting, until
// release is called.
func HoldSocket(c *Conn) (release func()) {
	c.netConn.mu.Lock()
	var once sync.Once
	return func() { once.Do(c.netConn.mu.Unlock) }
}
