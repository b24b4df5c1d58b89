package transport

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// QueueOverhead is what each queued message counts against SendQueueBytes
// besides its own bytes: its slot in the queue (32 bytes), the slack of the
// queue's growing array and the frame header. Without it a flood of tiny or
// empty messages would hold memory that the byte bound does not see.
const QueueOverhead = 64

type outbound struct {
	typ     uint8 // a MessageType; small, so that the slot stays 32 bytes
	recycle bool  // data came from CopyBuffer: give it back once written or dropped
	data    []byte
}

// done gives m's buffer back if it was recycled; m is written or dropped.
func (m outbound) done() {
	if m.recycle {
		putBuffer(m.data)
	}
}

// sendQueue is the bounded FIFO between writers (the connection's actor, any
// goroutine) and the socket. Three kinds of goroutine write to the socket,
// one at a time (q.writing): the caller of Write while the queue is idle,
// a shared flusher (Enqueue, and what queued behind a write), both only as
// far as the socket takes the bytes without waiting (writeNonblocking); and
// the connection's own writer goroutine, which waits for the socket under
// the stall watch and exists only while the socket cannot keep up or a
// message is large. An idle connection costs no goroutine for writing, and
// a prompt client's messages cost no goroutine started.
type sendQueue struct {
	conn *Conn

	mu          sync.Mutex
	items       []outbound // items[head:] are queued; the array is reused
	head        int
	bytes       int  // bytes queued (plus QueueOverhead each), including the message being written
	writing     bool // someone holds the right to write: a goroutine in writeNonblocking, a flusher, or the writer goroutine
	refusing    bool // no more messages are accepted
	closeQueued bool // the writer performs the closing handshake once drained
	overflowed  bool // OverflowClose has run
}

// Write queues a message for the socket and returns at once. It never blocks
// on the network. When the queue is full (SendQueueBytes, or
// SendQueueMessages if set) the connection's overflow policy runs: the error
// is ErrQueueFull (the connection may be closing because of it). data must
// not be modified afterwards; it may be shared by many connections (a
// prepared broadcast).
//
// When nothing is queued or being written, Write writes the message on the
// calling goroutine, as far as the socket takes it without waiting: a reply
// from the connection's own actor then crosses no other goroutine. Use
// Enqueue to leave the writing to others (a fan-out).
func (c *Conn) Write(typ MessageType, data []byte) error { return c.write(typ, data, true, false) }

// Enqueue is Write without the write on the calling goroutine: the message
// is written by one of the process's shared flushers (one per CPU), or the
// connection's own writer goroutine when its socket is full or the message
// large. A broadcast to thousands of connections then costs its caller a
// queue operation per member, and the socket writes spread over every CPU
// with no goroutine started per member.
func (c *Conn) Enqueue(typ MessageType, data []byte) error { return c.write(typ, data, false, false) }

// EnqueueRecycled is Enqueue for a message in a buffer from CopyBuffer,
// which it takes over: the buffer goes back to CopyBuffer's pool once the
// message is written or dropped (also when EnqueueRecycled returns an
// error), so the caller must not use data after the call. Data from
// anywhere else must not be passed.
func (c *Conn) EnqueueRecycled(typ MessageType, data []byte) error {
	return c.write(typ, data, false, true)
}

func (c *Conn) write(typ MessageType, data []byte, now, recycle bool) error {
	q := &c.sendQueue
	o := c.opts
	size := len(data) + QueueOverhead
	q.mu.Lock()
	if q.refusing || q.overflowed {
		q.mu.Unlock()
		if recycle {
			putBuffer(data)
		}
		return ErrClosed
	}
	for q.len() > 0 && (q.bytes+size > o.SendQueueBytes || (o.SendQueueMessages > 0 && q.len() >= o.SendQueueMessages)) {
		switch o.Overflow {
		case OverflowDropNewest:
			q.mu.Unlock()
			if recycle {
				putBuffer(data)
			}
			o.Counters.Dropped.Add(1)
			return ErrQueueFull
		case OverflowDropOldest:
			q.pop().done()
			o.Counters.Dropped.Add(1)
		default:
			first := !q.overflowed
			q.overflowed = true
			q.mu.Unlock()
			if recycle {
				putBuffer(data)
			}
			if !first {
				return ErrClosed
			}
			o.Counters.SlowConsumerCloses.Add(1)
			c.CloseSoon(StatusTryAgainLater, ReasonSlowConsumer)
			return ErrQueueFull
		}
	}
	m := outbound{typ: uint8(typ), recycle: recycle, data: data}
	q.bytes += size
	if q.writing {
		q.items = append(q.items, m)
		q.mu.Unlock()
		return nil
	}
	q.writing = true
	fits := c.netConn.canTryWrite(len(data))
	if now && fits && c.netConn.tryCorkNonblocking() {
		// Nothing is queued or being written: write on this goroutine.
		q.mu.Unlock()
		left, err := q.writeNonblocking(m)
		q.mu.Lock()
		q.bytes -= size
		q.handOnLocked(left, err)
		q.mu.Unlock()
		return nil
	}
	q.items = append(q.items, m)
	if fits {
		flushers.push(q)
	} else {
		go q.writeLoop()
	}
	q.mu.Unlock()
	return nil
}

