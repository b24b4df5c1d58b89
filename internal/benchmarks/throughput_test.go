package benchmarks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	// parallelConns is the number of client connections of
	// BenchmarkEchoParallel and BenchmarkPush.
	parallelConns = 50
	// pushWindow bounds the messages pushed to one connection and not yet
	// read by its client. It keeps wsactor's default send queue (256
	// messages, closing on overflow) from overflowing, and the bare server
	// obeys it too so that both producers do the same work.
	pushWindow = 128
)

// clients opens n registered client connections to t and closes them when
// the benchmark or test ends (before the server stops).
func clients(tb testing.TB, t target, n int) []*websocket.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns, err := dialMany(ctx, t.URL(), n, true, nil)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { closeAll(conns) })
	return conns
}

// fill writes message seq into b: the sequence number, then bytes derived
// from it, so a reader can tell a lost, repeated or corrupted message.
func fill(b []byte, seq uint64) {
	binary.BigEndian.PutUint64(b, seq)
	for j := 8; j < len(b); j++ {
		b[j] = byte(seq) + byte(j)
	}
}

func checkMessage(typ websocket.MessageType, b []byte, seq uint64) error {
	if typ != websocket.MessageBinary || len(b) != payloadSize {
		return fmt.Errorf("message %d: got %v of %d bytes, want binary of %d", seq, typ, len(b), payloadSize)
	}
	if got := binary.BigEndian.Uint64(b); got != seq {
		return fmt.Errorf("got message %d, want %d (lost or out of order)", got, seq)
	}
	if last := len(b) - 1; b[last] != byte(seq)+byte(last) {
		return fmt.Errorf("message %d: corrupted payload", seq)
	}
	return nil
}

// contexts returns n independent contexts, each bounded by waitLimit, and a
// function that cancels them all. Goroutines that read and write in a hot
// loop each get their own: a context shared by many loops makes them contend
// on its mutex (coder/websocket registers every Read and Write with it).
func contexts(n int) ([]context.Context, func()) {
	ctxs := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	for i := range ctxs {
		ctxs[i], cancels[i] = context.WithTimeout(context.Background(), waitLimit)
	}
	return ctxs, func() {
		for _, cancel := range cancels {
			cancel()
		}
	}
}

