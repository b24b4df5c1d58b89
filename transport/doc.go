// Package transport is the only part of wsactor that touches
// github.com/coder/websocket. It turns an HTTP upgrade into a Conn whose
// frames flow one way, socket → reader goroutine → a deliver callback, and
// whose writes flow the other way, Write → bounded send queue → writer → socket.
//
// Three entry points:
//
//   - Accept upgrades a request with the limits in Options.
//   - Conn.Start begins reading and heartbeating; every inbound frame is
//     handed to a callback, and the end of the connection is reported exactly
//     once with the close code and reason that ended it.
//   - Conn.Write queues a message without ever blocking the caller; Conn.Close
//     flushes the queue and then performs the closing handshake.
//
// Every byte from the client passes an incremental check (inbound.go) before
// coder/websocket parses it, so that a protocol violation or invalid UTF-8
// is answered after the replies already queued, and every message passes
// the connection's rate limit (RateLimit) before it is delivered.
//
// An idle connection holds one goroutine (the reader). The writer goroutine
// exists only while the send queue is non-empty and the heartbeat is a timer,
// not a goroutine, so memory per connection stays close to a bare
// goroutine-per-connection server.
package transport
