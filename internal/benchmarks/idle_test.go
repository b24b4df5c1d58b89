package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Environment of BenchmarkIdleMemory and of its client process.
const (
	// envIdleConns sets the number of idle connections (default 5000).
	envIdleConns = "WSACTOR_BENCH_IDLE_CONNS"
	// envHelper tells a re-executed test binary to act as the client
	// process (with envHelperURL and envHelperConns).
	envHelper = "WSACTOR_BENCH_HELPER"

	// envIdleHeapProfile names a directory: BenchmarkIdleMemory writes the
	// server's heap profile there (bare.heap, wsactor.heap) while the
	// connections are open. Combine with -memprofilerate=1.
	envIdleHeapProfile = "WSACTOR_BENCH_IDLE_HEAPPROFILE"

	defaultIdleConns = 5000
)

// memSample is the server process's memory after a full collection.
type memSample struct {
	heapInuse  uint64 // bytes in in-use heap spans
	heapLive   uint64 // bytes of live heap objects
	stackInuse uint64 // bytes of goroutine stacks
	rss        uint64 // resident set size
	goroutines int
}

func sampleMemory() (memSample, error) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := readRSS()
	return memSample{
		heapInuse:  ms.HeapInuse,
		heapLive:   ms.HeapAlloc,
		stackInuse: ms.StackInuse,
		rss:        rss,
		goroutines: runtime.NumGoroutine(),
	}, err
}

// readRSS returns VmRSS from /proc/self/status.
func readRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// idleResult is the server-side cost of one idle connection.
type idleResult struct {
	heap, live, stack, rss float64 // bytes per connection
	goroutines             float64 // per connection
	before, after          memSample
}

// report reports r as BenchmarkIdleMemory's metrics.
func (r idleResult) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.total(), "B/conn")
	b.ReportMetric(r.heap, "heap-B/conn")
	b.ReportMetric(r.live, "live-B/conn")
	b.ReportMetric(r.stack, "stack-B/conn")
	b.ReportMetric(r.rss, "rss-B/conn")
	b.ReportMetric(r.goroutines, "goroutines/conn")
}

// total is what the target compares: heap spans plus stacks.
func (r idleResult) total() float64 { return r.heap + r.stack }

// measureIdle starts a server of kind k, has a separate client process open n
// connections to it (each echoing one message, then idling), and measures
// the server process's growth once all n are established.
func measureIdle(k kind, n int) (res idleResult, err error) {
	return measureIdleOf(string(k), startServer(k), n, 0)
}

// idlePing is the ping interval of BenchmarkIdleMemory's
// server=wsactor-after-ping.
const idlePing = time.Second

// measureIdleOf is measureIdle on the server t, named name, measured quiet
// longer than usual after the clients' echo.
func measureIdleOf(name string, t target, n int, quiet time.Duration) (res idleResult, err error) {
	defer func() { err = errors.Join(err, t.Close()) }()

	// Let the goroutines that earlier measurements' bursts left behind end
	// (see idleLinger) before counting what this one adds.
	time.Sleep(idleLinger)
	before, err := sampleMemory()
	if err != nil {
		return res, err
	}
	helper, err := startIdleClients(t.URL(), n)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, helper.stop()) }()

	if err := waitUntil("the server to hold every connection", func() bool { return t.Open() == int64(n) }); err != nil {
		return res, err
	}
	// The echo proved every connection's read loop is running; let what the
	// echo started finish: wsactor keeps the mailbox workers and flushers
	// that ran it for a second (idleLinger), then they end. A measurement's
	// settling time, like wsload's -settle, not a wait for correctness.
	time.Sleep(idleLinger + quiet)
	if err := waitSettled(before.goroutines + n); err != nil {
		return res, err
	}
	after, err := sampleMemory()
	if err != nil {
		return res, err
	}
	if dir := os.Getenv(envIdleHeapProfile); dir != "" {
		if err := writeHeapProfile(filepath.Join(dir, name+".heap")); err != nil {
			return res, err
		}
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return idleResult{
		heap:       per(after.heapInuse, before.heapInuse),
		live:       per(after.heapLive, before.heapLive),
		stack:      per(after.stackInuse, before.stackInuse),
		rss:        per(after.rss, before.rss),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		before:     before,
		after:      after,
	}, nil
}

