package actors

import (
	"github.com/wsactor/wsactor/transport"
)

// StatusCode is a WebSocket close code.
type StatusCode = transport.StatusCode

// Handler handles the messages of one connection. The route's factory makes a
// new Handler value for every connection, and again whenever the supervisor
// restarts the connection after a panic, so a Handler may keep per-connection
// state in its fields without locks.
//
// OnMessage returning nil keeps the connection open. Returning a *CloseError
// (see CloseWith) closes it with that code; any other error is logged and
// closes it with 1011 "internal error".
//
// A Handler may also implement Connector, OpenHandler, CloseHandler,
// Receiver and RateLimitedHandler; the runtime discovers them by type
// assertion.
type Handler interface {
	OnMessage(c *Conn, m Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn, m Message) error

// OnMessage calls f(c, m).
func (f HandlerFunc) OnMessage(c *Conn, m Message) error { return f(c, m) }

// Connector is implemented by a Handler that decides at the handshake,
// before the upgrade, whether to accept the connection. It runs on the HTTP
// request's goroutine, on the Handler value that then serves the connection.
// A Handler without Connect accepts every request its route lets through.
//
// Fields that Connect sets serve the connection only until its first
// restart, which makes a fresh Handler value without calling Connect again;
// keep what must survive with Handshake.SetValue and read it with Conn.Value.
type Connector interface {
	Connect(h *Handshake) Decision
}

// OpenHandler is implemented by a Handler that wants to act once the socket
// is open, before any message is delivered. It runs inside the actor. A
// returned error closes the connection as for OnMessage.
type OpenHandler interface {
	OnOpen(c *Conn) error
}

// CloseHandler is implemented by a Handler that wants to know when the
// connection has ended. OnClose is called exactly once for every connection
// that was opened, whoever ended it, with the close code and reason: the ones
// the client sent, the ones the server chose (see the transport Reason
// constants), or 1006 when the connection dropped without a close frame.
// The socket is already closed: sends fail.
type CloseHandler interface {
	OnClose(c *Conn, code StatusCode, reason string)
}

// Receiver is implemented by a Handler that receives messages from other
// actors, timers (Conn.After, Conn.Every) and anything sent with
// Server.Tell. c.Sender and c.Respond work for requests.
type Receiver interface {
	Receive(c *Conn, msg any)
}

// RateLimitedHandler is implemented by a Handler that answers the messages
// refused by the route's rate limit (transport.RateLimit, policy
// RateLimitReject) itself. Such a message never reaches OnMessage; without
// this method the client gets
//
//	{"type":"error","code":"rate_limited","message":"rate limit exceeded","error":"rate limit exceeded"}
//
// A routing.Router implements it to echo the message's "req" and "type".
type RateLimitedHandler interface {
	OnRateLimited(c *Conn, m Message)
}

// CloseError is an error that closes the connection with a chosen code.
type CloseError struct {
	Code   StatusCode
	Reason string
}

// Error describes the close.
func (e *CloseError) Error() string {
	return "wsactor: close " + e.Code.String() + ": " + e.Reason
}

// CloseWith returns an error that, returned from a handler method, closes the
// connection with code and reason.
func CloseWith(code StatusCode, reason string) error {
	return &CloseError{Code: code, Reason: reason}
}
