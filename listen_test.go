package wsactor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// listening is a server run the way applications run it: ServeHandler on a
// loopback listener, with a mux holding its WebSocket route and two plain
// HTTP routes.
type listening struct {
	*wsactor.Server
	addr string // 127.0.0.1:port
	url  string // ws://127.0.0.1:port
}

func serveListening(t *testing.T, opts wsactor.Options) *listening {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	s := wsactor.New(opts)
	s.Handle("/ws", func() wsactor.Handler { return echo{} })
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "pong") })
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		case err != nil:
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		default:
			fmt.Fprint(w, n)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeHandler(l, mux) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := recv(t, served, "ServeHandler to return"); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeHandler = %v, want http.ErrServerClosed", err)
		}
	})
	return &listening{Server: s, addr: l.Addr().String(), url: "ws://" + l.Addr().String()}
}

// rawConn is a plain TCP client that speaks HTTP/1.1 by hand, so that a test
// controls what it sends, when, and whether it closes.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// do sends a request and reads its response (status and body).
func (c *rawConn) do(t *testing.T, req string) (int, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c.response(t)
}

func (c *rawConn) response(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(body)
}

// waitClosed reads until the server closes the connection and fails if it
// does not within testTimeout.
func (c *rawConn) waitClosed(t *testing.T, what string) {
	t.Helper()
	_, err := io.Copy(io.Discard, c.br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the server still held the connection after %v", what, testTimeout)
	}
}

const getPing = "GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"

func held(s *wsactor.Server) func() bool {
	return func() bool { return s.Stats().ConnectionsHeld == 0 }
}

// A keep-alive connection that sends nothing more is closed after
// HTTP.IdleTimeout; it was held forever.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	ls := serveListening(t, wsactor.Options{HTTP: wsactor.HTTPOptions{IdleTimeout: 200 * time.Millisecond}})
	c := rawDial(t, ls.addr)
	if status, body := c.do(t, getPing); status != http.StatusOK || body != "pong" {
		t.Fatalf("GET /ping: %d %q", status, body)
	}
	if got := ls.Stats().ConnectionsHeld; got != 1 {
		t.Errorf("ConnectionsHeld = %d with one keep-alive connection, want 1", got)
	}
	c.waitClosed(t, "an idle keep-alive connection")
	waitFor(t, "ConnectionsHeld to return to 0", held(ls.Server))
}

// A request whose body trickles in is cut off by HTTP.ReadTimeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	ls := serveListening(t, wsactor.Options{HandshakeTimeout: 100 * time.Millisecond,
		HTTP: wsactor.HTTPOptions{ReadTimeout: 300 * time.Millisecond}})
	c := rawDial(t, ls.addr)
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n0123456789"); err != nil {
		t.Fatal(err)
	}
	// The rest of the body never comes.
	c.waitClosed(t, "a request with a body that never ends")
	waitFor(t, "ConnectionsHeld to return to 0", held(ls.Server))
}

// Bodies and headers are bounded: 413 (from the handler, which sees
// *http.MaxBytesError) and 431.
func TestBodyAndHeaderLimits(t *testing.T) {
	ls := serveListening(t, wsactor.Options{})
	c := rawDial(t, ls.addr)
	body := strings.Repeat("b", wsactor.DefaultHTTPMaxBodyBytes+1)
	go func() { // the server may answer before it has read everything
		_, _ = io.WriteString(c, fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}()
	if status, _ := c.response(t); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body of MaxBodyBytes+1: status %d, want 413", status)
	}
	c = rawDial(t, ls.addr)
	if status, body := c.do(t, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"); status != http.StatusOK || body != "5" {
		t.Errorf("a small body: %d %q", status, body)
	}
	// net/http allows 4 KiB of slack over MaxHeaderBytes.
	big := strings.Repeat("h", wsactor.DefaultHTTPMaxHeaderBytes+8<<10)
	c = rawDial(t, ls.addr)
	if status, _ := c.do(t, "GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: "+big+"\r\n\r\n"); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a header over MaxHeaderBytes: status %d, want 431", status)
	}
}