// writeNonblocking writes m, never waiting on the client: what the socket
// does not take at once stays in watchedConn (left), for the writer
// goroutine to send first, so the order holds. The caller holds the right
// to write (q.writing), has corked the socket (tryCorkNonblocking) and does
// not hold q.mu.
func (q *sendQueue) writeNonblocking(m outbound) (left bool, err error) {
	c := q.conn
	err = c.ws.Write(context.Background(), MessageType(m.typ), m.data)
	m.done() // coder/websocket has copied or written it
	left, err = c.uncork(err)
	return c.wrote(1, int64(len(m.data)), left, err)
}

// uncork ends a corked write that ended with err: it writes what the socket
// takes at once, and returns whether some is left for the writer goroutine
// and the write's error, or else the flush's.
func (c *Conn) uncork(err error) (left bool, _ error) {
	left, ferr := c.netConn.uncorkNonblocking()
	if ferr != nil && err == nil {
		err = ferr
		_ = c.netConn.Close() // as writeMessage: the failure was under coder/websocket
	}
	return left, err
}

// wrote counts n messages of bytes written without waiting, or, if err is
// set, decides the close their failed write means.
func (c *Conn) wrote(n int, bytes int64, left bool, err error) (bool, error) {
	if err != nil {
		c.decide(StatusAbnormalClosure, ReasonWriteFailed)
		return false, err
	}
	c.opts.Counters.MessagesOut.Add(int64(n))
	c.opts.Counters.BytesOut.Add(bytes)
	return left, nil
}

// handOnLocked decides who writes next after a write that did not wait: the
// writer goroutine for a remainder the socket did not take (its stall watch
// judges the client) or a closing handshake, a flusher for what was queued
// meanwhile, or nobody. q.mu is held and the caller holds q.writing, which
// passes on or is cleared.
func (q *sendQueue) handOnLocked(left bool, err error) {
	switch {
	case err != nil:
		q.refusing = true
		q.reset()
		if q.closeQueued {
			go q.writeLoop() // it ends the connection as after any failed write
			return
		}
		q.writing = false
	case left || q.closeQueued:
		go q.writeLoop()
	case q.len() > 0:
		flushers.push(q)
	default:
		q.writing = false
	}
}

// flushBatch is how many messages a flusher writes to one connection before
// it moves on to the next queued one, so that a connection with a long
// queue does not hold up the others of a broadcast.
const flushBatch = 16

// flush runs on a flusher: it writes what is queued without waiting, the
// messages that fit a pooled buffer together in one write, and hands the
// connection to its writer goroutine as soon as a write would wait (socket
// full, a large message, a frame waiting under it).
func (q *sendQueue) flush() {
	c := q.conn
	q.mu.Lock()
	defer q.mu.Unlock()
	for range flushBatch {
		if q.len() == 0 {
			q.handOnLocked(false, nil)
			return
		}
		if !c.netConn.canTryWrite(len(q.items[q.head].data)) || !c.netConn.tryCorkNonblocking() {
			go q.writeLoop()
			return
		}
		if left, err := q.writeGatheredLocked(); left || err != nil {
			q.handOnLocked(left, err)
			return
		}
	}
	q.handOnLocked(false, nil)
}

