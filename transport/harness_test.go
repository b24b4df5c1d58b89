package transport_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// waitTimeout bounds every wait in these tests. Nothing sleeps for
// correctness: tests wait on channels or poll a condition until this deadline.
const waitTimeout = 10 * time.Second

// leakTimeout bounds the wait for transport goroutines to exit. It is longer
// than waitTimeout because coder/websocket's Close may legitimately wait 5 s
// to write a close frame and 5 s more for the peer's reply.
const leakTimeout = 20 * time.Second

// smallBuf is the socket buffer size used by tests that need a client whose
// TCP window fills up quickly (so a server write blocks deterministically).
const smallBuf = 32 << 10

// serverConn is the server side of one accepted connection, as the tests see it.
type serverConn struct {
	c        *transport.Conn
	frames   chan transport.Frame
	finished chan transport.CloseInfo
	finCount atomic.Int32
}

// fin waits for finished and returns what it reported.
func (sc *serverConn) fin(t *testing.T) transport.CloseInfo {
	t.Helper()
	return recv(t, sc.finished, "finished")
}

// isFinished reports whether finished has been called.
func (sc *serverConn) isFinished() bool { return sc.finCount.Load() > 0 }

// frame waits for the next delivered frame.
func (sc *serverConn) frame(t *testing.T) transport.Frame {
	t.Helper()
	return recv(t, sc.frames, "a delivered frame")
}

// serverConfig says how the test server treats delivered frames.
type serverConfig struct {
	opts transport.Options
	// manualRelease leaves Release to the test; otherwise every frame is
	// released as soon as it is delivered.
	manualRelease bool
	// echo writes every delivered frame back to the client.
	echo bool
	// smallBuffers shrinks the accepted sockets' kernel buffers.
	smallBuffers bool
	// wrap, if set, wraps the ResponseWriter before Accept, as middleware would.
	wrap func(http.ResponseWriter) http.ResponseWriter
}

type testServer struct {
	srv  *httptest.Server
	url  string
	cfg  serverConfig
	opts transport.Options // with defaults; shared by every connection, as in the real server

	conns      chan *serverConn
	acceptErrs chan error

	mu  sync.Mutex
	all []*serverConn
}

// newServer starts an httptest server whose handler accepts with cfg.opts
// (after WithDefaults) and starts the connection. Its cleanup waits until
// every connection has finished exactly once and no transport goroutine is
// left.
func newServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	return newServerWithListener(t, cfg, nil)
}

// newServerWithListener is newServer with the listener wrapped by wrap.
func newServerWithListener(t *testing.T, cfg serverConfig, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	ts := &testServer{
		cfg:        cfg,
		opts:       cfg.opts.WithDefaults(),
		conns:      make(chan *serverConn, 64),
		acceptErrs: make(chan error, 64),
	}
	// Registered first, so it runs last: after the clients and the server
	// are closed.
	t.Cleanup(func() {
		for _, sc := range ts.connections() {
			if !waitFor(func() bool { return sc.isFinished() }) {
				t.Errorf("a connection was never reported finished")
			}
		}
		checkNoTransportGoroutines(t)
		for _, sc := range ts.connections() {
			if n := sc.finCount.Load(); n != 1 {
				t.Errorf("finished called %d times, want exactly 1", n)
			}
		}
	})
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(ts.handle))
	if cfg.smallBuffers {
		ts.srv.Listener = smallBufListener{ts.srv.Listener}
	}
	if wrap != nil {
		ts.srv.Listener = wrap(ts.srv.Listener)
	}
	ts.srv.Start()
	ts.url = "ws" + strings.TrimPrefix(ts.srv.URL, "http")
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *testServer) connections() []*serverConn {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*serverConn(nil), ts.all...)
}

