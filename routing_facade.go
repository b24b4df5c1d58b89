package wsactor

import (
	"github.com/wsactor/wsactor/routing"
)

// Router dispatches JSON messages by their "type" to typed handlers; see
// routing.Router. Serve it directly (s.Handle(p, func() Handler { return r }))
// or embed *Router in a Handler that adds OnOpen and OnClose.
type Router = routing.Router

// On registers a typed message handler on r: messages {"type": typ, ...} are
// decoded into a T.
func On[T any](r *Router, typ string, h func(c *Conn, msg T) error) { routing.On(r, typ, h) }

// OnRequest registers a typed request handler on r: its result is sent back
// as {"type":"reply","req":<the request's "req">,"data":<result>}.
func OnRequest[T, R any](r *Router, typ string, h func(c *Conn, msg T) (R, error)) {
	routing.OnRequest(r, typ, h)
}

// MessageError returns an error that a message handler returns to send the
// client an error envelope with this code and message (the connection stays
// open).
func MessageError(code, format string, args ...any) error {
	return routing.Errorf(code, format, args...)
}

// BadMessagePolicy says what a Router does with a message it cannot route.
type BadMessagePolicy = routing.BadMessagePolicy

// Router bad-message policies (Router.BadMessages).
const (
	// BadMessageReply answers with an error envelope; the connection stays open.
	BadMessageReply = routing.ReplyError
	// BadMessageClose closes with 1007 or 1003.
	BadMessageClose = routing.CloseConnection
)

// Error codes of the Router's error envelope; see the README.
const (
	CodeBadJSON     = routing.CodeBadJSON
	CodeMissingType = routing.CodeMissingType
	CodeUnknownType = routing.CodeUnknownType
	CodeBadPayload  = routing.CodeBadPayload
	CodeBadReq      = routing.CodeBadReq
	CodeUnsupported = routing.CodeUnsupported
	CodeInternal    = routing.CodeInternal
	CodeRateLimited = routing.CodeRateLimited
)
