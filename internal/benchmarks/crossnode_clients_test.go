package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// envXNHelper and envXNTargets tell a re-executed test binary to act as the
// client process of BenchmarkCrossNodeBroadcast. envXNTargets lists
// "<count>@<url>" entries, comma separated: open count connections to url.
const (
	envXNHelper  = "WSACTOR_BENCH_XN_HELPER"
	envXNTargets = "WSACTOR_BENCH_XN_TARGETS"
)

// xnClientTarget is count connections to one node's group route.
type xnClientTarget struct {
	url string
	n   int
}

// xnClients is BenchmarkCrossNodeBroadcast's client process, seen from the
// benchmark process. The clients live in another process so that the
// benchmark process's allocation and CPU counters are the two nodes' alone.
//
// Protocol on the client process's stdout, one line each:
//
//	ready                                  every connection is open and reading
//	round <seq> <first> <last> <l0> <l1>…  every client has read message <seq>;
//	                                       first and last arrival overall and
//	                                       the last arrival of each target, in
//	                                       Unix nanoseconds
//	error <text>                           a client failed (lost, reordered or
//	                                       corrupted message, read error)
//
// Arrival times are wall-clock readings taken right after Read returned; the
// benchmark process compares them with its own, taken just before the
// broadcast. Both processes read the same kernel clock.
type xnClients struct {
	proc *helperProcess
	r    *bufio.Reader
	rep  xnReport
}

// xnReport is one round line. lasts is reused from round to round.
type xnReport struct {
	first, last int64
	lasts       []int64
}

func startXNClients(targets []xnClientTarget) (*xnClients, error) {
	spec := make([]string, len(targets))
	for i, t := range targets {
		spec[i] = strconv.Itoa(t.n) + "@" + t.url
	}
	h, r, err := startHelperProcess("TestHelperCrossNodeClients", "wsactor-bench-crossnode-*.log",
		envXNHelper+"=1", envXNTargets+"="+strings.Join(spec, ","))
	if err != nil {
		return nil, err
	}
	return &xnClients{proc: h, r: r, rep: xnReport{lasts: make([]int64, len(targets))}}, nil
}

// next waits for the line reporting message seq read by every client. It
// allocates nothing on success; the report's lasts are overwritten by the
// next call.
func (c *xnClients) next(seq uint64) (xnReport, error) {
	_ = c.proc.stdout.SetReadDeadline(time.Now().Add(xnRoundLimit))
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return xnReport{}, fmt.Errorf("waiting for message %d to reach every client: %w", seq, err)
	}
	b, ok := bytes.CutPrefix(line, []byte("round "))
	if !ok {
		return xnReport{}, fmt.Errorf("clients, waiting for message %d: %s", seq, strings.TrimSpace(string(line)))
	}
	var fields [3]uint64
	for i := range fields {
		if fields[i], b, ok = xnCutUint(b); !ok {
			return xnReport{}, fmt.Errorf("malformed line from clients: %q", line)
		}
	}
	for i := range c.rep.lasts {
		var v uint64
		if v, b, ok = xnCutUint(b); !ok {
			return xnReport{}, fmt.Errorf("malformed line from clients: %q", line)
		}
		c.rep.lasts[i] = int64(v)
	}
	c.rep.first, c.rep.last = int64(fields[1]), int64(fields[2])
	if len(b) != 0 || c.rep.first > c.rep.last || c.rep.first <= 0 {
		return xnReport{}, fmt.Errorf("malformed line from clients: %q", line)
	}
	if fields[0] != seq {
		return xnReport{}, fmt.Errorf("clients reported message %d, want %d", fields[0], seq)
	}
	return c.rep, nil
}

// xnCutUint parses a decimal number ended by a space or a newline.
func xnCutUint(b []byte) (v uint64, rest []byte, ok bool) {
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

func (c *xnClients) stop() error { return c.proc.stop() }

// xnTracker collects the arrivals of the current broadcast in the client
// process. Broadcasts do not overlap (the benchmark waits for each round line
// before the next), so one set of counters serves every round.
type xnTracker struct {
	n       uint64
	arrived atomic.Uint64
	first   atomic.Int64
	last    atomic.Int64
	lasts   []atomic.Int64 // per target

	failed  sync.Once
	outMu   sync.Mutex
	out     io.Writer
	closing atomic.Bool // stdin closed: read errors are expected
}

func xnMin(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v >= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func xnMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// arrive records that a client of target t read message seq at now (Unix
// ns); the last arrival of a round reports the round.
func (t *xnTracker) arrive(target int, seq uint64, now int64) {
	xnMin(&t.first, now)
	xnMax(&t.last, now)
	xnMax(&t.lasts[target], now)
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

func (t *xnTracker) fail(err error) {
	if t.closing.Load() {
		return
	}
	t.failed.Do(func() { t.println("error " + strings.ReplaceAll(err.Error(), "\n", " ")) })
}

func (t *xnTracker) println(s string) {
	t.outMu.Lock()
	defer t.outMu.Unlock()
	_, _ = io.WriteString(t.out, s+"\n")
}

// read is one client's reader: it reads every message in order, checks it,
// and records when it arrived.
func (t *xnTracker) read(target, i int, c *websocket.Conn) {
	for seq := uint64(0); ; seq++ {
		typ, b, err := c.Read(context.Background()) // ends when the connection is closed
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

func parseXNTargets(s string) ([]xnClientTarget, error) {
	var targets []xnClientTarget
	for entry := range strings.SplitSeq(s, ",") {
		count, url, ok := strings.Cut(entry, "@")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n <= 0 || url == "" {
			return nil, fmt.Errorf("bad %s entry %q", envXNTargets, entry)
		}
		targets = append(targets, xnClientTarget{url: url, n: n})
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
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns := make([][]*websocket.Conn, len(targets))
	total := 0
	for i, tg := range targets {
		if conns[i], err = dialMany(ctx, tg.url, tg.n, false, nil); err != nil {
			for _, cs := range conns[:i] {
				closeAll(cs)
			}
			fmt.Printf("error open %d connections to %s: %v\n", tg.n, tg.url, err)
			t.Fatalf("open %d connections to %s: %v", tg.n, tg.url, err)
		}
		total += tg.n
	}
	tracker := &xnTracker{n: uint64(total), lasts: make([]atomic.Int64, len(targets)), out: os.Stdout}
	tracker.first.Store(math.MaxInt64)
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
