package swarm_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsactor/wsactor/examples/game/gameserver"
)

const testTimeout = 30 * time.Second

// game is an in-process game server.
type game struct {
	url string // http://127.0.0.1:port
}

func newGame(t *testing.T) *game { return newGameWith(t, gameserver.Config{}) }

// newGameWith starts a game server configured by cfg (its Address and
// Logger are set here).
func newGameWith(t *testing.T, cfg gameserver.Config) *game {
	t.Helper()
	cfg.Address, cfg.Logger = "test-node", slog.New(slog.DiscardHandler)
	mux, s := gameserver.New(cfg)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	return &game{url: hs.URL}
}

func (g *game) ws() string   { return "ws" + strings.TrimPrefix(g.url, "http") }
func (g *game) addr() string { return strings.TrimPrefix(g.url, "http://") }

// rooms returns the server's room listing.
func (g *game) rooms(t *testing.T) []gameserver.RoomInfo {
	t.Helper()
	resp, err := http.Get(g.url + "/api/rooms")
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var rooms []gameserver.RoomInfo
	if err := json.NewDecoder(resp.Body).Decode(&rooms); err != nil {
		t.Error(err)
	}
	return rooms
}

// proxy is a TCP proxy to a backend that can cut every connection through
// it, as a network loss does, and change its backend, as a node's
// replacement does.
type proxy struct {
	l       net.Listener
	backend atomic.Value // string: host:port
	dialed  atomic.Int64 // connections accepted

	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	p.backend.Store(backend)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		p.cut()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.dialed.Add(1)
			b, err := net.Dial("tcp", p.backend.Load().(string))
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); pipe(c, b) }()
			go func() { defer wg.Done(); pipe(b, c) }()
		}
	}()
	return p
}

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

func (p *proxy) ws() string { return "ws://" + p.l.Addr().String() }

// cut closes every connection through the proxy, without a close frame.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// close stops the proxy for good, as a node's death does: its connections
// are cut and new ones refused.
func (p *proxy) close() {
	_ = p.l.Close()
	p.cut()
}

// waitFor waits until cond holds, failing t at the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
