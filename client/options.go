package client

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Options configure Dial. The zero value (or a nil *Options) is a working
// configuration: one connection, no reconnection.
type Options struct {
	// HTTPHeader is sent with every handshake, such as Authorization
	// ("Bearer <token>"), Cookie or X-API-Key.
	HTTPHeader http.Header

	// HTTPClient performs the handshakes. Default: http.DefaultClient.
	HTTPClient *http.Client

	// Subprotocols are offered in every handshake, in preference order.
	Subprotocols []string

	// Token, if set, is offered as the subprotocol pair "bearer", Token,
	// after Subprotocols: the browser-compatible way of sending a token,
	// which wsactor's auth.JWT reads (new WebSocket(url, ["bearer", token])
	// in JavaScript). The same Token is sent on every reconnection; one that
	// has expired by then is refused with 401, which ends the client. For
	// tokens that expire, use TokenSource instead.
	Token string

	// TokenSource, if set, supplies the token instead of Token, fresh each
	// time one is needed:
	//
	//   - before every handshake, Dial's and each reconnection's: the token
	//     is offered as the subprotocol pair "bearer", token, like Token (an
	//     empty token offers none). An error fails the attempt: Dial returns
	//     it, and a reconnection counts it as a failed attempt and tries
	//     again after the backoff (see MaxAttempts). ctx is the attempt's.
	//   - whenever the server asks for new credentials (wsactor's
	//     WithCredentialRefresh sends {"type":"auth.refresh","deadline":...}
	//     when the connection's token expires): the client answers
	//     {"type":"auth.refresh","token":...} on its own. ctx ends when the
	//     connection does (at the latest when the server closes it at its
	//     deadline) or at Close; TokenSource should retry within it if the
	//     token issuer can fail transiently, since the server asks only
	//     once per expiry.
	//   - when the application calls Refresh.
	//
	// With TokenSource, the protocol's messages ("auth.refresh" asks and
	// "auth.refreshed" acknowledgements) are consumed by the client and
	// never reach Receive; without it, they reach Receive like any other
	// message, and the application may answer with Send.
	//
	// If TokenSource fails (or returns "") when the server asks, the client
	// logs the error at Warn and does not answer: the server then closes
	// the connection at its deadline with 1008 "credentials expired",
	// which is final (see FinalClose). The error OnDisconnect and Err
	// report then wraps both the close (websocket.CloseStatus) and
	// TokenSource's error (errors.Is). A token the server refuses closes
	// the connection at once with 1008 "invalid credentials" (or
	// "forbidden" if the new claims fail the route's permissions).
	//
	// Asks are read in order with the other messages, so a client that
	// leaves a full ReceiveBuffer unread does not see them in time.
	// TokenSource runs on the client's goroutine (for a handshake or an
	// ask) and on the goroutines that call Refresh, so it must be safe for
	// concurrent use; for one connection, tokens are fetched and sent one
	// at a time, so they reach the server in the order they were issued.
	// Like OnConnect, it must return when ctx ends and must not call Close
	// or CloseNow directly.
	TokenSource func(ctx context.Context) (string, error)

	// ReadLimit is the largest message accepted from the server, in bytes.
	// A larger one makes coder/websocket close the connection with 1009
	// (which counts as a lost connection, see Reconnect). Default: 1 MiB;
	// negative: no limit.
	ReadLimit int64

	// CompressionMode is offered to the server (permessage-deflate).
	// Default: websocket.CompressionDisabled.
	CompressionMode websocket.CompressionMode

	// ReceiveBuffer is how many received messages wait for Receive. When it
	// is full, the client stops reading from the socket until Receive makes
	// room: TCP pushes back on the server, whose per-connection send queue
	// then fills and applies its overflow policy (by default wsactor closes
	// with 1013 "slow consumer"), and pings go unanswered (wsactor closes
	// after its pong timeout). Memory stays bounded either way. Replies to
	// Request never wait here, but they are read in order behind the
	// messages before them. Default: 64 messages.
	ReceiveBuffer int

	// Reconnect redials when the connection is lost, unless the server
	// closed it with a final code (FinalClose) or refused the handshake with
	// a 4xx status other than 408 and 429. Meanwhile State is
	// StateConnecting, Send and Request wait for the new connection (bounded
	// by their ctx), and Receive keeps returning messages. Without
	// Reconnect, a lost connection ends the client and Send fails at once
	// with an error wrapping ErrDisconnected.
	//
	// Dial itself makes a single attempt: a server that cannot be reached
	// at first is reported at once.
	Reconnect bool

	// MinBackoff is the longest wait before the first reconnection attempt;
	// each further attempt doubles it, up to MaxBackoff. The actual wait is
	// uniformly random between zero and that bound ("full jitter"), so
	// clients dropped together do not come back together. The bound starts
	// again from MinBackoff only after a connection has stayed open for
	// MaxBackoff: a server that accepts and drops at once sees the waits
	// keep growing. Default: 100 ms.
	MinBackoff time.Duration

	// MaxBackoff caps the bound on the wait between attempts. Default: 10 s
	// (and never less than MinBackoff).
	MaxBackoff time.Duration

	// MaxAttempts ends the client after this many consecutive failed
	// reconnection attempts. The count restarts after every successful
	// connection. Default: 0, unlimited.
	MaxAttempts int

	// ConnectTimeout bounds each reconnection attempt: the handshake and
	// OnConnect. Dial's attempt is bounded by Dial's ctx instead.
	// Default: 10 s.
	ConnectTimeout time.Duration

	// FinalClose reports whether a close by the server with this code and
	// reason ends the client instead of reconnecting. Default:
	// DefaultFinalClose.
	FinalClose func(code websocket.StatusCode, reason string) bool

	// OnConnect, if set, runs after every successful handshake, Dial's
	// included, before the client counts as open: Sends and Requests made
	// with its ctx (or one derived from it) go out on the new connection
	// at once, while every other Send waits until OnConnect has returned.
	// This is where a client re-joins its rooms. An error closes the
	// connection: Dial returns it, and a reconnection counts it as a failed
	// attempt (unless it carries a final close code, such as a Request
	// failing because the server closed with 1008).
	//
	// During Dial nobody can call Receive yet, so what the server sends
	// before OnConnect's last reply (such as a room's history) must fit in
	// ReceiveBuffer, or that reply is not read before ctx ends.
	//
	// It runs on the client's own goroutine, so it must not call Close or
	// CloseNow, which wait for that goroutine; call them in a new goroutine
	// if needed. Its ctx ends when the attempt times out or the client is
	// closed.
	OnConnect func(ctx context.Context, c *Client) error

	// OnDisconnect, if set, is called with the reason each time an open
	// connection is lost, before any reconnection: the read error, which
	// carries the server's close code (websocket.CloseStatus). It is not
	// called for failed reconnection attempts, nor after Close or CloseNow.
	// It runs on the client's goroutine and delays reconnection until it
	// returns; like OnConnect, it must not call Close or CloseNow directly.
	OnDisconnect func(err error)

	// Logger receives connection losses, reconnection attempts and
	// accepted credential refreshes at Debug level, and failed credential
	// refreshes (see TokenSource) at Warn. Default: slog.Default().
	Logger *slog.Logger
}

