package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/internal/wire"
	"github.com/wsactor/wsactor/transport"
)

// PanicPolicy is what the supervisor does when a handler method panics.
type PanicPolicy int

const (
	// RestartHandler makes a fresh Handler value, calls OnOpen again and
	// keeps the socket, up to Supervision.MaxRestarts times within
	// Supervision.Within; one more panic closes the connection with 1011.
	RestartHandler PanicPolicy = iota
	// CloseConnection closes the connection with 1011 at the first panic.
	CloseConnection
	// ResumeHandler keeps the same Handler value and carries on with the
	// next message, as if the panicking call had returned.
	ResumeHandler
)

// Supervision configures how connection actors are supervised. The zero
// value restarts a panicking handler up to 3 times per minute.
type Supervision struct {
	Policy      PanicPolicy
	MaxRestarts int           // default 3
	Within      time.Duration // default 1 minute
}

// Config configures a Runtime.
type Config struct {
	System      *actor.ActorSystem
	ServerName  string
	Logger      *slog.Logger
	Counters    *metrics.Counters
	Supervision Supervision
	// NodeQueueBytes bounds what is queued for each server on another
	// node (see Options.NodeQueueBytes); 0 or negative: no bound.
	NodeQueueBytes int
	// Gone is called once a connection's actor has stopped and its socket is
	// closed.
	Gone func()
}

// Runtime owns the supervisor of one server's connection actors and the
// index of its live connections.
type Runtime struct {
	system         *actor.ActorSystem
	server         string
	logger         *slog.Logger
	counters       *metrics.Counters
	supervisor     *actor.PID
	requestTimeout time.Duration
	nodeQueueBytes int // the outboxes' bound, or 0
	replies        *replies
	routes         atomic.Pointer[routeTable] // the outboxes to the other nodes' servers
	// unregisterReceiver removes the batch receiver and the lane handler
	// (see registerReceiver).
	unregisterReceiver func()
	routesMu           sync.Mutex // serializes additions to routes
	onGone             func()
	groups             GroupService
	hooks              []MailboxHook
	closeHooks         []CloseHook
	cluster            Cluster
	ctx                context.Context // for log calls
	dispatch           *dispatcher     // runs the connections' mailboxes

	conns    sync.Map // actor name → *Conn
	closing  atomic.Bool
	stopping atomic.Bool
	// refusal, while set by Refuse, is how connections that start close.
	refusal atomic.Pointer[closeRequest]
}

// NewRuntime spawns the supervisor actor. It fails if the server name is
// invalid or already used in this actor system.
func NewRuntime(cfg Config) (*Runtime, error) {
	if !ValidServerName(cfg.ServerName) {
		return nil, fmt.Errorf("wsactor: invalid server name %q: use 1-16 lowercase letters or digits", cfg.ServerName)
	}
	sup := cfg.Supervision
	if sup.MaxRestarts <= 0 {
		sup.MaxRestarts = 3
	}
	if sup.Within <= 0 {
		sup.Within = time.Minute
	}
	directive := map[PanicPolicy]actor.Directive{
		RestartHandler:  actor.RestartDirective,
		CloseConnection: actor.StopDirective,
		ResumeHandler:   actor.ResumeDirective,
	}[sup.Policy]
	strategy := actor.NewOneForOneStrategy(sup.MaxRestarts, sup.Within, func(any) actor.Directive { return directive })
	rt := &Runtime{
		system:         cfg.System,
		server:         cfg.ServerName,
		logger:         cfg.Logger,
		counters:       cfg.Counters,
		requestTimeout: 5 * time.Second,
		nodeQueueBytes: max(cfg.NodeQueueBytes, 0),
		onGone:         cfg.Gone,
		ctx:            context.Background(),
		dispatch:       newDispatcher(),
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &supervisorActor{} }, actor.WithSupervisor(strategy))
	pid, err := cfg.System.Root.SpawnNamed(props, SupervisorPrefix+cfg.ServerName)
	if err != nil {
		return nil, fmt.Errorf("wsactor: spawn supervisor for server %q: %w", cfg.ServerName, err)
	}
	rt.supervisor = pid
	rt.replies = newReplies(cfg.System, cfg.ServerName)
	rt.routes.Store(&routeTable{})
	rt.unregisterReceiver = rt.registerReceiver()
	return rt, nil
}