// echoRun performs n round trips spread over conns, each a write of a
// 256-byte binary message followed by the read of its echo, and returns how
// long they took.
func echoRun(conns []*websocket.Conn, n int) (time.Duration, error) {
	ctxs, cancel := contexts(len(conns))
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			msg := make([]byte, payloadSize)
			for {
				seq := next.Add(1) - 1
				if seq >= int64(n) {
					return
				}
				fill(msg, uint64(seq))
				if err := echoOnce(ctxs[i], c, msg); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("round trip %d: %w", seq, err); cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// BenchmarkEcho measures one round trip on one connection: the client writes
// a 256-byte binary message and waits for its echo.
func BenchmarkEcho(b *testing.B) { benchEcho(b, 1) }

// BenchmarkEchoParallel runs round trips on 50 connections at once, each
// client waiting for its echo before the next write; ns/op is wall time per
// round trip across all of them.
func BenchmarkEchoParallel(b *testing.B) { benchEcho(b, parallelConns) }

// benchEcho is the body of both echo benchmarks: b.N round trips spread over
// n connections, on each server.
func benchEcho(b *testing.B, n int) {
	for _, k := range kinds {
		b.Run("server="+string(k), func(b *testing.B) {
			conns := clients(b, startTarget(b, k), n)
			before := readCounters()
			b.ResetTimer()
			d, err := echoRun(conns, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/d.Seconds(), "msgs/s")
			reportPerMessage(b, before, readCounters(), b.N)
		})
	}
}

// pushRun pushes perConn 256-byte binary messages to each of conns, one
// producer goroutine per connection, and returns how long it took until
// every client had read every message. reuse says whether the producer may
// reuse its buffer (the bare server writes synchronously) or must allocate a
// message per push (wsactor queues the slice, which must not change after).
func pushRun(t target, conns []*websocket.Conn, perConn int, path pushPath) (time.Duration, error) {
	pushers := make([]func([]byte) error, len(conns))
	for i := range conns {
		p, err := t.Pusher(i, path)
		if err != nil {
			return 0, err
		}
		pushers[i] = p
	}
	reuse := path == pushDirect

	readCtxs, cancelReads := contexts(len(conns))
	defer cancelReads()
	pushCtxs, cancelPushes := contexts(len(conns))
	defer cancelPushes()
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err; cancelReads(); cancelPushes() }) }
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		window := make(chan struct{}, pushWindow)
		wg.Go(func() { // client: read every message, then return its window slot
			for seq := range uint64(perConn) {
				typ, b, err := c.Read(readCtxs[i])
				if err == nil {
					err = checkMessage(typ, b, seq)
				}
				if err != nil {
					fail(fmt.Errorf("client %d: %w", i, err))
					return
				}
				<-window
			}
		})
		wg.Go(func() { // producer
			buf := make([]byte, payloadSize)
			for seq := range uint64(perConn) {
				select {
				case window <- struct{}{}:
				case <-pushCtxs[i].Done():
					fail(fmt.Errorf("push to connection %d: %w", i, pushCtxs[i].Err()))
					return
				}
				if !reuse {
					buf = make([]byte, payloadSize)
				}
				fill(buf, seq)
				if err := pushers[i](buf); err != nil {
					fail(fmt.Errorf("push %d to connection %d: %w", seq, i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// BenchmarkPush measures server→client throughput: b.N messages of 256 bytes
// pushed to each of 50 connections. bare writes from a goroutine per
// connection straight to the socket; wsactor posts by connection ID through
// the mailbox (Server.Post); wsactor-conn-send calls Conn.Send, which queues
// for the socket without the mailbox, as a handler does.
func BenchmarkPush(b *testing.B) {
	cases := []struct {
		name string
		kind kind
		path pushPath
	}{
		{"bare", bare, pushDirect},
		{"wsactor", actor, pushPost},
		{"wsactor-conn-send", actor, pushConnSend},
	}
	for _, tc := range cases {
		b.Run("server="+tc.name, func(b *testing.B) {
			t := startTarget(b, tc.kind)
			conns := clients(b, t, parallelConns)
			if err := waitRegistered(t, len(conns), tc.path); err != nil {
				b.Fatal(err)
			}
			before := readCounters()
			b.ResetTimer()
			d, err := pushRun(t, conns, b.N, tc.path)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*len(conns))/d.Seconds(), "msgs/s")
			reportPerMessage(b, before, readCounters(), b.N*len(conns))
		})
	}
}

// waitRegistered waits until the server has registered connections 0..n-1:
// wsactor does so in OnOpen, which may run just after the client's dial
// returns.
func waitRegistered(t target, n int, path pushPath) error {
	var last error
	err := waitUntil("connections to register", func() bool {
		for i := range n {
			if _, last = t.Pusher(i, path); last != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

// runtimeCounters are process-wide: they include the in-process clients,
// which do the same work against both servers, so differences between the
// servers are the servers' own.
type runtimeCounters struct {
	mallocs uint64        // heap allocations
	spawned uint64        // goroutines created
	cpu     time.Duration // user + system CPU time of the process
}

func readCounters() runtimeCounters {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	var spawned uint64
	if s[0].Value.Kind() == metrics.KindUint64 {
		spawned = s[0].Value.Uint64()
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return runtimeCounters{mallocs: ms.Mallocs, spawned: spawned, cpu: cpu}
}

// reportPerMessage reports CPU time, allocations and goroutines created per
// message (a round trip for the echo benchmarks). CPU time per message is
// the figure least disturbed by other load on the machine.
func reportPerMessage(b *testing.B, before, after runtimeCounters, msgs int) {
	b.ReportMetric(float64(after.cpu-before.cpu)/float64(msgs), "cpu-ns/msg")
	b.ReportMetric(float64(after.mallocs-before.mallocs)/float64(msgs), "allocs/msg")
	b.ReportMetric(float64(after.spawned-before.spawned)/float64(msgs), "spawns/msg")
}
