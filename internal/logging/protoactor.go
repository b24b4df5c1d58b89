package logging

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// Protoactor returns the handler for protoactor's own log records: records
// below min are discarded, as with MinLevel, and the routine events of a
// cluster whose members come and go are told apart from real failures.
// protoactor logs both at Error: an endpoint writer that lost its stream,
// failed to dial, or closed its connection logs the same line whether the
// peer left cleanly (membership said so), this node is stopping, or the
// peer vanished while still a member. The first two are routine and go to
// Debug; the last is a real failure and stays at Warn or above.
//
// Until SetMembers is called (a single node), every record keeps its level.
func Protoactor(h slog.Handler, min slog.Leveler) *ProtoactorHandler {
	return &ProtoactorHandler{inner: h, min: min, state: &peerState{}}
}

// ProtoactorHandler is the slog.Handler that Protoactor returns. Handlers
// derived from it (WithAttrs, WithGroup) share its cluster state.
type ProtoactorHandler struct {
	inner slog.Handler
	min   slog.Leveler
	state *peerState
}

type peerState struct {
	alive    atomic.Pointer[func(address string) bool]
	stopping atomic.Bool
}

// SetMembers tells the handler which actor-system addresses are live
// members of the cluster: failures to reach any other address are routine.
func (h *ProtoactorHandler) SetMembers(alive func(address string) bool) { h.state.alive.Store(&alive) }

// SetStopping tells the handler that this node is leaving: from now on, its
// connections to every peer ending is routine.
func (h *ProtoactorHandler) SetStopping() { h.state.stopping.Store(true) }

// Enabled reports whether a record at l may be logged. A record may be
// lowered in Handle, which checks again.
func (h *ProtoactorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min.Level() && h.inner.Enabled(ctx, l)
}

// Handle logs r at the level its event deserves.
func (h *ProtoactorHandler) Handle(ctx context.Context, r slog.Record) error {
	level := h.state.level(r)
	if level != r.Level {
		// min is for protoactor's own levels; a record lowered here is
		// shown at its new level to an application that logs it.
		if !h.inner.Enabled(ctx, level) {
			return nil
		}
		r = r.Clone()
		r.Level = level
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *ProtoactorHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ProtoactorHandler{inner: h.inner.WithAttrs(attrs), min: h.min, state: h.state}
}

// WithGroup implements slog.Handler.
func (h *ProtoactorHandler) WithGroup(name string) slog.Handler {
	return &ProtoactorHandler{inner: h.inner.WithGroup(name), min: h.min, state: h.state}
}

// endpointEvents are protoactor's records about the gRPC stream to one
// peer, which carry the peer's address (remote/endpoint_writer.go,
// remote/endpoint_watcher.go in the pinned version).
var endpointEvents = map[string]bool{
	"EndpointWriter lost connection":                                  true,
	"EndpointWriter failed to connect":                                true,
	"EndpointWriter failed to create receive stream":                  true,
	"EndpointWriter failed to send connect request":                   true,
	"EndpointWriter failed to receive connect response":               true,
	"EndpointWriter error when closing the stream":                    true,
	"EndpointWriter error when closing the client conn":               true,
	"EndpointWatcher receive message for already terminated endpoint": true,
	"failed to connect to remote address":                             true,
}

// closedHere is the gRPC error of a stream whose connection this node
// closed itself: protoactor ends the endpoint of a member that left, or of
// every peer when the node stops, and the writer then logs the loss.
const closedHere = "grpc: the client connection is closing"

func (s *peerState) level(r slog.Record) slog.Level {
	alive := s.alive.Load()
	if alive == nil || r.Level < slog.LevelWarn {
		return r.Level
	}
	switch {
	case endpointEvents[r.Message]:
		address, errText := attrs(r)
		switch {
		case s.stopping.Load(), !(*alive)(address), strings.Contains(errText, closedHere):
			return slog.LevelDebug
		case r.Message == "EndpointWriter lost connection":
			// A live member's stream broke: it may have died. Membership
			// decides; the node carries on without it meanwhile.
			return slog.LevelWarn
		}
	case r.Message == "EndpointReader failed to get local process":
		// A system message (a watch, an unwatch) from a peer for an actor
		// of this node that has stopped: a dead letter, which protoactor
		// logs at Info when it is local.
		return slog.LevelDebug
	case r.Message == "cluster.RequestFuture failed":
		// A request to a grain whose node left, or this node stopping.
		if pid := pidAddress(r); s.stopping.Load() || (pid != "" && !(*alive)(pid)) {
			return slog.LevelDebug
		}
	}
	return r.Level
}

// attrs returns a record's "address" and "error" attributes as text.
func attrs(r slog.Record) (address, errText string) {
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "address":
			address = a.Value.String()
		case "error":
			errText = a.Value.String()
		}
		return true
	})
	return address, errText
}

// pidAddress returns the address of a record's "pid" attribute, a
// protoactor PID (which has GetAddress), or "".
func pidAddress(r slog.Record) string {
	var address string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pid" {
			return true
		}
		if p, ok := a.Value.Any().(interface{ GetAddress() string }); ok {
			address = p.GetAddress()
		}
		return false
	})
	return address
}
