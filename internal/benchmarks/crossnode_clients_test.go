package benchmarks

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// envXNHelper and envXNTargets tell a re-executed test binary to act as the
// client process of BenchmarkCrossNodeBroadcast. envXNTargets lists
// "<count>@<url>" entries, comma separated: open count connections to url.
const (
	envXNHelper  = "WSACTOR_BENCH_XN_HELPER"
	envXNTargets = "WSACTOR_BENCH_XN_TARGETS"
)

// startXNClients starts BenchmarkCrossNodeBroadcast's client process,
// TestHelperCrossNodeClients, which opens the connections of every target and
// reports each broadcast round with the last arrival per target (see
// rounds_test.go), and waits until it says they are ready. The clients live
// in another process so that the benchmark process's allocation and CPU
// counters are the nodes' alone.
func startXNClients(targets []clientTarget) (*roundClients, error) {
	spec := make([]string, len(targets))
	for i, t := range targets {
		spec[i] = strconv.Itoa(t.n) + "@" + t.url
	}
	return startRoundClients("TestHelperCrossNodeClients", "wsactor-bench-crossnode-*.log", len(targets),
		envXNHelper+"=1", envXNTargets+"="+strings.Join(spec, ","))
}

func parseXNTargets(s string) ([]clientTarget, error) {
	var targets []clientTarget
	for entry := range strings.SplitSeq(s, ",") {
		count, url, ok := strings.Cut(entry, "@")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n <= 0 || url == "" {
			return nil, fmt.Errorf("bad %s entry %q", envXNTargets, entry)
		}
		targets = append(targets, clientTarget{url: url, n: n})
	}
	return targets, nil
}

// TestHelperCrossNodeClients is not a test: BenchmarkCrossNodeBroadcast runs
// the test binary again with envXNHelper set so that its clients live in
// another process. It opens the connections to every target, reads every
// broadcast on each (one goroutine per connection), reports each completed
// round on stdout, and closes everything when its stdin closes.
func TestHelperCrossNodeClients(t *testing.T) {
	if os.Getenv(envXNHelper) != "1" {
		t.Skip("client process of BenchmarkCrossNodeBroadcast; runs only when re-executed by it")
	}
	targets, err := parseXNTargets(os.Getenv(envXNTargets))
	if err != nil {
		fmt.Printf("error %v\n", err)
		t.Fatal(err)
	}
	serveRounds(t, targets)
}
