package transport

import (
	"context"
	"sync"
	"time"
)

type outbound struct {
	typ  MessageType
	data []byte
}

// sendQueue is the bounded FIFO between writers (the connection's actor, any
// goroutine) and the socket. A writer goroutine exists only while the queue
// has work, so an idle connection costs no goroutine for writing.
type sendQueue struct {
	conn *Conn

	mu          sync.Mutex
	items       []outbound // items[head:] are queued; the array is reused
	head        int
	bytes       int  // bytes queued, including the message being written
	writing     bool // a writer goroutine is running
	refusing    bool // no more messages are accepted
	closeQueued bool // the writer performs the closing handshake once drained
	overflowed  bool // OverflowClose has run
}

// Write queues a message for the socket and returns at once. It never blocks
// on the network. When the queue is full the connection's overflow policy
// runs: the error is ErrQueueFull (the connection may be closing because of
// it). data must not be modified afterwards; it may be shared by many
// connections (a prepared broadcast).
func (c *Conn) Write(typ MessageType, data []byte) error {
	q := &c.sendQueue
	o := c.opts
	q.mu.Lock()
	if q.refusing || q.overflowed {
		q.mu.Unlock()
		return ErrClosed
	}
	for q.len() > 0 && (q.len() >= o.SendQueueMessages || q.bytes+len(data) > o.SendQueueBytes) {
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
	q.items = append(q.items, outbound{typ: typ, data: data})
	q.bytes += len(data)
	q.startWriterLocked()
	q.mu.Unlock()
	return nil
}

// Queued reports the messages waiting for the socket and their bytes; the
// bytes also include the message being written, which still holds memory.
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
	q.bytes -= len(m.data)
	if q.head == len(q.items) {
		q.reset()
	}
	return m
}

// reset empties the queue, keeping a small array for the next message and
// letting a burst's large one go.
func (q *sendQueue) reset() {
	for i := q.head; i < len(q.items); i++ {
		q.bytes -= len(q.items[i].data)
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
	for {
		q.mu.Lock()
		if q.len() == 0 {
			q.writing = false
			closing := q.closeQueued
			q.closeQueued = false
			q.mu.Unlock()
			if closing {
				info := c.decided.Load()
				_ = c.ws.Close(info.Code, info.Reason)
				c.end() // the socket is closed: a reader parked on inflight may go
			}
			return
		}
		m := q.pop()
		q.bytes += len(m.data) // still held until written
		q.mu.Unlock()

		err := c.writeWithDeadline(m)

		q.mu.Lock()
		q.bytes -= len(m.data)
		q.mu.Unlock()
		if err != nil {
			// coder/websocket has closed the socket; the reader reports it.
			c.decide(StatusAbnormalClosure, ReasonWriteFailed)
			q.refuse()
			continue
		}
		c.opts.Counters.MessagesOut.Add(1)
		c.opts.Counters.BytesOut.Add(int64(len(m.data)))
	}
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

// writeWithDeadline writes one message, bounded by WriteTimeout. One timer
// per connection, re-armed for each write, replaces a context (and
// coder/websocket's AfterFunc on it) per message: a write that overruns has
// the socket closed under it, as an expired write context would.
func (c *Conn) writeWithDeadline(m outbound) error {
	if c.writeTimer == nil {
		c.writeTimer = time.AfterFunc(time.Hour, c.writeTimedOut)
	}
	c.writeDeadline.Store(time.Now().Add(c.opts.WriteTimeout).UnixNano())
	c.writeTimer.Reset(c.opts.WriteTimeout)
	err := c.ws.Write(context.Background(), m.typ, m.data)
	c.writeDeadline.Store(0)
	c.writeTimer.Stop()
	return err
}

// writeTimedOut runs when a write's deadline may have passed. A late tick
// for an earlier write finds a later deadline (or none) and does nothing.
func (c *Conn) writeTimedOut() {
	d := c.writeDeadline.Load()
	if d == 0 || time.Now().UnixNano() < d {
		return
	}
	c.decide(StatusAbnormalClosure, ReasonWriteFailed)
	if c.netConn != nil {
		_ = c.netConn.Close()
	} else {
		go func() { _ = c.ws.CloseNow() }()
	}
}
