// Package wsactor is a runtime for stateful real-time backends in which every
// WebSocket connection is an actor.
//
// Each accepted socket gets a supervised protoactor-go actor. Its mailbox
// serializes everything that happens to the connection (frames received,
// sends from any goroutine, close requests, timers, messages from other
// actors), so handler code needs no locks, and a panic in one handler
// restarts that handler, never the process. The connection's ID is its
// actor's PID: anything that holds it can send to or close the client.
//
// Three entry points:
//
//   - New makes a Server, an http.Handler.
//   - Server.Handle registers a route pattern ("/ws/{room}") and a factory of
//     Handler values, one per connection.
//   - Server.Send and Server.Close reach a connection by ID from anywhere.
//
// A Handler implements OnMessage and, optionally, Connect (accept or reject
// at the handshake), OnOpen, OnClose (exactly once per connection) and
// Receive (actor messages and timer ticks).
package wsactor
