package actors

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/transport"
)

// Errors of sends and closes addressed by ID.
var (
	// ErrConnectionNotFound: no open connection has this ID (it never
	// existed, or it is closing or closed).
	ErrConnectionNotFound = errors.New("wsactor: connection not found")
	// ErrSendQueueFull: the connection's send queue was full; its overflow
	// policy ran (by default the connection is closed with 1008).
	ErrSendQueueFull = errors.New("wsactor: send queue full")
	// ErrNodeQueueFull: the connection is on another node, and this server
	// already holds Options.NodeQueueBytes of messages for that node's
	// server that the network has not taken yet; the message was dropped
	// (and counted in Stats.NodeQueueFull). That node, or the network to it,
	// takes messages slower than this node sends them.
	ErrNodeQueueFull = errors.New("wsactor: queue to the connection's node full")
	// ErrInvalidCloseCode: the code may not be sent in a close frame (use
	// 1000–1003, 1007–1014 or 3000–4999).
	ErrInvalidCloseCode = errors.New("wsactor: invalid close code")
)

// Conn is one live connection, as seen by its handler. It lives as long as
// the connection, across handler restarts.
//
// Send, SendText, SendBinary, SendJSON, Close, ID, Value, SetValue and the
// request accessors are safe from any goroutine. The actor methods (Actor, Sender, Respond,
// Tell, Request, Spawn) are valid only inside a handler method.
type Conn struct {
	id   ID
	name string
	pid  *actor.PID
	rt   *Runtime
	tc   *transport.Conn

	path       map[string]string
	request    packedRequest // URL and headers of the upgrade request
	remoteAddr string
	user       atomic.Pointer[auth.User] // replaced when credentials are refreshed
	expiry     Expiry
	expiryT    *time.Timer                 // guarded by mu
	refreshDue time.Time                   // when a requested refresh must have arrived; actor goroutine only
	values     atomic.Pointer[map[any]any] // replaced whole by SetValue (under mu): reads take no lock

	newHandler func() Handler
	first      Handler // the value that ran Connect; serves until the first restart

	// Touched only on the actor's goroutine.
	actx    actor.Context
	started bool
	closed  bool // OnClose has run; written under mu

	// The mailbox latency sample (see sampleFrame): frames counts frames
	// sent to the mailbox (reader goroutine only), handled those the actor
	// took (actor goroutine only); sampleSeq and sampleAt are the number
	// and send time of the last frame sampled.
	frames, handled uint64
	sampleSeq       atomic.Uint64
	sampleAt        atomic.Int64

	// spawned is set once the actor has started and taken early, what was
	// sent to it before (see Runtime.tell); earlyMu orders the two.
	spawned atomic.Bool
	earlyMu sync.Mutex
	early   []any

	closeRequested atomic.Bool
	actorDone      atomic.Bool
	pending        atomic.Int32 // actor and reader both have to finish
	done           chan struct{}
	// inbox counts the messages posted to the actor's mailbox and not yet
	// handled, so that Post can skip the mailbox when it is empty.
	inbox mailboxLoad

	mu     sync.Mutex // guards the lazily made fields below
	timers map[*Timer]struct{}
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger
}

// ID returns the connection's ID: its actor's PID, usable from anywhere.
func (c *Conn) ID() ID { return c.id }

// Self returns the connection actor's PID.
func (c *Conn) Self() *actor.PID { return c.pid }

// Send queues m for the client without blocking. It fails with
// ErrConnectionNotFound once the connection is closing, and with
// ErrSendQueueFull when the send queue overflowed.
func (c *Conn) Send(m Message) error {
	var err error
	if c.inbox.n.Load() > 1 {
		// More messages wait in the mailbox (a burst of posts, pipelined
		// frames): leave the write to the transport's flushers, which send
		// what this run of the mailbox queues in as few writes as fit.
		err = c.tc.Enqueue(m.Type, m.Data)
	} else {
		err = c.tc.Write(m.Type, m.Data)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transport.ErrQueueFull):
		return ErrSendQueueFull
	default:
		return ErrConnectionNotFound
	}
}

