package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Client modes.
const (
	modeEcho   = "echo"   // send binary messages, time their echoes
	modePush   = "push"   // send "push N", time the N pushed messages
	modeListen = "listen" // send nothing, time what the server pushes (serve -push-every)
	// modeBroadcast sends nothing and times the broadcasts the orchestrator
	// has the server make (POST /broadcast), reporting each one once every
	// connection of the process has it.
	modeBroadcast = "broadcast"
)

// Client protocols.
const (
	protoPlain      = "plain"      // bare and wsactor: WebSocket messages as they are
	protoCentrifugo = "centrifugo" // Centrifugo's JSON protocol: connect, subscribe, pushes, pings
)

const (
	// senders is the number of goroutines that pace the open-loop sends of
	// one client process; each owns every senders-th connection.
	senders = 8
	// maxErrorSamples bounds the error texts a summary carries.
	maxErrorSamples = 5
)

type clientConfig struct {
	target          string
	conns           int
	sources         []net.IP
	rate            float64 // messages per second per connection; 0: closed loop
	duration        time.Duration
	msgSize         int
	mode            string
	pushN           int
	dialRate        float64 // connections per second
	dialConcurrency int
	connectTimeout  time.Duration
	drain           time.Duration
	orchestrated    bool
	protocol        string
	channel         string // Centrifugo: the channel each connection subscribes to ("": none)
	broadcasts      int    // broadcast mode: the most broadcasts the run may make
}

// clientSummary is one client process's result. Latencies are round trips
// (echo) or server-to-client delivery times (push, listen).
type clientSummary struct {
	Conns            int            `json:"conns"`
	Connected        int            `json:"connected"`
	DialErrors       int            `json:"dial_errors"`
	DialErrorSamples []string       `json:"dial_error_samples,omitempty"`
	RampSec          float64        `json:"ramp_s"`
	Mode             string         `json:"mode"`
	RatePerConn      float64        `json:"rate_per_conn"`
	SteadySec        float64        `json:"steady_s"`
	Sent             uint64         `json:"sent"`
	Expected         uint64         `json:"expected"`
	Received         uint64         `json:"received"`
	Lost             uint64         `json:"lost"`
	BadMessages      uint64         `json:"bad_messages"`
	WriteErrors      uint64         `json:"write_errors"`
	Dropped          int            `json:"dropped_conns"`
	CloseCodes       map[string]int `json:"close_codes,omitempty"`
	DropSamples      []string       `json:"drop_samples,omitempty"`
	ThroughputPerSec float64        `json:"throughput_per_s"`
	CPUSec           float64        `json:"client_cpu_s"`
	Latency          latencySummary `json:"latency"`
	Hist             hist           `json:"hist"`
}

type loadClient struct {
	cfg     clientConfig
	epoch   time.Time // base of the monotonic echo timestamps
	pushCmd []byte
	conns   []*clientConn

	hist      histogram
	sent      atomic.Uint64
	expected  atomic.Uint64
	received  atomic.Uint64
	bad       atomic.Uint64
	writeErrs atomic.Uint64
	counting  atomic.Bool // arrivals count: steady phase and drain
	loop      atomic.Bool // closed loop: readers send the next message
	closing   atomic.Bool // the client is closing: read errors are expected
	bcast     *broadcastTracker

	mu             sync.Mutex
	dropped        int
	closeCodes     map[string]int
	dropSamples    []string
	dialErrs       int
	dialErrSamples []string
	readers        sync.WaitGroup
	commands       <-chan string // the orchestrator's lines
}

type clientConn struct {
	ws      *websocket.Conn
	buf     []byte // payload of the connection's single sender at a time
	pending int    // push, closed loop: messages still due for the last command (reader only)
	lastSeq int64  // broadcast: the last sequence number received (reader only)
}

func clientsMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clients", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg clientConfig
	var sources string
	fs.StringVar(&cfg.target, "target", "", "WebSocket `URL` of the server's route, e.g. ws://127.0.0.1:9000/ws")
	fs.IntVar(&cfg.conns, "conns", 1000, "connections to open (at most ~9,000 per process: 20,000 fds)")
	fs.StringVar(&sources, "source", "", "comma-separated loopback source `addresses` to spread connections over, e.g. 127.0.0.2,127.0.0.3 (default: the kernel's choice)")
	fs.Float64Var(&cfg.rate, "rate", 1, "messages (echo) or push commands per second `per connection`; 0 = closed loop: each connection sends again as soon as its reply arrives")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of the steady phase")
	fs.IntVar(&cfg.msgSize, "msg-size", 256, "size in `bytes` of echo messages")
	fs.StringVar(&cfg.mode, "mode", modeEcho, "echo, push (send \"push N\", time the pushes), listen (time the server's periodic pushes) or broadcast (time the broadcasts the orchestrator asks for)")
	fs.StringVar(&cfg.protocol, "protocol", protoPlain, "plain (bare, wsactor) or centrifugo (its JSON protocol: connect, then subscribe to -channel)")
	fs.StringVar(&cfg.channel, "channel", "", "centrifugo: the `channel` every connection subscribes to")
	fs.IntVar(&cfg.broadcasts, "broadcasts", 100, "broadcast mode: the most broadcasts the run makes")
	fs.IntVar(&cfg.pushN, "push-n", 1, "N of \"push N\" (at most 256)")
	fs.Float64Var(&cfg.dialRate, "dial-rate", 1000, "connections opened per second during the ramp (0: as fast as possible)")
	fs.IntVar(&cfg.dialConcurrency, "dial-concurrency", 64, "dials in flight at once")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", 2*time.Minute, "bound on the whole ramp")
	fs.DurationVar(&cfg.drain, "drain", 3*time.Second, "after the steady phase, wait at most this long for outstanding replies")
	fs.BoolVar(&cfg.orchestrated, "orchestrated", false, "speak the orchestrator's line protocol on stdin/stdout (used by wsload run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.sources, err = parseSources(sources); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}

	lc := newLoadClient(cfg)
	commands := readLines(stdin)
	lc.commands = commands
	rampStart := time.Now()
	lc.dialAll(ctx)
	ramp := time.Since(rampStart)
	defer lc.closeAll()
	if cfg.orchestrated {
		fmt.Fprintf(stdout, "connected %d %d\n", len(lc.conns), cfg.conns-len(lc.conns))
		if err := waitCommand(ctx, commands, "start"); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stderr, "wsload clients: %d connected, %d failed in %.1fs\n", len(lc.conns), cfg.conns-len(lc.conns), ramp.Seconds())
	}
	cpu0 := cpuTime()
	if cfg.mode == modeBroadcast {
		rctx, stopReports := context.WithCancel(ctx)
		reported := make(chan struct{})
		go func() { lc.bcast.report(rctx, stdout); close(reported) }()
		defer func() { stopReports(); <-reported }()
	}
	steady := lc.steady(ctx)
	sum := lc.summary(ramp, steady, cpuTime()-cpu0)
	if !cfg.orchestrated {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		sum.Hist = hist{} // for people: the percentiles are enough
		return enc.Encode(sum)
	}
	b, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "summary %s\n", b)
	return waitCommand(ctx, commands, "close")
}

