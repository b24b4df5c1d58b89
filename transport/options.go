package transport

import (
	"math"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/internal/metrics"
)

// Defaults applied to zero fields of Options.
const (
	DefaultMaxMessageSize = 64 << 10 // 64 KiB
	DefaultWriteTimeout   = 10 * time.Second
	DefaultPingInterval   = 30 * time.Second
	DefaultPongTimeout    = 15 * time.Second
	DefaultSendQueueBytes = 1 << 20 // 1 MiB
	DefaultMaxInflight    = 64
	// DefaultMessagesPerSecond and DefaultBytesPerSecond are the inbound rate
	// limits; each burst defaults to two seconds' worth (400 messages, 2 MiB).
	DefaultMessagesPerSecond = 200
	DefaultBytesPerSecond    = 1 << 20 // 1 MiB/s
	closeGrace               = time.Second
)

// RateLimitPolicy says what happens to an inbound message beyond the
// connection's rate limit.
type RateLimitPolicy int

const (
	// RateLimitReject refuses the message and keeps the connection open: the
	// Frame is delivered with Limited set, and the connection actor answers
	// it with an error envelope instead of calling OnMessage. The default.
	RateLimitReject RateLimitPolicy = iota
	// RateLimitClose closes the connection at once with 1008
	// ReasonRateLimited, dropping what is queued for it.
	RateLimitClose
)

// String returns the policy's name.
func (p RateLimitPolicy) String() string {
	switch p {
	case RateLimitReject:
		return "reject"
	case RateLimitClose:
		return "close"
	}
	return "unknown"
}

// RateLimit bounds what one client may send: a token bucket for messages and
// one for bytes (golang.org/x/time/rate), checked for every inbound data
// message before it reaches the handler. A message must fit both. Zero
// fields take the defaults; a negative rate turns that bucket off.
type RateLimit struct {
	// MessagesPerSecond is the sustained message rate. Default 200.
	MessagesPerSecond float64
	// MessageBurst is how many messages may arrive at once after a quiet
	// spell. Default: two seconds' worth (400 at the default rate).
	MessageBurst int
	// BytesPerSecond is the sustained rate of message payload bytes (as the
	// handler sees them, after decompression). Default 1 MiB.
	BytesPerSecond float64
	// ByteBurst is how many bytes may arrive at once. Default: two seconds'
	// worth (2 MiB at the default rate); never less than MaxMessageSize, or
	// a legal message could never pass.
	ByteBurst int
	// Policy is what happens to a message over the limit. Default
	// RateLimitReject.
	Policy RateLimitPolicy
}

// withDefaults fills the zero fields; maxMessage is the connection's
// MaxMessageSize, which the byte burst must hold.
func (r RateLimit) withDefaults(maxMessage int64) RateLimit {
	if r.MessagesPerSecond == 0 {
		r.MessagesPerSecond = DefaultMessagesPerSecond
	}
	if r.MessagesPerSecond > 0 && r.MessageBurst <= 0 {
		r.MessageBurst = twoSeconds(r.MessagesPerSecond)
	}
	if r.BytesPerSecond == 0 {
		r.BytesPerSecond = DefaultBytesPerSecond
	}
	if r.BytesPerSecond > 0 {
		if r.ByteBurst <= 0 {
			r.ByteBurst = twoSeconds(r.BytesPerSecond)
		}
		r.ByteBurst = int(max(int64(r.ByteBurst), min(maxMessage, math.MaxInt32)))
	}
	return r
}

// twoSeconds is the default burst for a rate: two seconds' worth, at least 1.
func twoSeconds(perSecond float64) int {
	return int(max(1, min(math.Ceil(2*perSecond), math.MaxInt32)))
}

// OverflowPolicy says what happens when a message is written to a connection
// whose send queue is full. A client that stops reading altogether is closed
// by WriteTimeout whatever the policy.
type OverflowPolicy int

const (
	// OverflowClose closes the connection with 1013 and ReasonSlowConsumer,
	// drops what is queued and logs it. It is the default: a client that
	// cannot keep up is disconnected rather than silently missing messages.
	OverflowClose OverflowPolicy = iota
	// OverflowDropNewest refuses the new message: Write returns ErrQueueFull.
	OverflowDropNewest
	// OverflowDropOldest discards the oldest queued message to make room.
	// Use it for streams where only the latest state matters (positions, prices).
	OverflowDropOldest
)

