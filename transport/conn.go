package transport

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// MessageType is the kind of a data message: MessageText or MessageBinary.
type MessageType = websocket.MessageType

// The two kinds of data message.
const (
	MessageText   = websocket.MessageText
	MessageBinary = websocket.MessageBinary
)

// Frame is one complete inbound message.
type Frame struct {
	Type MessageType
	Data []byte
	// Limited is set when the message exceeded the connection's rate limit
	// under RateLimitReject: the consumer must not handle it as usual, but
	// tell the client it was refused. It still has to be released.
	Limited bool
}

// Errors returned by Write.
var (
	// ErrClosed: the connection is closing or closed; the message was not queued.
	ErrClosed = errors.New("wsactor/transport: connection closed")
	// ErrQueueFull: the send queue is full; the overflow policy ran.
	ErrQueueFull = errors.New("wsactor/transport: send queue full")
)

// Conn is one accepted WebSocket. All methods are safe for concurrent use.
type Conn struct {
	ws      *websocket.Conn
	netConn *watchedConn // the hijacked socket, to watch writes and close it under coder/websocket
	in      *inboundConn // what coder/websocket reads: netConn with the inbound check
	opts    *Options

	// The rate limits' buckets, made at the first message; nil when that
	// limit is off. Touched by the reader goroutine only.
	msgLimit, byteLimit *rate.Limiter

	deliver  func(Frame)
	finished func(CloseInfo)

	// inflight holds a token per frame delivered but not yet released by the
	// consumer; the reader blocks when it is full.
	inflight chan struct{}
	// ending is closed as soon as the connection is known to be ending, so
	// that a reader blocked on inflight lets go.
	ending     chan struct{}
	endingOnce sync.Once

	// decided is the server's own decision about how the connection ends;
	// the first decision wins and is what the handler is told.
	decided atomic.Pointer[CloseInfo]

	over   atomic.Bool // the read loop has ended
	parked atomic.Bool // the reader waits for an inflight token
	// handovers counts the read loop's hand-overs to a fresh goroutine
	// (see readLoop), for the tests.
	handovers atomic.Int32
	lastRead  atomic.Int64 // unix nanoseconds of the last inbound message

	stallTimer atomic.Pointer[time.Timer] // the stall watch (write.go); made by the first writer
	watching   atomic.Bool                // a writer goroutine is running
	heartbeat  *time.Timer
	nextPing   time.Time // touched only by the heartbeat callback

	sendQueue // guarded by its own mutex; see write.go
}

// Accept upgrades the request. On failure coder/websocket has already written
// the HTTP error (403 for a refused origin, 400 for a bad handshake) and the
// error says why. opts must already have its defaults (Options.WithDefaults).
func Accept(w http.ResponseWriter, r *http.Request, opts *Options) (*Conn, error) {
	rec := &hijackRecorder{ResponseWriter: w}
	var rw http.ResponseWriter = w
	if _, err := findHijacker(w); err == nil {
		rw = rec
	}
	ws, err := websocket.Accept(rw, r, opts.acceptOptions())
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(opts.MaxMessageSize)
	c := &Conn{
		ws:       ws,
		netConn:  rec.conn,
		in:       rec.in,
		opts:     opts,
		inflight: make(chan struct{}, opts.MaxInflight),
		ending:   make(chan struct{}),
	}
	c.sendQueue.conn = c
	return c, nil
}

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// Start begins reading. deliver is called on the reader goroutine for every
// inbound message, in order; the consumer must call Release once per
// delivered frame when it has handled it. finished is called exactly once,
// on the reader goroutine, after the socket is closed.
func (c *Conn) Start(deliver func(Frame), finished func(CloseInfo)) {
	c.deliver = deliver
	c.finished = finished
	now := time.Now()
	c.lastRead.Store(now.UnixNano())
	if d, ok := c.nextHeartbeat(now); ok {
		c.nextPing = now.Add(c.opts.PingInterval)
		// Assign before arming, so beat never sees a nil timer.
		c.heartbeat = time.AfterFunc(time.Hour, c.beat)
		c.heartbeat.Reset(d)
	}
	go c.readLoop()
}

// Release returns the inflight token of one delivered frame.
func (c *Conn) Release() {
	select {
	case <-c.inflight:
	default:
	}
}