// writeHeapProfile writes the heap profile as of the last collection.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
}

// idleLinger outlasts the second for which wsactor keeps the goroutines
// that ran a burst of messages (its mailbox workers and flushers).
const idleLinger = 1500 * time.Millisecond

// waitSettled waits until the goroutine count stops moving, having reached
// at least floor (one reader per connection on both servers).
func waitSettled(floor int) error {
	deadline := time.Now().Add(waitLimit)
	last, stable := -1, 0
	for stable < 5 {
		if time.Now().After(deadline) {
			return fmt.Errorf("goroutine count did not settle (now %d)", runtime.NumGoroutine())
		}
		time.Sleep(20 * time.Millisecond)
		g := runtime.NumGoroutine()
		if g == last && g >= floor {
			stable++
		} else {
			last, stable = g, 0
		}
	}
	return nil
}

// startIdleClients starts BenchmarkIdleMemory's client process,
// TestHelperClientProcess, which opens n connections to url, and waits until
// it says they are all ready.
func startIdleClients(url string, n int) (*helperProcess, error) {
	h, _, err := startHelperProcess("TestHelperClientProcess", "wsactor-bench-client-*.log",
		envHelper+"=1", envHelperURL+"="+url, envHelperConns+"="+strconv.Itoa(n))
	return h, err
}

// TestHelperClientProcess is not a test: BenchmarkIdleMemory runs the test
// binary again with envHelper set so that its clients live in another
// process and cost the measured server nothing. It opens the connections,
// checks each with one echo, prints "ready" and keeps them open (answering
// pings) until its stdin closes.
func TestHelperClientProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("client process of BenchmarkIdleMemory; runs only when re-executed by it")
	}
	url, n := helperURLConns(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	hello := make([]byte, payloadSize)
	fill(hello, 0)
	conns, err := dialMany(ctx, url, n, false, func(c *websocket.Conn) error {
		if err := echoOnce(ctx, c, hello); err != nil {
			return err
		}
		c.CloseRead(context.Background()) // answer pings while idle
		return nil
	})
	if err != nil {
		t.Fatalf("open %d connections: %v", n, err)
	}
	fmt.Println("ready")
	waitStdinClosed()
	closeAll(conns)
}

// idleConns returns the number of idle connections to measure.
func idleConns(tb testing.TB) int {
	s := os.Getenv(envIdleConns)
	if s == "" {
		return defaultIdleConns
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", envIdleConns, s)
	}
	return n
}

// BenchmarkIdleMemory measures the server process's memory per idle
// connection, with the clients in another process. Each run measures once
// whatever b.N is; use -benchtime=1x. B/conn (heap spans + stacks) is the
// figure the target compares.
func BenchmarkIdleMemory(b *testing.B) {
	n := idleConns(b)
	for _, k := range kinds {
		b.Run("server="+string(k), func(b *testing.B) {
			res, err := measureIdle(k, n)
			if err != nil {
				b.Fatal(err)
			}
			res.report(b)
		})
	}
	// The same after a heartbeat: the pong that answers it is when a read
	// loop that has read a message hands over to a goroutine with the
	// minimum stack (see transport's Conn.readLoop). By default that is
	// one 30 s ping interval after the client went quiet; here 1 s.
	b.Run("server=wsactor-after-ping", func(b *testing.B) {
		res, err := measureIdleOf("wsactor-after-ping", startActorPinging(idlePing), n, 2*idlePing)
		if err != nil {
			b.Fatal(err)
		}
		res.report(b)
	})
}
