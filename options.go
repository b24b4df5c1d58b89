package wsactor

import (
	"log/slog"
	"math"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/transport"
)

// DefaultName is the server name (Options.Name) when none is given.
const DefaultName = "ws"

// DefaultHandshakeTimeout bounds authentication and Connect, and, with
// ListenAndServe, reading the upgrade request's headers.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultNodeQueueBytes is Options.NodeQueueBytes when it is 0: a quarter
// of a second of 256-byte messages at a million a second.
const DefaultNodeQueueBytes = 64 << 20

// Defaults of HTTPOptions, for the ordinary requests that ListenAndServe,
// Serve and ListenAndServeHandler serve besides upgrades (an application's
// other routes, and upgrade requests until they are upgraded).
const (
	DefaultHTTPReadTimeout    = 30 * time.Second
	DefaultHTTPIdleTimeout    = 30 * time.Second
	DefaultHTTPMaxHeaderBytes = 64 << 10 // 64 KiB
	DefaultHTTPMaxBodyBytes   = 1 << 20  // 1 MiB
)

// Options configure a Server. The zero value is safe: every zero field takes
// the default documented on it.
type Options struct {
	// Name names the server inside its actor system and appears in every
	// connection ID: 1–16 lowercase letters or digits. Default "ws". Servers
	// sharing an actor system need different names.
	Name string
	// Logger receives the runtime's logs. Default slog.Default().
	Logger *slog.Logger
	// ActorLogLevel is the least severe level of protoactor's own log
	// records that reach Logger. Default slog.LevelWarn: protoactor logs
	// routine events (restarts, dead letters) at Info.
	ActorLogLevel slog.Leveler
	// ActorSystem hosts the connection actors. Default: a new actor system
	// owned (and shut down) by the server. Pass one to share it with other
	// actors; for a cluster, remote must be started on it before New, with
	// remote.WithServerOptions(cluster.RemoteReceiveLimit()): gRPC's default
	// 4 MiB limit on a received message would drop every message of a
	// network batch that exceeds it. cluster.Node does both.
	ActorSystem *actor.ActorSystem
	// MaxConnections caps the connections the server holds, so that it
	// cannot run out of file descriptors. With ListenAndServe, Serve or
	// ListenAndServeHandler it counts every TCP connection the listener
	// accepted until it closes: idle keep-alive ones, requests and
	// handshakes being read, WebSockets. At the cap a new TCP connection is
	// answered "503 Service Unavailable" ("too many connections") and
	// closed before its request is read. Upgrades served through ServeHTTP
	// by an http.Server of your own are counted from the handshake to the
	// WebSocket's end, and get 503 at the cap.
	//
	// Default 0: DefaultMaxConnections(), derived from the process's limit on
	// open files (RLIMIT_NOFILE) minus a reserve for everything else;
	// negative: no cap.
	MaxConnections int
	// HandshakeTimeout: see DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Drain paces how Shutdown closes the connections: DefaultDrainBatch
	// (10,000) every DefaultDrainInterval (2 s). See DrainOptions.
	Drain DrainOptions
	// HTTP limits the ordinary requests of ListenAndServe, Serve and
	// ListenAndServeHandler. See HTTPOptions.
	HTTP HTTPOptions
	// Transport holds the per-connection limits: message size, queues,
	// timeouts, heartbeat, origins. See TransportOptions.
	Transport TransportOptions
	// Supervision says what happens when a handler panics.
	Supervision Supervision
	// Cluster is this node's view of the other members of a cluster, for
	// reaching connections on other nodes (and failing fast for dead ones).
	// Default nil: a single node. Package cluster provides it.
	Cluster ClusterView
	// NodeQueueBytes bounds, for each server on another node, the messages
	// this server has queued for it and the network has not taken yet:
	// each message's bytes plus about 128. Sends to a connection there
	// that would pass it are refused with ErrNodeQueueFull (Send, Post,
	// Tell) or dropped (a room's or group's delivery), and counted in
	// Stats.NodeQueueFull; a close never is. It bounds this node's memory
	// when another node, or the network to it, takes messages slower than
	// this one sends them, as SendQueueBytes does for a slow client. It
	// holds on the data lane between nodes (cluster.Node's default); to a
	// node without one (remote.lane_port -1, or an older version), messages
	// leave the queue as soon as protoactor's remote takes them, into a
	// queue of its own that is not bounded in bytes.
	// Default 0: DefaultNodeQueueBytes; negative: no bound.
	NodeQueueBytes int
	// Groups configures groups and the user index: the directory (default
	// in memory, for a single node) and presence events. See Server.Groups.
	Groups GroupsOptions
	// Rooms configures stateful rooms: their store (default in memory, for a
	// single node) and placement. See Server.Rooms.
	Rooms RoomsOptions
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ActorLogLevel == nil {
		o.ActorLogLevel = slog.LevelWarn
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections()
	}
	if o.NodeQueueBytes == 0 {
		o.NodeQueueBytes = DefaultNodeQueueBytes
	}
	o.HTTP = o.HTTP.withDefaults(o.HandshakeTimeout)
	o.Drain = o.Drain.withDefaults()
	return o
}

