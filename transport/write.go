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
	typ  MessageType
	data []byte
}

// sendQueue is the bounded FIFO between writers (the connection's actor, any
// goroutine) and the socket. A message written while the queue is idle goes
// to the socket on the writing goroutine, as far as the socket takes it
// without waiting (writeNow); a writer goroutine exists only while the
// socket cannot keep up or a message is large, so an idle connection costs
// no goroutine for writing and a prompt client's messages cost none at all.
type sendQueue struct {
	conn *Conn

	mu          sync.Mutex
	items       []outbound // items[head:] are queued; the array is reused
	head        int
	bytes       int  // bytes queued (plus QueueOverhead each), including the message being written
	writing     bool // a writer goroutine is running
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
func (c *Conn) Write(typ MessageType, data []byte) error {
	q := &c.sendQueue
	o := c.opts
	size := len(data) + QueueOverhead
	q.mu.Lock()
	if q.refusing || q.overflowed {
		q.mu.Unlock()
		return ErrClosed
	}
	for q.len() > 0 && (q.bytes+size > o.SendQueueBytes || (o.SendQueueMessages > 0 && q.len() >= o.SendQueueMessages)) {
		switch o.Overflow {
		case OverflowDropNewest:
			q.mu.Unlock()
			o.Counters.Dropped.Add(1)
			return ErrQueueFull
		case OverflowDropOldest:
			q.pop()
			o.Counters.Dropped.Add(1)
		default:
			first := !q.overflowed
			q.overflowed = true
			q.mu.Unlock()
			if !first {
				return ErrClosed
			}
			o.Counters.SlowConsumerCloses.Add(1)
			c.CloseSoon(StatusTryAgainLater, ReasonSlowConsumer)
			return ErrQueueFull
		}
	}
	if q.len() == 0 && !q.writing && c.netConn.canTryWrite(len(data)) {
		// Nothing is queued or being written: write on this goroutine, as
		// far as the socket takes it without waiting (writeNow).
		q.writing = true
		q.bytes += size
		q.mu.Unlock()
		q.writeNow(outbound{typ: typ, data: data}, size)
		return nil
	}
	q.items = append(q.items, outbound{typ: typ, data: data})
	q.bytes += size
	q.startWriterLocked()
	q.mu.Unlock()
	return nil
}

// writeNow writes m on the calling goroutine (the connection's actor, or a
// broadcaster) while the queue was idle, never waiting on the client: a
// round trip then crosses no writer goroutine, and a broadcast starts none
// per member. What the socket does not take at once, and what was queued
// meanwhile, is left to a writer goroutine, which the stall watch judges
// as usual; it sends that remainder first, so the order holds. The caller
// has set q.writing (no other writer runs) and counted size in q.bytes.
func (q *sendQueue) writeNow(m outbound, size int) {
	c := q.conn
	c.netConn.corkNonblocking()
	err := c.ws.Write(context.Background(), m.typ, m.data)
	left, ferr := c.netConn.uncorkNonblocking()
	if ferr != nil && err == nil {
		err = ferr
		_ = c.netConn.Close() // as writeMessage: the failure was under coder/websocket
	}
	if err != nil {
		c.decide(StatusAbnormalClosure, ReasonWriteFailed)
		q.refuse()
	} else {
		c.opts.Counters.MessagesOut.Add(1)
		c.opts.Counters.BytesOut.Add(int64(len(m.data)))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.bytes -= size
	if left || q.len() > 0 || q.closeQueued {
		go q.writeLoop()
		return
	}
	q.writing = false
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
		// What writeNow left behind goes before anything queued after it.
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
		return c.ws.Write(context.Background(), m.typ, m.data)
	}
	c.netConn.cork()
	err := c.ws.Write(context.Background(), m.typ, m.data)
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
// as long as the stall watch allows; any other (writeNow) never waits, and
// what the socket did not take stays gathered (the remainder) until the
// writer goroutine, or the next frame written, sends it first.
type watchedConn struct {
	net.Conn
	raw      syscall.RawConn // nil: every write goes through the writer goroutine (rawConnOf)
	progress atomic.Int64    // monotonic() of the last completed write
	waiting  atomic.Int32    // writes waiting for the socket to take their bytes

	mu       sync.Mutex // serializes writes to the socket and guards the fields below
	corked   bool
	nonblock bool   // corked by writeNow: gather everything, never wait
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
			// writeNow's messages fit the pooled buffer (canTryWrite);
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

// canTryWrite reports whether writeNow may write a message of n bytes:
// the socket supports writes that do not wait, the message fits a pooled
// buffer, and no write is waiting for the socket (a ping or pong written
// by another goroutine to a client that does not read would hold
// coder/websocket's frame lock, and writeNow would wait for it).
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

// corkNonblocking starts gathering writes for writeNow.
func (w *watchedConn) corkNonblocking() {
	w.mu.Lock()
	w.corked, w.nonblock = true, true
	w.mu.Unlock()
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

// flushRemainder sends what writeNow left, waiting for the socket.
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
