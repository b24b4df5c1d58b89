package wsactor

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/internal/logging"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/routing"
	"github.com/wsactor/wsactor/transport"
)

// Server accepts WebSocket connections and runs each as a supervised actor.
// It is an http.Handler: mount it in any mux or test server, or run it with
// ListenAndServe.
type Server struct {
	opts       Options
	logger     *slog.Logger
	system     *actor.ActorSystem
	ownsSystem bool
	rt         *actors.Runtime
	hub        *groups.Hub
	rooms      *rooms.Manager
	mux        routing.Mux
	counters   metrics.Counters

	admitted     atomic.Int64 // what counts against MaxConnections: see listen.go
	capWarned    atomic.Int64 // unix nanoseconds of the last "MaxConnections reached" record
	suspended    atomic.Pointer[suspension]
	shuttingDown atomic.Bool
	drainedOnce  sync.Once
	drained      chan struct{}
	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error

	mu       sync.Mutex
	httpSrvs []*http.Server // one per Serve call
}

type route struct {
	pattern       string
	pathNames     []string
	newHandler    func() Handler
	authenticator auth.Authenticator
	requireAuth   bool
	permissions   []auth.Permission
	refreshGrace  time.Duration
	closeRejects  bool
	transport     TransportOptions
}

// New returns a Server. It panics if opts.Name is not a valid server name or
// is already taken in opts.ActorSystem: both are programming errors.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{opts: opts, logger: opts.Logger, drained: make(chan struct{}), shutdownDone: make(chan struct{})}
	s.system = opts.ActorSystem
	if s.system == nil {
		s.ownsSystem = true
		actorLogger := slog.New(logging.MinLevel(opts.Logger.Handler(), opts.ActorLogLevel)).With(slog.String("component", "protoactor"))
		s.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return actorLogger }))
	}
	rt, err := actors.NewRuntime(actors.Config{
		System:         s.system,
		ServerName:     opts.Name,
		Logger:         opts.Logger,
		Counters:       &s.counters,
		Supervision:    opts.Supervision,
		NodeQueueBytes: opts.NodeQueueBytes,
		Gone:           s.connectionGone,
	})
	if err != nil {
		panic(err)
	}
	s.rt = rt
	if opts.Cluster != nil {
		rt.SetCluster(opts.Cluster)
	}
	if opts.Groups.Logger == nil {
		opts.Groups.Logger = opts.Logger
	}
	s.hub = groups.NewHub(rt, opts.Groups)
	rt.SetGroups(s.hub.Service())
	if opts.Rooms.Logger == nil {
		opts.Rooms.Logger = opts.Logger
	}
	s.rooms = rooms.NewManager(rt, opts.Rooms)
	s.mux.Refused = func(status int) {
		if status == http.StatusNotFound {
			s.counters.Reject(metrics.RejectPath)
		} else {
			s.counters.Reject(metrics.RejectHandshake)
		}
	}
	return s
}

// Groups returns the server's groups: join and leave by connection ID,
// broadcast to a room, send to every connection of a user, list members.
// Inside a handler, Conn.Join, Conn.Leave and Conn.Broadcast do the same.
func (s *Server) Groups() *groups.Hub { return s.hub }

// Rooms returns the server's rooms: define their kinds, join connections to
// them, list them, tell them. See package rooms.
func (s *Server) Rooms() *rooms.Manager { return s.rooms }

// Handle registers a WebSocket route. pattern is a net/http ServeMux pattern
// ("/ws/{room}"); its path variables reach Connect and Conn.PathValue.
// newHandler makes one Handler per connection (and one more per restart).
// Like ServeMux.Handle, it panics on an invalid or conflicting pattern.
func (s *Server) Handle(pattern string, newHandler func() Handler, opts ...RouteOption) {
	rt := &route{pattern: pattern, pathNames: routing.PathNames(pattern), newHandler: newHandler, transport: s.opts.Transport}
	rt.transport.OriginPatterns = append([]string(nil), s.opts.Transport.OriginPatterns...)
	for _, o := range opts {
		o(rt)
	}
	if sp, ok := rt.authenticator.(interface{ Subprotocols() []string }); ok {
		// After the application's own, so those stay preferred.
		rt.transport.Subprotocols = append(append([]string(nil), rt.transport.Subprotocols...), sp.Subprotocols()...)
	}
	rt.transport.Counters = &s.counters
	rt.transport = rt.transport.WithDefaults()
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveRoute(rt, w, r) }))
}

