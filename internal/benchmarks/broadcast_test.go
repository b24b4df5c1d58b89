package benchmarks

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// envBroadcastMembers sets BenchmarkBroadcast's group sizes, comma
	// separated (default "1000,5000").
	envBroadcastMembers = "WSACTOR_BENCH_BROADCAST_MEMBERS"
	// callAllocRounds is how many extra broadcasts measure the allocations
	// of the broadcast call alone, after the timed ones.
	callAllocRounds = 7
	// clockSlack tolerates disagreement between the two processes' clocks
	// before the harness refuses a measurement as impossible.
	clockSlack = time.Millisecond
)

var defaultBroadcastMembers = []int{1000, 5000}

// broadcastFixture is a server whose n connections, held by a client
// process, are all members of one group.
type broadcastFixture struct {
	name    string
	n       int
	srv     broadcastTarget
	clients *broadcastClients
	seq     uint64 // the next message's sequence number
}

func newBroadcastFixture(k broadcastKind, n int) (_ *broadcastFixture, err error) {
	srv := startBroadcastServer(k)
	clients, err := startBroadcastClients(srv.URL(), n)
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	f := &broadcastFixture{name: fmt.Sprintf("%s/%d", k, n), n: n, srv: srv, clients: clients}
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

// roundResult is one broadcast, timed from just before the broadcast call.
type roundResult struct {
	call  time.Duration // until the broadcast call returned
	first time.Duration // until the first member had read the message
	last  time.Duration // until the last member had read the message
}

// message returns the next 256-byte message, freshly allocated: wsactor and
// bare-pump queue the slice itself, so it must not be reused.
func (f *broadcastFixture) message() ([]byte, uint64) {
	seq := f.seq
	f.seq++
	b := make([]byte, payloadSize)
	fill(b, seq)
	return b, seq
}

func (f *broadcastFixture) broadcast(b []byte) error {
	n, err := f.srv.Broadcast(b)
	if err == nil && n != f.n {
		err = fmt.Errorf("broadcast reached %d members, want %d", n, f.n)
	}
	return err
}

// round broadcasts one message and waits until every client has read it.
func (f *broadcastFixture) round() (roundResult, error) {
	b, seq := f.message()
	start := time.Now()
	err := f.broadcast(b)
	returned := time.Now()
	if err != nil {
		return roundResult{}, fmt.Errorf("message %d: %w", seq, err)
	}
	first, last, err := f.clients.next(seq)
	seen := time.Now()
	if err != nil {
		return roundResult{}, err
	}
	t0 := start.UnixNano()
	r := roundResult{call: returned.Sub(start), first: time.Duration(first - t0), last: time.Duration(last - t0)}
	// Causality: the clients read the message after the broadcast began and
	// before the server heard that they had.
	if r.first < -clockSlack || last > seen.UnixNano()+int64(clockSlack) {
		return r, fmt.Errorf("message %d: arrivals [%d, %d] outside [%d, %d]: clocks disagree",
			seq, first, last, t0, seen.UnixNano())
	}
	return r, nil
}

// callAllocs measures the heap allocations made by the broadcast call itself
// (not by the delivery it sets off). It runs with GOMAXPROCS=1, so that the
// goroutines a broadcast wakes (mailboxes, writers) cannot run, and allocate,
// until the call returns and the caller blocks. A call that runs longer than
// the scheduler's 10 ms time slice is preempted all the same, and the
// delivery's allocations then leak into its count; they can only add, so the
// smallest count over the rounds is the call's own.
func (f *broadcastFixture) callAllocs(rounds int) (float64, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var before, after runtime.MemStats
	counts := make([]float64, 0, rounds)
	for range rounds {
		b, seq := f.message()
		runtime.ReadMemStats(&before)
		err := f.broadcast(b)
		runtime.ReadMemStats(&after)
		if err != nil {
			return 0, fmt.Errorf("message %d: %w", seq, err)
		}
		if _, _, err := f.clients.next(seq); err != nil {
			return 0, err
		}
		counts = append(counts, float64(after.Mallocs-before.Mallocs))
	}
	return slices.Min(counts), nil
}

// percentile returns the nearest-rank p-th percentile of xs (which it sorts).
func percentile[T int64 | float64 | time.Duration](xs []T, p float64) T {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(p/100*float64(len(xs)) + 0.999999999)
	return xs[min(max(rank, 1), len(xs))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
	var cur *broadcastFixture
	b.Cleanup(func() {
		if cur != nil {
			if err := cur.close(); err != nil {
				b.Error(err)
			}
		}
	})
	fixture := func(b *testing.B, k broadcastKind, n int) *broadcastFixture {
		if cur != nil && cur.name == fmt.Sprintf("%s/%d", k, n) {
			return cur
		}
		if cur != nil {
			err := cur.close()
			cur = nil
			if err != nil {
				b.Fatal(err)
			}
		}
		f, err := newBroadcastFixture(k, n)
		if err != nil {
			b.Fatal(err)
		}
		cur = f
		return f
	}
	for _, n := range broadcastMembers(b) {
		b.Run("members="+strconv.Itoa(n), func(b *testing.B) {
			for _, k := range broadcastKinds {
				b.Run("server="+string(k), func(b *testing.B) {
					f := fixture(b, k, n)
					runBroadcastBenchmark(b, f)
				})
			}
		})
	}
}

func runBroadcastBenchmark(b *testing.B, f *broadcastFixture) {
	results := make([]roundResult, 0, b.N)
	before := readCounters()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		r, err := f.round()
		if err != nil {
			b.Fatal(err)
		}
		results = append(results, r)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	after := readCounters()
	callAllocs, err := f.callAllocs(callAllocRounds)
	if err != nil {
		b.Fatal(err)
	}
	s := summarize(results)
	bcasts := float64(b.N)
	b.ReportMetric(ms(s.lastP50), "last-p50-ms")
	b.ReportMetric(ms(s.lastP99), "last-p99-ms")
	b.ReportMetric(ms(s.lastMean), "last-mean-ms")
	b.ReportMetric(ms(s.firstP50), "first-p50-ms")
	b.ReportMetric(ms(s.callMean), "call-ms")
	b.ReportMetric(float64(f.n)*bcasts/elapsed.Seconds(), "msgs/s")
	allocs := float64(after.mallocs-before.mallocs) / bcasts
	b.ReportMetric(allocs, "allocs/bcast")
	b.ReportMetric(allocs/float64(f.n), "allocs/member")
	b.ReportMetric(callAllocs, "call-allocs/bcast")
	b.ReportMetric(float64(after.cpu-before.cpu)/bcasts/float64(time.Millisecond), "cpu-ms/bcast")
	b.ReportMetric(float64(after.spawned-before.spawned)/bcasts, "spawns/bcast")
}

type broadcastSummary struct {
	lastP50, lastP99, lastMean, firstP50, callMean time.Duration
}

func summarize(rs []roundResult) broadcastSummary {
	last := make([]time.Duration, len(rs))
	first := make([]time.Duration, len(rs))
	var sumLast, sumCall time.Duration
	for i, r := range rs {
		last[i], first[i] = r.last, r.first
		sumLast += r.last
		sumCall += r.call
	}
	s := broadcastSummary{
		lastP50:  percentile(last, 50),
		lastP99:  percentile(last, 99),
		firstP50: percentile(first, 50),
	}
	if len(rs) > 0 {
		s.lastMean = sumLast / time.Duration(len(rs))
		s.callMean = sumCall / time.Duration(len(rs))
	}
	return s
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

func TestPercentile(t *testing.T) {
	xs := []int64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want int64
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := percentile(slices.Clone(xs), c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile([]int64(nil), 50); got != 0 {
		t.Errorf("empty: %d", got)
	}
}