// HTTPOptions limit what a client can hold with plain HTTP, without
// upgrading or authenticating, on the servers that ListenAndServe, Serve and
// ListenAndServeHandler run. (With an http.Server of your own, set its
// ReadTimeout, IdleTimeout and MaxHeaderBytes, and wrap its handler in
// http.MaxBytesHandler, yourself.) A WebSocket is not bound by them: net/http
// clears a connection's deadlines when it hands the socket over, and the
// transport's own timeouts take over. Zero fields take the defaults
// documented on them.
type HTTPOptions struct {
	// ReadTimeout bounds reading a whole request, body included, so that a
	// client sending a body slowly is cut off. Like http.Server's, it also
	// ends the request's context once it passes, so it is never less than
	// HandshakeTimeout (an upgrade's handshake runs within it). Default
	// 30 s; negative: none.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has waited this long
	// for its next request. Default 30 s; negative: none (idle connections
	// still count against MaxConnections).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header; a larger one is answered
	// 431. Default 64 KiB, room for large cookies and tokens.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request's body: reading beyond it fails with an
	// *http.MaxBytesError (answer it with 413), and the connection is closed
	// after the response. Default 1 MiB; negative: no limit.
	MaxBodyBytes int64
}

func (o HTTPOptions) withDefaults(handshake time.Duration) HTTPOptions {
	switch {
	case o.ReadTimeout == 0:
		o.ReadTimeout = DefaultHTTPReadTimeout
	case o.ReadTimeout < 0:
		o.ReadTimeout = 0 // http.Server's "none"
	}
	if o.ReadTimeout > 0 && o.ReadTimeout < handshake {
		o.ReadTimeout = handshake
	}
	switch {
	case o.IdleTimeout == 0:
		o.IdleTimeout = DefaultHTTPIdleTimeout
	case o.IdleTimeout < 0:
		// http.Server reads 0 as "use ReadTimeout", so "none" is a
		// deadline that never comes.
		o.IdleTimeout = math.MaxInt64
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultHTTPMaxHeaderBytes
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultHTTPMaxBodyBytes
	}
	return o
}

// RouteOption configures one route.
type RouteOption func(*route)

// WithAuthenticator authenticates the route's handshakes: invalid credentials
// get 401 before the upgrade; the user it returns is in Handshake.User and
// Conn.User.
func WithAuthenticator(a auth.Authenticator) RouteOption {
	return func(r *route) { r.authenticator = a }
}

// RequireAuth refuses anonymous handshakes on the route with 401.
func RequireAuth() RouteOption {
	return func(r *route) { r.requireAuth = true }
}

