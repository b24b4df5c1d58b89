// Package lane is a data path between the nodes of a cluster beside
// protoactor's remote: one TCP connection from each node to each peer it
// sends to, carrying length-prefixed frames that the receiving node hands to
// a handler by channel, in the order they were written.
//
// protoactor's remote wraps every message in an envelope, serializes it by
// type name and sends it through gRPC's HTTP/2 framing, with two goroutine
// hand-offs on each side; for a batch of small messages to connections that
// costs more CPU than delivering them. A frame here is written with one
// system call and handed on from the reader's own buffer.
//
// The remote is still how nodes find each other's lanes and agree on order:
// a sender asks the peer's lane process (Sync) for the address and the token
// of its listener, and the peer answers only once everything the sender sent
// before on the remote's one stream has been handed on, and, when asked,
// once a lane session has ended and all it received has been handled. So a
// sender that switches from the remote to the lane, or back after the lane
// broke, keeps the order of what it sends.
//
// A lane is as trusted as the remote: its connections present a token
// learned through the remote, and they use the remote's TLS when it has one.
package lane

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/internal/wire"
)

// ProcessName is the name of a node's lane process, which answers
// wire.LaneSync.
const ProcessName = "wsactor-lane"

// MaxFrame is the largest frame a lane carries: a reader refuses a longer
// one, and Write refuses to send it.
const MaxFrame = 1 << 30

// Version is the lane's version, of the hello and of what the frames carry
// (version 2: a runtime's frames may hold messages for any process, with
// their sender, which version 1 could not read). Two nodes of different
// versions learn it in their Sync, and use the remote; a hello of another
// version is refused.
const Version = 2

// hello starts every lane connection: magic and version, the token, the
// session ID and the dialer's actor-system address.
var magic = [5]byte{'W', 'S', 'A', 'L', Version}

const (
	tokenLen         = 32
	handshakeTimeout = 10 * time.Second
	dialTimeout      = 3 * time.Second
	// maxPending bounds the connections in their hello at once; more are
	// refused at once.
	maxPending      = 64
	refusalLogEvery = 10 * time.Second
	// endedMemory is how long a hub remembers a session after it ended (or
	// a Sync ended it before its hello arrived, so that the hello is
	// refused), for a late Sync's count of what it handled.
	endedMemory = 10 * time.Minute
	// Unknown is Info.Handled when the peer does not remember the session
	// (it ended more than endedMemory ago): its losses cannot be counted.
	Unknown = math.MaxUint64
	// idleBuffer is the read buffer a session keeps; a larger frame gets
	// a buffer of its own, dropped after it. It holds several of a
	// runtime's frames (at most 64 KiB and a message, unless one message is
	// larger), so that one read fetches several and a frame seldom needs a
	// buffer of its own: at 64 KiB, half of the frames of a busy lane
	// did, and their allocations cost a tenth of the lane's CPU.
	idleBuffer = 256 << 10
)

// Handler receives a frame's payload for a channel, from the node at actor
// address from. payload is only valid during the call.
type Handler func(from string, payload []byte)

// Config configures a Hub.
type Config struct {
	// Listen is the host:port the lane listens on; port 0 picks a free one.
	Listen string
	// ServerTLS and ClientTLS, when set, make the lane's connections TLS,
	// as the remote's are (cluster.Config.RemoteTLS).
	ServerTLS, ClientTLS *tls.Config
	// WriteTimeout bounds one frame's write; a lane whose peer does not
	// take a frame within it is closed (default 10 s).
	WriteTimeout time.Duration
	// Logger receives refused connections and broken lanes (default
	// slog.Default()).
	Logger *slog.Logger
}

// Stats counts a hub's traffic.
type Stats struct {
	Sessions  int    // inbound lane connections open now
	Links     int    // outbound lane connections open now
	FramesIn  uint64 // frames received and handed on
	FramesOut uint64 // frames written
	Refused   uint64 // inbound connections refused (bad hello or token, ended session)
	Dropped   uint64 // frames received for a channel nobody handles
	// FramesLost counts frames this node wrote on lanes that broke and
	// that the peer never handled (it reports how many it did), and frames
	// whose write failed.
	FramesLost uint64
}