func (ts *testServer) handle(w http.ResponseWriter, r *http.Request) {
	if ts.cfg.wrap != nil {
		w = ts.cfg.wrap(w)
	}
	c, err := transport.Accept(w, r, &ts.opts)
	if err != nil {
		ts.acceptErrs <- err
		return
	}
	sc := &serverConn{
		c:        c,
		frames:   make(chan transport.Frame, 100000),
		finished: make(chan transport.CloseInfo, 4),
	}
	ts.mu.Lock()
	ts.all = append(ts.all, sc)
	ts.mu.Unlock()
	c.Start(func(f transport.Frame) {
		if ts.cfg.echo {
			_ = c.Write(f.Type, f.Data)
		}
		sc.frames <- f
		if !ts.cfg.manualRelease {
			c.Release()
		}
	}, func(info transport.CloseInfo) {
		sc.finCount.Add(1)
		select {
		case sc.finished <- info:
		default:
		}
	})
	ts.conns <- sc
}

// dial connects a client and returns it with the server side of the
// connection. Dial one client at a time so that the two sides pair up.
func (ts *testServer) dial(t *testing.T, dopts *websocket.DialOptions) (*websocket.Conn, *serverConn) {
	t.Helper()
	c, err := ts.dialErr(t, dopts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c, recv(t, ts.conns, "the server side of the connection")
}

func (ts *testServer) dialErr(t *testing.T, dopts *websocket.DialOptions) (*websocket.Conn, error) {
	t.Helper()
	if dopts == nil {
		dopts = &websocket.DialOptions{}
	}
	if ts.cfg.smallBuffers && dopts.HTTPClient == nil {
		dopts.HTTPClient = smallBufClient(t)
	}
	if dopts.HTTPClient == nil {
		// Not http.DefaultClient: its idle connections would outlive the test.
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		dopts.HTTPClient = &http.Client{Transport: tr}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ts.url, dopts)
	if err != nil {
		if resp != nil {
			return nil, &dialError{status: resp.StatusCode, err: err}
		}
		return nil, err
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, nil
}

type dialError struct {
	status int
	err    error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(smallBuf)
		_ = tc.SetReadBuffer(smallBuf)
	}
	return c, err
}

// smallBufClient is an HTTP client whose connections have small kernel
// buffers, so that a client that does not read stalls the server's writes
// after about 128 KiB (measured on Linux loopback).
func smallBufClient(t *testing.T) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(smallBuf)
				_ = tc.SetWriteBuffer(smallBuf)
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		panic("unreachable")
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(cond func() bool) bool {
	return waitForWithin(waitTimeout, cond)
}

func waitForWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// eventually fails the test unless cond comes to hold within waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !waitFor(cond) {
		t.Fatalf("timed out after %v waiting until %s", waitTimeout, what)
	}
}

// readMsg reads one data message on the client.
func readMsg(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return typ, data
}

// readClose reads on the client until the connection ends and returns the
// error that ended it, which carries the server's close code if one arrived.
// Data messages received meanwhile are returned too.
func readClose(t *testing.T, c *websocket.Conn) (data [][]byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("client read: no close within %v", waitTimeout)
			}
			return data, err
		}
		data = append(data, b)
	}
}

// writeMsg writes one message from the client.
func writeMsg(t *testing.T, c *websocket.Conn, typ websocket.MessageType, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Write(ctx, typ, data); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// closeErr extracts the close frame carried by a client read error.
func closeErr(t *testing.T, err error) websocket.CloseError {
	t.Helper()
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("client: want a close frame from the server, got %v", err)
	}
	return ce
}

// wantInfo compares a CloseInfo with the expected one.
func wantInfo(t *testing.T, got transport.CloseInfo, code transport.StatusCode, reason string, byServer bool) {
	t.Helper()
	want := transport.CloseInfo{Code: code, Reason: reason, ByServer: byServer}
	if got != want {
		t.Errorf("finished(%+v), want %+v", got, want)
	}
}

// transportGoroutines returns the stacks of goroutines running code of the
// transport package or of coder/websocket (server or client side).
func transportGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/wsactor/wsactor/transport.") ||
			strings.Contains(g, "github.com/coder/websocket.") {
			out = append(out, g)
		}
	}
	return out
}

func checkNoTransportGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	if !waitForWithin(leakTimeout, func() bool {
		left = transportGoroutines()
		return len(left) == 0
	}) {
		t.Errorf("%d goroutines of the transport or coder/websocket still running:\n%s",
			len(left), strings.Join(left, "\n\n"))
	}
}
