package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Broadcast rounds: BenchmarkBroadcast and BenchmarkCrossNodeBroadcast both
// broadcast one message at a time to a group whose members are connections
// held by a client process, and time each broadcast until the last member has
// read it. Their servers differ; what this file holds is the same for both:
// the client process's report of each round, the timing of one round, and
// the allocations of the broadcast call.
//
// Protocol on the client process's stdout, one line each:
//
//	ready                                  every connection is open and reading
//	round <seq> <first> <last> <l0> <l1>…  every client has read message <seq>;
//	                                       first and last arrival overall and
//	                                       the last arrival of each target (a
//	                                       URL the process opened connections
//	                                       to), in Unix nanoseconds
//	error <text>                           a client failed (lost, reordered or
//	                                       corrupted message, read error)
//
// Arrival times are wall-clock readings (CLOCK_REALTIME) taken in the client
// process right after Read returned; the measuring process compares them with
// its own reading taken just before the broadcast. Both processes read the
// same kernel clock.

const (
	// roundLimit bounds the wait for one broadcast to reach every member:
	// far above any expected latency, far below waitLimit.
	roundLimit = 30 * time.Second
	// callAllocRounds is how many extra broadcasts measure the allocations
	// of the broadcast call alone, after the timed ones.
	callAllocRounds = 7
	// clockSlack tolerates disagreement between the two processes' clocks
	// before the harness refuses a measurement as impossible.
	clockSlack = time.Millisecond
)

// clientTarget is n connections for a client process to open to url.
type clientTarget struct {
	url string
	n   int
}

// roundClients is a round-reporting client process seen from the measuring
// process.
type roundClients struct {
	proc *helperProcess
	r    *bufio.Reader
	rep  roundReport
}

// roundReport is one round line. lasts is reused from round to round.
type roundReport struct {
	first, last int64
	lasts       []int64
}

// startRoundClients starts the client process (see startHelperProcess) that
// will report rounds over targets connection targets.
func startRoundClients(test, logPattern string, targets int, env ...string) (*roundClients, error) {
	h, r, err := startHelperProcess(test, logPattern, env...)
	if err != nil {
		return nil, err
	}
	return &roundClients{proc: h, r: r, rep: roundReport{lasts: make([]int64, targets)}}, nil
}

// next waits for the line reporting message seq read by every client. It
// allocates nothing on success, so as not to disturb the measuring process's
// allocation count; the report's lasts are overwritten by the next call.
func (c *roundClients) next(seq uint64) (roundReport, error) {
	_ = c.proc.stdout.SetReadDeadline(time.Now().Add(roundLimit))
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return roundReport{}, fmt.Errorf("waiting for message %d to reach every client: %w", seq, err)
	}
	b, ok := bytes.CutPrefix(line, []byte("round "))
	if !ok {
		return roundReport{}, fmt.Errorf("clients, waiting for message %d: %s", seq, strings.TrimSpace(string(line)))
	}
	var fields [3]uint64
	for i := range fields {
		if fields[i], b, ok = cutUint(b); !ok {
			return roundReport{}, fmt.Errorf("malformed line from clients: %q", line)
		}
	}
	for i := range c.rep.lasts {
		var v uint64
		if v, b, ok = cutUint(b); !ok {
			return roundReport{}, fmt.Errorf("malformed line from clients: %q", line)
		}
		c.rep.lasts[i] = int64(v)
	}
	c.rep.first, c.rep.last = int64(fields[1]), int64(fields[2])
	if len(b) != 0 || c.rep.first > c.rep.last || c.rep.first <= 0 {
		return roundReport{}, fmt.Errorf("malformed line from clients: %q", line)
	}
	if fields[0] != seq {
		return roundReport{}, fmt.Errorf("clients reported message %d, want %d", fields[0], seq)
	}
	return c.rep, nil
}

// cutUint parses a decimal number ended by a space or a newline.
func cutUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v > (math.MaxUint64-9)/10 {
			return 0, b, false
		}
		v = v*10 + uint64(b[i]-'0')
	}
	if i == 0 || i == len(b) || (b[i] != ' ' && b[i] != '\n') {
		return 0, b, false
	}
	return v, b[i+1:], true
}

func (c *roundClients) stop() error { return c.proc.stop() }

// roundTracker collects the arrivals of the current broadcast in the client
// process. Broadcasts do not overlap (the measuring process waits for each
// round line before the next), so one set of counters serves every round.
type roundTracker struct {
	n       uint64
	arrived atomic.Uint64  // arrivals so far, all rounds
	first   atomic.Int64   // earliest arrival of this round, Unix ns
	last    atomic.Int64   // latest arrival of this round, Unix ns
	lasts   []atomic.Int64 // latest arrival of this round per target

	failed  sync.Once
	outMu   sync.Mutex
	out     io.Writer
	closing atomic.Bool // stdin closed: read errors are expected
}