// Hub is an actor system's end of its lanes: the listener, the inbound
// sessions, the outbound connections by peer, and the lane process.
type Hub struct {
	system *actor.ActorSystem
	cfg    Config
	ln     net.Listener
	port   string
	token  []byte
	logger *slog.Logger

	handlers sync.Map // channel → *registration
	process  *syncProcess

	mu       sync.Mutex
	closed   bool
	sessions map[uint64]*session
	ended    map[uint64]endedSession // sessions that ended, or that a Sync ended before they started
	pending  map[net.Conn]struct{}   // connections in their hello

	refusedSinceLog int
	lastRefusalLog  time.Time
	links           map[string]*Conn // by peer actor address

	framesIn, framesOut, refused, dropped, lost atomic.Uint64
	wg                                          sync.WaitGroup
}

var hubs sync.Map // *actor.ActorSystem → *Hub

// Of returns the hub started for system, or nil.
func Of(system *actor.ActorSystem) *Hub {
	if h, ok := hubs.Load(system); ok {
		return h.(*Hub)
	}
	return nil
}

// Start listens for lanes and registers system's lane process. Start it
// before the actor system joins a cluster, so that peers find it.
func Start(system *actor.ActorSystem, cfg Config) (*Hub, error) {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lane: listen on %s: %w", cfg.Listen, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if cfg.ServerTLS != nil {
		ln = tls.NewListener(ln, cfg.ServerTLS)
	}
	h := &Hub{
		system: system, cfg: cfg, ln: ln, port: port, token: make([]byte, tokenLen),
		logger:   cfg.Logger.With(slog.String("component", "lane")),
		sessions: make(map[uint64]*session), ended: make(map[uint64]endedSession), pending: make(map[net.Conn]struct{}), links: make(map[string]*Conn),
	}
	_, _ = rand.Read(h.token)
	reg := system.ProcessRegistry
	reg.Remove(actor.NewPID(reg.Address, ProcessName))
	h.process = &syncProcess{h}
	reg.Add(h.process, ProcessName)
	hubs.Store(system, h)
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

// Port returns the port the hub listens on.
func (h *Hub) Port() string { return h.port }

// Handle makes fn receive the frames for channel, replacing any handler
// before it, and returns a function that removes fn (not a handler that
// replaced it since): call it when whatever fn delivers to is gone.
func (h *Hub) Handle(channel string, fn Handler) (remove func()) {
	r := &registration{fn}
	h.handlers.Store(channel, r)
	return func() { h.handlers.CompareAndDelete(channel, r) }
}

// Current returns the handler of channel, or nil: tests wrap it (a
// receiver that stalls).
func (h *Hub) Current(channel string) Handler {
	if r, ok := h.handlers.Load(channel); ok {
		return r.(*registration).fn
	}
	return nil
}

// Swap makes fn channel's handler and returns a function that puts back
// the handler it replaced, as it was: that handler's remover still works.
// For tests that wrap a server's handler (a receiver that stalls, or that
// counts). restore does nothing if channel's handler changed since.
func (h *Hub) Swap(channel string, fn Handler) (restore func()) {
	old, had := h.handlers.Load(channel)
	r := &registration{fn}
	h.handlers.Store(channel, r)
	return func() {
		if had {
			h.handlers.CompareAndSwap(channel, r, old)
		} else {
			h.handlers.CompareAndDelete(channel, r)
		}
	}
}

// registration is a Handler in Hub.handlers, by pointer, so that its
// remover can tell it from a later one.
type registration struct{ fn Handler }

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{Sessions: len(h.sessions), Links: len(h.links)}
	h.mu.Unlock()
	s.FramesIn, s.FramesOut = h.framesIn.Load(), h.framesOut.Load()
	s.Refused, s.Dropped, s.FramesLost = h.refused.Load(), h.dropped.Load(), h.lost.Load()
	return s
}

// Close stops listening, ends every session and outbound connection and
// waits for the readers. Senders fall back to the remote.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	hubs.CompareAndDelete(h.system, h)
	// Peers asking from now on hear that there is no lane, and use the remote.
	reg := h.system.ProcessRegistry
	if p, ok := reg.GetLocal(ProcessName); ok && p == h.process {
		reg.Remove(actor.NewPID(reg.Address, ProcessName))
	}
	_ = h.ln.Close()
	for _, s := range h.sessions {
		_ = s.conn.Close()
	}
	for nc := range h.pending {
		_ = nc.Close() // a connection that says nothing must not hold Close for the hello's timeout
	}
	links := h.links
	h.links = map[string]*Conn{}
	h.mu.Unlock()
	for _, c := range links {
		c.fail()
	}
	h.wg.Wait()
}

