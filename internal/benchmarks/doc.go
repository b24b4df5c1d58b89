// Package benchmarks compares wsactor with bare coder/websocket servers:
// echo round trip, server→client push throughput, server-side memory per
// idle connection and group broadcast, and measures cross-node sends and
// broadcasts, group joins and the inbound rate limiter's cost per echo, and
// rooms: memory per idle room, tick lateness, per-tick fan-out over two
// nodes and failover time. Everything lives in _test.go files; BENCHMARKS.md
// at the repository root explains each benchmark, how to run it and what it
// measured.
//
// The machinery the benchmarks share: servers_test.go (the servers under test,
// dialing clients), procs_test.go (client processes: the test binary run again
// so that the clients cost the measured process nothing) and rounds_test.go
// (the broadcast benchmarks' timed rounds and their client process). The
// room benchmarks add rooms_state_test.go (the game every room and baseline
// runs) and rooms_node_test.go (cluster nodes as processes of their own,
// driven over stdin and stdout).
package benchmarks