func newRoundTracker(n, targets int, out io.Writer) *roundTracker {
	t := &roundTracker{n: uint64(n), lasts: make([]atomic.Int64, targets), out: out}
	t.first.Store(math.MaxInt64)
	return t
}

func storeMin(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v >= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// arrive records that a client of target read message seq at now (Unix ns);
// the last arrival of a round reports the round.
func (t *roundTracker) arrive(target int, seq uint64, now int64) {
	storeMin(&t.first, now)
	storeMax(&t.last, now)
	storeMax(&t.lasts[target], now)
	if t.arrived.Add(1)%t.n != 0 {
		return
	}
	// Every client has counted this round after updating the times; the
	// next round cannot start until this line is out.
	var sb strings.Builder
	fmt.Fprintf(&sb, "round %d %d %d", seq, t.first.Swap(math.MaxInt64), t.last.Swap(0))
	for i := range t.lasts {
		fmt.Fprintf(&sb, " %d", t.lasts[i].Swap(0))
	}
	t.println(sb.String())
}

func (t *roundTracker) fail(err error) {
	if t.closing.Load() {
		return
	}
	t.failed.Do(func() { t.println("error " + strings.ReplaceAll(err.Error(), "\n", " ")) })
}

func (t *roundTracker) println(s string) {
	t.outMu.Lock()
	defer t.outMu.Unlock()
	_, _ = io.WriteString(t.out, s+"\n")
}

// read is one client's reader: it reads every message in order, checks it,
// and records when it arrived.
func (t *roundTracker) read(target, i int, c *websocket.Conn) {
	for seq := uint64(0); ; seq++ {
		// context.Background: no per-read context registration, and the
		// read ends when the connection is closed.
		typ, b, err := c.Read(context.Background())
		now := time.Now().UnixNano()
		if err == nil {
			err = checkMessage(typ, b, seq)
		}
		if err != nil {
			t.fail(fmt.Errorf("target %d, client %d, message %d: %w", target, i, seq, err))
			return
		}
		t.arrive(target, seq, now)
	}
}

// serveRounds is the whole of a round-reporting client process
// (TestHelperBroadcastClients, TestHelperCrossNodeClients): it opens the
// connections to every target, reads every broadcast on each (one goroutine
// per connection), reports each completed round on stdout, and closes
// everything when its stdin closes.
func serveRounds(t *testing.T, targets []clientTarget) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns := make([][]*websocket.Conn, len(targets))
	total := 0
	for i, tg := range targets {
		var err error
		if conns[i], err = dialMany(ctx, tg.url, tg.n, false, nil); err != nil {
			for _, cs := range conns[:i] {
				closeAll(cs)
			}
			fmt.Printf("error open %d connections to %s: %v\n", tg.n, tg.url, err)
			t.Fatalf("open %d connections to %s: %v", tg.n, tg.url, err)
		}
		total += tg.n
	}
	tracker := newRoundTracker(total, len(targets), os.Stdout)
	var wg sync.WaitGroup
	for ti, cs := range conns {
		for i, c := range cs {
			wg.Go(func() { tracker.read(ti, i, c) })
		}
	}
	tracker.println("ready")
	waitStdinClosed()
	tracker.closing.Store(true)
	for _, cs := range conns {
		closeAll(cs) // every reader's Read returns
	}
	wg.Wait()
}

// broadcastRounds is the part of a broadcast fixture that does not depend on
// the server: it numbers and fills each message, times one broadcast until
// the client process reports it read by every member, and measures the
// broadcast call's own allocations.
type broadcastRounds struct {
	clients *roundClients
	// send broadcasts b (which must not change afterwards) and checks how
	// many members it reached.
	send func(b []byte) error
	// perTarget makes round report each target's last arrival.
	// BenchmarkBroadcast leaves it off: its one target's last arrival is the
	// overall one, and the slice would be an allocation per op.
	perTarget bool
	seq       uint64 // the next message's sequence number
}

// roundResult is one broadcast, timed from just before the broadcast call.
type roundResult struct {
	call  time.Duration   // until the broadcast call returned
	first time.Duration   // until the first member had read the message
	last  time.Duration   // until the last member had read the message
	lasts []time.Duration // until the last member of each target had read it (perTarget only)
}

// message returns the next 256-byte message, freshly allocated: the servers
// that queue the slice itself (wsactor, bare-pump) need it unchanged.
func (f *broadcastRounds) message() ([]byte, uint64) {
	seq := f.seq
	f.seq++
	b := make([]byte, payloadSize)
	fill(b, seq)
	return b, seq
}

