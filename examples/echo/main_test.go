package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

const testTimeout = 10 * time.Second

func startEcho(t *testing.T, args ...string) *httptest.Server {
	t.Helper()
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	limits := limitFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	mux, s := newMux(slog.New(slog.DiscardHandler), *limits)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return ts
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestPage(t *testing.T) {
	ts := startEcho(t)
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET /: Content-Type %q", ct)
	}
	for _, want := range []string{"<script>", "/ws/echo", "binaryType"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /: page lacks %q", want)
		}
	}
}

func TestEcho(t *testing.T) {
	ts := startEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws/echo", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20) // the client's own limit is 32 KiB; the server's is 64 KiB

	for _, tc := range []struct {
		typ  websocket.MessageType
		data string
	}{
		{websocket.MessageText, "héllo, actor"},
		{websocket.MessageBinary, "\x00\x01\xfe\xff"},
		{websocket.MessageText, ""},
		{websocket.MessageBinary, strings.Repeat("x", 60<<10)},
	} {
		if err := c.Write(ctx, tc.typ, []byte(tc.data)); err != nil {
			t.Fatalf("write %v: %v", tc.typ, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != tc.typ || string(got) != tc.data {
			t.Fatalf("sent %v of %d bytes, got %v of %d bytes", tc.typ, len(tc.data), typ, len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func dialEcho(t *testing.T, ts *httptest.Server) (context.Context, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, ts.URL+"/ws/echo", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(4 << 20)
	return ctx, c
}

// TestLimitFlags: -max-message admits larger messages; -rate-messages sets
// the rate (0.001/s: a burst of one, then refusals); negative rates lift
// the limits, as the Autobahn run needs.
func TestLimitFlags(t *testing.T) {
	ctx, c := dialEcho(t, startEcho(t, "-max-message", "1048576", "-rate-messages", "0.001"))
	big := strings.Repeat("x", 1<<20)
	for _, want := range []string{big, `{"type":"error","code":"rate_limited","message":"rate limit exceeded","error":"rate limit exceeded"}`} {
		if err := c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != want {
			t.Fatalf("got %.80q (%d bytes), %v; want %.80q", got, len(got), err, want)
		}
	}

	ctx, c = dialEcho(t, startEcho(t, "-rate-messages", "-1", "-rate-bytes", "-1"))
	const burst = 1000 // beyond the default burst of 400
	for i := range burst {
		if err := c.Write(ctx, websocket.MessageText, fmt.Append(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range burst {
		if _, got, err := c.Read(ctx); err != nil || string(got) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q, %v", i, got, err)
		}
	}
}

func TestHTTPStatuses(t *testing.T) {
	ts := startEcho(t)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/ws/echo", http.StatusUpgradeRequired}, // plain GET on the WebSocket route
		{"/ws/nope", http.StatusNotFound},        // unknown WebSocket route
		{"/nope", http.StatusNotFound},           // unknown page
	} {
		if status, body := get(t, ts.URL+tc.path); status != tc.status {
			t.Errorf("GET %s: status %d (%q), want %d", tc.path, status, body, tc.status)
		}
	}
}

func TestCrossOriginRefused(t *testing.T) {
	ts := startEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	h := http.Header{"Origin": {"https://elsewhere.example"}}
	c, resp, err := websocket.Dial(ctx, ts.URL+"/ws/echo", &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		c.CloseNow()
		t.Fatal("a cross-origin upgrade was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin upgrade: want 403, got %v (%v)", resp, err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler), wsactor.TransportOptions{}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("run did not return after its context was cancelled")
	}
}

func TestRunReportsListenError(t *testing.T) {
	l := httptest.NewServer(http.NotFoundHandler()) // holds a port
	defer l.Close()
	addr := strings.TrimPrefix(l.URL, "http://")
	err := run(context.Background(), addr, slog.New(slog.DiscardHandler), wsactor.TransportOptions{})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("run on a busy address: got %v", err)
	}
}

func TestPageURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://localhost:8080/",
		"127.0.0.1:9000": "http://127.0.0.1:9000/",
	} {
		if got := pageURL(addr); got != want {
			t.Errorf("pageURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