// Reset closes every lane connection, inbound and outbound, as a network
// failure would: senders set up new ones, behind a Sync that keeps their
// order, and frames in flight may be lost. For tests, and for a node whose
// peers' TLS certificates were replaced.
func (h *Hub) Reset() {
	h.mu.Lock()
	sessions := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		sessions = append(sessions, s)
	}
	links := h.links
	h.links = map[string]*Conn{}
	h.mu.Unlock()
	for _, c := range links {
		c.fail()
	}
	for _, s := range sessions {
		_ = s.conn.Close()
		<-s.done
	}
}

// Info is what a peer's lane process answers: where to dial, and the token
// to present; and, to a Sync with after, how many frames it handled on that
// session.
type Info struct {
	Address string
	Token   []byte
	Handled uint64
}

// ErrUnsupported is Sync's answer from a node without a lane (an older
// wsactor, or one started without it), or without a handler for the
// channel asked for.
var ErrUnsupported = errors.New("lane: the node has no lane")

// Sync asks the lane process of the node at address for its lane to
// channel, and returns once that node has handed on everything this node
// sent it before on the remote and, if after is not 0, ended the lane
// session after and handled all it received. It fails after timeout, and
// with ErrUnsupported if the node has no lane or nothing handles channel
// there.
func (h *Hub) Sync(address, channel string, after uint64, timeout time.Duration) (Info, error) {
	res, err := h.system.Root.RequestFuture(actor.NewPID(address, ProcessName), &wire.LaneSync{After: after, Channel: channel, Version: Version}, timeout).Result()
	if errors.Is(err, actor.ErrDeadLetter) {
		return Info{}, ErrUnsupported
	}
	if err != nil {
		return Info{}, fmt.Errorf("lane: sync with %s: %w", address, err)
	}
	switch m := res.(type) {
	case *wire.LaneInfo:
		if m.GetError() != "" {
			return Info{}, fmt.Errorf("%w: %s", ErrUnsupported, m.GetError())
		}
		if m.GetVersion() != Version {
			// A node of the version before, which answered without one.
			return Info{}, fmt.Errorf("%w: its lane is of version %d, this node's of %d", ErrUnsupported, m.GetVersion(), Version)
		}
		return Info{Address: m.GetAddress(), Token: m.GetToken(), Handled: m.GetHandled()}, nil
	case *actor.DeadLetterResponse:
		return Info{}, ErrUnsupported
	}
	return Info{}, fmt.Errorf("lane: unexpected answer %T from %s", res, address)
}

// Link returns the open connection to the node at address, dialling info's
// address if there is none.
func (h *Hub) Link(address string, info Info) (*Conn, error) {
	h.mu.Lock()
	if c := h.links[address]; c != nil && !c.Broken() {
		h.mu.Unlock()
		return c, nil
	}
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("lane: hub closed")
	}
	c, err := h.dial(address, info)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	old := h.links[address]
	switch {
	case old != nil && !old.Broken():
		// Another sender dialled meanwhile: use its connection.
		h.mu.Unlock()
		c.fail()
		return old, nil
	case h.closed:
		h.mu.Unlock()
		c.fail()
		return nil, errors.New("lane: hub closed")
	}
	h.links[address] = c
	h.mu.Unlock()
	return c, nil
}

func (h *Hub) dial(address string, info Info) (*Conn, error) {
	if len(info.Token) != tokenLen {
		return nil, fmt.Errorf("lane: %s sent a token of %d bytes", address, len(info.Token))
	}
	d := net.Dialer{Timeout: dialTimeout}
	var nc net.Conn
	var err error
	if h.cfg.ClientTLS != nil {
		cfg := h.cfg.ClientTLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(info.Address)
		}
		nc, err = (&tls.Dialer{NetDialer: &d, Config: cfg}).Dial("tcp", info.Address)
	} else {
		nc, err = d.Dial("tcp", info.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("lane: dial %s (node %s): %w", info.Address, address, err)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint64(idb[:]) | 1 // never 0
	hello := append([]byte(nil), magic[:]...)
	hello = append(hello, info.Token...)
	hello = binary.BigEndian.AppendUint64(hello, id)
	from := h.system.Address()
	hello = binary.AppendUvarint(hello, uint64(len(from)))
	hello = append(hello, from...)
	_ = nc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if _, err := nc.Write(hello); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("lane: hello to %s: %w", info.Address, err)
	}
	c := &Conn{id: id, nc: nc, peer: address, timeout: h.cfg.WriteTimeout, hub: h}
	go c.watch()
	return c, nil
}

