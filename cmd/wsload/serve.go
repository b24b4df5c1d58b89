package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/transport"
)

// Both servers are configured alike, as in internal/benchmarks: the same read
// limit, compression off, every write bounded by wsactor's default write
// timeout, and the same http.Server in front.
const (
	readLimit    = 64 << 10
	writeTimeout = transport.DefaultWriteTimeout
	wsPath       = "/ws"
	statsPath    = "/stats"
	// maxPush bounds "push N", a burst queued at once: 256 messages fit
	// wsactor's default send queue (1 MiB) up to a push size of 4 KiB.
	maxPush = 256
	// Message tags: the first byte of every binary message the tool sends.
	tagEcho = 'E' // client → server → client; then the client's monotonic send time
	tagPush = 'P' // server → client; then the server's wall-clock send time
	// headerSize is the tag and the 8-byte timestamp.
	headerSize = 9
)

type serveConfig struct {
	kind       string
	addr       string
	pushEvery  time.Duration
	pushSize   int
	statsEvery time.Duration
	// pingInterval is wsactor's TransportOptions.PingInterval; the bare
	// server sends no pings.
	pingInterval time.Duration
	// group makes every connection a member of one group (bare: a member
	// set; wsactor: Conn.Join in OnOpen), for the idle figure with a
	// membership and for POST /broadcast.
	group bool
	// centrifugo is the binary of the centrifugo kind ("": found by
	// findCentrifugo).
	centrifugo string
}

// loadServer is the WebSocket route of one kind of server, with its counters.
type loadServer interface {
	http.Handler
	counts() (open, accepted, in, out int64)
	// broadcast sends b (a JSON text message) to every member of the group
	// and returns how many it was sent to (-1: the server does not say).
	broadcast(ctx context.Context, b []byte) (int, error)
	// shutdown closes the connections still open, bounded by ctx.
	shutdown(ctx context.Context) error
}

// childServer is a loadServer that runs in another process (Centrifugo):
// its stats are that process's, not the serve process's.
type childServer interface {
	stats(collect bool) serverStats
	target() string
}

func serveMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	fs.StringVar(&cfg.kind, "kind", "wsactor", "server `kind`: bare (coder/websocket, a goroutine per connection), wsactor, or centrifugo (Centrifugo "+CentrifugoVersion+" as a child process; see install-centrifugo.sh)")
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "listen `address`; port 0 picks a free port (printed on stdout)")
	fs.DurationVar(&cfg.pushEvery, "push-every", 0, "push a message to every connection this often (0: only on \"push N\")")
	fs.IntVar(&cfg.pushSize, "push-size", 256, "size in `bytes` of pushed messages")
	fs.DurationVar(&cfg.statsEvery, "stats-every", 0, "also print a stats line on stdout this often (0: never)")
	fs.DurationVar(&cfg.pingInterval, "ping-interval", 0, "wsactor's heartbeat ping interval (0: its default, 30 s; negative: no pings, like bare)")
	fs.BoolVar(&cfg.group, "group", false, "make every connection a member of the group \""+groupName+"\" (POST "+broadcastPath+"?seq=N broadcasts to it)")
	fs.StringVar(&cfg.centrifugo, "centrifugo", "", "centrifugo `binary` for -kind centrifugo (default: on $PATH, else $GOBIN or $GOPATH/bin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.pushSize < headerSize {
		return fmt.Errorf("-push-size must be at least %d", headerSize)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var srv loadServer
	switch cfg.kind {
	case "bare":
		srv = &bareServer{cfg: cfg}
	case "wsactor":
		srv = newActorServer(cfg, logger)
	case "centrifugo":
		bin, err := findCentrifugo(cfg.centrifugo)
		if err != nil {
			return err
		}
		if srv, err = startCentrifugo(ctx, bin, stderr); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -kind %q (want bare, wsactor or centrifugo)", cfg.kind)
	}

	l, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.Handle(wsPath, srv)
	mux.HandleFunc("POST "+broadcastPath, serveBroadcast(srv, cfg.pushSize))
	mux.HandleFunc("GET "+statsPath, func(w http.ResponseWriter, r *http.Request) {
		st := readServerStats(cfg.kind, srv, started, r.URL.Query().Has("gc"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	// Profiles of the server under load: go tool pprof http://ADDR/debug/pprof/profile?seconds=20
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: wsactor.DefaultHandshakeTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	target := "ws://" + l.Addr().String() + wsPath
	if cs, ok := srv.(childServer); ok {
		target = cs.target()
	}
	fmt.Fprintf(stdout, "target %s\n", target)
	fmt.Fprintf(stdout, "listening %s\n", l.Addr())

	var tick <-chan time.Time
	if cfg.statsEvery > 0 {
		t := time.NewTicker(cfg.statsEvery)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-tick:
			printStats(stdout, readServerStats(cfg.kind, srv, started, false))
		case err = <-served:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	// Clients are normally gone by now; the bound keeps a stuck one from
	// holding the process.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, srv.shutdown(sctx))
	_ = hs.Close()
	printStats(stdout, readServerStats(cfg.kind, srv, started, false))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func printStats(w io.Writer, st serverStats) {
	b, _ := json.Marshal(st)
	fmt.Fprintf(w, "stats %s\n", b)
}

// serverStats is a server process's view of itself; the orchestrator divides
// differences between two of them by the number of connections.
type serverStats struct {
	Kind       string  `json:"kind"`
	UptimeSec  float64 `json:"uptime_s"`
	Collected  bool    `json:"collected"` // two GCs and FreeOSMemory ran first
	RSS        uint64  `json:"rss_bytes"`
	HeapInuse  uint64  `json:"heap_inuse_bytes"`
	HeapAlloc  uint64  `json:"heap_alloc_bytes"`
	StackInuse uint64  `json:"stack_inuse_bytes"`
	Sys        uint64  `json:"sys_bytes"`
	NumGC      uint32  `json:"num_gc"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
	Open       int64   `json:"conns_open"`
	Accepted   int64   `json:"conns_accepted"`
	MsgsIn     int64   `json:"msgs_in"`
	MsgsOut    int64   `json:"msgs_out"`
	CPUNs      int64   `json:"cpu_ns"` // user + system CPU time of the process
}

func readServerStats(kind string, srv loadServer, started time.Time, collect bool) serverStats {
	if cs, ok := srv.(childServer); ok {
		st := cs.stats(collect)
		st.UptimeSec = time.Since(started).Seconds()
		return st
	}
	if collect {
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := serverStats{
		Kind:       kind,
		UptimeSec:  time.Since(started).Seconds(),
		Collected:  collect,
		RSS:        readRSS(),
		HeapInuse:  ms.HeapInuse,
		HeapAlloc:  ms.HeapAlloc,
		StackInuse: ms.StackInuse,
		Sys:        ms.Sys,
		NumGC:      ms.NumGC,
		Goroutines: runtime.NumGoroutine(),
		FDs:        countFDs(),
		CPUNs:      cpuTime().Nanoseconds(),
	}
	st.Open, st.Accepted, st.MsgsIn, st.MsgsOut = srv.counts()
	return st
}

// readRSS returns VmRSS from /proc/self/status, or 0 where there is none.
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseVmRSS(b)
}

// parseVmRSS reads VmRSS from the text of a /proc/PID/status.
func parseVmRSS(b []byte) uint64 {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parsePush recognizes the text command "push N".
func parsePush(typ websocket.MessageType, b []byte) (int, bool) {
	if typ != websocket.MessageText {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(b), "push ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 {
		return 0, false
	}
	return min(n, maxPush), true
}

// pushPayload returns a fresh push message stamped with the wall clock (the
// client, on the same kernel clock, subtracts it from its arrival time).
func pushPayload(size int) []byte {
	b := make([]byte, size)
	b[0] = tagPush
	binary.BigEndian.PutUint64(b[1:], uint64(time.Now().UnixNano()))
	return b
}

// bareServer is the baseline: coder/websocket used directly, the read loop
// on the net/http handler goroutine, echoing from there. Pushes write to the
// socket from the pushing goroutine (a timer's), concurrently with the read
// loop, which coder/websocket allows.
type bareServer struct {
	cfg                     serveConfig
	open, accepted, in, out atomic.Int64
	members                 memberSet[*websocket.Conn] // with -group
}

func (s *bareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit)
	s.accepted.Add(1)
	s.open.Add(1)
	defer s.open.Add(-1)
	if s.cfg.group {
		s.members.add(ws)
		defer s.members.remove(ws)
	}
	if s.cfg.pushEvery > 0 {
		var t *time.Timer
		t = time.AfterFunc(s.cfg.pushEvery, func() {
			if s.write(ws, websocket.MessageBinary, pushPayload(s.cfg.pushSize)) == nil {
				t.Reset(s.cfg.pushEvery)
			}
		})
		defer t.Stop()
	}
	for {
		typ, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		s.in.Add(1)
		if n, ok := parsePush(typ, data); ok {
			for range n {
				if err := s.write(ws, websocket.MessageBinary, pushPayload(s.cfg.pushSize)); err != nil {
					return
				}
			}
			continue
		}
		if err := s.write(ws, typ, data); err != nil {
			return
		}
	}
}

func (s *bareServer) write(ws *websocket.Conn, typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := ws.Write(ctx, typ, b); err != nil {
		return err
	}
	s.out.Add(1)
	return nil
}

func (s *bareServer) counts() (open, accepted, in, out int64) {
	return s.open.Load(), s.accepted.Load(), s.in.Load(), s.out.Load()
}

// broadcast is the naive loop: the calling goroutine writes to each member
// in turn, each write bounded by the write timeout, as a hand-written server
// would. A member whose write fails is closed by coder/websocket; its read
// loop then removes it.
func (s *bareServer) broadcast(_ context.Context, b []byte) (int, error) {
	members := s.members.list()
	for _, ws := range members {
		_ = s.write(ws, websocket.MessageText, b)
	}
	return len(members), nil
}

// shutdown does nothing: the hijacked sockets end with the process.
func (s *bareServer) shutdown(context.Context) error { return nil }

// actorServer is wsactor with one handler value shared by every connection
// (it holds no per-connection state, so the factory allocates nothing).
type actorServer struct {
	s *wsactor.Server
}

type pushTick struct{}

type actorHandler struct{ cfg serveConfig }

func (h *actorHandler) OnOpen(c *wsactor.Conn) error {
	if h.cfg.group {
		if err := c.Join(groupName, nil); err != nil {
			return err
		}
	}
	if h.cfg.pushEvery > 0 {
		c.Every(h.cfg.pushEvery, pushTick{})
	}
	return nil
}

func (h *actorHandler) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	if n, ok := parsePush(m.Type, m.Data); ok {
		for range n {
			if err := c.Send(wsactor.Binary(pushPayload(h.cfg.pushSize))); err != nil {
				return err
			}
		}
		return nil
	}
	return c.Send(m)
}

func (h *actorHandler) Receive(c *wsactor.Conn, msg any) {
	if _, ok := msg.(pushTick); ok {
		_ = c.Send(wsactor.Binary(pushPayload(h.cfg.pushSize)))
	}
}

func newActorServer(cfg serveConfig, logger *slog.Logger) *actorServer {
	s := wsactor.New(wsactor.Options{
		Logger: logger,
		// Everything else is the default: compression off, 10 s write
		// timeout, 256-message / 1 MiB send queue closing on overflow,
		// pings every 30 s (a timer, not a goroutine) unless -ping-interval.
		// The inbound rate limiter stays on (its cost is measured) with
		// rates no load reaches: a closed loop on few connections would
		// exceed the default 200 messages/s per connection, and the bare
		// server has no limit.
		Transport: wsactor.TransportOptions{MaxMessageSize: readLimit, PingInterval: cfg.pingInterval,
			RateLimit: wsactor.RateLimit{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}},
	})
	h := &actorHandler{cfg: cfg}
	s.Handle(wsPath, func() wsactor.Handler { return h })
	return &actorServer{s: s}
}

func (a *actorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.s.ServeHTTP(w, r) }

func (a *actorServer) counts() (open, accepted, in, out int64) {
	st := a.s.Stats()
	return st.ConnectionsOpen, st.ConnectionsAccepted, st.MessagesIn, st.MessagesOut
}

// broadcast is Groups().Broadcast: the message is prepared once and posted
// to every member's mailbox; the call does not wait for the writes.
func (a *actorServer) broadcast(ctx context.Context, b []byte) (int, error) {
	return a.s.Groups().Broadcast(ctx, groupName, wsactor.Message{Type: wsactor.MessageText, Data: b})
}

func (a *actorServer) shutdown(ctx context.Context) error { return a.s.Shutdown(ctx) }
