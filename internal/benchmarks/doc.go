// Package benchmarks compares wsactor with a bare coder/websocket server that
// runs one goroutine per connection: echo round trip, server→client push
// throughput and server-side memory per idle connection. Everything lives in
// _test.go files; BENCHMARKS.md at the repository root explains each
// benchmark, how to run it and what it measured.
package benchmarks