// writeGatheredLocked writes the queued messages that fit one pooled buffer
// together, in one write that does not wait: a burst queued for a client
// costs one system call per 4 KiB rather than one per message. q.mu is held
// on entry and on return, and released while coder/websocket frames each
// message; the first queued message must pass canTryWrite, and the caller
// has corked the socket (tryCorkNonblocking).
func (q *sendQueue) writeGatheredLocked() (left bool, err error) {
	c := q.conn
	var gathered, held, n int
	var bytesOut int64
	for q.len() > 0 && (n == 0 || gathered+len(q.items[q.head].data)+maxFrameHeader <= ioBufSize) {
		m := q.pop()
		size := len(m.data) + QueueOverhead
		q.bytes += size // still held until written
		held += size
		gathered += len(m.data) + maxFrameHeader
		q.mu.Unlock()
		err = c.ws.Write(context.Background(), MessageType(m.typ), m.data)
		m.done() // coder/websocket has copied or written it
		q.mu.Lock()
		if err != nil {
			break
		}
		n++
		bytesOut += int64(len(m.data))
	}
	q.mu.Unlock()
	left, err = c.uncork(err)
	q.mu.Lock()
	q.bytes -= held
	return c.wrote(n, bytesOut, left, err)
}

// Queued reports the messages waiting for the socket and the bytes they count
// against SendQueueBytes (QueueOverhead each besides their own); the bytes
// also include the message being written, which still holds memory.
func (c *Conn) Queued() (messages, bytes int) {
	c.sendQueue.mu.Lock()
	defer c.sendQueue.mu.Unlock()
	return c.sendQueue.len(), c.sendQueue.bytes
}

func (q *sendQueue) len() int { return len(q.items) - q.head }

// pop removes the oldest queued message; the queue must not be empty.
func (q *sendQueue) pop() outbound {
	m := q.items[q.head]
	q.items[q.head] = outbound{}
	q.head++
	q.bytes -= len(m.data) + QueueOverhead
	if q.head == len(q.items) {
		q.reset()
	}
	return m
}

// reset empties the queue, keeping a small array for the next message and
// letting a burst's large one go.
func (q *sendQueue) reset() {
	for i := q.head; i < len(q.items); i++ {
		q.bytes -= len(q.items[i].data) + QueueOverhead
		q.items[i].done()
		q.items[i] = outbound{}
	}
	q.head = 0
	if cap(q.items) > 64 {
		q.items = nil
	} else {
		q.items = q.items[:0]
	}
}

func (q *sendQueue) startWriterLocked() {
	if !q.writing {
		q.writing = true
		go q.writeLoop()
	}
}

func (q *sendQueue) writeLoop() {
	c := q.conn
	c.watchWrites()
	if c.netConn != nil {
		// What writeNonblocking left behind goes before anything queued after it.
		if err := c.netConn.flushRemainder(); err != nil {
			c.decide(StatusAbnormalClosure, ReasonWriteFailed)
			q.refuse()
			_ = c.netConn.Close()
		}
	}
	for {
		q.mu.Lock()
		if q.len() == 0 {
			// Unwatched before writing is cleared, so that a writer started
			// by the next Write arms the watch after this one disarmed it.
			c.unwatchWrites()
			q.writing = false
			closing := q.closeQueued
			q.closeQueued = false
			q.mu.Unlock()
			if closing {
				info := c.decided.Load()
				if c.in != nil {
					// coder/websocket reads the client's close frame on
					// this goroutine if the reader is not inside Read.
					c.in.closing.Store(true)
				}
				_ = c.ws.Close(info.Code, info.Reason)
				c.end() // the socket is closed: a reader parked on inflight may go
			}
			return
		}
		m := q.pop()
		size := len(m.data) + QueueOverhead
		q.bytes += size // still held until written
		q.mu.Unlock()

		err := c.writeMessage(m)
		m.done()

		q.mu.Lock()
		q.bytes -= size
		q.mu.Unlock()
		if err != nil {
			// coder/websocket has closed the socket, or the stall watch has;
			// the reader reports it. A stall was decided first.
			c.decide(StatusAbnormalClosure, ReasonWriteFailed)
			q.refuse()
			continue
		}
		c.opts.Counters.MessagesOut.Add(1)
		c.opts.Counters.BytesOut.Add(int64(len(m.data)))
	}
}

// writeMessage writes one message to the socket: coder/websocket frames it,
// and the pieces leave in one write.
func (c *Conn) writeMessage(m outbound) error {
	if c.netConn == nil {
		return c.ws.Write(context.Background(), MessageType(m.typ), m.data)
	}
	c.netConn.cork()
	err := c.ws.Write(context.Background(), MessageType(m.typ), m.data)
	if ferr := c.netConn.uncork(); ferr != nil && err == nil {
		// coder/websocket closes the socket on a failed write; this one
		// failed under it, so close it here.
		err = ferr
		_ = c.netConn.Close()
	}
	return err
}