// SendText sends a text message.
func (c *Conn) SendText(s string) error { return c.Send(Text(s)) }

// SendBinary sends a binary message. b must not be modified afterwards.
func (c *Conn) SendBinary(b []byte) error { return c.Send(Binary(b)) }

// SendJSON sends v encoded as JSON in a text message.
func (c *Conn) SendJSON(v any) error {
	m, err := JSON(v)
	if err != nil {
		return err
	}
	return c.Send(m)
}

// Close sends the messages already queued, then closes the connection with
// code and reason (truncated to the 123 bytes a close frame can carry).
// OnClose follows once the client has answered or the socket is gone.
func (c *Conn) Close(code StatusCode, reason string) error {
	if !ValidCloseCode(code) {
		return ErrInvalidCloseCode
	}
	c.closeRequested.Store(true)
	c.tc.Close(code, TruncateReason(reason))
	return nil
}

// PathValue returns a path variable of the route's pattern.
func (c *Conn) PathValue(name string) string { return c.path[name] }

// Query returns the query parameters of the upgrade request.
func (c *Conn) Query() url.Values { return c.request.url().Query() }

// URL returns a copy of the upgrade request's URL, decoded at each call from
// the compact form a connection keeps (see Header).
func (c *Conn) URL() *url.URL { return c.request.url() }

// Header returns a copy of the upgrade request's headers. A connection keeps
// them in a compact form, which costs an idle connection a fraction of
// net/http's map, and each call decodes a fresh copy: a handler that
// consults them often keeps what it needs from OnOpen (or Connect, through
// Handshake.SetValue).
func (c *Conn) Header() http.Header { return c.request.header() }

// Cookie returns a cookie of the upgrade request, or http.ErrNoCookie.
func (c *Conn) Cookie(name string) (*http.Cookie, error) {
	r := http.Request{Header: c.Header()}
	return r.Cookie(name)
}

// RemoteAddr returns the client's network address.
func (c *Conn) RemoteAddr() string { return c.remoteAddr }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.tc.Subprotocol() }

// User returns the authenticated user, or nil for an anonymous connection.
func (c *Conn) User() *auth.User { return c.user.Load() }

// Value returns what Handshake.SetValue or SetValue attached under key, or
// nil. It is safe from any goroutine, concurrently with SetValue.
func (c *Conn) Value(key any) any {
	if m := c.values.Load(); m != nil {
		return (*m)[key]
	}
	return nil
}

// SetValue attaches value to the connection under key (a nil value removes
// it), for its whole life: unlike the Handler's fields, values survive
// handler restarts. It is for data the connection acquires after the upgrade
// (a seat token, a room reference); values set at the handshake stay unless
// replaced. Safe from any goroutine. key must be comparable, as a map key.
//
// Each call copies the connection's few values, so that Value never takes a
// lock: set values when they change, not per message.
func (c *Conn) SetValue(key, value any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[any]any
	if p := c.values.Load(); p != nil {
		old = *p
	}
	next := make(map[any]any, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if value == nil {
		delete(next, key)
	} else {
		next[key] = value
	}
	c.values.Store(&next)
}

// Context returns a context cancelled when the connection ends, for work the
// handler starts on its behalf.
func (c *Conn) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
		if c.closed {
			c.cancel()
		}
	}
	return c.ctx
}

// Logger returns the server's logger with the connection ID attached.
func (c *Conn) Logger() *slog.Logger {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logger == nil {
		c.logger = c.rt.logger.With(slog.String("conn", string(c.id)))
	}
	return c.logger
}

// Actor returns the protoactor context of the message being handled: the
// escape hatch to everything protoactor offers.
func (c *Conn) Actor() actor.Context { return c.actx }

