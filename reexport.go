package wsactor

import (
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/transport"
	"google.golang.org/protobuf/proto"
)

// The connection API, defined in package actors and re-exported here so that
// applications import only wsactor.
type (
	// Handler handles one connection's messages; see actors.Handler.
	Handler = actors.Handler
	// HandlerFunc adapts a function to Handler.
	HandlerFunc = actors.HandlerFunc
	// Connector decides at the handshake; see actors.Connector.
	Connector = actors.Connector
	// OpenHandler is told when the socket is open; see actors.OpenHandler.
	OpenHandler = actors.OpenHandler
	// CloseHandler is told, exactly once, how the connection ended.
	CloseHandler = actors.CloseHandler
	// Receiver receives actor messages and timer ticks.
	Receiver = actors.Receiver
	// RateLimitedHandler answers messages refused by the rate limit; see
	// actors.RateLimitedHandler.
	RateLimitedHandler = actors.RateLimitedHandler
	// Conn is one live connection, as its handler sees it.
	Conn = actors.Conn
	// Handshake is what Connect sees of the upgrade request.
	Handshake = actors.Handshake
	// Decision is Connect's answer.
	Decision = actors.Decision
	// Message is one WebSocket data message.
	Message = actors.Message
	// MessageType is MessageText or MessageBinary.
	MessageType = actors.MessageType
	// ID identifies a connection: its actor's PID as a URL-safe string.
	ID = actors.ID
	// Timer is a running Conn.After or Conn.Every.
	Timer = actors.Timer
	// CloseError, returned by a handler, closes the connection with its code.
	CloseError = actors.CloseError
	// StatusCode is a WebSocket close code.
	StatusCode = transport.StatusCode
	// Supervision configures what happens when a handler panics.
	Supervision = actors.Supervision
	// PanicPolicy is restart, close or resume.
	PanicPolicy = actors.PanicPolicy
	// User is an authenticated principal.
	User = auth.User
)

// The two kinds of data message.
const (
	MessageText   = actors.MessageText
	MessageBinary = actors.MessageBinary
)

// Panic policies.
const (
	RestartHandler  = actors.RestartHandler
	CloseConnection = actors.CloseConnection
	ResumeHandler   = actors.ResumeHandler
)

// Close codes the runtime sends or reports, and standard ones applications
// may send; see the README's table for when the runtime uses each.
const (
	StatusNormalClosure           = transport.StatusNormalClosure
	StatusGoingAway               = transport.StatusGoingAway
	StatusProtocolError           = transport.StatusProtocolError
	StatusUnsupportedData         = transport.StatusUnsupportedData
	StatusNoStatusRcvd            = transport.StatusNoStatusRcvd
	StatusAbnormalClosure         = transport.StatusAbnormalClosure
	StatusInvalidFramePayloadData = transport.StatusInvalidFramePayloadData
	StatusPolicyViolation         = transport.StatusPolicyViolation
	StatusMessageTooBig           = transport.StatusMessageTooBig
	StatusInternalError           = transport.StatusInternalError
	StatusServiceRestart          = transport.StatusServiceRestart
	StatusTryAgainLater           = transport.StatusTryAgainLater
)

// Errors of the ID-addressed API.
var (
	ErrInvalidID          = actors.ErrInvalidID
	ErrConnectionNotFound = actors.ErrConnectionNotFound
	ErrSendQueueFull      = actors.ErrSendQueueFull
	ErrNodeQueueFull      = actors.ErrNodeQueueFull
	ErrInvalidCloseCode   = actors.ErrInvalidCloseCode
	// ErrNotRegistered: a message for another node is neither a protobuf
	// message nor of a type registered with RegisterMessage.
	ErrNotRegistered = actors.ErrNotRegistered
	// ErrUnknownMessage: DecodeValue got a registered name this node does
	// not know.
	ErrUnknownMessage = actors.ErrUnknownMessage
)

// RegisterMessage registers T under a stable name, so that its values can be
// sent with Tell to connections and actors on other nodes; call it at init
// on every node. See actors.RegisterMessage for how values arrive and when
// it panics.
func RegisterMessage[T any](name string) { actors.RegisterMessage[T](name) }

// EncodeValue returns v as it crosses nodes (a protobuf message as it is, a
// registered type in its envelope), for sends through protoactor directly.
func EncodeValue(v any) (proto.Message, error) { return actors.EncodeValue(v) }

// DecodeValue turns what an actor received from another node back into the
// registered type's value; any other message is returned as it is.
func DecodeValue(m any) (any, error) { return actors.DecodeValue(m) }

// Text returns a text message.
func Text(s string) Message { return actors.Text(s) }

// Binary returns a binary message; b is not copied.
func Binary(b []byte) Message { return actors.Binary(b) }

// JSON returns a text message holding v encoded as JSON.
func JSON(v any) (Message, error) { return actors.JSON(v) }

// DecodeJSON decodes a message's JSON payload into a new T.
func DecodeJSON[T any](m Message) (T, error) { return actors.DecodeJSON[T](m) }

// ParseID validates a connection ID received as a string.
func ParseID(s string) (ID, error) { return actors.ParseID(s) }

// Accept accepts a connection at the handshake.
func Accept() Decision { return actors.Accept() }

// Reject refuses the upgrade with an HTTP status and a short reason.
func Reject(status int, reason string) Decision { return actors.Reject(status, reason) }

// AcceptThenClose upgrades and closes at once with code and reason, for
// browser clients, which cannot read the status of a failed upgrade.
func AcceptThenClose(code StatusCode, reason string) Decision {
	return actors.AcceptThenClose(code, reason)
}

// CloseWith returns an error that, returned by a handler method, closes the
// connection with code and reason.
func CloseWith(code StatusCode, reason string) error { return actors.CloseWith(code, reason) }
