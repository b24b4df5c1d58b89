// Package actors runs every WebSocket connection as a supervised protoactor
// actor. The actor's mailbox serializes everything that happens to the
// connection: inbound frames, sends from any goroutine or node, close
// requests, timer ticks and messages from other actors. Handler methods are
// therefore never called concurrently for one connection.
//
// Users normally reach this package through the root wsactor package, which
// re-exports its types.
package actors