func (cfg *clientConfig) validate() error {
	switch {
	case !strings.HasPrefix(cfg.target, "ws://") && !strings.HasPrefix(cfg.target, "wss://"):
		return fmt.Errorf("-target must be a ws:// URL, got %q", cfg.target)
	case cfg.conns < 1:
		return errors.New("-conns must be at least 1")
	case cfg.rate < 0:
		return errors.New("-rate must not be negative")
	case cfg.duration <= 0:
		return errors.New("-duration must be positive")
	case cfg.msgSize < headerSize || cfg.msgSize > readLimit:
		return fmt.Errorf("-msg-size must be between %d and %d", headerSize, readLimit)
	case cfg.mode != modeEcho && cfg.mode != modePush && cfg.mode != modeListen && cfg.mode != modeBroadcast:
		return fmt.Errorf("unknown -mode %q", cfg.mode)
	case cfg.protocol != protoPlain && cfg.protocol != protoCentrifugo:
		return fmt.Errorf("unknown -protocol %q (want %s or %s)", cfg.protocol, protoPlain, protoCentrifugo)
	case cfg.protocol == protoCentrifugo && cfg.mode != modeBroadcast:
		return fmt.Errorf("-protocol centrifugo supports -mode %s only (Centrifugo has no echo)", modeBroadcast)
	case cfg.broadcasts < 1 || cfg.broadcasts > maxBroadcasts:
		return fmt.Errorf("-broadcasts must be between 1 and %d", maxBroadcasts)
	case cfg.pushN < 1 || cfg.pushN > maxPush:
		return fmt.Errorf("-push-n must be between 1 and %d", maxPush)
	case cfg.dialConcurrency < 1:
		return errors.New("-dial-concurrency must be at least 1")
	}
	return nil
}

func parseSources(s string) ([]net.IP, error) {
	var ips []net.IP
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ip := net.ParseIP(f)
		if ip == nil {
			return nil, fmt.Errorf("-source: %q is not an IP address", f)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

// readLines delivers stdin's lines; the channel closes at EOF.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string, 4)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- strings.TrimSpace(sc.Text())
		}
	}()
	return ch
}

// waitCommand waits for the line want; EOF (the orchestrator is gone or done
// with us) ends the wait too.
func waitCommand(ctx context.Context, lines <-chan string, want string) error {
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if want == "close" {
					return nil
				}
				return fmt.Errorf("stdin closed while waiting for %q", want)
			}
			if line == want {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func newLoadClient(cfg clientConfig) *loadClient {
	lc := &loadClient{
		cfg:        cfg,
		epoch:      time.Now(),
		pushCmd:    []byte("push " + strconv.Itoa(cfg.pushN)),
		closeCodes: make(map[string]int),
	}
	if cfg.mode == modeBroadcast {
		lc.bcast = newBroadcastTracker(cfg.broadcasts)
	}
	return lc
}

func (lc *loadClient) newConn(ws *websocket.Conn) *clientConn {
	buf := make([]byte, lc.cfg.msgSize)
	buf[0] = tagEcho
	for i := headerSize; i < len(buf); i++ {
		buf[i] = byte(i)
	}
	return &clientConn{ws: ws, buf: buf, pending: lc.cfg.pushN}
}

// dialAll opens the connections at cfg.dialRate, spreading them over the
// source addresses, and starts each one's reader. Failures are counted, not
// retried.
func (lc *loadClient) dialAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, lc.cfg.connectTimeout)
	defer cancel()
	clients := []*http.Client{newHTTPClient(nil)}
	if len(lc.cfg.sources) > 0 {
		clients = clients[:0]
		for _, ip := range lc.cfg.sources {
			clients = append(clients, newHTTPClient(ip))
		}
	}
	n := lc.cfg.conns
	conns := make([]*clientConn, n)
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		start := time.Now()
		for i := range n {
			if lc.cfg.dialRate > 0 {
				if wait := time.Until(start.Add(time.Duration(float64(i) / lc.cfg.dialRate * float64(time.Second)))); wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range min(n, lc.cfg.dialConcurrency) {
		wg.Go(func() {
			for i := range jobs {
				ws, _, err := websocket.Dial(ctx, lc.cfg.target, &websocket.DialOptions{
					HTTPClient:      clients[i%len(clients)],
					CompressionMode: websocket.CompressionDisabled,
				})
				if err != nil {
					lc.dialFailed(err)
					continue
				}
				ws.SetReadLimit(readLimit)
				if lc.cfg.protocol == protoCentrifugo {
					if err := centrifugoHandshake(ctx, ws, lc.cfg.channel); err != nil {
						ws.CloseNow()
						lc.dialFailed(fmt.Errorf("centrifugo handshake: %w", err))
						continue
					}
				} else if lc.cfg.mode == modeBroadcast {
					if err := warmUp(ctx, ws); err != nil {
						ws.CloseNow()
						lc.dialFailed(fmt.Errorf("warm-up echo: %w", err))
						continue
					}
				}
				cc := lc.newConn(ws)
				conns[i] = cc
				lc.readers.Add(1)
				go lc.read(cc)
			}
		})
	}
	wg.Wait()
	for _, cc := range conns {
		if cc != nil {
			lc.conns = append(lc.conns, cc)
		}
	}
	if lc.bcast != nil {
		lc.bcast.conns.Store(int64(len(lc.conns)))
	}
	// Dials the ramp's deadline left unattempted are failures too.
	if missing := n - len(lc.conns) - lc.dialErrs; missing > 0 {
		lc.dialErrs += missing
		lc.dialErrSamples = append(lc.dialErrSamples, fmt.Sprintf("%d connections not attempted: %v", missing, ctx.Err()))
	}
}

// warmUp has a plain connection read one message (its own, echoed) before
// the broadcasts, as a Centrifugo connection has read its connect and
// subscribe replies: a connection's first read costs the client far more
// than the next ones, and the first broadcast would otherwise time the
// clients' warm-up on bare and wsactor only.
func warmUp(ctx context.Context, ws *websocket.Conn) error {
	msg := []byte("warm-up")
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	_, b, err := ws.Read(ctx)
	if err == nil && !bytes.Equal(b, msg) {
		err = fmt.Errorf("echoed %q, want %q", b, msg)
	}
	return err
}

func (lc *loadClient) dialFailed(err error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.dialErrs++
	if len(lc.dialErrSamples) < maxErrorSamples {
		lc.dialErrSamples = append(lc.dialErrSamples, err.Error())
	}
}

func newHTTPClient(src net.IP) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
		d.Control = bindAddressNoPort
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:        d.DialContext,
		DisableCompression: true,
	}}
}

