package transport

import (
	"errors"
	"strings"

	"github.com/coder/websocket"
)

// StatusCode is a WebSocket close code (RFC 6455, section 7.4).
type StatusCode = websocket.StatusCode

// The close codes wsactor sends or reports. Applications may use 4000–4999
// for their own purposes.
const (
	// StatusNormalClosure: the handler or the client closed the connection normally.
	StatusNormalClosure StatusCode = websocket.StatusNormalClosure // 1000
	// StatusGoingAway: the server is shutting down, or the connection was idle too long.
	StatusGoingAway StatusCode = websocket.StatusGoingAway // 1001
	// StatusProtocolError: the client broke the WebSocket protocol (reserved
	// bits, unknown opcode, a fragmented or oversized control frame, a stray
	// continuation, a new message inside a fragmented one, an unmasked frame,
	// a bad close payload). Sent after the replies already queued.
	StatusProtocolError StatusCode = websocket.StatusProtocolError // 1002
	// StatusUnsupportedData: the route does not accept this kind of message.
	StatusUnsupportedData StatusCode = websocket.StatusUnsupportedData // 1003
	// StatusNoStatusRcvd: the peer sent a close frame without a code.
	StatusNoStatusRcvd StatusCode = websocket.StatusNoStatusRcvd // 1005
	// StatusAbnormalClosure: the TCP connection ended without a close frame (never sent on the wire).
	StatusAbnormalClosure StatusCode = websocket.StatusAbnormalClosure // 1006
	// StatusInvalidFramePayloadData: a text message, or the reason of the
	// client's close frame, was not valid UTF-8.
	StatusInvalidFramePayloadData StatusCode = websocket.StatusInvalidFramePayloadData // 1007
	// StatusPolicyViolation: a policy check failed (credentials, permissions,
	// the rate limit under RateLimitClose).
	StatusPolicyViolation StatusCode = websocket.StatusPolicyViolation // 1008
	// StatusMessageTooBig: an inbound message exceeded Options.MaxMessageSize.
	StatusMessageTooBig StatusCode = websocket.StatusMessageTooBig // 1009
	// StatusInternalError: the handler failed (error, or panics beyond the restart budget) or pings went unanswered.
	StatusInternalError StatusCode = websocket.StatusInternalError // 1011
	// StatusServiceRestart: the node is out of its cluster for a while (its
	// peers dropped it) and the client may have missed messages: reconnect,
	// to this node or another.
	StatusServiceRestart StatusCode = websocket.StatusServiceRestart // 1012
	// StatusTryAgainLater: a slow consumer: its send queue overflowed, or it
	// stopped reading (no write progress for WriteTimeout). Unlike 1008 it
	// invites the client to reconnect: it lost messages, not its rights.
	StatusTryAgainLater StatusCode = websocket.StatusTryAgainLater // 1013
)

// Reasons wsactor attaches to the close codes it chooses itself. They are
// part of the documented protocol: clients may match on them.
const (
	ReasonGoingAway    = "going away"
	ReasonIdleTimeout  = "idle timeout"
	ReasonPingTimeout  = "ping timeout"
	ReasonSlowConsumer = "slow consumer: send queue full"
	ReasonStalled      = "slow consumer: stopped reading"
	ReasonInvalidUTF8  = "invalid UTF-8 in text message"
	ReasonTooBig       = "message too big"
	ReasonWriteFailed  = "write failed"
	ReasonConnLost     = "connection lost"
	ReasonProtocol     = "protocol error"
	ReasonRateLimited  = "rate limit exceeded"

	ReasonInvalidCloseReason = "invalid UTF-8 in close reason"
)

// CloseInfo says how a connection ended.
type CloseInfo struct {
	Code   StatusCode
	Reason string
	// ByServer is true when this side chose the code (a handler, a limit, a
	// timeout or shutdown) and false when the client sent it or vanished.
	ByServer bool
}

// closeInfoFromReadError classifies the error that ended the read loop when
// the server had not already decided how the connection ends.
func closeInfoFromReadError(err error) CloseInfo {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return CloseInfo{Code: ce.Code, Reason: ce.Reason}
	case errors.Is(err, websocket.ErrMessageTooBig):
		// coder/websocket has already sent 1009 to the peer.
		return CloseInfo{Code: StatusMessageTooBig, Reason: ReasonTooBig, ByServer: true}
	case isProtocolError(err):
		// coder/websocket has sent 1002 to the peer. The inbound check
		// catches every violation known to it first (inbound.go); this is
		// the fallback for any it does not.
		return CloseInfo{Code: StatusProtocolError, Reason: ReasonProtocol, ByServer: true}
	default:
		return CloseInfo{Code: StatusAbnormalClosure, Reason: ReasonConnLost}
	}
}

// isProtocolError reports whether err is coder/websocket's answer to a
// frame that breaks the protocol. It has no error type for them: each is a
// plain error whose text starts "received ", possibly wrapped in "failed to
// handle control frame" (v1.8.15, read.go), while transport failures read
// "failed to read frame header: EOF" and the like. TestProtocolErrors pins
// this down for the version in go.mod.
func isProtocolError(err error) bool {
	msg := err.Error()
	msg, _ = strings.CutPrefix(msg, "failed to get reader: ")
	if rest, ok := strings.CutPrefix(msg, "failed to handle control frame "); ok {
		_, msg, _ = strings.Cut(rest, ": ")
	}
	return strings.HasPrefix(msg, "received ") && !strings.HasPrefix(msg, "received close frame")
}

// CloseStatus returns the close code carried by err, or -1. It is
// coder/websocket's CloseStatus, re-exported so callers need not import it.
func CloseStatus(err error) StatusCode { return websocket.CloseStatus(err) }