// round broadcasts one message and waits until every client has read it.
func (f *broadcastRounds) round() (roundResult, error) {
	b, seq := f.message()
	start := time.Now()
	err := f.send(b)
	returned := time.Now()
	if err != nil {
		return roundResult{}, fmt.Errorf("message %d: %w", seq, err)
	}
	rep, err := f.clients.next(seq)
	seen := time.Now()
	if err != nil {
		return roundResult{}, err
	}
	t0 := start.UnixNano()
	r := roundResult{call: returned.Sub(start), first: time.Duration(rep.first - t0), last: time.Duration(rep.last - t0)}
	if f.perTarget {
		for _, l := range rep.lasts {
			r.lasts = append(r.lasts, time.Duration(l-t0))
		}
	}
	// Causality: the clients read the message after the broadcast began and
	// before this process heard that they had.
	if r.first < -clockSlack || rep.last > seen.UnixNano()+int64(clockSlack) {
		return r, fmt.Errorf("message %d: arrivals [%d, %d] outside [%d, %d]: clocks disagree",
			seq, rep.first, rep.last, t0, seen.UnixNano())
	}
	return r, nil
}

// callAllocs measures the heap allocations made by the broadcast call itself
// on the calling goroutine (not by the delivery it sets off). It runs with
// GOMAXPROCS=1, so that the goroutines a broadcast wakes (mailboxes, writers,
// a remote endpoint writer) cannot run, and allocate, until the call returns
// and the caller blocks. A call that runs longer than the scheduler's 10 ms
// time slice is preempted all the same, and the delivery's allocations then
// leak into its count; they can only add, so the smallest count over the
// rounds is the call's own.
func (f *broadcastRounds) callAllocs(rounds int) (float64, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var before, after runtime.MemStats
	counts := make([]float64, 0, rounds)
	for range rounds {
		b, seq := f.message()
		runtime.ReadMemStats(&before)
		err := f.send(b)
		runtime.ReadMemStats(&after)
		if err != nil {
			return 0, fmt.Errorf("message %d: %w", seq, err)
		}
		if _, err := f.clients.next(seq); err != nil {
			return 0, err
		}
		counts = append(counts, float64(after.Mallocs-before.Mallocs))
	}
	return slices.Min(counts), nil
}

// roundsMeasurement is what a broadcast benchmark measures of its fixture in
// one run.
type roundsMeasurement struct {
	roundSummary
	elapsed       time.Duration   // wall time of the b.N timed rounds
	before, after runtimeCounters // the process's counters around them
	callAllocs    float64         // see callAllocs
}

// measure is the whole of both broadcast benchmarks' measurement (only what
// they report of it differs): b.N timed rounds with the process's counters
// read around them, then the broadcast call's own allocations over
// callAllocRounds more rounds.
func (f *broadcastRounds) measure(b *testing.B) roundsMeasurement {
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
	return roundsMeasurement{roundSummary: summarize(results), elapsed: elapsed, before: before, after: after, callAllocs: callAllocs}
}

// roundSummary is what the broadcast benchmarks report of their rounds.
type roundSummary struct {
	lastP50, lastP99, lastMean, firstP50, callMean time.Duration
	targetP50                                      []time.Duration // perTarget only
}

func summarize(rs []roundResult) roundSummary {
	var s roundSummary
	if len(rs) == 0 {
		return s
	}
	last := make([]time.Duration, len(rs))
	first := make([]time.Duration, len(rs))
	calls := make([]time.Duration, len(rs))
	for i, r := range rs {
		last[i], first[i], calls[i] = r.last, r.first, r.call
	}
	s.lastMean, s.callMean = mean(last), mean(calls)
	s.lastP50, s.lastP99 = percentile(last, 50), percentile(last, 99)
	s.firstP50 = percentile(first, 50)
	for t := range rs[0].lasts {
		per := make([]time.Duration, len(rs))
		for i, r := range rs {
			per[i] = r.lasts[t]
		}
		s.targetP50 = append(s.targetP50, percentile(per, 50))
	}
	return s
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

func mean(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range xs {
		sum += x
	}
	return sum / time.Duration(len(xs))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

// heldFixture keeps the fixture of the sub-benchmark running now (a server's
// connections and the client process holding them) across the runs the
// testing package makes of that sub-benchmark (b.N=1, then the real b.N):
// opening thousands of connections takes longer than the measurement. It
// closes the fixture when a sub-benchmark with another key starts, and at the
// end of the benchmark.
type heldFixture[F interface{ close() error }] struct {
	key  string
	cur  F
	held bool
}

// holdFixtures returns an empty holder whose fixture is closed when b ends.
func holdFixtures[F interface{ close() error }](b *testing.B) *heldFixture[F] {
	h := &heldFixture[F]{}
	b.Cleanup(func() {
		if h.held {
			if err := h.cur.close(); err != nil {
				b.Error(err)
			}
		}
	})
	return h
}

// get returns the fixture held under key, or closes the one held and opens
// another with open.
func (h *heldFixture[F]) get(b *testing.B, key string, open func() (F, error)) F {
	if h.held && h.key == key {
		return h.cur
	}
	if h.held {
		err := h.cur.close()
		h.held = false
		if err != nil {
			b.Fatal(err)
		}
	}
	f, err := open()
	if err != nil {
		b.Fatal(err)
	}
	h.key, h.cur, h.held = key, f, true
	return f
}
