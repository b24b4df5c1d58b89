package lane_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/remotestart"
	"github.com/wsactor/wsactor/internal/wire"
)

// The actor systems and their remotes are started once for the test binary
// (see internal/remotestart); each test starts and closes its own hubs.
var (
	poolOnce sync.Once
	pool     []*actor.ActorSystem
	discard  = slog.New(slog.DiscardHandler)
)

func systems(t *testing.T) (a, b *actor.ActorSystem) {
	t.Helper()
	poolOnce.Do(func() {
		for range 2 {
			s := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discard }))
			if err := remotestart.Start(remote.NewRemote(s, remote.Configure("127.0.0.1", 0)), s.Address); err != nil {
				panic(err)
			}
			pool = append(pool, s)
		}
	})
	return pool[0], pool[1]
}

func startHub(t *testing.T, s *actor.ActorSystem, cfg lane.Config) *lane.Hub {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Logger = discard
	h, err := lane.Start(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// recorder is a channel's handler that keeps copies of its payloads.
type recorder struct {
	mu     sync.Mutex
	from   []string
	frames [][]byte
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) handle(from string, p []byte) {
	r.mu.Lock()
	r.from = append(r.from, from)
	r.frames = append(r.frames, bytes.Clone(p))
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// waitFor waits until r holds n frames, failing after 10 s.
func (r *recorder) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for r.count() < n {
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d frames handled, want %d", r.count(), n)
		}
	}
}

func frame(channel string, payload []byte) []byte {
	return append(lane.AppendHeader(nil, channel), payload...)
}

func link(t *testing.T, from *lane.Hub, to *actor.ActorSystem, channel string) *lane.Conn {
	t.Helper()
	info, err := from.Sync(to.Address(), channel, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := from.Link(to.Address(), info)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFramesArriveInOrderFromTheirSender(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	c := link(t, ha, b, "chat")
	if again := link(t, ha, b, "chat"); again != c {
		t.Fatal("a second Link to the same node dialled a new connection")
	}
	const n = 500
	for i := range n {
		// Sizes from empty to over the reader's kept buffer.
		payload := bytes.Repeat([]byte{byte(i)}, (i*397)%(100<<10))
		payload = binary.BigEndian.AppendUint32(payload, uint32(i))
		if err := c.Write(frame("chat", payload)); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, n)
	for i, p := range rec.frames {
		if got := binary.BigEndian.Uint32(p[len(p)-4:]); got != uint32(i) || len(p) != (i*397)%(100<<10)+4 {
			t.Fatalf("frame %d: sequence %d, %d bytes", i, got, len(p))
		}
		if rec.from[i] != a.Address() {
			t.Fatalf("frame %d from %q, want %q", i, rec.from[i], a.Address())
		}
	}
	if s := hb.Stats(); s.FramesIn != n || s.Sessions != 1 {
		t.Fatalf("receiver stats %+v", s)
	}
	if s := ha.Stats(); s.FramesOut != n || s.Links != 1 {
		t.Fatalf("sender stats %+v", s)
	}
}

func TestSyncRefusesAChannelNobodyHandles(t *testing.T) {
	a, b := systems(t)
	ha := startHub(t, a, lane.Config{})
	// No hub on b at all: its lane process does not exist.
	if _, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second); !errors.Is(err, lane.ErrUnsupported) {
		t.Fatalf("Sync to a node without a lane: %v, want ErrUnsupported", err)
	}
	hb := startHub(t, b, lane.Config{})
	if _, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second); !errors.Is(err, lane.ErrUnsupported) {
		t.Fatalf("Sync for an unhandled channel: %v, want ErrUnsupported", err)
	}
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	c := link(t, ha, b, "chat")
	// A frame for a channel nobody handles is counted and skipped; the
	// session goes on.
	if err := c.Write(frame("other", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(frame("chat", []byte("y"))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	if s := hb.Stats(); s.Dropped != 1 || s.FramesIn != 1 {
		t.Fatalf("receiver stats %+v, want 1 dropped and 1 handled", s)
	}
	hb.Close()
	if lane.Of(b) != nil {
		t.Fatal("Of returns a closed hub")
	}
	if _, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second); !errors.Is(err, lane.ErrUnsupported) {
		t.Fatalf("Sync to a node whose hub closed: %v, want ErrUnsupported", err)
	}
}

// oldLane answers a LaneSync as a node of lane version 1 did: with its
// address and token, and no version.
type oldLane struct{ system *actor.ActorSystem }

func (p oldLane) SendUserMessage(_ *actor.PID, message any) {
	if _, _, sender := actor.UnwrapEnvelope(message); sender != nil {
		p.system.Root.Send(sender, &wire.LaneInfo{Address: "127.0.0.1:1", Token: make([]byte, 32)})
	}
}
func (oldLane) SendSystemMessage(*actor.PID, any) {}
func (oldLane) Stop(*actor.PID)                   {}

// TestSyncFindsAnotherVersion: nodes of different lane versions never dial
// each other (a hello of another version would be refused, and the frames
// written meanwhile lost): each learns it from the other's Sync.
func TestSyncFindsAnotherVersion(t *testing.T) {
	a, b := systems(t)
	ha := startHub(t, a, lane.Config{})
	// b answers as a node of version 1.
	b.ProcessRegistry.Add(oldLane{b}, lane.ProcessName)
	if _, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second); !errors.Is(err, lane.ErrUnsupported) {
		t.Fatalf("Sync to a node of lane version 1: %v, want ErrUnsupported", err)
	}
	// b asks as a node of version 1 (without a version) and is refused.
	ha.Handle("chat", func(string, []byte) {})
	res, err := b.Root.RequestFuture(actor.NewPID(a.Address(), lane.ProcessName), &wire.LaneSync{Channel: "chat"}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := res.(*wire.LaneInfo); !ok || info.GetError() == "" || info.GetToken() != nil {
		t.Fatalf("a version 1 Sync was answered with %v, want an error and no token", res)
	}
}

// TestSyncAfterEndsTheSessionOnceHandled is the barrier a sender relies on
// when it stops using a lane: Sync(after) returns only once everything the
// peer read on that session has been handled.
func TestSyncAfterEndsTheSessionOnceHandled(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	var count int
	var mu sync.Mutex
	hb.Handle("slow", func(string, []byte) {
		time.Sleep(time.Millisecond) // a busy handler: the barrier must wait for it
		mu.Lock()
		count++
		mu.Unlock()
	})
	c := link(t, ha, b, "slow")
	const n = 200
	for range n {
		if err := c.Write(frame("slow", []byte("m"))); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the receiver has the session, so the Sync finds it.
	deadline := time.Now().Add(10 * time.Second)
	for hb.Stats().Sessions != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the session never started")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := ha.Sync(b.Address(), "slow", c.ID(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The session's reader has returned: it handled what it had read
	// (from the socket's buffer too) and will handle nothing more.
	mu.Lock()
	got := count
	mu.Unlock()
	if s := hb.Stats(); s.Sessions != 0 || s.FramesIn != uint64(got) {
		t.Fatalf("after Sync(after): stats %+v, %d frames handled", s, got)
	}
	if got == 0 {
		t.Fatal("no frame was handled before the barrier")
	}
	// The sender's connection is closed by the peer: a later write fails
	// (the kernel may take a first one), and then it is broken.
	for i := 0; !c.Broken(); i++ {
		if i > 1000 {
			t.Fatal("writes to an ended session keep succeeding")
		}
		_ = c.Write(frame("slow", []byte("late")))
	}
}

func TestASessionEndedBeforeItsHelloIsRefused(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	hb.Handle("chat", func(string, []byte) {})
	info := chatInfo(t, ha, b)
	// A session ID the receiver has not seen yet: as if the hello were
	// still in flight when the sender gave up on the lane.
	const id = 0x1234567
	if _, err := ha.Sync(b.Address(), "chat", id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	conn := rawHello(t, info, id)
	defer conn.Close()
	expectClosed(t, conn)
	if s := hb.Stats(); s.Refused != 1 || s.Sessions != 0 {
		t.Fatalf("stats %+v, want the hello refused", s)
	}
}

// chatInfo asks b's lane, from ha, for channel "chat".
func chatInfo(t *testing.T, ha *lane.Hub, b *actor.ActorSystem) lane.Info {
	t.Helper()
	info, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// hello is the start of a lane connection presenting token for session id.
func hello(token []byte, id uint64) []byte {
	b := append([]byte("WSAL\x02"), token...)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.AppendUvarint(b, 4)
	return append(b, "test"...)
}

// rawHello dials the lane at info and sends a hello for session id with
// info's token.
func rawHello(t *testing.T, info lane.Info, id uint64) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", info.Address)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(hello(info.Token, id)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// expectClosed waits until the peer closes conn.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the lane did not close the connection: %v", err)
	}
}

// TestBadConnectionsAreRefused sends what a stranger or a broken peer might
// and checks each is refused or ended, while a good session carries on.
func TestBadConnectionsAreRefused(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	good := link(t, ha, b, "chat")
	info := chatInfo(t, ha, b)
	wrong := bytes.Clone(info.Token)
	wrong[0] ^= 1
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := []struct {
		name    string
		token   []byte // nil: send raw as the whole input
		raw     []byte
		after   []byte // sent after a good hello
		refused bool
	}{
		{name: "http request", raw: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + string(make([]byte, 64))), refused: true},
		{name: "another version", raw: append([]byte("WSAL\x01"), make([]byte, 64)...), refused: true},
		{name: "wrong token", token: wrong, refused: true},
		{name: "empty frame", token: info.Token, after: header(0)},
		{name: "frame over the limit", token: info.Token, after: header(lane.MaxFrame + 1)},
		{name: "channel longer than the frame", token: info.Token, after: append(header(2), 0x7f, 'x')},
		{name: "truncated frame", token: info.Token, after: append(header(100), 1, 'c')},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedBefore := hb.Stats().Refused
			conn, err := net.Dial("tcp", info.Address)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			in := tc.raw
			if tc.token != nil {
				in = append(hello(tc.token, uint64(1000+i)), tc.after...)
			}
			if _, err := conn.Write(in); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated frame" {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, conn)
			if got := hb.Stats().Refused - refusedBefore; (got == 1) != tc.refused {
				t.Fatalf("refused %d times, want refused=%v", got, tc.refused)
			}
			// The good session still works.
			want := rec.count() + 1
			if err := good.Write(frame("chat", []byte(strconv.Itoa(i)))); err != nil {
				t.Fatal(err)
			}
			rec.waitFor(t, want)
		})
	}
	if rec.count() != len(cases) {
		t.Fatalf("%d frames handled, want %d (nothing from the bad connections)", rec.count(), len(cases))
	}
}