// Defaults of the Options fields.
const (
	DefaultReadLimit      = 1 << 20
	DefaultReceiveBuffer  = 64
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// DefaultFinalClose is the default Options.FinalClose. A close that says
// the client is at fault (its messages or its credentials), or that the
// application chose to end the session, is final; one that says the server
// or the network failed, or that the client fell behind, is not:
//
//   - final: 1000 normal closure, 1002 protocol error, 1003 unsupported
//     data, 1007 invalid data, 1008 policy violation (wsactor's "forbidden",
//     "credentials expired" and "invalid credentials"), 1009 message too
//     big, 1010 mandatory extension, and 3000–4999 (library and application
//     codes; wsactor applications use 4000–4999).
//   - reconnect: 1001 going away (server shutdown, idle timeout), 1005 no
//     status, 1006 abnormal closure, 1011 internal error (handler failure,
//     ping timeout), 1012 service restart, 1013 try again later (wsactor's
//     slow-consumer close: messages were dropped; a new connection and
//     OnConnect catch up), 1014 bad
//     gateway, a connection dropped without a close frame, and anything
//     else.
//
// To reconnect after some application codes, wrap it:
//
//	FinalClose: func(code websocket.StatusCode, reason string) bool {
//		return code != 4001 && client.DefaultFinalClose(code, reason)
//	}
func DefaultFinalClose(code websocket.StatusCode, reason string) bool {
	switch code {
	case websocket.StatusPolicyViolation,
		websocket.StatusNormalClosure,
		websocket.StatusProtocolError,
		websocket.StatusUnsupportedData,
		websocket.StatusInvalidFramePayloadData,
		websocket.StatusMessageTooBig,
		websocket.StatusMandatoryExtension:
		return true
	}
	return code >= 3000 && code <= 4999
}

func (o *Options) withDefaults() Options {
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.ReadLimit == 0 {
		opts.ReadLimit = DefaultReadLimit
	} else if opts.ReadLimit < 0 {
		opts.ReadLimit = -1
	}
	if opts.ReceiveBuffer <= 0 {
		opts.ReceiveBuffer = DefaultReceiveBuffer
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.FinalClose == nil {
		opts.FinalClose = DefaultFinalClose
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return opts
}

// dialOptions returns the options of a handshake that offers token (none if
// it is empty).
func (o *Options) dialOptions(token string) *websocket.DialOptions {
	return &websocket.DialOptions{
		HTTPClient:      o.HTTPClient,
		HTTPHeader:      o.HTTPHeader.Clone(),
		Subprotocols:    o.subprotocols(token),
		CompressionMode: o.CompressionMode,
	}
}

// subprotocols returns Subprotocols and, if token is not empty, the pair
// "bearer", token.
func (o *Options) subprotocols(token string) []string {
	protos := append([]string(nil), o.Subprotocols...)
	if token != "" {
		protos = append(protos, bearerSubprotocol, token)
	}
	return protos
}