// HandleFunc registers a route whose connections share one stateless
// function as their Handler.
func (s *Server) HandleFunc(pattern string, f func(c *Conn, m Message) error, opts ...RouteOption) {
	h := HandlerFunc(f)
	s.Handle(pattern, func() Handler { return h }, opts...)
}

// ServeHTTP routes an upgrade request to its route: 404 for an unknown path,
// 426 for a plain HTTP request to a WebSocket route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) reject(w http.ResponseWriter, status int, reason string, why metrics.RejectReason) {
	s.counters.Reject(why)
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	if reason == "" {
		reason = http.StatusText(status)
	}
	http.Error(w, reason, status)
}

func (s *Server) serveRoute(rt *route, w http.ResponseWriter, r *http.Request) {
	// A request on a connection that our listener counts already holds a
	// slot; any other (ServeHTTP from an http.Server of the application's)
	// takes one for its handshake, handed over to the WebSocket.
	held := s.heldByListener(r)
	sus := s.suspended.Load()
	switch {
	case s.shuttingDown.Load():
		s.reject(w, http.StatusServiceUnavailable, "server shutting down", metrics.RejectUnavailable)
		return
	case sus != nil:
		s.reject(w, http.StatusServiceUnavailable, sus.reason, metrics.RejectUnavailable)
		return
	case !held && !s.admit():
		s.warnAtCap()
		s.reject(w, http.StatusServiceUnavailable, "too many connections", metrics.RejectLimit)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver && !held {
			s.release()
		}
	}()

	if err := transport.CheckOrigin(r, &rt.transport); err != nil {
		s.logger.Debug("wsactor: cross-origin upgrade refused", slog.String("path", r.URL.Path), slog.Any("err", err))
		s.reject(w, http.StatusForbidden, "cross-origin upgrade refused", metrics.RejectOrigin)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.HandshakeTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	hs := actors.NewHandshake(r)
	if rt.authenticator != nil {
		user, err := rt.authenticator.Authenticate(r)
		switch {
		case errors.Is(err, auth.ErrInvalidCredentials):
			s.logger.Debug("wsactor: authentication failed", slog.String("path", r.URL.Path), slog.Any("err", err))
			handedOver = s.refuse(rt, w, r, http.StatusUnauthorized, "invalid credentials", metrics.RejectAuth)
			return
		case err != nil:
			s.logger.Error("wsactor: authenticator failed", slog.String("path", r.URL.Path), slog.Any("err", err))
			s.reject(w, http.StatusInternalServerError, "authentication unavailable", metrics.RejectError)
			return
		}
		hs.User = user
	}
	if hs.User == nil && rt.requireAuth {
		handedOver = s.refuse(rt, w, r, http.StatusUnauthorized, "authentication required", metrics.RejectAuth)
		return
	}
	if hs.User != nil && !hs.User.Expires.IsZero() && !time.Now().Before(hs.User.Expires) {
		// An authenticator that does not check expiry itself.
		handedOver = s.refuse(rt, w, r, http.StatusUnauthorized, "credentials expired", metrics.RejectAuth)
		return
	}
	if err := auth.Check(hs.User, hs, rt.permissions...); err != nil {
		s.logger.Debug("wsactor: permission denied", slog.String("path", r.URL.Path), slog.Any("err", err))
		handedOver = s.refuse(rt, w, r, http.StatusForbidden, "forbidden", metrics.RejectAuth)
		return
	}

	h := rt.newHandler()
	decision, ok := s.connect(h, hs)
	if !ok {
		s.reject(w, http.StatusInternalServerError, "", metrics.RejectError)
		return
	}
	if !decision.Accept {
		handedOver = s.refuse(rt, w, r, decision.Status, decision.Reason, metrics.RejectConnect)
		return
	}
	tc, err := s.upgrade(w, r, &rt.transport, held)
	if err != nil {
		// coder/websocket has answered (403 for a foreign origin, 400 for a bad handshake).
		s.counters.Reject(metrics.RejectHandshake)
		s.logger.Debug("wsactor: upgrade failed", slog.String("path", r.URL.Path), slog.Any("err", err))
		return
	}
	handedOver = true
	if decision.CloseCode != 0 {
		code := decision.CloseCode
		if !actors.ValidCloseCode(code) {
			s.logger.Error("wsactor: Connect chose an invalid close code; using 1008", slog.Int("code", int(code)))
			code = StatusPolicyViolation
		}
		s.closeAtOnce(tc, code, decision.Reason, metrics.RejectConnect)
		return
	}
	// Count before the actor exists: it may exchange messages, or even
	// close, before Open returns.
	s.counters.Accepted.Add(1)
	s.counters.Open.Add(1)
	if _, err := s.rt.Open(tc, hs, actors.OpenParams{Path: rt.pathValues(r), First: h, NewHandler: rt.newHandler, Expiry: rt.expiry()}); err != nil {
		// Shutdown outran this handshake.
		s.counters.Accepted.Add(-1)
		s.counters.Open.Add(-1)
		s.counters.Reject(metrics.RejectUnavailable)
		tc.CloseNow(StatusGoingAway, transport.ReasonGoingAway)
		s.release()
	}
}

// refuse answers a refused handshake: with its HTTP status, or, on routes
// with WithCloseCodeRejections and for a 4xx status, by upgrading and closing
// with 4000+status so that a browser can see why. It reports whether the
// admission slot was handed over to the upgraded connection.
func (s *Server) refuse(rt *route, w http.ResponseWriter, r *http.Request, status int, reason string, why metrics.RejectReason) bool {
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	if !rt.closeRejects || status >= 500 {
		s.reject(w, status, reason, why)
		return false
	}
	if reason == "" {
		reason = http.StatusText(status)
	}
	tc, err := s.upgrade(w, r, &rt.transport, s.heldByListener(r))
	if err != nil {
		s.counters.Reject(metrics.RejectHandshake)
		return false
	}
	s.closeAtOnce(tc, StatusCode(4000+status), reason, why)
	return true
}

// upgrade accepts the WebSocket. The connection it returns holds a slot
// against MaxConnections, released when it is gone. On a connection that
// our listener counts (held), that is a new slot, taken before net/http
// hands the socket over and releases the listener's: for that instant the
// connection counts twice, never zero times.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, opts *transport.Options, held bool) (*transport.Conn, error) {
	if held {
		s.admitted.Add(1)
	}
	tc, err := transport.Accept(w, r, opts)
	if err != nil && held {
		s.release()
	}
	return tc, err
}