// The scenario, scaled down: with MaxConnections 20, 20 idle
// keep-alive sockets take every slot. A new TCP connection, a WebSocket
// handshake included, gets a prompt 503 (not a hang), and the real handshake
// succeeds once the idle ones have timed out. Nothing is counted twice, and
// the count returns to zero.
func TestMaxConnectionsCountsIdleSockets(t *testing.T) {
	const max = 20
	idle := 3 * time.Second // long enough for the checks below, short enough to wait for
	ls := serveListening(t, wsactor.Options{MaxConnections: max, HTTP: wsactor.HTTPOptions{IdleTimeout: idle}})
	for range max {
		if status, _ := rawDial(t, ls.addr).do(t, getPing); status != http.StatusOK {
			t.Fatalf("GET /ping: %d", status)
		}
	}
	opened := time.Now()
	if got := ls.Stats().ConnectionsHeld; got != max {
		t.Fatalf("ConnectionsHeld = %d with %d idle keep-alive sockets, want %d", got, max, max)
	}

	_, err := dialErr(t, ls.url+"/ws", nil)
	var he *httpError
	if !errors.As(err, &he) || he.status != http.StatusServiceUnavailable || he.body != "too many connections\n" {
		t.Fatalf("a handshake at the cap: %v, want 503 \"too many connections\" (%v after the idle sockets opened)", err, time.Since(opened))
	}
	refused := rawDial(t, ls.addr)
	if status, body := refused.do(t, getPing); status != http.StatusServiceUnavailable || body != "too many connections\n" {
		t.Fatalf("a request at the cap: %d %q, want 503 (%v after the idle sockets opened)", status, body, time.Since(opened))
	}
	refused.waitClosed(t, "a refused connection")
	if st := ls.Stats(); st.ConnectionsHeld != max || st.ConnectionsRejected != 2 {
		t.Fatalf("after two refusals: held %d, rejected %d; want %d and 2", st.ConnectionsHeld, st.ConnectionsRejected, max)
	}

	waitFor(t, "the idle sockets to time out", held(ls.Server))
	c, err := dialErr(t, ls.url+"/ws", nil)
	if err != nil {
		t.Fatalf("the handshake after the idle sockets timed out: %v", err)
	}
	write(t, c, websocket.MessageText, "hi")
	if _, got := read(t, c); got != "hi" {
		t.Fatalf("echo: %q", got)
	}
	// One WebSocket, counted once: its TCP connection's slot went to the
	// WebSocket when net/http handed the socket over.
	if got := ls.Stats().ConnectionsHeld; got != 1 {
		t.Errorf("ConnectionsHeld = %d with one WebSocket, want 1", got)
	}
	ka := rawDial(t, ls.addr)
	ka.do(t, getPing)
	if got := ls.Stats().ConnectionsHeld; got != 2 {
		t.Errorf("ConnectionsHeld = %d with one WebSocket and one keep-alive, want 2", got)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	_ = ka.Close()
	waitFor(t, "ConnectionsHeld to return to 0 after every connection closed", held(ls.Server))
}

// net/http clears a connection's deadlines when it hands it over: a
// WebSocket lives longer than HTTP.ReadTimeout and HTTP.IdleTimeout.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ls := serveListening(t, wsactor.Options{HandshakeTimeout: timeout,
		HTTP: wsactor.HTTPOptions{ReadTimeout: timeout, IdleTimeout: timeout}})
	c := dial(t, ls.url+"/ws")
	until := time.Now().Add(5 * timeout)
	for i := 0; time.Now().Before(until); i++ {
		write(t, c, websocket.MessageText, fmt.Sprint(i))
		if _, got := read(t, c); got != fmt.Sprint(i) {
			t.Fatalf("echo %d: %q", i, got)
		}
		<-time.After(timeout / 4) // pacing: the connection is quiet between echoes
	}
}

// slowConnect takes its time, as an authenticator calling another service
// might, and reports whether the request's context was still alive.
type slowConnect struct {
	echo
	wait  time.Duration
	alive chan bool
}

func (h slowConnect) Connect(hs *wsactor.Handshake) wsactor.Decision {
	<-time.After(h.wait)
	h.alive <- hs.Request.Context().Err() == nil
	return wsactor.Accept()
}

// http.Server's ReadTimeout also ends a request's context, so a ReadTimeout
// below HandshakeTimeout is raised to it: a handshake may take its whole
// HandshakeTimeout.
func TestReadTimeoutDoesNotCutHandshakes(t *testing.T) {
	alive := make(chan bool, 1)
	s := wsactor.New(wsactor.Options{Logger: discardLogger(), HandshakeTimeout: 5 * time.Second,
		HTTP: wsactor.HTTPOptions{ReadTimeout: 100 * time.Millisecond}})
	s.Handle("/ws", func() wsactor.Handler { return slowConnect{wait: 500 * time.Millisecond, alive: alive} })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	c := dial(t, "ws://"+l.Addr().String()+"/ws")
	if !recv(t, alive, "Connect") {
		t.Error("the handshake's request context ended before HandshakeTimeout")
	}
	write(t, c, websocket.MessageText, "hi")
	if _, got := read(t, c); got != "hi" {
		t.Fatalf("echo: %q", got)
	}
}
