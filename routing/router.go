package routing

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/transport"
)

// BadMessagePolicy says what a Router does with a message it cannot route.
type BadMessagePolicy int

const (
	// ReplyError answers with an error envelope and keeps the connection
	// open. The default.
	ReplyError BadMessagePolicy = iota
	// CloseConnection closes with 1007 (bad_json, missing_type, bad_payload,
	// bad_req) or 1003 (unknown_type, or unsupported: a binary message on a
	// route without a Binary handler), with "<code>: <message>" as the
	// reason. A handler's own errors are still answered with envelopes.
	CloseConnection
)

// Router dispatches JSON messages by their "type" to typed handlers. Its
// zero value is ready: register handlers with On and OnRequest before
// serving. A Router is a Handler, so a route can serve it directly, or a
// Handler can embed *Router to add OnOpen and OnClose and keep its
// OnMessage.
//
// Every message the Router cannot route is answered (see BadMessages), and a
// handler's error is answered too: an *Error with its own code and message, a
// CloseWith error by closing, anything else as CodeInternal (and logged).
type Router struct {
	// BadMessages is the policy for messages that cannot be routed.
	BadMessages BadMessagePolicy
	// Binary handles binary messages; nil answers them with CodeUnsupported.
	Binary func(c *actors.Conn, data []byte) error

	handlers map[string]route
}

type route func(c *actors.Conn, env Envelope, data []byte) error

// payloadError marks a payload that did not decode into the handler's type.
type payloadError struct{ err error }

func (e *payloadError) Error() string { return e.err.Error() }

// On registers h for messages whose "type" is typ; the whole message is
// decoded into a T (so T's fields sit beside "type"). It panics if typ is
// empty or already registered.
//
// A message that carries a "req" is acknowledged once h succeeds, after
// whatever h sent, with {"type":"reply","req":<req>,"data":null}, so that a
// client may await any message it sends (the clients' Request), not only
// those of OnRequest types. Without "req" nothing is sent back.
func On[T any](r *Router, typ string, h func(c *actors.Conn, msg T) error) {
	r.add(typ, func(c *actors.Conn, env Envelope, data []byte) error {
		var msg T
		if err := json.Unmarshal(data, &msg); err != nil {
			return &payloadError{err}
		}
		if err := h(c, msg); err != nil || env.Req == nil {
			return err
		}
		return c.SendJSON(replyEnvelope{Type: "reply", Req: env.Req})
	})
}

// OnRequest registers a request handler: its result is sent back as
//
//	{"type":"reply","req":<the request's "req">,"data":<result>}
//
// and its error as an error envelope carrying the same "req", so a client
// can match answers to requests.
func OnRequest[T, R any](r *Router, typ string, h func(c *actors.Conn, msg T) (R, error)) {
	r.add(typ, func(c *actors.Conn, env Envelope, data []byte) error {
		var msg T
		if err := json.Unmarshal(data, &msg); err != nil {
			return &payloadError{err}
		}
		res, err := h(c, msg)
		if err != nil {
			return err
		}
		return c.SendJSON(replyEnvelope{Type: "reply", Req: env.Req, Data: res})
	})
}

func (r *Router) add(typ string, h route) {
	if typ == "" || len(typ) > MaxTypeLen {
		panic(fmt.Sprintf("routing: invalid message type %q", typ))
	}
	if _, dup := r.handlers[typ]; dup {
		panic(fmt.Sprintf("routing: message type %q registered twice", typ))
	}
	if r.handlers == nil {
		r.handlers = make(map[string]route)
	}
	r.handlers[typ] = h
}

// CodeRateLimited is the code of the envelope answering a message refused by
// the route's rate limit (see transport.RateLimit). It is part of the
// protocol like the Code constants, but no handler returns it.
const CodeRateLimited = "rate_limited"

// OnRateLimited answers a message refused by the route's rate limit with an
// error envelope carrying CodeRateLimited and, when the message was a
// routable one, its "req" and its type as "ref", so that a client awaiting
// the request learns at once that it was refused. It makes a Router an
// actors.RateLimitedHandler.
func (r *Router) OnRateLimited(c *actors.Conn, m actors.Message) {
	var env Envelope
	if m.Type == actors.MessageText {
		env, _ = DecodeEnvelope(m.Data) // what could be read of it, even from a bad message
	}
	r.reply(c, env, &Error{Code: CodeRateLimited, Message: "rate limit exceeded"})
}

// OnMessage makes a Router an actors.Handler.
func (r *Router) OnMessage(c *actors.Conn, m actors.Message) error { return r.Dispatch(c, m) }

// Dispatch routes one message. It returns an error only to close the
// connection; everything else is answered with an envelope.
func (r *Router) Dispatch(c *actors.Conn, m actors.Message) error {
	if m.Type == actors.MessageBinary {
		if r.Binary != nil {
			return r.answer(c, Envelope{}, r.Binary(c, m.Data))
		}
		return r.bad(c, Envelope{}, &Error{Code: CodeUnsupported, Message: "binary messages are not supported here"})
	}
	env, err := DecodeEnvelope(m.Data)
	if err != nil {
		return r.bad(c, env, err.(*Error))
	}
	h, ok := r.handlers[env.Type]
	if !ok {
		return r.bad(c, env, &Error{Code: CodeUnknownType, Message: fmt.Sprintf("no handler for type %q", env.Type)})
	}
	return r.answer(c, env, h(c, env, m.Data))
}

// answer turns a handler's error into an envelope or a close.
func (r *Router) answer(c *actors.Conn, env Envelope, err error) error {
	if err == nil {
		return nil
	}
	var pe *payloadError
	if errors.As(err, &pe) {
		return r.bad(c, env, &Error{Code: CodeBadPayload, Message: "payload does not fit type " + env.Type + ": " + jsonErrorText(pe.err)})
	}
	var ce *actors.CloseError
	if errors.As(err, &ce) {
		return err
	}
	var e *Error
	if !errors.As(err, &e) {
		c.Logger().Error("wsactor: message handler failed", slog.String("type", env.Type), slog.Any("err", err))
		e = &Error{Code: CodeInternal, Message: "internal error"}
	}
	r.reply(c, env, e)
	return nil
}

// bad applies the BadMessages policy.
func (r *Router) bad(c *actors.Conn, env Envelope, e *Error) error {
	if r.BadMessages == CloseConnection {
		code := transport.StatusInvalidFramePayloadData
		if e.Code == CodeUnknownType || e.Code == CodeUnsupported {
			code = transport.StatusUnsupportedData
		}
		return actors.CloseWith(code, actors.TruncateReason(e.Code+": "+e.Message))
	}
	r.reply(c, env, e)
	return nil
}

func (r *Router) reply(c *actors.Conn, env Envelope, e *Error) {
	// A failed send means the connection is closing: nothing left to tell.
	_ = c.SendJSON(errorEnvelope{Type: "error", Code: e.Code, Message: e.Message, Error: e.Message, Ref: env.Type, Req: env.Req})
}
