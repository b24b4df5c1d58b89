// Package chaos is wsactor's chaos suite: its tests run a real cluster —
// three chat nodes (examples/chat's server, each in its own OS process) and a
// real redis-server — with clients chatting across the nodes under steady
// traffic, inject one fault at a time (a flooding client, a client that
// never reads, FLUSHALL, Redis restarted empty, Redis frozen, a node frozen
// past the member TTL, a node killed), and account for every message: each
// one acknowledged was delivered exactly once to every member that stayed
// connected, each one refused was refused with an error its sender saw, none
// was delivered twice, no ghost member outlives twice the member TTL, and
// every node is ready again (or visibly out, its clients closed so that they
// reconnect elsewhere).
//
// The package has no API; see chaos_test.go.
package chaos
