package rooms_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// testTimeout bounds every wait; nothing sleeps for correctness.
const testTimeout = 10 * time.Second

type testServer struct {
	*wsactor.Server
	url  string
	logs *logBuffer
}

func newServer(t *testing.T, kinds ...rooms.Kind) *testServer {
	t.Helper()
	return newServerWith(t, wsactor.Options{}, kinds...)
}

func newServerWith(t *testing.T, opts wsactor.Options, kinds ...rooms.Kind) *testServer {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := wsactor.New(opts)
	for _, k := range kinds {
		s.Rooms().Define(k)
	}
	s.Handle("/play", func() wsactor.Handler { return roomstest.NewPlayer(s.Rooms()) },
		wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}))
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &testServer{Server: s, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/play", logs: logs}
}

func (s *testServer) dial(t *testing.T, name string) *roomstest.Client {
	t.Helper()
	return roomstest.Dial(t, s.url, name)
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a room handler that tells every player what happens, as text:
// "join:<seat>:<name>", "drop:<seat>", "back:<seat>", "leave:<seat>:<why>",
// "<seat>:<text>" for messages; and records its ticks.
type recorder struct {
	ticks chan rooms.Tick
	// hold, if set, stops the room at the message "block": it sends to
	// held, then waits for hold to close, the room's mailbox filling behind.
	hold, held chan struct{}
}

func (h *recorder) OnMessage(r *rooms.Room, p *rooms.Player, m wsactor.Message) error {
	switch m.Text() {
	case "block":
		if h.hold != nil {
			h.held <- struct{}{}
			<-h.hold
		}
	case "panic":
		panic("asked to")
	case "fail":
		return wsactor.MessageError("no_way", "asked to fail")
	case "close":
		r.Close()
		return nil
	}
	r.Broadcast(wsactor.Text(fmt.Sprintf("%d:%s", p.Seat, m.Text())))
	return nil
}

func (h *recorder) OnJoin(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("join:%d:%s", p.Seat, p.Meta["name"])))
}

func (h *recorder) OnDrop(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("drop:%d", p.Seat)))
}

func (h *recorder) OnReconnect(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("back:%d", p.Seat)))
}

func (h *recorder) OnLeave(r *rooms.Room, p *rooms.Player, why rooms.LeaveReason) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("leave:%d:%s", p.Seat, why)))
}

func (h *recorder) OnTick(r *rooms.Room, t rooms.Tick) {
	if h.ticks != nil {
		select {
		case h.ticks <- t:
		default:
		}
	}
}
