package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/internal/wire"
	"github.com/wsactor/wsactor/transport"
)

// Mailbox messages private to the connection actor.
type (
	outbound struct {
		msg   Message
		reply chan error // nil for fire-and-forget
	}
	closeRequest struct {
		code   StatusCode
		reason string
	}
	transportClosed struct{ info transport.CloseInfo }
)

// runtimeFailureCodes are the codes the runtime chooses when something went
// wrong; codes an application chooses are its business and logged at Debug.
var runtimeFailureCodes = map[StatusCode]bool{
	transport.StatusAbnormalClosure:         true,
	transport.StatusProtocolError:           true,
	transport.StatusUnsupportedData:         true,
	transport.StatusInvalidFramePayloadData: true,
	transport.StatusPolicyViolation:         true,
	transport.StatusMessageTooBig:           true,
	transport.StatusInternalError:           true,
	transport.StatusTryAgainLater:           true,
}

// ReasonHandlerFailed is the reason sent with 1011 when a handler returned an
// error or panicked more often than the restart budget allows.
const ReasonHandlerFailed = "internal error"

// connActor is one incarnation of a connection's actor. A restart makes a new
// connActor (and a new Handler) around the same Conn, so the socket survives.
type connActor struct {
	conn    *Conn
	handler Handler
}

func (a *connActor) Receive(ctx actor.Context) {
	a.conn.actx = ctx
	a.handle(ctx, ctx.Message())
}