// read is a connection's reader: it runs for the connection's whole life so
// that pings and close frames are always answered.
func (lc *loadClient) read(cc *clientConn) {
	defer lc.readers.Done()
	for {
		typ, b, err := cc.ws.Read(context.Background())
		if err != nil {
			lc.ended(err)
			return
		}
		if typ == websocket.MessageText && lc.cfg.mode == modeBroadcast {
			lc.readBroadcast(cc, b)
			continue
		}
		var lat int64
		switch {
		case typ != websocket.MessageBinary || len(b) < headerSize:
			lc.bad.Add(1)
			continue
		case b[0] == tagEcho:
			lat = int64(time.Since(lc.epoch)) - int64(binary.BigEndian.Uint64(b[1:]))
			if last := len(b) - 1; len(b) != lc.cfg.msgSize || (last >= headerSize && b[last] != byte(last)) {
				lc.bad.Add(1)
				continue
			}
		case b[0] == tagPush:
			lat = time.Now().UnixNano() - int64(binary.BigEndian.Uint64(b[1:]))
		default:
			lc.bad.Add(1)
			continue
		}
		if lc.counting.Load() {
			lc.received.Add(1)
			lc.hist.record(lat)
		}
		if lc.loop.Load() {
			if lc.cfg.mode == modePush {
				if cc.pending--; cc.pending > 0 {
					continue
				}
				cc.pending = lc.cfg.pushN
			}
			lc.send(cc, cc.buf)
		}
	}
}