// supervisorActor is the parent of every connection actor of one server. It
// only spawns; the strategy in its props does the supervising.
type supervisorActor struct{}

type spawnConn struct{ conn *Conn }

func (s *supervisorActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnConn:
		c := m.conn
		props := actor.PropsFromProducer(func() actor.Actor { return &connActor{conn: c} },
			actor.WithMailbox(actor.Unbounded(&c.inbox)), actor.WithDispatcher(c.rt.dispatch))
		if _, err := ctx.SpawnNamed(props, c.name); err != nil {
			// Cannot happen with 128-bit random names; never leak the socket.
			c.rt.logger.Error("wsactor: spawn connection actor", slog.Any("err", err))
			c.tc.CloseNow(transport.StatusInternalError, ReasonHandlerFailed)
			return
		}
	}
}

// OpenParams describe a connection to Open.
type OpenParams struct {
	// Path holds the route's path variables.
	Path map[string]string
	// First is the Handler value that ran Connect (it may be nil).
	First Handler
	// NewHandler makes a Handler after a restart (and the first one if First is nil).
	NewHandler func() Handler
	// Expiry says what happens when the user's credentials expire.
	Expiry Expiry
}

// Open wraps an accepted socket in a new connection actor. The connection is
// reachable by its ID as soon as Open returns; OnOpen runs inside the actor
// before any message is delivered.
//
// It fails with ErrRuntimeStopped once Stop has begun; the caller still owns
// tc then.
func (rt *Runtime) Open(tc *transport.Conn, hs *Handshake, p OpenParams) (*Conn, error) {
	if rt.stopping.Load() {
		return nil, ErrRuntimeStopped
	}
	name := newName()
	c := &Conn{
		id:         formatID(rt.server, name, rt.system.Address()),
		name:       name,
		pid:        actor.NewPID(rt.system.Address(), rt.supervisor.Id+"/"+name),
		rt:         rt,
		tc:         tc,
		request:    packRequest(hs.Request),
		remoteAddr: hs.Request.RemoteAddr,
		newHandler: p.NewHandler,
		first:      p.First,
		done:       make(chan struct{}),
		path:       p.Path,
		expiry:     p.Expiry,
	}
	c.user.Store(hs.User)
	if values := hs.values; values != nil {
		c.values.Store(&values) // never written again: SetValue copies
	}
	c.pending.Store(2)
	rt.conns.Store(name, c)
	rt.system.Root.Send(rt.supervisor, &spawnConn{conn: c})
	return c, nil
}

// ErrRuntimeStopped is returned by Open after Stop.
var ErrRuntimeStopped = errors.New("wsactor: server stopped")

// SetGroups installs the group service connections use. Call it before
// serving.
func (rt *Runtime) SetGroups(g GroupService) { rt.groups = g }

func (rt *Runtime) forget(c *Conn) {
	rt.conns.Delete(c.name)
	c.release()
}

func (rt *Runtime) gone(*Conn) {
	if rt.onGone != nil {
		rt.onGone()
	}
}

// Conns returns the live local connections.
func (rt *Runtime) Conns() []*Conn {
	var out []*Conn
	rt.conns.Range(func(_, v any) bool {
		out = append(out, v.(*Conn))
		return true
	})
	return out
}

// Lookup returns the live local connection with this ID.
func (rt *Runtime) Lookup(id ID) (*Conn, error) {
	c, rc, err := rt.resolve(id)
	if err == nil && rc.o != nil {
		err = fmt.Errorf("%w: %s lives on node %s", ErrConnectionNotFound, id, rc.o.address)
	}
	return c, err
}

