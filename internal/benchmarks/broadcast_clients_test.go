package benchmarks

import (
	"bufio"
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

// envBroadcastHelper tells a re-executed test binary to act as the client
// process of BenchmarkBroadcast (with envHelperURL and envHelperConns).
const envBroadcastHelper = "WSACTOR_BENCH_BROADCAST_HELPER"

// broadcastClients is BenchmarkBroadcast's client process seen from the
// server process. The clients live in another process so that the server
// process's allocation and CPU counters are the server's alone.
//
// Protocol on the client process's stdout, one line each:
//
//	ready                          all connections are open and reading
//	round <seq> <first> <last>     every client has read message <seq>;
//	                               <first> and <last> are the earliest and
//	                               latest arrival, Unix nanoseconds
//	error <text>                   a client failed (lost, reordered or
//	                               corrupted message, read error)
//
// Arrival times are wall-clock readings (CLOCK_REALTIME) taken in the client
// process right after Read returned; the server compares them with its own
// reading taken just before the broadcast. Both processes read the same
// kernel clock.
type broadcastClients struct {
	proc *helperProcess
	r    *bufio.Reader
}

// startBroadcastClients re-executes the test binary as
// TestHelperBroadcastClients, which opens n connections to url, and waits
// until it says they are ready.
func startBroadcastClients(url string, n int) (*broadcastClients, error) {
	h, r, err := startHelperProcess("TestHelperBroadcastClients", "wsactor-bench-broadcast-*.log",
		envBroadcastHelper+"=1", envHelperURL+"="+url, envHelperConns+"="+strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	return &broadcastClients{proc: h, r: r}, nil
}

// next waits for the line that reports message seq delivered to every
// client and returns its first and last arrival times (Unix nanoseconds).
// It allocates nothing on success, so as not to disturb the server
// process's allocation count.
func (bc *broadcastClients) next(seq uint64) (first, last int64, err error) {
	_ = bc.proc.stdout.SetReadDeadline(time.Now().Add(broadcastRoundLimit))
	line, err := bc.r.ReadSlice('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("waiting for message %d to reach every client: %w", seq, err)
	}
	rest, ok := cutPrefix(line, "round ")
	if !ok {
		return 0, 0, fmt.Errorf("clients, waiting for message %d: %s", seq, strings.TrimSpace(string(line)))
	}
	var got uint64
	got, rest, ok = cutUint(rest)
	if ok {
		var f, l uint64
		if f, rest, ok = cutUint(rest); ok {
			if l, rest, ok = cutUint(rest); ok && len(rest) == 0 {
				first, last = int64(f), int64(l)
			}
		}
	}
	if !ok || first > last || first <= 0 {
		return 0, 0, fmt.Errorf("malformed line from clients: %q", line)
	}
	if got != seq {
		return 0, 0, fmt.Errorf("clients reported message %d, want %d", got, seq)
	}
	return first, last, nil
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
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

func (bc *broadcastClients) stop() error { return bc.proc.stop() }

// roundTracker collects the arrivals of the current broadcast in the client
// process. Broadcasts do not overlap (the server waits for each round line
// before the next), so one set of counters serves every round.
type roundTracker struct {
	n       uint64
	arrived atomic.Uint64 // arrivals so far, all rounds
	first   atomic.Int64  // earliest arrival of this round, Unix ns
	last    atomic.Int64  // latest arrival of this round, Unix ns

	failed  sync.Once
	outMu   sync.Mutex
	out     io.Writer
	closing atomic.Bool // stdin closed: read errors are expected
}

func newRoundTracker(n int, out io.Writer) *roundTracker {
	t := &roundTracker{n: uint64(n), out: out}
	t.first.Store(math.MaxInt64)
	return t
}

// arrive records client's reading of message seq at now (Unix ns); the last
// arrival of a round reports it.
func (t *roundTracker) arrive(seq uint64, now int64) {
	for {
		f := t.first.Load()
		if now >= f || t.first.CompareAndSwap(f, now) {
			break
		}
	}
	for {
		l := t.last.Load()
		if now <= l || t.last.CompareAndSwap(l, now) {
			break
		}
	}
	if t.arrived.Add(1)%t.n == 0 {
		// Every client has counted this round, after updating first and
		// last; the next round cannot start until this line is out.
		first, last := t.first.Swap(math.MaxInt64), t.last.Swap(0)
		t.println(fmt.Sprintf("round %d %d %d", seq, first, last))
	}
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

// readBroadcasts is one client's reader: it reads every message in order,
// checks it, and records when it arrived.
func (t *roundTracker) readBroadcasts(i int, c *websocket.Conn) {
	for seq := uint64(0); ; seq++ {
		// context.Background: no per-read context registration, and the
		// read ends when the connection is closed.
		typ, b, err := c.Read(context.Background())
		now := time.Now().UnixNano()
		if err == nil {
			err = checkMessage(typ, b, seq)
		}
		if err != nil {
			t.fail(fmt.Errorf("client %d, message %d: %w", i, seq, err))
			return
		}
		t.arrive(seq, now)
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns, err := dialMany(ctx, url, n, false, nil)
	if err != nil {
		fmt.Printf("error open %d connections: %v\n", n, err)
		t.Fatalf("open %d connections: %v", n, err)
	}
	tracker := newRoundTracker(n, os.Stdout)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { tracker.readBroadcasts(i, c) })
	}
	tracker.println("ready")
	waitStdinClosed()
	tracker.closing.Store(true)
	closeAll(conns) // every reader's Read returns
	wg.Wait()
}