// readBroadcast handles one text frame in broadcast mode: a broadcast, or
// Centrifugo's frames (pings are answered; pushes other than publications
// are skipped). A broadcast out of order (lost, repeated or reordered) on a
// connection is counted as bad.
func (lc *loadClient) readBroadcast(cc *clientConn, b []byte) {
	now := time.Now().UnixNano()
	if lc.cfg.protocol != protoCentrifugo {
		seq, t, ok := scanStamp(b)
		if !ok {
			lc.bad.Add(1)
			return
		}
		lc.gotBroadcast(cc, seq, now-t)
		return
	}
	msgs, err := parseCentrifugoFrame(b)
	if err != nil {
		lc.bad.Add(1)
	}
	for _, m := range msgs {
		switch m.kind {
		case cfPing:
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			_ = cc.ws.Write(ctx, websocket.MessageText, []byte("{}"))
			cancel()
		case cfPublication:
			lc.gotBroadcast(cc, m.seq, now-m.t)
		case cfReply:
			lc.bad.Add(1) // no command is outstanding after the handshake
		}
	}
}

func (lc *loadClient) gotBroadcast(cc *clientConn, seq, lat int64) {
	// Counted whether or not this process has read "start" yet: the
	// orchestrator broadcasts only after sending it, and may be quicker
	// than the process's command reader. And counted before the tracker
	// hears of it: the last arrival makes the tracker report the broadcast
	// complete, after which the orchestrator may end the run and this
	// process sum up at once.
	lc.received.Add(1)
	lc.hist.record(lat)
	inOrder := seq == cc.lastSeq+1
	cc.lastSeq = max(cc.lastSeq, seq)
	if !inOrder || !lc.bcast.arrived(seq, lat) {
		lc.bad.Add(1)
	}
}