// resolve finds where a connection lives, parsing its ID at most once: the
// live local connection, or the way to a connection on another live node,
// or the reason it cannot be reached. It allocates nothing for a live local
// connection or a node it has sent to before: every send by ID calls it.
func (rt *Runtime) resolve(id ID) (*Conn, remoteConn, error) {
	server, rest, ok1 := strings.Cut(string(id), ".")
	name, addr64, ok2 := strings.Cut(rest, ".")
	if ok1 && ok2 {
		// A live connection's stored ID is canonical, so an exact match is
		// valid without decoding it.
		if v, ok := rt.conns.Load(name); ok && v.(*Conn).id == id {
			return v.(*Conn), remoteConn{}, nil
		}
		// A node and server sent to before: the ID's other parts were
		// checked then, and only the name is left to check.
		if o := rt.routes.Load().byKey[routeKey{server, addr64}]; o != nil && validName(name) {
			if !rt.cluster.Alive(o.address) {
				return nil, remoteConn{}, fmt.Errorf("%w: node %s is not a live member", ErrConnectionNotFound, o.address)
			}
			return nil, remoteConn{o, name}, nil
		}
	}
	server, name, address, err := splitID(string(id))
	if err != nil {
		return nil, remoteConn{}, err
	}
	if address == rt.system.Address() {
		if server != rt.server {
			return nil, remoteConn{}, fmt.Errorf("%w: %s belongs to server %q", ErrConnectionNotFound, id, server)
		}
		return nil, remoteConn{}, ErrConnectionNotFound // not live (the fast path would have found it)
	}
	if rt.cluster == nil {
		return nil, remoteConn{}, fmt.Errorf("%w: %s lives on node %s and this node is not in a cluster", ErrConnectionNotFound, id, address)
	}
	if !rt.cluster.Alive(address) {
		return nil, remoteConn{}, fmt.Errorf("%w: node %s is not a live member", ErrConnectionNotFound, address)
	}
	return nil, remoteConn{rt.route(server, addr64, address), name}, nil
}