// readLoop reads the client's messages and delivers them until the
// connection ends.
//
// A goroutine's stack grows while it reads a frame (coder/websocket's read
// path is deep), and the runtime shrinks a parked one only while its use,
// plus 800 bytes it keeps for nosplit functions, is under a quarter: a
// reader that has read anything waits on a 4 KiB stack at least, 2 KiB more
// than a fresh one. So when a control frame comes alone (the pong to a
// heartbeat ping, sent only when the client has been quiet for a ping
// interval), the loop hands over to a fresh goroutine, which waits on the
// minimum stack, and ends. Doing it at every wait would put a goroutine
// start in every round trip.
func (c *Conn) readLoop() {
	var err error
	for {
		if c.in != nil {
			c.in.await()
		}
		var parked bool
		if parked, err = c.readOne(); err != nil {
			break
		}
		if parked {
			c.handovers.Add(1)
			go c.readLoop()
			return
		}
	}
	if err == errStopReading {
		err = nil // the read itself succeeded; failInbound decided the close
	}
	c.endRead(err)
}

// errStopReading is what readOne returns to end the read loop after a read
// that succeeded.
var errStopReading = errors.New("wsactor/transport: stop reading")

// readOne reads and delivers one message. parked reports that a control
// frame came alone (a pong) and nothing more has arrived: the read loop
// waits in await. A non-nil error ends the loop; messages that are dropped
// are not errors. It is a function of its own so that the read loop's
// frame, on which an idle connection's reader waits, stays small.
//
//go:noinline
func (c *Conn) readOne() (parked bool, err error) {
	typ, data, err := c.ws.Read(context.Background())
	if errors.Is(err, errPark) {
		return true, nil
	}
	if err != nil {
		if v := c.in.failed(); v != nil {
			c.failInbound(v.code, v.reason)
		}
		return false, err
	}
	now := time.Now()
	c.lastRead.Store(now.UnixNano())
	if typ == MessageText && c.checkUTF8() && !utf8.Valid(data) {
		c.failInbound(StatusInvalidFramePayloadData, ReasonInvalidUTF8)
		return false, errStopReading
	}
	c.opts.Counters.MessagesIn.Add(1)
	c.opts.Counters.BytesIn.Add(int64(len(data)))
	select {
	case <-c.ending:
		return false, nil
	default:
	}
	limited := c.rateLimited(now, len(data))
	if limited {
		c.opts.Counters.RateLimited.Add(1)
		if c.opts.RateLimit.Policy == RateLimitClose {
			c.CloseSoon(StatusPolicyViolation, ReasonRateLimited)
			return false, nil // the next Read reports the close
		}
	}
	select {
	case c.inflight <- struct{}{}:
	default:
		c.parked.Store(true)
		select {
		case c.inflight <- struct{}{}:
			c.parked.Store(false)
		case <-c.ending:
			c.parked.Store(false)
			return false, nil
		}
	}
	c.deliver(Frame{Type: typ, Data: data, Limited: limited})
	return false, nil
}

// endRead ends the connection once its read loop has.
func (c *Conn) endRead(err error) {
	if c.in != nil {
		c.in.release()
	}
	c.end()
	c.sendQueue.refuse()
	c.over.Store(true)
	var info CloseInfo
	if d := c.decided.Load(); d != nil {
		info = *d
	} else {
		info = closeInfoFromReadError(err)
	}
	if c.heartbeat != nil {
		c.heartbeat.Stop()
	}
	_ = c.ws.CloseNow() // releases the socket if nothing else did; waits for a Close in progress
	c.finished(info)
}

// checkUTF8 reports whether the read loop must validate text messages
// itself: the inbound check skips compressed ones (it sees them deflated),
// and is absent only if Accept could not wrap the socket.
func (c *Conn) checkUTF8() bool { return c.in == nil || c.in.fc.deflate }

// rateLimited takes a message of n bytes from the rate limits' buckets and
// reports whether it did not fit.
func (c *Conn) rateLimited(now time.Time, n int) bool {
	rl := &c.opts.RateLimit
	if rl.MessagesPerSecond <= 0 && rl.BytesPerSecond <= 0 {
		return false
	}
	if c.opts.now != nil {
		now = c.opts.now()
	}
	if c.msgLimit == nil && c.byteLimit == nil {
		// Made at the first message, full, as they would have filled up
		// by now: a connection that never sends holds none.
		if rl.MessagesPerSecond > 0 {
			c.msgLimit = rate.NewLimiter(rate.Limit(rl.MessagesPerSecond), rl.MessageBurst)
		}
		if rl.BytesPerSecond > 0 {
			c.byteLimit = rate.NewLimiter(rate.Limit(rl.BytesPerSecond), rl.ByteBurst)
		}
	}
	if c.msgLimit != nil && !c.msgLimit.AllowN(now, 1) {
		return true
	}
	return c.byteLimit != nil && !c.byteLimit.AllowN(now, n)
}