// closeAtOnce closes a just-upgraded connection that never becomes an actor;
// the admission slot is released when it is gone.
func (s *Server) closeAtOnce(tc *transport.Conn, code StatusCode, reason string, why metrics.RejectReason) {
	s.counters.Reject(why)
	tc.Start(func(transport.Frame) { tc.Release() }, func(transport.CloseInfo) { s.release() })
	tc.Close(code, actors.TruncateReason(reason))
}

// connect runs the handler's Connect, if it has one; ok is false if it panicked.
func (s *Server) connect(h Handler, hs *Handshake) (d Decision, ok bool) {
	c, has := h.(Connector)
	if !has {
		return Accept(), true
	}
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("wsactor: Connect panicked", slog.Any("panic", r), slog.String("path", hs.Request.URL.Path))
			ok = false
		}
	}()
	return c.Connect(hs), true
}

// admit takes a slot against MaxConnections, if there is one.
func (s *Server) admit() bool {
	if s.shuttingDown.Load() {
		return false
	}
	n := s.admitted.Add(1)
	if (s.opts.MaxConnections > 0 && n > int64(s.opts.MaxConnections)) || s.shuttingDown.Load() {
		s.release()
		return false
	}
	return true
}

func (s *Server) release() {
	if s.admitted.Add(-1) == 0 && s.shuttingDown.Load() {
		s.drainedOnce.Do(func() { close(s.drained) })
	}
}

func (s *Server) connectionGone() {
	s.counters.Open.Add(-1)
	s.release()
}