// Send delivers m to the connection through its mailbox and waits until it
// is queued for the socket (or refused). The connection may live on another
// node of the cluster.
func (rt *Runtime) Send(ctx context.Context, id ID, m Message) error {
	c, rc, err := rt.resolve(id)
	switch {
	case err != nil:
		return err
	case rc.o != nil:
		return rt.await(ctx, rc.o.address, func(id uint32) error {
			return rc.o.sendOrPush(outItem{name: rc.name, reqID: id, typ: WireType(m), data: m.Data}, func() {
				rt.system.Root.RequestWithCustomSender(rc.pid(), &wire.Deliver{Type: WireType(m), Data: m.Data}, rt.replies.sender(id))
			})
		})
	}
	reply := make(chan error, 1)
	rt.tell(c, &outbound{msg: m, reply: reply})
	select {
	case err := <-reply:
		return err
	case <-c.done:
		// The actor stopped; the message may have raced it.
		select {
		case err := <-reply:
			return err
		default:
			return ErrConnectionNotFound
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Post delivers m through the connection's mailbox without waiting. It
// reports only what it knows at once: a malformed or unknown ID, a
// connection on a node that is not a live member, or a full queue to the
// connection's node (ErrNodeQueueFull: m was dropped).
func (rt *Runtime) Post(id ID, m Message) error {
	c, rc, err := rt.resolve(id)
	switch {
	case err != nil:
		return err
	case rc.o != nil:
		return rc.o.push(outItem{name: rc.name, typ: WireType(m), data: m.Data})
	}
	c.post(m)
	return nil
}

// Close asks the connection to close with code and reason, through its
// mailbox (after what is already queued), and waits until it has closed or
// ctx is done.
func (rt *Runtime) Close(ctx context.Context, id ID, code StatusCode, reason string) error {
	if !ValidCloseCode(code) {
		return ErrInvalidCloseCode
	}
	reason = TruncateReason(reason)
	c, rc, err := rt.resolve(id)
	switch {
	case err != nil:
		return err
	case rc.o != nil:
		pid := rc.pid()
		stopped, unwatch := rt.watchStopped(rc)
		defer unwatch()
		err := rt.await(ctx, pid.Address, func(id uint32) error {
			msg := &wire.Close{Code: int32(code), Reason: reason}
			return rc.o.sendOrPush(outItem{pid: pid, msg: msg, reqID: id, control: true}, func() {
				rt.system.Root.RequestWithCustomSender(pid, msg, rt.replies.sender(id))
			})
		})
		if err != nil {
			return err
		}
		select {
		case <-stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rt.tell(c, &closeRequest{code: code, reason: reason})
	return c.WaitClosed(ctx)
}

// Tell delivers an arbitrary message to the connection's Receiver. A
// connection on another node receives a protobuf message as it is and a
// value of a type registered with RegisterMessage decoded into that type;
// any other value is refused with an error wrapping ErrNotRegistered, and
// one that encoding/json cannot encode with its error.
func (rt *Runtime) Tell(id ID, msg any) error {
	c, rc, err := rt.resolve(id)
	switch {
	case err != nil:
		return err
	case rc.o != nil:
		m, err := EncodeValue(msg)
		if err != nil {
			return err
		}
		return rc.o.push(outItem{pid: rc.pid(), msg: m})
	}
	rt.tell(c, msg)
	return nil
}

// StopAdmitting marks the runtime closing: connections opened from now on
// close at once with 1001 "going away".
func (rt *Runtime) StopAdmitting() { rt.closing.Store(true) }

// Live returns the live connections, in no particular order.
func (rt *Runtime) Live() []*Conn {
	var out []*Conn
	rt.conns.Range(func(_, v any) bool {
		out = append(out, v.(*Conn))
		return true
	})
	return out
}

// AskClose asks c, through its mailbox, to close with code and reason
// after the messages already queued for it; it does not wait.
func (rt *Runtime) AskClose(c *Conn, code StatusCode, reason string) {
	rt.tell(c, &closeRequest{code: code, reason: reason})
}

// tell sends msg to c's actor from outside it. A connection is in rt.conns,
// where Live, drains and sends by ID find it, from Open on, but its actor is
// spawned a moment later on the supervisor's goroutine: protoactor registers
// the actor's process before it sets up its mailbox (a data race with a
// message sent then) and drops what is sent before (a dead letter). Until
// the actor has started, msg waits in c.early, which the actor handles when
// it starts, before anything in its mailbox, and only then sets c.spawned:
// a sender's later messages, sent straight to the mailbox (or past it, see
// Conn.post), come after its early ones. (The supervisor cannot set it: the
// actor may run for a while before the supervisor's goroutine gets back from
// spawning it, and a message sent to its PID meanwhile, a Tell from another
// node for instance, would overtake the early ones.)
func (rt *Runtime) tell(c *Conn, msg any) {
	if !c.spawned.Load() {
		c.earlyMu.Lock()
		if !c.spawned.Load() {
			c.early = append(c.early, msg)
			c.earlyMu.Unlock()
			return
		}
		c.earlyMu.Unlock()
	}
	rt.system.Root.Send(c.pid, msg)
}

// CloseAllSoon sends every live connection's close frame as soon as its
// socket is free, dropping what is queued for it (transport.Conn.CloseSoon).
func (rt *Runtime) CloseAllSoon(code StatusCode, reason string) {
	rt.conns.Range(func(_, v any) bool {
		v.(*Conn).tc.CloseSoon(code, reason)
		return true
	})
}

// Refuse closes every live connection with code and reason, and every
// connection that starts until Admit, as CloseAll does, but for a while: a
// server taken out of service and put back.
func (rt *Runtime) Refuse(code StatusCode, reason string) {
	cr := &closeRequest{code: code, reason: reason}
	rt.refusal.Store(cr)
	rt.conns.Range(func(_, v any) bool {
		rt.tell(v.(*Conn), cr)
		return true
	})
}

// Admit ends Refuse: connections that start from now on stay open.
func (rt *Runtime) Admit() { rt.refusal.Store(nil) }

// AbortAll tears down every live socket without a closing handshake.
func (rt *Runtime) AbortAll(code StatusCode, reason string) {
	rt.conns.Range(func(_, v any) bool {
		v.(*Conn).tc.CloseNow(code, reason)
		return true
	})
}

// Stop stops the supervisor and with it every connection actor still
// running (each closes its socket with 1001 and gets OnClose).
func (rt *Runtime) Stop(ctx context.Context) error {
	rt.stopping.Store(true)
	rt.closing.Store(true)
	defer rt.dispatch.stop()
	// Nothing is delivered to a stopped server, which the registry and the
	// lane would otherwise keep reachable.
	defer rt.unregisterReceiver()
	f := rt.system.Root.StopFuture(rt.supervisor)
	done := make(chan error, 1)
	go func() { done <- f.Wait() }()
	select {
	case err := <-done:
		if errors.Is(err, actor.ErrTimeout) {
			return fmt.Errorf("wsactor: stopping connection actors: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewHandshake returns a Handshake for r.
func NewHandshake(r *http.Request) *Handshake { return &Handshake{Request: r} }