// ended records a connection that ended before the client closed it.
func (lc *loadClient) ended(err error) {
	if lc.closing.Load() {
		return
	}
	if lc.bcast != nil {
		lc.bcast.dropped()
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.dropped++
	lc.closeCodes[strconv.Itoa(int(websocket.CloseStatus(err)))]++
	if len(lc.dropSamples) < maxErrorSamples {
		lc.dropSamples = append(lc.dropSamples, err.Error())
	}
}

// send writes one echo message (stamped now) or one push command.
func (lc *loadClient) send(cc *clientConn, buf []byte) {
	typ, b, replies := websocket.MessageBinary, buf, uint64(1)
	if lc.cfg.mode == modePush {
		typ, b, replies = websocket.MessageText, lc.pushCmd, uint64(lc.cfg.pushN)
	} else {
		binary.BigEndian.PutUint64(buf[1:], uint64(time.Since(lc.epoch)))
	}
	lc.expected.Add(replies)
	// Not the steady phase's deadline: a write whose context ends closes
	// the connection.
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	err := cc.ws.Write(ctx, typ, b)
	cancel()
	if err != nil {
		lc.expected.Add(^(replies - 1)) // subtract
		if !lc.closing.Load() {
			lc.writeErrs.Add(1)
		}
		return
	}
	lc.sent.Add(1)
}

// steady runs the steady phase for cfg.duration, then waits (at most
// cfg.drain) for the replies still in flight, and returns the phase's length.
func (lc *loadClient) steady(ctx context.Context) time.Duration {
	lc.counting.Store(true)
	defer lc.counting.Store(false)
	start := time.Now()
	end := start.Add(lc.cfg.duration)
	switch {
	case lc.cfg.mode == modeBroadcast:
		lc.awaitEnd(ctx, end)
	case len(lc.conns) == 0 || lc.cfg.mode == modeListen:
		sleepUntil(ctx, end)
	case lc.cfg.rate == 0:
		lc.loop.Store(true)
		var wg sync.WaitGroup
		for w := range min(senders, len(lc.conns)) {
			wg.Go(func() {
				buf := make([]byte, lc.cfg.msgSize) // not cc.buf: its reader may send too
				copy(buf, lc.conns[0].buf)
				for i := w; i < len(lc.conns); i += senders {
					lc.send(lc.conns[i], buf)
				}
			})
		}
		wg.Wait()
		sleepUntil(ctx, end)
		lc.loop.Store(false)
	default:
		var wg sync.WaitGroup
		for w := range min(senders, len(lc.conns)) {
			wg.Go(func() { lc.pace(ctx, w, start, end) })
		}
		wg.Wait()
	}
	d := time.Since(start)
	if lc.cfg.mode != modeListen && lc.cfg.mode != modeBroadcast {
		deadline := time.Now().Add(lc.cfg.drain)
		for lc.received.Load() < lc.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return d
}

// awaitEnd waits for the orchestrator's "end N" (N broadcasts were made:
// each connection expects N), bounded by end.
func (lc *loadClient) awaitEnd(ctx context.Context, end time.Time) {
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	for {
		select {
		case line, ok := <-lc.commands:
			if !ok {
				return
			}
			if rest, found := strings.CutPrefix(line, "end "); found {
				if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
					lc.expected.Store(uint64(n) * uint64(len(lc.conns)))
				}
				return
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// pace is open-loop sender w: it sends to its share of the connections in
// turn, at cfg.rate per connection, whether or not replies have arrived.
// When it falls behind (a slow write, a busy machine) it catches up.
func (lc *loadClient) pace(ctx context.Context, w int, start, end time.Time) {
	var mine []*clientConn
	for i := w; i < len(lc.conns); i += senders {
		mine = append(mine, lc.conns[i])
	}
	interval := time.Duration(float64(time.Second) / (lc.cfg.rate * float64(len(mine))))
	next := start.Add(interval * time.Duration(w) / senders) // stagger the senders
	for k := 0; ctx.Err() == nil; {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		if next.After(now) {
			time.Sleep(min(next.Sub(now), end.Sub(now)))
			continue
		}
		cc := mine[k%len(mine)]
		k++
		lc.send(cc, cc.buf)
		next = next.Add(interval)
	}
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-time.After(time.Until(t)):
	case <-ctx.Done():
	}
}

func (lc *loadClient) summary(ramp, steady, cpu time.Duration) clientSummary {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	h := lc.hist.snapshot()
	s := clientSummary{
		Conns:            lc.cfg.conns,
		Connected:        len(lc.conns),
		DialErrors:       lc.dialErrs,
		DialErrorSamples: lc.dialErrSamples,
		RampSec:          ramp.Seconds(),
		Mode:             lc.cfg.mode,
		RatePerConn:      lc.cfg.rate,
		SteadySec:        steady.Seconds(),
		Sent:             lc.sent.Load(),
		Expected:         lc.expected.Load(),
		Received:         lc.received.Load(),
		BadMessages:      lc.bad.Load(),
		WriteErrors:      lc.writeErrs.Load(),
		Dropped:          lc.dropped,
		CloseCodes:       lc.closeCodes,
		DropSamples:      lc.dropSamples,
		CPUSec:           cpu.Seconds(),
		Latency:          h.summary(),
		Hist:             h,
	}
	if s.Expected > s.Received {
		s.Lost = s.Expected - s.Received
	}
	if steady > 0 {
		s.ThroughputPerSec = float64(s.Received) / steady.Seconds()
	}
	return s
}

// closeAll closes every connection with 1000 (a few at a time: each Close
// waits for the server's close frame) and waits, bounded, for the readers.
func (lc *loadClient) closeAll() {
	lc.closing.Store(true)
	jobs := make(chan *clientConn)
	var wg sync.WaitGroup
	for range min(64, len(lc.conns)) {
		wg.Go(func() {
			for cc := range jobs {
				_ = cc.ws.Close(websocket.StatusNormalClosure, "done")
			}
		})
	}
	for _, cc := range lc.conns {
		jobs <- cc
	}
	close(jobs)
	wg.Wait()
	done := make(chan struct{})
	go func() { lc.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}
