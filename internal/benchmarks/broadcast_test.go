package benchmarks

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envBroadcastMembers sets BenchmarkBroadcast's group sizes, comma separated
// (default "1000,5000").
const envBroadcastMembers = "WSACTOR_BENCH_BROADCAST_MEMBERS"

var defaultBroadcastMembers = []int{1000, 5000}

// broadcastFixture is a server whose n connections, held by a client
// process, are all members of one group.
type broadcastFixture struct {
	broadcastRounds
	n   int
	srv broadcastTarget
}

func newBroadcastFixture(k broadcastKind, n int) (_ *broadcastFixture, err error) {
	srv := startBroadcastServer(k)
	clients, err := startBroadcastClients(srv.URL(), n)
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	f := &broadcastFixture{n: n, srv: srv}
	f.broadcastRounds = broadcastRounds{clients: clients, send: f.broadcast}
	// wsactor's members join in OnOpen, which may run after the client's
	// dial has returned.
	if err := waitUntil("every connection to join the group", func() bool { return srv.Members() == n }); err != nil {
		return nil, errors.Join(err, fmt.Errorf("%d of %d joined", srv.Members(), n), f.close())
	}
	return f, nil
}

// close stops the client process (which closes its connections), then the
// server.
func (f *broadcastFixture) close() error {
	return errors.Join(f.clients.stop(), f.srv.Close())
}

func (f *broadcastFixture) broadcast(b []byte) error {
	n, err := f.srv.Broadcast(b)
	if err == nil && n != f.n {
		err = fmt.Errorf("broadcast reached %d members, want %d", n, f.n)
	}
	return err
}

// broadcastMembers returns the group sizes to benchmark.
func broadcastMembers(tb testing.TB) []int {
	s := os.Getenv(envBroadcastMembers)
	if s == "" {
		return defaultBroadcastMembers
	}
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want positive numbers, comma separated", envBroadcastMembers, s)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// BenchmarkBroadcast broadcasts one 256-byte binary message at a time to a
// group whose every member is a connection held by a client process, and
// times each broadcast until the last member has read it. The servers:
// bare-loop writes to each socket in turn from the broadcasting goroutine;
// bare-pump queues to a channel and writer goroutine per member; wsactor
// calls Server.Groups().Broadcast. Each op is one broadcast, and the next
// starts only once every client has read and checked the previous one.
//
// A sub-benchmark keeps its connections across the runs the testing package
// makes of it (b.N=1, then the real b.N), and closes them when the next
// sub-benchmark starts; use -benchtime=<n>x.
func BenchmarkBroadcast(b *testing.B) {
	fixtures := holdFixtures[*broadcastFixture](b)
	for _, n := range broadcastMembers(b) {
		b.Run("members="+strconv.Itoa(n), func(b *testing.B) {
			for _, k := range broadcastKinds {
				b.Run("server="+string(k), func(b *testing.B) {
					f := fixtures.get(b, fmt.Sprintf("%s/%d", k, n), func() (*broadcastFixture, error) {
						return newBroadcastFixture(k, n)
					})
					runBroadcastBenchmark(b, f)
				})
			}
		})
	}
}

func runBroadcastBenchmark(b *testing.B, f *broadcastFixture) {
	s := f.measure(b)
	before, after := s.before, s.after
	bcasts := float64(b.N)
	b.ReportMetric(ms(s.lastP50), "last-p50-ms")
	b.ReportMetric(ms(s.lastP99), "last-p99-ms")
	b.ReportMetric(ms(s.lastMean), "last-mean-ms")
	b.ReportMetric(ms(s.firstP50), "first-p50-ms")
	b.ReportMetric(ms(s.callMean), "call-ms")
	b.ReportMetric(float64(f.n)*bcasts/s.elapsed.Seconds(), "msgs/s")
	allocs := float64(after.mallocs-before.mallocs) / bcasts
	b.ReportMetric(allocs, "allocs/bcast")
	b.ReportMetric(allocs/float64(f.n), "allocs/member")
	b.ReportMetric(s.callAllocs, "call-allocs/bcast")
	b.ReportMetric(float64(after.cpu-before.cpu)/bcasts/float64(time.Millisecond), "cpu-ms/bcast")
	b.ReportMetric(float64(after.spawned-before.spawned)/bcasts, "spawns/bcast")
}

// TestBroadcastBenchmarkServersDeliver runs BenchmarkBroadcast's machinery
// with a small group on every server: each broadcast reaches every member in
// order, the timings are consistent, and a lost message fails the round.
func TestBroadcastBenchmarkServersDeliver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	const members, rounds = 50, 20
	for _, k := range broadcastKinds {
		t.Run(string(k), func(t *testing.T) {
			f, err := newBroadcastFixture(k, members)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					_ = f.close()
				}
			}()
			var rs []roundResult
			for range rounds {
				r, err := f.round()
				if err != nil {
					t.Fatal(err)
				}
				if r.first > r.last || r.last <= 0 {
					t.Fatalf("inconsistent timings: %+v", r)
				}
				rs = append(rs, r)
			}
			allocs, err := f.callAllocs(3)
			if err != nil {
				t.Fatal(err)
			}
			s := summarize(rs)
			t.Logf("%s, %d members: last p50 %v p99 %v, first p50 %v, call %v, %.0f allocs in the call",
				k, members, s.lastP50, s.lastP99, s.firstP50, s.callMean, allocs)

			// Skip a sequence number: the clients must report the gap.
			f.seq++
			if _, err := f.round(); err == nil || !strings.Contains(err.Error(), "lost or out of order") {
				t.Fatalf("a lost message went unnoticed: %v", err)
			}
			closed = true
			if err := f.close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