// String returns the policy's name.
func (p OverflowPolicy) String() string {
	switch p {
	case OverflowClose:
		return "close"
	case OverflowDropNewest:
		return "drop-newest"
	case OverflowDropOldest:
		return "drop-oldest"
	}
	return "unknown"
}

// Options are the per-connection limits and protocol settings. The zero value
// is safe: every zero field takes the default documented on it.
type Options struct {
	// MaxMessageSize is the largest inbound message in bytes; a larger one
	// closes the connection with 1009. Default 64 KiB.
	MaxMessageSize int64
	// WriteTimeout is how long the socket may take no bytes while messages
	// wait for it. A client that lets it pass has stopped reading: the
	// connection is closed with 1013 and ReasonStalled, whatever the
	// Overflow policy, and counted as a slow consumer. A client that reads,
	// however slowly a large message trickles out, is not judged by it.
	// Default 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often the server pings. Default 30 s; negative disables pings.
	PingInterval time.Duration
	// PongTimeout is how long a ping may wait for its pong before the
	// connection is closed (1011, ReasonPingTimeout). Default 15 s.
	PongTimeout time.Duration
	// IdleTimeout closes a connection (1001, ReasonIdleTimeout) when no
	// message arrives from the client for this long. Pongs do not count.
	// Default 0: no idle timeout.
	IdleTimeout time.Duration
	// SendQueueBytes bounds the memory of the messages waiting for the
	// socket, the one being written included: each counts its bytes plus
	// QueueOverhead (64). A single message larger than this is still accepted
	// when the queue is empty. It is the queue's only bound by default, and a
	// burst that fits is absorbed however many messages it holds: 1 MiB is
	// 6,000 chat-sized (100-byte) messages, while a connection whose queue
	// fills costs at most 1 MiB. Default 1 MiB.
	SendQueueBytes int
	// SendQueueMessages, if positive, also bounds how many messages may wait
	// for the socket, for streams whose drop policies think in messages
	// ("keep the last 10 positions"). Default 0: no count bound.
	SendQueueMessages int
	// Overflow is what happens when a bound is hit. Default OverflowClose.
	Overflow OverflowPolicy
	// MaxInflight bounds inbound messages read from the socket but not yet
	// handled; the reader stops reading (TCP back-pressure) until the handler
	// catches up. Default 64.
	MaxInflight int
	// OriginPatterns lists extra host patterns (path.Match syntax, e.g.
	// "*.example.com") whose browser origins may connect. The request's own
	// host is always allowed; other origins get 403.
	OriginPatterns []string
	// InsecureSkipOriginCheck accepts every origin. Only for development.
	InsecureSkipOriginCheck bool
	// Subprotocols the server may negotiate, in preference order.
	Subprotocols []string
	// CompressionNoContextTakeover enables permessage-deflate without context
	// takeover. Off by default: context takeover costs ~1.2 MB per connection,
	// and even this mode costs CPU on every message.
	CompressionNoContextTakeover bool
	// RateLimit bounds the messages and bytes each client may send. Default
	// 200 messages/s (burst 400) and 1 MiB/s (burst 2 MiB), rejecting the
	// excess with an error envelope; see RateLimit.
	RateLimit RateLimit

	// Counters receives message and byte counts; nil counts nothing.
	Counters *metrics.Counters

	// now is the rate limiters' clock; nil is time.Now. Tests set it.
	now func() time.Time
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = DefaultPongTimeout
	}
	if o.SendQueueMessages < 0 {
		o.SendQueueMessages = 0
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = DefaultSendQueueBytes
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	o.RateLimit = o.RateLimit.withDefaults(o.MaxMessageSize)
	if o.Counters == nil {
		o.Counters = new(metrics.Counters)
	}
	return o
}

func (o *Options) acceptOptions() *websocket.AcceptOptions {
	mode := websocket.CompressionDisabled
	if o.CompressionNoContextTakeover {
		mode = websocket.CompressionNoContextTakeover
	}
	return &websocket.AcceptOptions{
		Subprotocols:       o.Subprotocols,
		InsecureSkipVerify: o.InsecureSkipOriginCheck,
		OriginPatterns:     o.OriginPatterns,
		CompressionMode:    mode,
	}
}