// handle handles msg, the message of ctx or one sent before the actor was
// spawned (see takeEarly).
func (a *connActor) handle(ctx actor.Context, msg any) {
	c := a.conn
	switch m := msg.(type) {
	case transport.Frame:
		a.onFrame(m)
	case *outbound:
		a.onOutbound(m)
	case *wire.Deliver:
		err := c.Send(MessageFromWire(m.GetType(), m.GetData()))
		if ctx.Sender() != nil {
			ctx.Respond(ResultOf(err))
		}
	case *wire.Value:
		a.receiveValue(m)
	case *wire.Close:
		err := c.Close(StatusCode(m.GetCode()), m.GetReason())
		if ctx.Sender() != nil {
			ctx.Respond(ResultOf(err))
		}
	case *timerTick:
		if m.timer.fired() {
			a.receive(m.timer.msg)
		}
	case *closeRequest:
		_ = c.Close(m.code, m.reason)
	case expiryCheck:
		c.onExpiryCheck()
	case *transportClosed:
		a.finish(m.info)
		ctx.Stop(ctx.Self())
	case *actor.Started:
		a.start()
		// What was sent before the actor existed comes now, before anything
		// in the mailbox: a sender's later messages are there.
		for _, early := range c.takeEarly() {
			a.handle(ctx, early)
		}
	case *actor.Restarting:
		c.stopTimers()
		c.rt.counters.Restarts.Add(1)
	case *actor.Stopping:
		if !c.closed {
			// The supervisor stopped us (restart budget exhausted or the
			// runtime is stopping): end the socket with the reason it chose.
			code, reason := transport.StatusInternalError, ReasonHandlerFailed
			if c.rt.stopping.Load() {
				code, reason = transport.StatusGoingAway, transport.ReasonGoingAway
			}
			c.tc.CloseSoon(code, reason)
			a.finish(transport.CloseInfo{Code: code, Reason: reason, ByServer: true})
		}
	case *actor.Stopped:
		c.actorDone.Store(true)
		c.rt.forget(c) // before done: once Close returns, the ID is unknown
		close(c.done)
	case *actor.Terminated:
		// An actor this connection watches has stopped: a room it plays in
		// (package rooms' hook), or one the handler watches itself.
		// A handler without Receive has nothing to learn from it (its own
		// children stop with it): no warning.
		msg, deliver := c.rt.hooked(c, m)
		if _, ok := a.handler.(Receiver); deliver && (ok || msg != any(m)) {
			a.receive(msg)
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		if msg, deliver := c.rt.hooked(c, m); deliver {
			a.receive(msg)
		}
	}
}

func (a *connActor) start() {
	c := a.conn
	if c.first != nil {
		a.handler, c.first = c.first, nil
	} else {
		a.handler = c.newHandler()
	}
	if !c.started {
		c.started = true
		if u := c.User(); u != nil {
			c.armExpiry(u.Expires)
		}
		if c.rt.groups != nil {
			c.rt.groups.Opened(c)
		}
		c.tc.Start(c.deliver, c.transportFinished)
		if c.rt.closing.Load() {
			_ = c.Close(transport.StatusGoingAway, transport.ReasonGoingAway)
		} else if r := c.rt.refusal.Load(); r != nil {
			_ = c.Close(r.code, r.reason)
		}
	}
	if o, ok := a.handler.(OpenHandler); ok {
		var err error
		a.guard("OnOpen", func() { err = o.OnOpen(c) })
		a.failed(err)
	}
}

// onFrame handles a frame, measuring the time it spent in the mailbox and
// in the handler for one frame in mailboxSampleEvery (see sampleFrame).
func (a *connActor) onFrame(f transport.Frame) {
	c := a.conn
	c.handled++
	if c.handled%mailboxSampleEvery != 0 || c.sampleSeq.Load() != c.handled {
		a.handleFrame(f)
		return
	}
	at := c.sampleAt.Load()
	a.handleFrame(f)
	c.rt.counters.MailboxLatency.Observe(time.Duration(monotonic() - at))
}

func (a *connActor) handleFrame(f transport.Frame) {
	c := a.conn
	defer c.tc.Release()
	if c.closeRequested.Load() {
		return // the handler asked to close: later frames are not its business
	}
	m := Message{Type: f.Type, Data: f.Data}
	if f.Limited {
		a.rateLimited(m)
		return
	}
	if c.interceptRefresh(f) {
		return
	}
	var err error
	a.guard("OnMessage", func() { err = a.handler.OnMessage(c, m) })
	a.failed(err)
}

// rateLimitedEnvelope is the default answer to a message refused by the
// rate limit. Shared by every connection: the transport never modifies it.
var rateLimitedEnvelope = []byte(`{"type":"error","code":"rate_limited","message":"rate limit exceeded","error":"rate limit exceeded"}`)

// rateLimited answers a message beyond the route's rate limit, which the
// handler's OnMessage never sees.
func (a *connActor) rateLimited(m Message) {
	if h, ok := a.handler.(RateLimitedHandler); ok {
		a.guard("OnRateLimited", func() { h.OnRateLimited(a.conn, m) })
		return
	}
	// A failed send means the connection is closing: nothing left to tell.
	_ = a.conn.Send(Message{Type: MessageText, Data: rateLimitedEnvelope})
}

func (a *connActor) onOutbound(m *outbound) {
	err := a.conn.Send(m.msg)
	if m.reply != nil {
		m.reply <- err
	}
}

func (a *connActor) receive(msg any) {
	r, ok := a.handler.(Receiver)
	if !ok {
		a.conn.Logger().Warn("wsactor: handler has no Receive method; message dropped",
			slog.String("type", fmt.Sprintf("%T", msg)))
		return
	}
	a.guard("Receive", func() { r.Receive(a.conn, msg) })
}

// receiveValue delivers a registered Go type sent from another node, decoded,
// or drops what this node cannot decode: counted, and logged at most once a
// minute per name, so that a node running behind its peers keeps serving.
func (a *connActor) receiveValue(m *wire.Value) {
	v, err := DecodeValue(m)
	if err != nil {
		a.conn.rt.counters.Undecodable.Add(1)
		WarnUndecodable(a.conn.Logger(), m, err)
		return
	}
	a.receive(v)
}

// failed closes the connection for an error a handler method returned.
func (a *connActor) failed(err error) {
	if err == nil {
		return
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		if a.conn.Close(ce.Code, ce.Reason) == nil {
			return
		}
	}
	a.conn.Logger().Error("wsactor: handler error; closing connection", slog.Any("err", err))
	_ = a.conn.Close(transport.StatusInternalError, ReasonHandlerFailed)
}

// guard logs a handler panic with its stack and the connection ID, then
// re-panics so that the supervisor applies the panic policy.
func (a *connActor) guard(method string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			a.conn.rt.counters.Panics.Add(1)
			a.conn.Logger().Error("wsactor: handler panicked",
				slog.String("method", method), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			panic(r)
		}
	}()
	f()
}