// Send delivers m to the connection with this ID, through its mailbox, from
// any goroutine, and returns once it is queued for the socket. Inside a
// handler, use Conn.PostTo instead: waiting on another connection's mailbox
// from a mailbox can deadlock two connections that send to each other. Messages from
// one goroutine arrive in order. It returns an error wrapping ErrInvalidID for
// a malformed ID, ErrConnectionNotFound for an unknown or closed connection,
// ErrSendQueueFull when the connection's send queue overflowed,
// ErrNodeQueueFull when the connection is on another node and the queue to
// it is full (Options.NodeQueueBytes), or ctx's error.
func (s *Server) Send(ctx context.Context, id ID, m Message) error {
	return s.rt.Send(ctx, id, m)
}

// Post is the fire-and-forget Send: it returns at once, reporting only a
// malformed ID, a connection known to be gone, or, for a connection on
// another node, ErrNodeQueueFull (the message was dropped: see
// Options.NodeQueueBytes).
func (s *Server) Post(id ID, m Message) error { return s.rt.Post(id, m) }

// Tell delivers an arbitrary message to the connection's Receiver, through
// its mailbox. To a connection on another node, msg must be a protobuf
// message or of a type registered with RegisterMessage (it arrives decoded):
// anything else is refused with an error wrapping ErrNotRegistered, and
// ErrNodeQueueFull as with Post.
func (s *Server) Tell(id ID, msg any) error { return s.rt.Tell(id, msg) }

// Close asks the connection with this ID to close with code and reason after
// the messages already queued for it, and waits until it has closed (its
// OnClose has run) or ctx is done. Closing includes the closing handshake: a
// client that does not read may hold it up to 5 s (bound ctx accordingly).
func (s *Server) Close(ctx context.Context, id ID, code StatusCode, reason string) error {
	return s.rt.Close(ctx, id, code, reason)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	ConnectionsOpen     int64 // connections whose OnClose has not yet finished
	ConnectionsAccepted int64 // upgrades that became connection actors
	ConnectionsRejected int64 // handshakes refused (including accept-then-close, unknown paths and plain HTTP to a route), and TCP connections refused at MaxConnections
	MessagesIn          int64
	MessagesOut         int64
	BytesIn             int64
	BytesOut            int64
	Panics              int64 // handler panics recovered
	Restarts            int64 // handler restarts after a panic
	SlowConsumerCloses  int64 // connections closed as slow consumers (1013): queue overflow or stopped reading
	Dropped             int64 // outbound messages dropped by a drop overflow policy
	RateLimited         int64 // inbound messages beyond their connection's rate limit (answered or closed)
	// MessagesUndecodable counts messages from other nodes that a connection
	// dropped because this node could not decode them: a name registered
	// with RegisterMessage on the sender only, or JSON that does not fit the
	// type. Each name is also logged at Warn, at most once a minute.
	MessagesUndecodable int64
	// NodeQueueFull counts messages for connections on other nodes that
	// were refused or dropped because the queue to their node was full
	// (Options.NodeQueueBytes, ErrNodeQueueFull). Logged at Warn, at most
	// once a minute for each node.
	NodeQueueFull int64
	// ConnectionsHeld is what counts against MaxConnections: the TCP
	// connections the server's listeners hold (idle keep-alive, requests
	// and handshakes being read, WebSockets) and the handshakes and
	// WebSockets of upgrades served through ServeHTTP.
	ConnectionsHeld int64
	// RejectedBy splits ConnectionsRejected by reason: "auth" (credentials
	// missing, invalid or expired, permission denied), "origin", "limit"
	// (MaxConnections), "path" (no route), "handshake" (not a WebSocket
	// upgrade, or a bad one), "unavailable" (shutting down or suspended),
	// "connect" (the handler's Connect refused) and "error" (the
	// authenticator or Connect failed).
	RejectedBy map[string]int64
	// Closes counts the connections that ended, by close code and by who
	// ended them, sorted by code.
	Closes []CloseCount
	// MailboxLatency is the time from reading a message off the socket to
	// the end of the handler's OnMessage, sampled on one message in 64 of
	// each connection.
	MailboxLatency metrics.Snapshot
}

