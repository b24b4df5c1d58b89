// Package metrics holds the process-wide counters that the transport, the
// connection actors and the server update, so that Server.Stats can take one
// consistent-enough snapshot without asking each connection.
package metrics

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// Counters are monotonic except Open. The zero value is ready to use.
type Counters struct {
	Open     atomic.Int64 // connections admitted and not yet fully closed
	Accepted atomic.Int64 // upgrades that became connection actors
	Rejected atomic.Int64 // handshakes refused (HTTP status or accept-then-close)
	// RejectedBy splits Rejected by reason; its elements add up to Rejected.
	RejectedBy [NumRejectReasons]atomic.Int64

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
	NodeQueueFull      atomic.Int64 // messages for other nodes refused because the queue to the node was full

	// Closes counts ended connections by close code and by who ended them.
	Closes Closes
	// MailboxLatency samples the time from a message's read off the socket
	// to the end of the handler's OnMessage (see actors' deliver).
	MailboxLatency Histogram
}

// Reject records one refused handshake or TCP connection.
func (c *Counters) Reject(r RejectReason) {
	c.Rejected.Add(1)
	c.RejectedBy[r].Add(1)
}

// RejectReason says why a handshake or connection was refused.
type RejectReason int

// The reasons, as the metrics label them (RejectReason.String).
const (
	RejectAuth        RejectReason = iota // credentials missing, invalid or expired; permission denied
	RejectOrigin                          // cross-origin upgrade refused
	RejectLimit                           // MaxConnections reached
	RejectPath                            // no route for the path
	RejectHandshake                       // not a WebSocket upgrade, or the upgrade failed
	RejectUnavailable                     // shutting down or suspended
	RejectConnect                         // the handler's Connect refused or accepted-then-closed
	RejectError                           // the authenticator or Connect failed (500)
	NumRejectReasons
)

var rejectNames = [NumRejectReasons]string{"auth", "origin", "limit", "path", "handshake", "unavailable", "connect", "error"}

func (r RejectReason) String() string { return rejectNames[r] }

// CloseBy says who ended a connection.
type CloseBy int

// Who ends connections.
const (
	ByClient  CloseBy = iota // the client sent a close frame or vanished
	ByServer                 // the handler, an API call, shutdown or an internal failure
	ByTimeout                // the idle or ping timeout
	ByLimit                  // a limit: slow consumer, message size, rate limit
	NumCloseBy
)

var closeByNames = [NumCloseBy]string{"client", "server", "timeout", "limit"}

func (b CloseBy) String() string { return closeByNames[b] }

// Closes counts closes by code and by who. The codes of RFC 6455 (1000 to
// 1015) have an array of counters each; any other code (an application's
// 4000–4999) goes to a map under a lock, taken once per closed connection.
type Closes struct {
	std   [closeStdCodes][NumCloseBy]atomic.Int64
	mu    sync.Mutex
	other map[closeKey]int64
}

const (
	closeStdFirst = 1000
	closeStdCodes = 16
)

type closeKey struct {
	code int
	by   CloseBy
}

// Add counts one close.
func (c *Closes) Add(code int, by CloseBy) {
	if i := code - closeStdFirst; i >= 0 && i < closeStdCodes {
		c.std[i][by].Add(1)
		return
	}
	c.mu.Lock()
	if c.other == nil {
		c.other = make(map[closeKey]int64)
	}
	c.other[closeKey{code, by}]++
	c.mu.Unlock()
}

// CloseCount is the number of connections closed with one code by one side.
type CloseCount struct {
	Code  int
	By    CloseBy
	Count int64
}

// Snapshot lists the non-zero counts, by code then by who.
func (c *Closes) Snapshot() []CloseCount {
	var out []CloseCount
	for i := range c.std {
		for by := range c.std[i] {
			if n := c.std[i][by].Load(); n > 0 {
				out = append(out, CloseCount{Code: closeStdFirst + i, By: CloseBy(by), Count: n})
			}
		}
	}
	c.mu.Lock()
	for k, n := range c.other {
		out = append(out, CloseCount{Code: k.code, By: k.by, Count: n})
	}
	c.mu.Unlock()
	sortCloses(out)
	return out
}

func sortCloses(cs []CloseCount) {
	slices.SortFunc(cs, func(a, b CloseCount) int {
		return cmp.Or(cmp.Compare(a.Code, b.Code), cmp.Compare(a.By, b.By))
	})
}