// watch breaks the connection as soon as the peer closes its end: the
// peer never writes, so a read returns only then. Without it, writes would
// go on into the socket's buffer, and be lost, until the kernel heard of
// the close.
func (c *Conn) watch() {
	_, _ = io.Copy(io.Discard, c.nc)
	c.fail()
}

// Conn is an outbound lane connection, shared by the senders to one peer.
type Conn struct {
	id      uint64
	nc      net.Conn
	peer    string
	timeout time.Duration
	hub     *Hub

	mu       sync.Mutex // one frame at a time
	broken   atomic.Bool
	written  atomic.Uint64 // frames written
	reported atomic.Bool   // its losses were counted
}

// Lost reports how many of the frames written on c the peer did not
// handle, given the count a Sync with after set to c's ID answered, and
// counts them in the hub's FramesLost. Only the first call per connection
// counts; later ones return 0.
func (c *Conn) Lost(handled uint64) uint64 {
	w := c.written.Load()
	if handled >= w || handled == Unknown || c.reported.Swap(true) {
		return 0
	}
	c.hub.lost.Add(w - handled)
	return w - handled
}

// ID returns the connection's session ID, for Sync's after.
func (c *Conn) ID() uint64 { return c.id }

// Broken reports whether a write failed or the hub closed the connection:
// a sender must Sync with after set to ID before it sends another way.
func (c *Conn) Broken() bool { return c.broken.Load() }

// AppendHeader starts a frame for channel at the end of b. Append the
// payload to what it returns, then Write the whole.
func AppendHeader(b []byte, channel string) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.AppendUvarint(b, uint64(len(channel)))
	return append(b, channel...)
}

// ErrBroken is Write's error on a connection that was broken before the
// write: nothing of the frame was sent, so it can go another way.
var ErrBroken = errors.New("lane: connection broken")