// WithPermissions adds checks run after authentication, before the upgrade;
// a denial is answered with 403. Check again later with Conn.Authorize.
func WithPermissions(permissions ...auth.Permission) RouteOption {
	return func(r *route) { r.permissions = append(r.permissions, permissions...) }
}

// WithCredentialRefresh lets a connection outlive its credentials' expiry
// (auth.User.Expires) if the client sends a new token within grace of being
// asked; see actors.Expiry for the protocol. Without it, a connection is
// closed with 1008 "credentials expired" when its credentials expire.
// The route's authenticator must accept a token as "Authorization: Bearer".
func WithCredentialRefresh(grace time.Duration) RouteOption {
	return func(r *route) { r.refreshGrace = grace }
}

// WithCloseCodeRejections makes the route answer refusals that a browser
// should understand — 401 from authentication, 403 from permissions, and any
// 4xx Reject from Connect — by upgrading and closing at once with code 4000 +
// status (4401, 4403, ...) and the same reason, because a browser's WebSocket
// cannot read the HTTP status of a failed upgrade. Cross-origin requests and
// 5xx refusals (overload, shutdown) keep their HTTP status.
func WithCloseCodeRejections() RouteOption {
	return func(r *route) { r.closeRejects = true }
}

// WithOriginPatterns adds origins (host patterns, path.Match syntax) that may
// connect to this route besides the request's own host.
func WithOriginPatterns(patterns ...string) RouteOption {
	return func(r *route) { r.transport.OriginPatterns = append(r.transport.OriginPatterns, patterns...) }
}

// WithSubprotocols sets the subprotocols the route negotiates, in preference
// order; Conn.Subprotocol tells which one was chosen.
func WithSubprotocols(protocols ...string) RouteOption {
	return func(r *route) { r.transport.Subprotocols = protocols }
}

// WithRateLimit sets the route's inbound rate limit per connection, in place
// of the server's Transport.RateLimit; zero fields take the defaults (see
// RateLimit). WithTransport reaches the same setting.
func WithRateLimit(limit RateLimit) RouteOption {
	return func(r *route) { r.transport.RateLimit = limit }
}

// WithTransport adjusts the route's per-connection limits, starting from the
// server's.
func WithTransport(adjust func(*TransportOptions)) RouteOption {
	return func(r *route) { adjust(&r.transport) }
}

// ClusterView is a node's view of the live members of its cluster. One
// that also has OnLeft(func(address, memberID string)), as the cluster
// package's has, has the server free what it keeps for a node as soon as
// the node leaves (see actors.Cluster).
type ClusterView = actors.Cluster

// GroupsOptions configure the server's groups; see groups.Options.
type GroupsOptions = groups.Options

// RoomsOptions configure the server's rooms; see rooms.Options.
type RoomsOptions = rooms.Options

// TransportOptions are the per-connection limits; see transport.Options for
// each field and its default.
type TransportOptions = transport.Options

// OverflowPolicy is what happens when a connection's send queue is full.
type OverflowPolicy = transport.OverflowPolicy

// The overflow policies.
const (
	OverflowClose      = transport.OverflowClose
	OverflowDropNewest = transport.OverflowDropNewest
	OverflowDropOldest = transport.OverflowDropOldest
)

// RateLimit bounds the messages and bytes per second each client of a route
// may send; see transport.RateLimit for each field and its default.
type RateLimit = transport.RateLimit

// RateLimitPolicy is what happens to a message beyond the rate limit.
type RateLimitPolicy = transport.RateLimitPolicy

// The rate-limit policies.
const (
	// RateLimitReject answers the message with an error envelope
	// ("rate_limited") instead of handling it; the connection stays open.
	RateLimitReject = transport.RateLimitReject
	// RateLimitClose closes the connection with 1008 "rate limit exceeded".
	RateLimitClose = transport.RateLimitClose
)
