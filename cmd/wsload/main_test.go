package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// envAsMain makes the test binary act as wsload: the orchestrator under test
// starts it as its server and client processes.
const envAsMain = "WSLOAD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsMain) == "1" {
		os.Exit(wsload(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunQuick runs the orchestrator in quick mode against both servers, with
// real server and client processes, and checks that the summary is sane.
func TestRunQuick(t *testing.T) {
	cfg := quickConfig(testConfig(t))
	rep, out := runForTest(t, cfg)
	for _, r := range rep.Rounds {
		checkRound(t, r, cfg)
	}
	if !strings.Contains(out, "| wsactor/bare |") {
		t.Errorf("no comparison table in the output")
	}
}

// TestRunPushModes covers the server's "push N" command and its periodic
// pushes, smaller still.
func TestRunPushModes(t *testing.T) {
	for _, mode := range []string{modePush, modeListen} {
		t.Run(mode, func(t *testing.T) {
			cfg := quickConfig(testConfig(t))
			cfg.Conns, cfg.Procs, cfg.Duration, cfg.Mode = 100, 1, time.Second, mode
			if mode == modePush {
				cfg.PushN = 3
			} else {
				cfg.PushEvery = 200 * time.Millisecond
			}
			rep, _ := runForTest(t, cfg)
			for _, r := range rep.Rounds {
				checkRound(t, r, cfg)
			}
		})
	}
}

// TestRunBroadcast runs the broadcast scenario against bare and wsactor:
// every connection in one group, broadcasts one at a time, each reaching
// every member in order.
func TestRunBroadcast(t *testing.T) {
	cfg := broadcastTestConfig(t)
	rep, out := runForTest(t, cfg)
	for _, r := range rep.Rounds {
		checkBroadcastRound(t, r, cfg)
	}
	if !strings.Contains(out, "| broadcast: last member p99, ms |") {
		t.Errorf("no broadcast rows in the table")
	}
}

func broadcastTestConfig(t *testing.T) runConfig {
	cfg := quickConfig(testConfig(t))
	cfg.Conns, cfg.Procs, cfg.Mode, cfg.Broadcasts, cfg.BroadcastTimeout = 100, 2, modeBroadcast, 5, 30*time.Second
	return cfg
}

func checkBroadcastRound(t *testing.T, r roundResult, cfg runConfig) {
	t.Helper()
	b := r.Broadcast
	if b == nil {
		t.Fatalf("%s: no broadcast result", r.Kind)
	}
	if r.Connected != cfg.Conns || r.errors() != 0 {
		t.Errorf("%s: %d of %d connected; errors: dial %d, dropped %d (codes %v), lost %d, out of order or corrupt %d",
			r.Kind, r.Connected, cfg.Conns, r.DialErrors, r.Dropped, r.CloseCodes, r.Lost, r.BadMessages)
	}
	if want := uint64(cfg.Conns * cfg.Broadcasts); b.Complete != cfg.Broadcasts || r.Received != want {
		t.Errorf("%s: %d of %d broadcasts complete, %d deliveries; want %d", r.Kind, b.Complete, cfg.Broadcasts, r.Received, want)
	}
	if b.Members != -1 && b.Members != cfg.Conns {
		t.Errorf("%s: the server broadcast to %d members, want %d", r.Kind, b.Members, cfg.Conns)
	}
	if !(b.FirstP50Ms > 0 && b.FirstP50Ms <= b.LastP50Ms && b.LastP50Ms <= b.LastP99Ms) || b.DeliveriesPS <= 0 || b.CPUPerMember <= 0 {
		t.Errorf("%s: implausible figures %+v", r.Kind, *b)
	}
	// One read loop per idle connection; Centrifugo keeps a writer
	// goroutine too.
	want := 1.0
	if r.Kind == "centrifugo" {
		want = 2
	}
	if g := r.IdleGoroutinesPerConn; g < want-0.1 || g > want+0.2 {
		t.Errorf("%s: %.2f goroutines per idle connection, want about %.0f", r.Kind, g, want)
	}
	if r.IdleRSSPerConn <= 0 {
		t.Errorf("%s: %.0f B RSS per idle connection", r.Kind, r.IdleRSSPerConn)
	}
}

func testConfig(t *testing.T) runConfig {
	return runConfig{
		Kinds:   []string{"bare", "wsactor"},
		MsgSize: 256,
		Mode:    modeEcho,
		PushN:   1,
		Sources: []string{"127.0.0.2", "127.0.0.3"},
		Exe:     os.Args[0],
		Env:     append(os.Environ(), envAsMain+"=1"),
		LogDir:  t.TempDir(),
	}
}

func runForTest(t *testing.T, cfg runConfig) (*report, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	rep, err := runLoad(ctx, cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != len(cfg.Kinds) {
		t.Fatalf("got %d results, want one per kind", len(rep.Rounds))
	}
	return rep, out.String()
}

func checkRound(t *testing.T, r roundResult, cfg runConfig) {
	t.Helper()
	if r.Connected != cfg.Conns || r.Server.Idle.Open != int64(cfg.Conns) {
		t.Errorf("%s: %d connected, server saw %d open; want %d", r.Kind, r.Connected, r.Server.Idle.Open, cfg.Conns)
	}
	if len(r.Clients) != cfg.Procs {
		t.Errorf("%s: %d client summaries, want %d", r.Kind, len(r.Clients), cfg.Procs)
	}
	if n := r.errors(); n != 0 {
		t.Errorf("%s: %d errors: dial %d, dropped %d (codes %v), lost %d, corrupt %d, write %d",
			r.Kind, n, r.DialErrors, r.Dropped, r.CloseCodes, r.Lost, r.BadMessages, r.WriteErrors)
	}
	// Each connection sends cfg.Rate messages a second, or receives a push
	// every cfg.PushEvery: a loaded machine may fall behind, never by 4×.
	want := uint64(float64(cfg.Conns) * cfg.Rate * cfg.Duration.Seconds() / 4)
	switch cfg.Mode {
	case modeEcho:
		if r.Received < want || r.Received != r.Sent {
			t.Errorf("%s: sent %d, received %d; want at least %d, all back", r.Kind, r.Sent, r.Received, want)
		}
	case modePush:
		if r.Sent < want || r.Received != r.Sent*uint64(cfg.PushN) {
			t.Errorf("%s: sent %d push commands, received %d pushes; want at least %d commands, %d pushes each", r.Kind, r.Sent, r.Received, want, cfg.PushN)
		}
	case modeListen:
		want = uint64(float64(cfg.Conns) * cfg.Duration.Seconds() / cfg.PushEvery.Seconds() / 4)
		if r.Sent != 0 || r.Received < want {
			t.Errorf("%s: sent %d, received %d pushes; want none sent, at least %d received", r.Kind, r.Sent, r.Received, want)
		}
	}
	l := r.Latency
	if !(l.P50Us > 0 && l.P50Us <= l.P99Us && l.P99Us <= l.MaxUs) || l.Count != r.Received {
		t.Errorf("%s: latency %+v for %d messages", r.Kind, l, r.Received)
	}
	if r.ThroughputPerSec <= 0 || r.ServerCores <= 0 {
		t.Errorf("%s: throughput %.0f/s, server CPU %.2f cores", r.Kind, r.ThroughputPerSec, r.ServerCores)
	}
	// One read loop per idle connection on both servers.
	if g := r.IdleGoroutinesPerConn; g < 0.9 || g > 1.2 {
		t.Errorf("%s: %.2f goroutines per idle connection, want about 1", r.Kind, g)
	}
	if r.IdleHeapStackPerConn <= 0 {
		t.Errorf("%s: %.0f B per idle connection", r.Kind, r.IdleHeapStackPerConn)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100_000; v++ {
		h.record(v * 1000) // 1 µs .. 100 ms, uniform
	}
	s := h.snapshot()
	for _, tc := range []struct{ q, want float64 }{{0.5, 50_000}, {0.9, 90_000}, {0.99, 99_000}} {
		got := s.quantile(tc.q) / 1e3
		if got < tc.want*0.99 || got > tc.want*1.01 {
			t.Errorf("quantile(%v) = %.0f µs, want %.0f ± 1%%", tc.q, got, tc.want)
		}
	}
	if m := s.merge(s); m.Count != 2*s.Count || m.quantile(0.5) != s.quantile(0.5) {
		t.Errorf("merge with itself: count %d, p50 %v; want %d, %v", m.Count, m.quantile(0.5), 2*s.Count, s.quantile(0.5))
	}
	for i := range numBuckets {
		lo, hi := bucketBounds(i)
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d: bounds [%d, %d] map to %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := wsload([]string{"serve", "-kind", "nope"}, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Errorf("exit code %d, want 1; stderr: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := wsload([]string{"run", "-conns", "10000", "-procs", "1"}, strings.NewReader(""), &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "per client process") {
		t.Errorf("10,000 connections in one client process: exit code %d, stderr: %s", code, errOut.String())
	}
}