// Write sends a frame begun by AppendHeader. On error the connection is
// broken: the frame (unless the error is ErrBroken), and frames written
// before it that the peer had not read, may be lost.
func (c *Conn) Write(frame []byte) error {
	if len(frame) < 5 || len(frame)-4 > MaxFrame {
		c.hub.lost.Add(1)
		return fmt.Errorf("lane: a frame of %d bytes cannot be sent (the limit is %d); dropped", len(frame), MaxFrame)
	}
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken.Load() {
		return ErrBroken
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(frame); err != nil {
		if c.hub != nil {
			c.hub.lost.Add(1) // if part of it went, the peer drops the part
		}
		c.fail()
		return fmt.Errorf("lane: write to %s: %w", c.peer, err)
	}
	c.written.Add(1)
	c.hub.framesOut.Add(1)
	return nil
}

// fail marks the connection broken, closes it and forgets it. The caller
// must not hold the hub's lock.
func (c *Conn) fail() {
	c.broken.Store(true)
	_ = c.nc.Close()
	h := c.hub
	h.mu.Lock()
	if h.links[c.peer] == c {
		delete(h.links, c.peer)
	}
	h.mu.Unlock()
}

// session is an inbound lane connection.
type session struct {
	id      uint64
	from    string
	conn    net.Conn
	handled uint64        // frames handed on (or dropped), by the reader
	done    chan struct{} // closed once the reader has returned
}

// endedSession is what a hub remembers of a session after it: when, and
// how many frames it handled.
type endedSession struct {
	at      time.Time
	handled uint64
}

func (h *Hub) accept() {
	defer h.wg.Done()
	for {
		nc, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		h.mu.Lock()
		full := len(h.pending) >= maxPending
		if !full && !h.closed {
			h.pending[nc] = struct{}{}
		}
		closed := h.closed
		h.mu.Unlock()
		if full || closed {
			// Only a stranger or a storm opens this many at once: a node
			// dials one connection per peer.
			_ = nc.Close()
			h.refuse(nc, errors.New("too many connections in their hello"))
			continue
		}
		h.wg.Add(1)
		go h.serve(nc)
	}
}

// refuse counts a refused connection and logs it, at most once every
// refusalLogEvery with the number of refusals since.
func (h *Hub) refuse(nc net.Conn, err error) {
	h.refused.Add(1)
	h.mu.Lock()
	h.refusedSinceLog++
	now := time.Now()
	if now.Sub(h.lastRefusalLog) < refusalLogEvery {
		h.mu.Unlock()
		return
	}
	n := h.refusedSinceLog
	h.refusedSinceLog, h.lastRefusalLog = 0, now
	h.mu.Unlock()
	h.logger.Warn("wsactor: refused a lane connection", slog.String("remote", nc.RemoteAddr().String()),
		slog.Any("error", err), slog.Int("refused_since_last_log", n))
}

// serve reads a connection's hello, then its frames until it ends.
func (h *Hub) serve(nc net.Conn) {
	defer h.wg.Done()
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 256) // the hello; frames are read without it
	s, err := h.handshake(nc, r)
	h.mu.Lock()
	delete(h.pending, nc)
	h.mu.Unlock()
	if err != nil {
		h.refuse(nc, err)
		return
	}
	defer func() {
		h.mu.Lock()
		delete(h.sessions, s.id)
		h.ended[s.id] = endedSession{at: time.Now(), handled: s.handled}
		h.mu.Unlock()
		close(s.done)
	}()
	err = h.read(s, r, nc)
	var pe protocolError
	switch {
	case errors.As(err, &pe):
		// An authenticated peer sent what no wsactor writes: a bug, or
		// another version.
		h.logger.Warn("wsactor: ended a lane session that broke the protocol", slog.String("from", s.from), slog.Any("error", err))
	case !errors.Is(err, net.ErrClosed):
		h.logger.Debug("wsactor: lane session ended", slog.String("from", s.from), slog.Any("error", err))
	}
}