// finish runs OnClose exactly once and releases what the connection holds.
func (a *connActor) finish(info transport.CloseInfo) {
	c := a.conn
	if c.closed {
		return
	}
	c.mu.Lock() // Context may be called from other goroutines
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	if c.expiryT != nil {
		c.expiryT.Stop()
	}
	c.mu.Unlock()
	c.closeRequested.Store(true)
	level := slog.LevelDebug
	if info.ByServer && runtimeFailureCodes[info.Code] {
		level = slog.LevelWarn // a limit, a failure or a slow consumer: operators want to see it
	}
	c.rt.counters.Closes.Add(int(info.Code), closedBy(info))
	c.Logger().Log(c.rt.ctx, level, "wsactor: connection closed", slog.Int("code", int(info.Code)),
		slog.String("reason", info.Reason), slog.Bool("by_server", info.ByServer))
	c.stopTimers()
	if h, ok := a.handler.(CloseHandler); ok {
		func() {
			// The connection is over: a panic here has nothing left to restart.
			defer func() {
				if r := recover(); r != nil {
					c.rt.counters.Panics.Add(1)
					c.Logger().Error("wsactor: handler panicked", slog.String("method", "OnClose"),
						slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
				}
			}()
			h.OnClose(c, info.Code, info.Reason)
		}()
	}
	if c.rt.groups != nil {
		c.rt.groups.Closed(c)
	}
	for _, h := range c.rt.closeHooks {
		h(c)
	}
}

// deliver runs on the transport's reader goroutine.
func (c *Conn) deliver(f transport.Frame) {
	if c.actorDone.Load() {
		c.tc.Release()
		return
	}
	c.sampleFrame()
	c.rt.system.Root.Send(c.pid, f)
}

// mailboxSampleEvery is how often a connection's inbound frames are timed
// from the socket to the end of OnMessage (wsactor_mailbox_latency_seconds).
// Reading the clock twice for every message would be a measurable share of
// a cheap handler's cost; one frame in 64 costs a counter increment and a
// comparison on the others, and still gives every busy connection a sample
// a second. Frames are numbered on both sides (the mailbox keeps their
// order), so the actor knows which frame carries the sample without a field
// in the frame or an allocation.
const mailboxSampleEvery = 64

// sampleFrame numbers the frame about to be sent to the mailbox and, for
// one in mailboxSampleEvery, records when. A sample overwritten before the
// actor reached it (more than 64 frames queued) is skipped by the actor;
// rarely, the time of the next sample is read with the older number, which
// understates that one measurement.
func (c *Conn) sampleFrame() {
	c.frames++
	if c.frames%mailboxSampleEvery == 0 {
		c.sampleAt.Store(monotonic())
		c.sampleSeq.Store(c.frames)
	}
}

// clockBase anchors monotonic: time.Since reads the monotonic clock.
var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

// transportFinished runs on the reader goroutine once the socket is closed.
// It releases the connection before it tells the actor: the actor's stop
// ends a Close, and by then the connection must count as gone (Stats,
// Shutdown's drain), which takes both releases. The actor's own comes after
// OnClose, so a connection whose OnClose has not run still counts.
func (c *Conn) transportFinished(info transport.CloseInfo) {
	alive := !c.actorDone.Load()
	c.release()
	if alive {
		c.rt.system.Root.Send(c.pid, &transportClosed{info: info})
	}
}

// release is called once by the actor (Stopped) and once by the reader; the
// second call reports the connection gone.
func (c *Conn) release() {
	if c.pending.Add(-1) == 0 {
		c.rt.gone(c)
	}
}

// closedBy says who ended a connection, for wsactor_closes_total: the
// client (a close frame, or the socket lost), a timeout, a limit (a slow
// consumer, a message too big, the rate limit), or the server otherwise
// (the handler, an API call, shutdown, a failure).
func closedBy(info transport.CloseInfo) metrics.CloseBy {
	switch {
	case !info.ByServer:
		return metrics.ByClient
	case info.Reason == transport.ReasonIdleTimeout || info.Reason == transport.ReasonPingTimeout:
		return metrics.ByTimeout
	case info.Code == transport.StatusTryAgainLater, info.Code == transport.StatusMessageTooBig,
		info.Reason == transport.ReasonRateLimited:
		return metrics.ByLimit
	default:
		return metrics.ByServer
	}
}