// CloseCount is how many connections ended with one close code, ended by
// one side: By is "client" (a close frame, or the socket lost), "server"
// (the handler, an API call, shutdown, a failure), "timeout" (idle or ping
// timeout) or "limit" (slow consumer, message too big, rate limit).
type CloseCount struct {
	Code  StatusCode
	By    string
	Count int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	st := Stats{
		ConnectionsOpen:     c.Open.Load(),
		ConnectionsAccepted: c.Accepted.Load(),
		ConnectionsRejected: c.Rejected.Load(),
		MessagesIn:          c.MessagesIn.Load(),
		MessagesOut:         c.MessagesOut.Load(),
		BytesIn:             c.BytesIn.Load(),
		BytesOut:            c.BytesOut.Load(),
		Panics:              c.Panics.Load(),
		Restarts:            c.Restarts.Load(),
		SlowConsumerCloses:  c.SlowConsumerCloses.Load(),
		Dropped:             c.Dropped.Load(),
		RateLimited:         c.RateLimited.Load(),
		MessagesUndecodable: c.Undecodable.Load(),
		NodeQueueFull:       c.NodeQueueFull.Load(),
		ConnectionsHeld:     s.admitted.Load(),
		RejectedBy:          make(map[string]int64, metrics.NumRejectReasons),
		MailboxLatency:      c.MailboxLatency.Snapshot(),
	}
	for r := range metrics.NumRejectReasons {
		st.RejectedBy[r.String()] = c.RejectedBy[r].Load()
	}
	for _, cc := range c.Closes.Snapshot() {
		st.Closes = append(st.Closes, CloseCount{Code: StatusCode(cc.Code), By: cc.By.String(), Count: cc.Count})
	}
	return st
}

// ActorSystem returns the actor system hosting the connection actors.
func (s *Server) ActorSystem() *actor.ActorSystem { return s.system }

// ListenAndServe serves s on addr. The http.Server it runs reads request
// headers within HandshakeTimeout, limits ordinary requests as Options.HTTP
// says, and counts every TCP connection against MaxConnections (a connection
// beyond it is answered 503 and closed). It returns http.ErrServerClosed
// after Shutdown.
func (s *Server) ListenAndServe(addr string) error { return s.ListenAndServeHandler(addr, s) }

// Serve serves s on l; see ListenAndServe.
func (s *Server) Serve(l net.Listener) error { return s.ServeHandler(l, s) }

// ListenAndServeHandler is ListenAndServe for an application handler, such
// as a mux holding s and other routes: those routes get the same limits, and
// s's Shutdown also stops that listener.
func (s *Server) ListenAndServeHandler(addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeHandler(l, h)
}

// ServeHandler serves h on l, which the caller may have bound beforehand (to
// report a bind error, or to use port 0); see ListenAndServeHandler. It may
// be called for several listeners; they share MaxConnections, and Shutdown
// stops them all.
func (s *Server) ServeHandler(l net.Listener, h http.Handler) error {
	hs := s.httpServer(h)
	s.mu.Lock()
	if s.shuttingDown.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	s.httpSrvs = append(s.httpSrvs, hs)
	s.mu.Unlock()
	return hs.Serve(s.limitListener(l))
}

// pathValues copies the route's path variables out of the request, which the
// connection must not keep.
func (rt *route) pathValues(r *http.Request) map[string]string {
	if len(rt.pathNames) == 0 {
		return nil
	}
	m := make(map[string]string, len(rt.pathNames))
	for _, n := range rt.pathNames {
		m[n] = r.PathValue(n)
	}
	return m
}

// expiry is what the route does when a connection's credentials expire.
func (rt *route) expiry() actors.Expiry {
	if rt.refreshGrace <= 0 || rt.authenticator == nil {
		return actors.Expiry{}
	}
	return actors.Expiry{
		RefreshGrace: rt.refreshGrace,
		Permissions:  rt.permissions,
		Reauthenticate: func(token string) (*auth.User, error) {
			r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + token}}, URL: &url.URL{}}
			return rt.authenticator.Authenticate(r)
		},
	}
}

// Name returns the server's name (Options.Name).
func (s *Server) Name() string { return s.opts.Name }
