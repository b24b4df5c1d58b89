package statuspage_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/statuspage"
)

// TestSnapshotAndPage: the handler serves the page, and at .json a snapshot
// that counts a live connection, its messages and, once it closed, its
// close code and side.
func TestSnapshotAndPage(t *testing.T) {
	srv := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler)})
	srv.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) })
	mux := http.NewServeMux()
	h := statuspage.Handler(srv)
	mux.Handle("GET /ops/status", h)
	mux.Handle("GET /ops/status.json", h)
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); hs.Close() })

	get := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	snapshot := func() statuspage.Snapshot {
		t.Helper()
		ct, body := get("/ops/status.json")
		var s statuspage.Snapshot
		if err := json.Unmarshal([]byte(body), &s); err != nil || ct != "application/json" {
			t.Fatalf("snapshot %s %q: %v", ct, body, err)
		}
		return s
	}
	ct, page := get("/ops/status")
	if !strings.HasPrefix(ct, "text/html") || !strings.Contains(page, "<title>wsactor status</title>") || strings.Contains(page, "src=\"http") {
		t.Fatalf("page: %s, %d bytes", ct, len(page))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	// The server counts a message out once its write has returned, which
	// may be after the client has read it.
	s := snapshot()
	for deadline := time.Now().Add(20 * time.Second); s.Messages.Out == 0 && time.Now().Before(deadline); s = snapshot() {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Connections.Open != 1 || s.Messages.In != 1 || s.Messages.Out != 1 || !s.Ready || s.Cluster != nil || s.Rooms.List == nil {
		t.Fatalf("snapshot with one connection: %+v", s)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(20 * time.Second)
	for {
		s = snapshot()
		if s.Connections.Open == 0 && len(s.Closes) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot after the close: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Closes[0]; got.Code != 1000 || got.By != "client" || got.Count != 1 {
		t.Fatalf("closes: %+v", s.Closes)
	}
}
