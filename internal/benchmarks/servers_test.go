package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/transport"
)

// The two servers are configured alike: the same read limit, compression off,
// and every write bounded by the same timeout (wsactor's default WriteTimeout;
// the bare server makes a context per write, as coder/websocket's own echo
// example does).
const (
	readLimit    = 64 << 10
	writeTimeout = transport.DefaultWriteTimeout
	payloadSize  = 256
	// waitLimit bounds every wait in this package: benchmarks report, they
	// never hang.
	waitLimit = 2 * time.Minute
)

// kind names a server under test.
type kind string

const (
	bare  kind = "bare"
	actor kind = "wsactor"
)

var kinds = []kind{bare, actor}

// pushPath is how a benchmark pushes a message to one connection.
type pushPath string

const (
	// pushDirect: the bare server's goroutine writes to the socket itself.
	pushDirect pushPath = "direct"
	// pushPost: wsactor's Server.Post by connection ID, through the mailbox.
	pushPost pushPath = "post"
	// pushConnSend: wsactor's Conn.Send, the call a handler makes; it skips
	// the mailbox and queues straight for the socket.
	pushConnSend pushPath = "conn-send"
)

// target is a running server under test on 127.0.0.1. Clients that pass
// ?i=<n> in the URL are registered under n so that a benchmark can push to
// them; others (the idle clients) are not.
type target interface {
	// URL is the WebSocket URL of the echo route.
	URL() string
	// Open is the number of connections the server has accepted and not yet
	// finished with.
	Open() int64
	// Pusher returns the function that pushes one message to registered
	// connection i by path. It fails if i is not registered or the path
	// does not apply to this server.
	Pusher(i int, path pushPath) (func(b []byte) error, error)
	// Close stops the server once its clients are gone.
	Close() error
}

func startServer(k kind) target {
	if k == bare {
		return startBare()
	}
	return startActor()
}

// registry holds the registered connections of one server.
type registry[T any] struct {
	mu sync.Mutex
	m  map[int]T
}

func (r *registry[T]) put(i int, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[int]T)
	}
	r.m[i] = v
}

func (r *registry[T]) del(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, i)
}

func (r *registry[T]) get(i int) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[i]
	return v, ok
}

// index returns the registration index in a URL's query, if any.
func index(query string) (int, bool) {
	s := strings.TrimPrefix(query, "i=")
	if s == query {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil
}

// bareServer is the baseline: coder/websocket used directly, the read loop
// on the net/http handler goroutine, echoing each message from there. A
// push writes to the socket from the pushing goroutine (writes may run
// concurrently with the read loop).
type bareServer struct {
	bareHTTP
	reg registry[*websocket.Conn]
}

func startBare() *bareServer {
	s := &bareServer{}
	s.http = httptest.NewServer(s)
	return s
}

// bareHTTP is what the bare coder/websocket servers (bareServer, bareGroup)
// have in common: the test HTTP server their handler runs on, and the count
// of handlers still running, which Close waits for so that no server stops
// under its connections. The handlers themselves differ, and stay with each
// server.
type bareHTTP struct {
	http *httptest.Server
	open atomic.Int64
}

func (s *bareHTTP) URL() string { return wsURL(s.http) }
func (s *bareHTTP) Open() int64 { return s.open.Load() }

func (s *bareHTTP) Close() error {
	err := waitUntil("bare server's handlers to return", func() bool { return s.open.Load() == 0 })
	s.http.Close()
	return err
}

func (s *bareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i, registered := index(r.URL.RawQuery)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit)
	s.open.Add(1)
	defer s.open.Add(-1)
	if registered {
		s.reg.put(i, ws)
		defer s.reg.del(i)
	}
	for {
		typ, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err = ws.Write(ctx, typ, data)
		cancel()
		if err != nil {
			return
		}
	}
}

func (s *bareServer) Pusher(i int, path pushPath) (func([]byte) error, error) {
	if path != pushDirect {
		return nil, fmt.Errorf("bare server has no %s path", path)
	}
	ws, ok := s.reg.get(i)
	if !ok {
		return nil, fmt.Errorf("bare server: connection %d not registered", i)
	}
	return func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		defer cancel()
		return ws.Write(ctx, websocket.MessageBinary, b)
	}, nil
}

// actorServer is wsactor with an echo handler on every connection.
type actorServer struct {
	actorHTTP
	reg registry[*wsactor.Conn]
}

// echoHandler is shared by all of a server's connections: it holds no
// per-connection state, so the factory allocates nothing.
type echoHandler struct{ reg *registry[*wsactor.Conn] }

func (h *echoHandler) OnOpen(c *wsactor.Conn) error {
	if i, ok := index(c.URL().RawQuery); ok {
		h.reg.put(i, c)
	}
	return nil
}

func (h *echoHandler) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

func (h *echoHandler) OnClose(c *wsactor.Conn, _ wsactor.StatusCode, _ string) {
	if i, ok := index(c.URL().RawQuery); ok {
		h.reg.del(i)
	}
}

func startActor() *actorServer { return startActorLimited(unboundLimit) }

