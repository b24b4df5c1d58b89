package transport

import "time"

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
