package wsactor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// testTimeout bounds every wait in these tests; nothing sleeps for correctness.
const testTimeout = 10 * time.Second

type testServer struct {
	*wsactor.Server
	http *httptest.Server
	url  string // ws://127.0.0.1:port
	logs *logBuffer
}

// logBuffer collects log output so tests can assert on what was logged.
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

func newTestServer(t *testing.T, opts wsactor.Options, routes func(s *wsactor.Server)) *testServer {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := wsactor.New(opts)
	routes(s)
	hs := httptest.NewServer(s)
	ts := &testServer{Server: s, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http"), logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	return ts
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, err := dialErr(t, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func dialErr(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return nil, &httpError{status: resp.StatusCode, body: string(body), err: err}
		}
		return nil, err
	}
	c.SetReadLimit(1 << 22)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, nil
}

type httpError struct {
	status int
	body   string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() + ": " + e.body }

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var he *httpError
	if !errors.As(err, &he) {
		t.Fatalf("want HTTP %d before the upgrade, got %v", status, err)
	}
	if he.status != status {
		t.Fatalf("want HTTP %d, got %d (%s)", status, he.status, he.body)
	}
}

func read(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	typ, s := read(t, c)
	if typ != websocket.MessageText {
		t.Fatalf("want a text message, got %v %q", typ, s)
	}
	return s
}

func write(t *testing.T, c *websocket.Conn, typ websocket.MessageType, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// wantClose reads until the connection ends and checks the close code the
// client received (and the reason, unless reason is "*").
func wantClose(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d %q, got %v", code, reason, err)
		}
		if ce.Code != code || (reason != "*" && ce.Reason != reason) {
			t.Fatalf("want close %d %q, got %d %q", code, reason, ce.Code, ce.Reason)
		}
		return
	}
}

// waitFor polls cond until it holds or the test deadline passes.
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

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
