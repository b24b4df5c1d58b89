package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestParseCentrifugoFrame covers the frames of Centrifugo's JSON protocol
// that the clients meet: replies (with and without an error), pings,
// publications carrying a broadcast stamp, other pushes, and several
// replies in one frame. It needs no Centrifugo binary.
func TestParseCentrifugoFrame(t *testing.T) {
	pub := `{"push":{"channel":"bench","pub":{"data":` + string(broadcastPayload(42, 120)) + `}}}`
	frame := strings.Join([]string{
		`{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`,
		`{}`,
		pub,
		`{"id":2,"error":{"code":103,"message":"permission denied"}}`,
		`{"push":{"channel":"bench","join":{"info":{"client":"c2"}}}}`,
		`{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`,
		"",
	}, "\n")
	msgs, err := parseCentrifugoFrame([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	want := []centrifugoMsg{
		{kind: cfReply, id: 1},
		{kind: cfPing},
		{kind: cfPublication, seq: 42},
		{kind: cfReply, id: 2, err: "103 permission denied"},
		{kind: cfOther},
		{kind: cfDisconnect},
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d: %+v", len(msgs), len(want), msgs)
	}
	for i, w := range want {
		m := msgs[i]
		if m.kind != w.kind || m.id != w.id || m.seq != w.seq || (w.err != "" && m.err != w.err) {
			t.Errorf("message %d: got %+v, want %+v", i, m, w)
		}
	}
	if age := time.Now().UnixNano() - msgs[2].t; age < 0 || age > int64(time.Minute) {
		t.Errorf("publication stamp %d is %v from now", msgs[2].t, time.Duration(age))
	}
	for _, bad := range []string{`{"push":{"channel":"bench","pub":{"data":{"x":1}}}}`, `{"id":`, `not json`} {
		if _, err := parseCentrifugoFrame([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestBroadcastPayload(t *testing.T) {
	for _, size := range []int{1, 64, 256, 4096} {
		b := broadcastPayload(7, size)
		if size >= 64 && len(b) != size {
			t.Errorf("size %d: got %d bytes", size, len(b))
		}
		seq, ts, ok := scanStamp(b)
		if !ok || seq != 7 || ts <= 0 {
			t.Errorf("size %d: scanStamp(%s) = %d, %d, %v", size, b, seq, ts, ok)
		}
	}
	if _, _, ok := scanStamp([]byte(`{"seq":1}`)); ok {
		t.Error("a message without \"t\" was accepted")
	}
}

func TestParsePromText(t *testing.T) {
	m := parsePromText(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 3012
centrifugo_node_num_clients 3000
centrifugo_node_num_subscriptions{channel="a"} 2
centrifugo_node_num_subscriptions{channel="b"} 3
go_memstats_heap_inuse_bytes 1.2345e+07
`))
	for name, want := range map[string]float64{
		"go_goroutines": 3012, "centrifugo_node_num_clients": 3000,
		"centrifugo_node_num_subscriptions": 5, "go_memstats_heap_inuse_bytes": 12345000,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

// TestRunCentrifugo runs the broadcast scenario against a real Centrifugo
// next to wsactor, when the binary is installed (install-centrifugo.sh);
// it is not required in CI.
func TestRunCentrifugo(t *testing.T) {
	if _, err := findCentrifugo(""); err != nil {
		t.Skipf("SKIPPED, Centrifugo is not installed: %v", err)
	}
	cfg := broadcastTestConfig(t)
	cfg.Kinds = []string{"wsactor", "centrifugo"}
	rep, _ := runForTest(t, cfg)
	for _, r := range rep.Rounds {
		checkBroadcastRound(t, r, cfg)
	}
}

// TestBroadcastTrackerCountsOnlyOpenConnections checks that a broadcast is
// reported once every connection still open has it: a connection that
// dropped must not hold up every later broadcast until its timeout.
func TestBroadcastTrackerCountsOnlyOpenConnections(t *testing.T) {
	bt := newBroadcastTracker(3)
	bt.conns.Store(3)
	bt.arrived(1, 5)
	bt.arrived(1, 9)
	select {
	case seq := <-bt.done:
		t.Fatalf("broadcast %d reported with 2 of 3 connections", seq)
	default:
	}
	bt.dropped() // the third connection ends without it
	if seq := <-bt.done; seq != 1 {
		t.Fatalf("reported %d, want 1", seq)
	}
	bt.arrived(2, 3)
	bt.arrived(2, 4)
	if seq := <-bt.done; seq != 2 || bt.slots[2].last.Load() != 4 || bt.slots[2].first.Load() != 3 {
		t.Fatalf("reported %d (last %d, first %d), want 2 (4, 3)", seq, bt.slots[2].last.Load(), bt.slots[2].first.Load())
	}
	if bt.arrived(4, 1) || bt.arrived(0, 1) {
		t.Error("a broadcast outside 1..3 was accepted")
	}
}

// TestProcCPUResolvesLessThanATick checks that another process's CPU time
// is read finer than /proc/PID/stat's 10 ms ticks, which made a short
// broadcast's CPU read as 0: work of a few milliseconds shows.
func TestProcCPUResolvesLessThanATick(t *testing.T) {
	pid := os.Getpid()
	if _, ok := procSchedCPU(pid); !ok {
		t.Skip("SKIPPED: this kernel keeps no schedstat; procCPU falls back to 10 ms ticks")
	}
	before := procCPU(pid)
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for procCPU(pid)-before < time.Millisecond && time.Now().Before(deadline) {
		for i := range 100_000 {
			x += i
		}
	}
	got := procCPU(pid) - before
	if got < time.Millisecond {
		t.Fatalf("CPU time after spinning: %v (%d)", got, x)
	}
	if got%(10*time.Millisecond) == 0 {
		t.Fatalf("CPU time %v is a whole number of 10 ms ticks: not read from schedstat", got)
	}
}