// Sender returns the PID that sent the message being handled, if any.
func (c *Conn) Sender() *actor.PID { return c.actx.Sender() }

// Respond answers the message being handled (a request). A requester on
// another node gets a registered type in its envelope (its future's result
// goes through DecodeValue); an answer that cannot cross is logged at Error
// and the requester times out.
func (c *Conn) Respond(msg any) {
	sender := c.actx.Sender()
	switch m, err := c.forPID(sender, msg); {
	case err != nil:
		c.Logger().Error("wsactor: Respond to another node", slog.Any("err", err))
	case sender == nil:
		c.actx.Respond(m) // a dead letter, as protoactor has it
	default:
		c.rt.SendAs(sender, m, nil)
	}
}

// Tell sends msg to another actor, with this connection as the sender. To an
// actor on another node, msg must be a protobuf message or of a type
// registered with RegisterMessage: anything else is refused with an error
// wrapping ErrNotRegistered. A connection actor there receives the value
// decoded; another actor passes it through DecodeValue. To a connection on
// another node it goes the way of sends by ID (Runtime.SendAs), in order
// with them, and is refused with ErrNodeQueueFull as Server.Tell is.
func (c *Conn) Tell(pid *actor.PID, msg any) error {
	m, err := c.forPID(pid, msg)
	if err != nil {
		return err
	}
	return c.rt.SendAs(pid, m, c.pid) // ErrNodeQueueFull: dropped
}

// Request sends msg to another actor and returns a future for its answer.
// Inside a handler, prefer Tell and receive the answer in Receive: waiting on
// a future blocks the connection's mailbox. msg crosses nodes as Tell says.
// A request that Tell would refuse (a message that cannot cross nodes, or
// ErrNodeQueueFull) is logged at Error, and its future fails at once with
// actor.ErrDeadLetter, as one to an actor that does not exist does, rather
// than at its timeout.
func (c *Conn) Request(pid *actor.PID, msg any) actor.Future {
	f := actor.NewFuture(c.rt.system, c.rt.requestTimeout)
	m, err := c.forPID(pid, msg)
	if err == nil {
		// The way of Tell, so in order with this connection's Tells.
		err = c.rt.SendAs(pid, m, f.PID())
	}
	if err != nil {
		c.Logger().Error("wsactor: Request not sent", slog.Any("to", pid), slog.Any("err", err))
		// A protoactor future takes no error of ours; a dead letter
		// response is the one that completes it with an error.
		c.rt.system.Root.Send(f.PID(), &actor.DeadLetterResponse{Target: pid})
	}
	return f
}

// forPID returns msg as it is sent to pid: as it is to an actor of this
// node, and as EncodeValue makes it to an actor on another node.
func (c *Conn) forPID(pid *actor.PID, msg any) (any, error) {
	if pid == nil || pid.Address == c.rt.system.Address() {
		return msg, nil
	}
	return EncodeValue(msg)
}

// Spawn starts a child actor of the connection; it is stopped when the
// connection ends or its handler restarts.
func (c *Conn) Spawn(props *actor.Props) *actor.PID { return c.actx.Spawn(props) }

// ValidCloseCode reports whether code may be sent in a close frame.
func ValidCloseCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// TruncateReason shortens reason to the 123 bytes a close frame can carry,
// without splitting a UTF-8 sequence.
func TruncateReason(reason string) string {
	const max = 123
	if len(reason) <= max {
		return reason
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// WaitClosed waits until the connection's actor has stopped (OnClose has
// run) or ctx is done.
func (c *Conn) WaitClosed(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeEarly returns what was sent to the connection before its actor
// started, and marks it started (see Runtime.tell). The actor calls it.
func (c *Conn) takeEarly() []any {
	c.earlyMu.Lock()
	defer c.earlyMu.Unlock()
	early := c.early
	c.early = nil
	c.spawned.Store(true)
	return early
}