func (h *Hub) handshake(nc net.Conn, r *bufio.Reader) (*session, error) {
	_ = nc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var fixed [len(magic) + tokenLen + 8]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("reading the hello: %w", err)
	}
	if [5]byte(fixed[:5]) != magic {
		return nil, errors.New("not a wsactor lane hello (or another version)")
	}
	if subtle.ConstantTimeCompare(fixed[5:5+tokenLen], h.token) != 1 {
		return nil, errors.New("wrong token")
	}
	id := binary.BigEndian.Uint64(fixed[5+tokenLen:])
	n, err := binary.ReadUvarint(r)
	if err != nil || n == 0 || n > 1024 {
		return nil, fmt.Errorf("bad sender address length %d (%v)", n, err)
	}
	from := make([]byte, n)
	if _, err := io.ReadFull(r, from); err != nil {
		return nil, fmt.Errorf("reading the sender address: %w", err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	s := &session{id: id, from: string(from), conn: nc, done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pruneEnded(time.Now())
	switch {
	case h.closed:
		return nil, errors.New("hub closed")
	case h.sessions[id] != nil:
		return nil, fmt.Errorf("session %d is open already", id)
	case !h.ended[id].at.IsZero():
		return nil, fmt.Errorf("session %d has ended (or was ended before it started)", id)
	}
	h.sessions[id] = s
	return s, nil
}

// read hands each frame to its channel's handler, straight from a buffer
// that each read from the socket fills as far as it can: several frames
// arrive with one system call, and none is copied. A frame larger than the
// buffer gets a buffer of its own, dropped after it. The bytes the
// handshake's reader took beyond the hello come first.
func (h *Hub) read(s *session, hr *bufio.Reader, nc net.Conn) error {
	buf := make([]byte, idleBuffer)
	pending, _ := hr.Peek(hr.Buffered())
	start, end := 0, copy(buf, pending)
	// fill makes buf[start:end] hold at least need bytes.
	// A large frame's buffer doubles as its bytes arrive, so a length
	// alone never makes the reader allocate it.
	fill := func(need int) error {
		if need > len(buf)-start {
			copy(buf, buf[start:end])
			end -= start
			start = 0
		}
		for end-start < need {
			if end == len(buf) { // start is 0 here, and need > len(buf)
				grown := make([]byte, min(need, 2*len(buf)))
				copy(grown, buf[:end])
				buf = grown
			}
			n, err := nc.Read(buf[end:])
			end += n
			if err != nil && end-start < need {
				return err
			}
		}
		return nil
	}
	for {
		if err := fill(4); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(buf[start:])
		if n == 0 || n > MaxFrame {
			return protocolError(fmt.Sprintf("frame of %d bytes", n))
		}
		if err := fill(4 + int(n)); err != nil {
			return err
		}
		frame := buf[start+4 : start+4+int(n)]
		start += 4 + int(n)
		cl, k := binary.Uvarint(frame)
		if k <= 0 || cl > uint64(len(frame)-k) {
			return protocolError("malformed frame header")
		}
		channel, payload := frame[k:k+int(cl)], frame[k+int(cl):]
		s.handled++ // a frame for nobody is not lost in the lane
		if fn, ok := h.handlers.Load(string(channel)); ok {
			h.framesIn.Add(1)
			fn.(*registration).fn(s.from, payload)
		} else {
			h.dropped.Add(1)
		}
		if start == end {
			start, end = 0, 0
			if len(buf) > idleBuffer {
				buf = make([]byte, idleBuffer) // after a large frame
			}
		}
	}
}

// protocolError is a frame no wsactor writes.
type protocolError string

func (e protocolError) Error() string { return "lane: " + string(e) }

// endSession ends session id, waits until its reader has returned and
// returns how many frames it handled. A session that has not started is
// remembered as ended, so that its hello, if it comes later, is refused.
func (h *Hub) endSession(id uint64) uint64 {
	h.mu.Lock()
	s := h.sessions[id]
	if s == nil {
		e, ok := h.ended[id]
		if !ok {
			// Not started yet (its hello will be refused), or forgotten:
			// which, cannot be told, so neither is counted.
			h.ended[id] = endedSession{at: time.Now(), handled: Unknown}
			e.handled = Unknown
		}
		h.mu.Unlock()
		return e.handled
	}
	h.mu.Unlock()
	_ = s.conn.Close()
	<-s.done
	return s.handled
}

func (h *Hub) pruneEnded(now time.Time) {
	for id, e := range h.ended {
		if now.Sub(e.at) > endedMemory {
			delete(h.ended, id)
		}
	}
}

// advertised is the address peers dial: the actor system's host with the
// lane's port.
func (h *Hub) advertised() string {
	host, _, err := net.SplitHostPort(h.system.Address())
	if err != nil {
		host = h.system.Address()
	}
	return net.JoinHostPort(host, h.port)
}

// syncProcess answers wire.LaneSync on the goroutine of the endpoint reader
// that received it, so after everything received before it on the stream
// from that node has been handed on.
type syncProcess struct{ h *Hub }

func (p *syncProcess) SendUserMessage(_ *actor.PID, message any) {
	_, msg, sender := actor.UnwrapEnvelope(message)
	req, ok := msg.(*wire.LaneSync)
	if !ok || sender == nil {
		return
	}
	h := p.h
	answer := func(handled uint64) {
		switch _, ok := h.handlers.Load(req.GetChannel()); {
		case req.GetVersion() != Version:
			h.system.Root.Send(sender, &wire.LaneInfo{Error: fmt.Sprintf("this node's lane is of version %d, the sender's of %d", Version, req.GetVersion()), Handled: handled, Version: Version})
		case !ok:
			h.system.Root.Send(sender, &wire.LaneInfo{Error: fmt.Sprintf("nothing handles channel %q", req.GetChannel()), Handled: handled, Version: Version})
		default:
			h.system.Root.Send(sender, &wire.LaneInfo{Address: h.advertised(), Token: h.token, Handled: handled, Version: Version})
		}
	}
	if req.GetAfter() == 0 {
		answer(0)
		return
	}
	// Waiting for a session's reader must not hold the endpoint reader.
	go func() { answer(h.endSession(req.GetAfter())) }()
}

func (p *syncProcess) SendSystemMessage(*actor.PID, any) {}
func (p *syncProcess) Stop(*actor.PID)                   {}