// startActorPinging is startActor with heartbeat pings every interval.
func startActorPinging(interval time.Duration) *actorServer {
	a := &actorServer{}
	a.actorHTTP = startActorHTTPWith(&echoHandler{reg: &a.reg},
		wsactor.TransportOptions{MaxMessageSize: readLimit, RateLimit: unboundLimit, PingInterval: interval})
	return a
}

// startActorLimited is startActor with the given inbound rate limit.
func startActorLimited(limit wsactor.RateLimit) *actorServer {
	a := &actorServer{}
	a.actorHTTP = startActorHTTP(&echoHandler{reg: &a.reg}, limit)
	return a
}

// unboundLimit keeps wsactor's inbound rate limiter on, so that its cost is
// measured, with rates no benchmark reaches (the default, 200 messages/s per
// connection, would refuse most of a benchmark's messages). The bare
// servers have no limiter.
var unboundLimit = wsactor.RateLimit{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}

// actorHTTP is what the single-node wsactor servers (actorServer,
// actorGroupServer) have in common: the options, configured like the bare
// servers, one route on a test HTTP server, and a stop that waits for the
// connections to close first. Their handlers differ.
type actorHTTP struct {
	s    *wsactor.Server
	http *httptest.Server
}

// startActorHTTP starts a wsactor server whose every connection is handled
// by h (shared: the factory allocates nothing) and has the inbound rate
// limit.
func startActorHTTP(h wsactor.Handler, limit wsactor.RateLimit) actorHTTP {
	return startActorHTTPWith(h, wsactor.TransportOptions{MaxMessageSize: readLimit, RateLimit: limit})
}

// startActorHTTPWith is startActorHTTP with the given transport options.
func startActorHTTPWith(h wsactor.Handler, topts wsactor.TransportOptions) actorHTTP {
	s := wsactor.New(wsactor.Options{
		Logger: slog.New(slog.DiscardHandler),
		// Everything else is the default: compression off, 10 s write
		// timeout, 256-message / 1 MiB send queue closing on overflow,
		// pings every 30 s (a timer, not a goroutine), in-memory group
		// directory, no presence events.
		Transport: topts,
	})
	s.Handle("/", func() wsactor.Handler { return h })
	return actorHTTP{s: s, http: httptest.NewServer(s)}
}

func (a *actorHTTP) URL() string { return wsURL(a.http) }
func (a *actorHTTP) Open() int64 { return a.s.Stats().ConnectionsOpen }

// stop waits until the server has let every connection go, then shuts it
// down and stops its HTTP server. The caller checks the counters of
// Stats that must not have moved.
func (a *actorHTTP) stop() error {
	err := waitUntil("wsactor's connections to close", func() bool { return a.Open() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err = errors.Join(err, a.s.Shutdown(ctx))
	a.http.Close()
	return err
}

func (a *actorServer) Pusher(i int, path pushPath) (func([]byte) error, error) {
	c, ok := a.reg.get(i)
	if !ok {
		return nil, fmt.Errorf("wsactor: connection %d not registered", i)
	}
	switch path {
	case pushPost:
		id := c.ID()
		return func(b []byte) error { return a.s.Post(id, wsactor.Binary(b)) }, nil
	case pushConnSend:
		return func(b []byte) error { return c.Send(wsactor.Binary(b)) }, nil
	}
	return nil, fmt.Errorf("wsactor has no %s path", path)
}

func (a *actorServer) Close() error {
	err := a.stop()
	if st := a.s.Stats(); st.SlowConsumerCloses != 0 || st.Panics != 0 {
		err = errors.Join(err, fmt.Errorf("wsactor stats: %+v", st))
	}
	return err
}

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/" }

// waitUntil polls cond every few milliseconds for at most waitLimit.
func waitUntil(what string, cond func() bool) error {
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// dial opens a client connection configured like the servers; i >= 0
// registers it under i.
func dial(ctx context.Context, url string, i int) (*websocket.Conn, error) {
	if i >= 0 {
		url += "?i=" + strconv.Itoa(i)
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(readLimit)
	return c, nil
}

// dialMany opens n connections with a few dials in flight at a time, and
// runs check (if not nil) on each. On error it closes what it opened.
func dialMany(ctx context.Context, url string, n int, registered bool, check func(*websocket.Conn) error) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range min(n, 32) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				reg := -1
				if registered {
					reg = i
				}
				c, err := dial(ctx, url, reg)
				if err == nil && check != nil {
					if err = check(c); err != nil {
						_ = c.CloseNow()
					}
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("connection %d: %w", i, err):
					default:
					}
					next.Store(int64(n)) // stop the other workers
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		closeAll(conns)
		return nil, err
	default:
		return conns, nil
	}
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
}

// echoOnce writes msg and checks that the same bytes come back.
func echoOnce(ctx context.Context, c *websocket.Conn, msg []byte) error {
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return err
	}
	typ, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageBinary || string(got) != string(msg) {
		return fmt.Errorf("echo mismatch: sent %d bytes, got %v of %d bytes", len(msg), typ, len(got))
	}
	return nil
}

// startTarget starts a server for a benchmark or test and stops it at the
// end, failing if it does not stop cleanly.
func startTarget(tb testing.TB, k kind) target {
	tb.Helper()
	t := startServer(k)
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("stop %s server: %v", k, err)
		}
	})
	return t
}