// refuse stops accepting messages and drops what is queued.
func (q *sendQueue) refuse() {
	q.mu.Lock()
	q.refusing = true
	q.reset()
	q.mu.Unlock()
}

func (q *sendQueue) closeAfterDrain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refusing {
		return
	}
	q.refusing = true
	q.closeQueued = true
	q.startWriterLocked()
}

// closeDropping drops what is queued and has the writer send the close frame
// as soon as the write in flight, if any, is done (unless the connection is
// already closing without a pending close frame).
func (q *sendQueue) closeDropping() {
	q.mu.Lock()
	defer q.mu.Unlock()
	already := q.refusing && !q.closeQueued
	q.refusing = true
	q.reset()
	if already {
		return
	}
	q.closeQueued = true
	q.startWriterLocked()
}

// The stall watch. A client is judged by whether it takes bytes, not by how
// long a message takes: while the writer goroutine runs, a timer checks that
// some write to the socket has made progress within the last WriteTimeout.
// One timer per connection, armed when the writer starts and stopped when it
// runs out of work, costs nothing per message; the socket records its
// progress (watchedConn).

// watchWrites starts the stall watch; only the writer goroutine calls it.
func (c *Conn) watchWrites() {
	if c.netConn == nil {
		return
	}
	c.netConn.progress.Store(monotonic())
	c.watching.Store(true)
	if t := c.stallTimer.Load(); t != nil {
		t.Reset(c.opts.WriteTimeout)
		return
	}
	c.stallTimer.Store(time.AfterFunc(c.opts.WriteTimeout, c.checkStall))
}

// unwatchWrites stops the stall watch; the writer calls it under q.mu.
func (c *Conn) unwatchWrites() {
	c.watching.Store(false)
	if t := c.stallTimer.Load(); t != nil {
		t.Stop()
	}
}

// checkStall runs when the writer may have gone WriteTimeout without
// progress. A tick that finds progress re-arms the timer for the rest of the
// period; a late tick after the writer stopped does nothing.
func (c *Conn) checkStall() {
	if !c.watching.Load() {
		return
	}
	idle := time.Duration(monotonic() - c.netConn.progress.Load())
	if idle < c.opts.WriteTimeout {
		c.stallTimer.Load().Reset(c.opts.WriteTimeout - idle)
		return
	}
	// A stalled reader. No close frame can reach it: the socket is full,
	// mid-frame. Its queue is dropped and the socket closed, which fails
	// the write in progress; the handler is told 1013.
	if c.decide(StatusTryAgainLater, ReasonStalled) {
		c.opts.Counters.SlowConsumerCloses.Add(1)
	}
	c.end()
	c.sendQueue.refuse()
	_ = c.netConn.Close()
}

// epoch anchors monotonic: time.Since reads the monotonic clock, which wall
// clock changes do not move.
var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// writeChunk bounds each write to the socket, so that progress through a
// large message is seen every writeChunk bytes rather than only at its end.
const writeChunk = 32 << 10

// watchedConn is the hijacked socket. It records the time of every write
// that completes, for the stall watch; coder/websocket writes to it through
// a small bufio.Writer (buffers.go). While a message is written (corked),
// the pieces coder/websocket hands over gather in a pooled buffer and leave
// in one write when it uncorks, as they did from net/http's 4 KiB
// bufio.Writer; a frame another goroutine writes meanwhile (a pong, a ping)
// joins them in order.
//
// Two kinds of goroutine write: the writer goroutine waits for the socket
// as long as the stall watch allows; any other (writeNonblocking) never waits, and
// what the socket did not take stays gathered (the remainder) until the
// writer goroutine, or the next frame written, sends it first.
type watchedConn struct {
	net.Conn
	raw      syscall.RawConn // nil: every write goes through the writer goroutine (rawConnOf)
	progress atomic.Int64    // monotonic() of the last completed write
	waiting  atomic.Int32    // writes waiting for the socket to take their bytes

	mu       sync.Mutex // serializes writes to the socket and guards the fields below
	corked   bool
	nonblock bool   // corked by writeNonblocking: gather everything, never wait
	pend     []byte // gathered; pend[off:] is still to be written. Its array is pooled when its cap is ioBufSize.
	off      int
}

// maxFrameHeader is the longest header of a frame the server sends (no mask).
const maxFrameHeader = 10

// watch wraps a just-hijacked socket. brw is net/http's buffered pair: what
// its writer holds is flushed first, so that no byte of the response is lost.
func watch(conn net.Conn, brw *bufio.ReadWriter) (*watchedConn, error) {
	if brw != nil {
		if err := brw.Writer.Flush(); err != nil {
			return nil, err
		}
	}
	return &watchedConn{Conn: conn, raw: rawConnOf(conn)}, nil
}

