package benchmarks

import (
	"os"
	"strconv"
	"testing"
)

// envBroadcastHelper tells a re-executed test binary to act as the client
// process of BenchmarkBroadcast (with envHelperURL and envHelperConns).
const envBroadcastHelper = "WSACTOR_BENCH_BROADCAST_HELPER"

// startBroadcastClients starts BenchmarkBroadcast's client process,
// TestHelperBroadcastClients, which opens n connections to url and reports
// each broadcast round (see rounds_test.go), and waits until it says they are
// ready. The clients live in another process so that the server process's
// allocation and CPU counters are the server's alone.
func startBroadcastClients(url string, n int) (*roundClients, error) {
	return startRoundClients("TestHelperBroadcastClients", "wsactor-bench-broadcast-*.log", 1,
		envBroadcastHelper+"=1", envHelperURL+"="+url, envHelperConns+"="+strconv.Itoa(n))
}

// TestHelperBroadcastClients is not a test: BenchmarkBroadcast runs the test
// binary again with envBroadcastHelper set so that its clients live in
// another process. It opens the connections, reads every broadcast on each
// (one goroutine per connection), reports each completed round on stdout,
// and closes everything when its stdin closes.
func TestHelperBroadcastClients(t *testing.T) {
	if os.Getenv(envBroadcastHelper) != "1" {
		t.Skip("client process of BenchmarkBroadcast; runs only when re-executed by it")
	}
	url, n := helperURLConns(t)
	serveRounds(t, []clientTarget{{url: url, n: n}})
}
