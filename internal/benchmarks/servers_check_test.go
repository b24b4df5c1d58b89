package benchmarks

import (
	"testing"

	"github.com/coder/websocket"
)

// These tests run the benchmarks' machinery with small sizes, so that
// `go test ./...` (and -race) proves both servers echo and push correctly
// and that the harness notices lost or corrupted messages.

func TestBenchmarkServersEcho(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			conns := clients(t, startTarget(t, k), 3)
			if _, err := echoRun(conns, 60); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBenchmarkServersPush(t *testing.T) {
	for _, tc := range []struct {
		kind kind
		path pushPath
	}{{bare, pushDirect}, {actor, pushPost}, {actor, pushConnSend}} {
		t.Run(string(tc.kind)+"-"+string(tc.path), func(t *testing.T) {
			tg := startTarget(t, tc.kind)
			conns := clients(t, tg, 4)
			if err := waitRegistered(tg, len(conns), tc.path); err != nil {
				t.Fatal(err)
			}
			// More than the window, so that the producers wait for readers.
			if _, err := pushRun(tg, conns, 3*pushWindow, tc.path); err != nil {
				t.Fatal(err)
			}
			// The same connections still echo afterwards.
			if _, err := echoRun(conns, 8); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckMessageCatchesLossAndCorruption(t *testing.T) {
	b := make([]byte, payloadSize)
	fill(b, 7)
	if err := checkMessage(websocket.MessageBinary, b, 7); err != nil {
		t.Fatalf("good message refused: %v", err)
	}
	if checkMessage(websocket.MessageBinary, b, 6) == nil {
		t.Error("a repeated or reordered message was accepted")
	}
	if checkMessage(websocket.MessageBinary, b, 8) == nil {
		t.Error("a gap (lost message) was accepted")
	}
	if checkMessage(websocket.MessageText, b, 7) == nil {
		t.Error("a text message was accepted")
	}
	if checkMessage(websocket.MessageBinary, b[:payloadSize-1], 7) == nil {
		t.Error("a short message was accepted")
	}
	b[payloadSize-1]++
	if checkMessage(websocket.MessageBinary, b, 7) == nil {
		t.Error("a corrupted message was accepted")
	}
}

// TestIdleMemoryMeasurement runs BenchmarkIdleMemory's measurement with a
// few connections and checks what is structural rather than timed: the
// clients' process really opened them, and each costs the server one
// goroutine (the read loop), on either server.
func TestIdleMemoryMeasurement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	const n = 20
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			res, err := measureIdle(k, n)
			if err != nil {
				t.Fatal(err)
			}
			if res.goroutines < 0.9 || res.goroutines > 1.5 {
				t.Errorf("%.2f goroutines per idle connection, want 1 (before %d, after %d)",
					res.goroutines, res.before.goroutines, res.after.goroutines)
			}
			t.Logf("%s: %.0f B/conn (heap %.0f, stack %.0f), rss %.0f B/conn, %.2f goroutines/conn",
				k, res.total(), res.heap, res.stack, res.rss, res.goroutines)
		})
	}
}