func (w *watchedConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.corked {
		if w.pend == nil {
			w.pend = getIOBuf()[:0]
		}
		if w.nonblock || len(w.pend)+len(p) <= cap(w.pend) {
			// writeNonblocking's messages fit the pooled buffer (canTryWrite);
			// a compressed one that grew past it moves to the heap.
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) < ioBufSize/2 {
			w.pend = append(getIOBuf()[:0], p...)
			return len(p), nil
		}
	} else if err := w.flushLocked(); err != nil { // a remainder goes first
		return 0, err
	}
	return w.writeLocked(p)
}

// canTryWrite reports whether writeNonblocking may write a message of n bytes:
// the socket supports writes that do not wait, the message fits a pooled
// buffer, and no write is waiting for the socket (a ping or pong written
// by another goroutine to a client that does not read would hold
// coder/websocket's frame lock, and writeNonblocking would wait for it).
func (w *watchedConn) canTryWrite(n int) bool {
	return w != nil && w.raw != nil && n <= ioBufSize-maxFrameHeader && w.waiting.Load() == 0
}

// cork starts gathering writes; uncork sends what gathered.
func (w *watchedConn) cork() {
	w.mu.Lock()
	w.corked = true
	w.mu.Unlock()
}

func (w *watchedConn) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	return w.flushLocked()
}

// tryCorkNonblocking starts gathering writes for writeNonblocking unless
// another goroutine holds the socket, and reports whether it corked. A control frame (a pong, a close
// reply) written to a client that does not read holds the socket for as
// long as coder/websocket lets it wait (5 s); canTryWrite sees such a write
// once it waits, but not one that took the socket just after that check,
// and a write that must not wait would then wait for it. Once corked, a
// control frame written meanwhile joins the gathered bytes instead.
func (w *watchedConn) tryCorkNonblocking() bool {
	if !w.mu.TryLock() {
		return false
	}
	w.corked, w.nonblock = true, true
	w.mu.Unlock()
	return true
}

// uncorkNonblocking writes what gathered as far as the socket takes it at
// once; left reports a remainder, which the caller must have the writer
// goroutine send (flushRemainder).
func (w *watchedConn) uncorkNonblocking() (left bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked, w.nonblock = false, false
	if w.off == len(w.pend) {
		w.release()
		return false, nil
	}
	n, err := tryWrite(w.raw, w.Conn, w.pend[w.off:])
	if n > 0 {
		w.progress.Store(monotonic())
		w.off += n
	}
	if err != nil || w.off == len(w.pend) {
		w.release()
		return false, err
	}
	return true, nil
}

// Close closes the socket after writing, as far as the socket takes it at
// once, what is gathered: coder/websocket answers a client's close frame
// from its reader goroutine and then closes the socket, and while a message
// is corked that answer waits in the gathered bytes. Without this the
// client got no close frame, only the end of the stream. It never waits:
// if a write holds the socket (a stalled one that the stall watch closes
// the socket to end), it closes at once.
func (w *watchedConn) Close() error {
	if w.raw != nil && w.mu.TryLock() {
		if w.off < len(w.pend) {
			n, _ := tryWrite(w.raw, w.Conn, w.pend[w.off:])
			w.off += n
		}
		w.mu.Unlock()
	}
	return w.Conn.Close()
}

// flushRemainder sends what writeNonblocking left, waiting for the socket.
func (w *watchedConn) flushRemainder() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// flushLocked sends what is gathered, waiting for the socket, and gives the
// buffer back.
func (w *watchedConn) flushLocked() error {
	if w.off == len(w.pend) {
		w.release()
		return nil
	}
	_, err := w.writeLocked(w.pend[w.off:])
	w.release()
	return err
}

// release gives the gathering buffer back to the pool, or to the garbage
// collector if a compressed message grew it.
func (w *watchedConn) release() {
	if cap(w.pend) == ioBufSize {
		putIOBuf((*[ioBufSize]byte)(w.pend[:ioBufSize]))
	}
	w.pend, w.off = nil, 0
}

func (w *watchedConn) writeLocked(p []byte) (n int, err error) {
	w.waiting.Add(1)
	defer w.waiting.Add(-1)
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		m, err := w.Conn.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		w.progress.Store(monotonic())
		p = p[m:]
	}
	return n, nil
}