// failInbound ends a connection whose client broke the protocol or sent
// invalid UTF-8, on the reader goroutine, which reads no further. It waits
// until the consumer has released every frame delivered before (so the
// replies to them are queued), then closes with code after those replies,
// and returns once the socket is closed. The whole is bounded by
// WriteTimeout; past it the socket is torn down.
func (c *Conn) failInbound(code StatusCode, reason string) {
	c.decide(code, reason) // so that a heartbeat meanwhile does not pick another
	deadline := time.NewTimer(c.opts.WriteTimeout)
	defer deadline.Stop()
	if !c.awaitReleased(deadline.C) {
		c.CloseNow(code, reason)
		return
	}
	c.Close(code, reason)
	select {
	case <-c.ending: // the writer has drained the queue and closed
	case <-deadline.C:
		c.CloseNow(code, reason)
	}
}

// awaitReleased waits until the consumer has released every delivered frame
// (the reader then holds every inflight token) or the connection is ending.
// It reports false if timeout came first.
func (c *Conn) awaitReleased(timeout <-chan time.Time) bool {
	for range cap(c.inflight) {
		select {
		case c.inflight <- struct{}{}:
		case <-c.ending:
			return true
		case <-timeout:
			return false
		}
	}
	return true
}

// decide records how the server wants the connection to end; the first call wins.
func (c *Conn) decide(code StatusCode, reason string) bool {
	return c.decided.CompareAndSwap(nil, &CloseInfo{Code: code, Reason: reason, ByServer: true})
}

func (c *Conn) end() {
	c.endingOnce.Do(func() { close(c.ending) })
}

// Close flushes the messages already queued, then sends a close frame with
// code and reason and waits (on the writer goroutine, never the caller's) for
// the client's reply, at most 5 s. Messages written after Close are refused.
func (c *Conn) Close(code StatusCode, reason string) {
	c.decide(code, reason)
	c.sendQueue.closeAfterDrain()
}

// CloseSoon drops the queued messages and sends a close frame as soon as the
// socket is free. If a write is stuck on a client that does not read, it is
// abandoned after a short grace period and the socket is closed without the
// close frame.
func (c *Conn) CloseSoon(code StatusCode, reason string) {
	c.decide(code, reason)
	c.end()
	c.sendQueue.closeDropping()
	if c.netConn != nil {
		// coder/websocket would wait up to 5 s for a client that does not
		// read to answer the close frame; that client has had its chance.
		time.AfterFunc(closeGrace, func() {
			if !c.over.Load() {
				_ = c.netConn.Close()
			}
		})
	}
}

// CloseNow tears the socket down without a closing handshake. Use it when the
// client is known to be gone or must not be waited for.
func (c *Conn) CloseNow(code StatusCode, reason string) {
	c.decide(code, reason)
	c.end()
	c.sendQueue.refuse()
	if c.netConn != nil {
		// Also cuts short a closing handshake already in progress, which
		// coder/websocket's CloseNow would wait for.
		_ = c.netConn.Close()
	}
	go func() { _ = c.ws.CloseNow() }()
}

// hijackRecorder keeps the net.Conn that coder/websocket hijacks, wrapped
// so that the stall watch sees the writes (write.go), and hands
// coder/websocket the same socket behind the inbound check (inbound.go).
type hijackRecorder struct {
	http.ResponseWriter
	conn *watchedConn
	in   *inboundConn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, err := findHijacker(h.ResponseWriter)
	if err != nil {
		return nil, nil, err
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return conn, brw, err
	}
	if h.conn, err = watch(conn, brw); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	// coder/websocket has set the response headers before hijacking.
	deflate := strings.Contains(h.Header().Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	h.in = newInboundConn(h.conn, conn, brw, deflate)
	// net/http's 4 KiB reader and writer are left behind (buffers.go).
	return h.in, smallReadWriter(h.in, h.conn), nil
}

// findHijacker follows Unwrap like http.ResponseController does.
func findHijacker(w http.ResponseWriter) (http.Hijacker, error) {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return t, nil
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil, errors.New("wsactor/transport: http.ResponseWriter does not implement http.Hijacker")
		}
	}
}
