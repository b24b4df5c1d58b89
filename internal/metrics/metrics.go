// Package metrics holds the process-wide counters that the transport, the
// connection actors and the server update, so that Server.Stats can take one
// consistent-enough snapshot without asking each connection.
package metrics

import "sync/atomic"

// Counters are monotonic except Open. The zero value is ready to use.
type Counters struct {
	Open     atomic.Int64 // connections admitted and not yet fully closed
	Accepted atomic.Int64 // upgrades that became connection actors
	Rejected atomic.Int64 // handshakes refused (HTTP status or accept-then-close)

	MessagesIn  atomic.Int64
	MessagesOut atomic.Int64
	BytesIn     atomic.Int64
	BytesOut    atomic.Int64

	Panics             atomic.Int64 // handler panics recovered
	Restarts           atomic.Int64 // handler restarts by the supervisor
	SlowConsumerCloses atomic.Int64 // connections closed because their send queue overflowed
	Dropped            atomic.Int64 // outbound messages dropped by a drop policy
	RateLimited        atomic.Int64 // inbound messages beyond their connection's rate limit
	Undecodable        atomic.Int64 // messages from other nodes dropped because they could not be decoded
}