func TestResetBreaksLinksAndNewOnesWork(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	c := link(t, ha, b, "chat")
	if err := c.Write(frame("chat", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	ha.Reset()
	if !c.Broken() {
		t.Fatal("Reset left a link unbroken")
	}
	if err := c.Write(frame("chat", []byte("2"))); !errors.Is(err, lane.ErrBroken) {
		t.Fatalf("a write to a reset link: %v, want ErrBroken (nothing sent)", err)
	}
	if _, err := ha.Sync(b.Address(), "chat", c.ID(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c2 := link(t, ha, b, "chat")
	if c2 == c || c2.ID() == c.ID() {
		t.Fatal("Link returned the broken connection")
	}
	if err := c2.Write(frame("chat", []byte("3"))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2)
	if got := string(rec.frames[1]); got != "3" {
		t.Fatalf("second frame %q, want 3", got)
	}
}

func TestLaneOverTLS(t *testing.T) {
	a, b := systems(t)
	server, client := tlsConfigs(t)
	ha := startHub(t, a, lane.Config{ServerTLS: server, ClientTLS: client})
	hb := startHub(t, b, lane.Config{ServerTLS: server, ClientTLS: client})
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	c := link(t, ha, b, "chat")
	if err := c.Write(frame("chat", []byte("secret"))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	if string(rec.frames[0]) != "secret" {
		t.Fatalf("got %q", rec.frames[0])
	}
	// A plain TCP hello to the TLS lane is refused.
	info := chatInfo(t, ha, b)
	conn := rawHello(t, info, 99)
	defer conn.Close()
	expectClosed(t, conn)
	if rec.count() != 1 {
		t.Fatal("a plain connection got a frame through")
	}
	// A node that does not trust the certificate cannot set up a lane
	// (tls.Dialer completes the handshake before Link returns).
	hc := startHub(t, a, lane.Config{ClientTLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if _, err := hc.Link(b.Address(), info); err == nil {
		t.Fatal("a lane to an untrusted certificate was set up")
	}
}

// tlsConfigs makes a self-signed certificate for 127.0.0.1, and the server
// and client configurations that use and trust it.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	parsed, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	client = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	return server, client
}

// TestAStuckPeerBreaksTheLane: a peer that stops reading makes a write
// fail after WriteTimeout, instead of holding the sender for ever.
func TestAStuckPeerBreaksTheLane(t *testing.T) {
	a, b := systems(t)
	ha := startHub(t, a, lane.Config{WriteTimeout: 100 * time.Millisecond})
	hb := startHub(t, b, lane.Config{})
	unblock := make(chan struct{})
	defer close(unblock)
	hb.Handle("stuck", func(string, []byte) { <-unblock })
	c := link(t, ha, b, "stuck")
	big := frame("stuck", make([]byte, 1<<20))
	var err error
	for i := 0; i < 500 && err == nil; i++ { // far more than the sockets' buffers hold
		err = c.Write(big)
	}
	if err == nil || !c.Broken() {
		t.Fatalf("500 MiB written to a peer that reads nothing: %v", err)
	}
	if s := ha.Stats(); s.FramesLost == 0 || s.Links != 0 {
		t.Fatalf("sender stats %+v: want the failed frame lost and the link gone", s)
	}
}

// waitUntil polls cond until it holds, failing after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseDoesNotWaitForSilentConnections: a connection that never sends
// its hello (a port scanner, a health probe) must not hold Hub.Close for the
// hello's 10 s timeout.
func TestCloseDoesNotWaitForSilentConnections(t *testing.T) {
	_, b := systems(t)
	hb := startHub(t, b, lane.Config{})
	conn, err := net.Dial("tcp", "127.0.0.1:"+hb.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() { hb.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // half the hello's timeout
		t.Fatal("Hub.Close waits for a connection that never sent its hello")
	}
	expectClosed(t, conn)
}

// TestAFrameLengthAloneAllocatesNothingLarge: a peer that announces a 1 GiB
// frame and sends 1 MiB of it makes the reader hold about what arrived, not
// what was announced.
func TestAFrameLengthAloneAllocatesNothingLarge(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	hb.Handle("chat", func(string, []byte) {})
	info := chatInfo(t, ha, b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	conn := rawHello(t, info, 0x777)
	waitUntil(t, "the session", func() bool { return hb.Stats().Sessions == 1 })
	msg := binary.BigEndian.AppendUint32(nil, lane.MaxFrame)
	msg = append(msg, make([]byte, 1<<20)...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	waitUntil(t, "the session to end", func() bool { return hb.Stats().Sessions == 0 })
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("a 1 GiB frame header and 1 MiB of data made the process allocate %d MiB", grew>>20)
	}
}

// TestConnectionsInTheirHelloAreBounded: strangers opening connections and
// saying nothing are refused beyond a bound, and a node's lane still works.
func TestConnectionsInTheirHelloAreBounded(t *testing.T) {
	a, b := systems(t)
	ha, hb := startHub(t, a, lane.Config{}), startHub(t, b, lane.Config{})
	rec := newRecorder()
	hb.Handle("chat", rec.handle)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	const n = 200
	for range n {
		c, err := net.Dial("tcp", "127.0.0.1:"+hb.Port())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitUntil(t, "the connections over the bound to be refused", func() bool { return hb.Stats().Refused >= n-64 })
	for _, c := range conns {
		c.Close()
	}
	// Once the strangers have gone, a node gets through.
	waitUntil(t, "a node's lane", func() bool {
		info, err := ha.Sync(b.Address(), "chat", 0, 5*time.Second)
		if err != nil {
			return false
		}
		c, err := ha.Link(b.Address(), info)
		return err == nil && c.Write(frame("chat", []byte("hi"))) == nil
	})
	rec.waitFor(t, 1)
}
