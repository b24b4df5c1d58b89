package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/remotestart"
)

// Cross-node benchmarks (issue 5): the cost of reaching a connection on
// another node of a cluster, next to the same operation on the connection's
// own node, in the same run.
//
// Two nodes run in this process, each an actor system with protoactor remote
// on 127.0.0.1 (started through internal/remotestart) and a wsactor server
// whose cluster view is static: both nodes are live members. The Redis
// membership provider and directory are left out on purpose: Server.Send,
// Server.Post and Groups().Broadcast consult only the view (a map lookup,
// and the peer list for a broadcast), never the directory, so the paths
// measured here are the same as in a Redis-backed cluster.Node.
//
// Everything in this file is prefixed xn so as not to collide with the other
// benchmarks of the package.

const (
	// xnEndpointQueue and xnEndpointBatch are cluster.yaml's defaults for
	// remote.endpoint_writer_queue_size and endpoint_writer_batch_size.
	xnEndpointQueue = 4096
	xnEndpointBatch = 1000
	// xnSendWindow is op=send's window: one message in flight, so that every
	// Send and every delivery is timed on an idle path.
	xnSendWindow = 1
	// xnPostConns is the connection count of op=post-50conns.
	xnPostConns = 50
	// xnBroadcastMembers is BenchmarkCrossNodeBroadcast's group size.
	xnBroadcastMembers = 5000
)

// xnView is a static cluster view, like the one remote_test.go uses. Peers
// allocates and sorts a fresh slice on every call, as cluster.memberView
// (the view of a Redis-backed node) does, so a broadcast pays what it would
// in a real cluster.
type xnView struct {
	self  string
	alive map[string]bool // written before any server uses the view
}

func (v *xnView) Alive(addr string) bool { return v.alive[addr] }

func (v *xnView) Peers() []string {
	peers := make([]string, 0, len(v.alive))
	for a, ok := range v.alive {
		if ok && a != v.self {
			peers = append(peers, a)
		}
	}
	slices.Sort(peers)
	return peers
}

// xnNode is one wsactor server with two routes:
//
//	/send/{f}?i=<n>  registers the connection under "<f>/<n>" (f names the
//	                 fixture, so a late OnClose of an earlier fixture's
//	                 connection cannot unregister a new one)
//	/group/{g}       joins the connection to group g
//
// Both handlers ignore what clients send.
type xnNode struct {
	name   string
	addr   string    // actor-system address
	lane   *lane.Hub // nil with XN_NO_LANE
	srv    *wsactor.Server
	http   *httptest.Server
	url    string // ws://127.0.0.1:<port>
	conns  sync.Map
	joined atomic.Int64 // connections currently in a group
}

type xnSendHandler struct{ n *xnNode }

func xnKey(c *wsactor.Conn) string { return c.PathValue("f") + "/" + c.Query().Get("i") }

func (h *xnSendHandler) OnOpen(c *wsactor.Conn) error {
	h.n.conns.Store(xnKey(c), c)
	return nil
}

func (h *xnSendHandler) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h *xnSendHandler) OnClose(c *wsactor.Conn, _ wsactor.StatusCode, _ string) {
	h.n.conns.Delete(xnKey(c))
}

type xnGroupHandler struct{ n *xnNode }

func (h *xnGroupHandler) OnOpen(c *wsactor.Conn) error {
	if err := c.Join(c.PathValue("g"), nil); err != nil {
		return err
	}
	h.n.joined.Add(1)
	return nil
}

func (h *xnGroupHandler) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h *xnGroupHandler) OnClose(*wsactor.Conn, wsactor.StatusCode, string) { h.n.joined.Add(-1) }

// xnCluster is the process's two cluster nodes, a and b, and solo: a
// single-node server (no cluster view) on a's actor system, the baseline of
// a broadcast that crosses no network.
type xnCluster struct {
	a, b, solo *xnNode
}

func (c *xnCluster) nodes() []*xnNode { return []*xnNode{c.a, c.b, c.solo} }

// The nodes are started once per process and never stopped: protoactor's
// remote.Start writes gRPC's global logger while earlier endpoints read it
// (see internal/remotestart), and a wsactor server's name stays taken in its
// actor system.
var (
	xnOnce    sync.Once
	xnNodes   *xnCluster
	xnInitErr error
	xnSeq     atomic.Int64 // fixture names
)

func xnStart(tb testing.TB) *xnCluster {
	tb.Helper()
	xnOnce.Do(func() { xnNodes, xnInitErr = xnStartCluster() })
	if xnInitErr != nil {
		tb.Fatal(xnInitErr)
	}
	return xnNodes
}

func xnStartCluster() (*xnCluster, error) {
	discard := slog.New(slog.DiscardHandler)
	var systems []*protoactor.ActorSystem
	for range 2 {
		system := protoactor.NewActorSystem(protoactor.WithLoggerFactory(func(*protoactor.ActorSystem) *slog.Logger { return discard }))
		r := remote.NewRemote(system, remote.Configure("127.0.0.1", 0,
			remote.WithEndpointWriterQueueSize(xnEndpointQueue),
			remote.WithEndpointWriterBatchSize(xnEndpointBatch),
			remote.WithServerOptions(cluster.RemoteReceiveLimit())))
		// A data lane, as cluster.Node starts one (remote.lane_port); with
		// XN_NO_LANE set the sends go through the remote, as before.
		if os.Getenv("XN_NO_LANE") == "" {
			if _, err := lane.Start(system, lane.Config{Listen: "127.0.0.1:0", Logger: discard}); err != nil {
				return nil, err
			}
		}
		if err := remotestart.Start(r, system.Address); err != nil {
			return nil, err
		}
		systems = append(systems, system)
	}
	alive := map[string]bool{systems[0].Address(): true, systems[1].Address(): true}
	start := func(name string, system *protoactor.ActorSystem, view wsactor.ClusterView) *xnNode {
		n := &xnNode{name: name, addr: system.Address(), lane: lane.Of(system)}
		n.srv = wsactor.New(wsactor.Options{
			Name:        name,
			Logger:      discard,
			ActorSystem: system,
			Cluster:     view,
			// Everything else is the default, as in the other benchmarks:
			// compression off, 10 s write timeout, 256-message / 1 MiB
			// send queue closing on overflow, in-memory directory.
			Transport: wsactor.TransportOptions{MaxMessageSize: readLimit},
		})
		n.srv.Handle("/send/{f}", func() wsactor.Handler { return &xnSendHandler{n} })
		n.srv.Handle("/group/{g}", func() wsactor.Handler { return &xnGroupHandler{n} })
		n.http = httptest.NewServer(n.srv)
		n.url = "ws" + strings.TrimPrefix(n.http.URL, "http")
		return n
	}
	c := &xnCluster{}
	c.a = start("xn", systems[0], &xnView{self: systems[0].Address(), alive: alive})
	c.b = start("xn", systems[1], &xnView{self: systems[1].Address(), alive: alive})
	c.solo = start("xnsolo", systems[0], nil)
	return c, nil
}

// quiesce waits until no server holds a connection, so that the teardown of
// one fixture never overlaps the measurement of the next.
func (c *xnCluster) quiesce() error {
	return waitUntil("every cross-node server to close its connections", func() bool {
		for _, n := range c.nodes() {
			if n.srv.Stats().ConnectionsOpen != 0 || n.joined.Load() != 0 {
				return false
			}
		}
		return true
	})
}

// problems sums the counters that must not move during a benchmark.
func (c *xnCluster) problems() int64 {
	var p int64
	for _, n := range c.nodes() {
		st := n.srv.Stats()
		p += st.SlowConsumerCloses + st.Dropped + st.Panics
	}
	return p
}

func (c *xnCluster) checkProblems(before int64) error {
	if after := c.problems(); after != before {
		var stats []string
		for _, n := range c.nodes() {
			stats = append(stats, fmt.Sprintf("%s@%s %+v", n.name, n.addr, n.srv.Stats()))
		}
		return fmt.Errorf("slow-consumer closes, drops or panics during the run: %v", stats)
	}
	return nil
}

// xnTarget is a target (see servers_test.go) whose connections live on
// owner and are pushed to by ID from producer's server, so that pushRun
// drives cross-node Posts as it drives the single-node ones.
type xnTarget struct {
	owner    *xnNode
	producer *wsactor.Server
	fixture  string
}

func (c *xnCluster) target(path string) *xnTarget {
	t := &xnTarget{owner: c.b, producer: c.b.srv, fixture: "f" + strconv.FormatInt(xnSeq.Add(1), 10)}
	if path == "remote" {
		t.producer = c.a.srv
	}
	return t
}

func (t *xnTarget) URL() string { return t.owner.url + "/send/" + t.fixture }
func (t *xnTarget) Open() int64 { return t.owner.srv.Stats().ConnectionsOpen }
func (t *xnTarget) Close() error {
	return nil // the servers outlive every fixture
}

func (t *xnTarget) conn(i int) (*wsactor.Conn, error) {
	v, ok := t.owner.conns.Load(t.fixture + "/" + strconv.Itoa(i))
	if !ok {
		return nil, fmt.Errorf("cross-node: connection %d of %s not registered", i, t.fixture)
	}
	return v.(*wsactor.Conn), nil
}

func (t *xnTarget) Pusher(i int, path pushPath) (func([]byte) error, error) {
	c, err := t.conn(i)
	if err != nil {
		return nil, err
	}
	if path != pushPost {
		return nil, fmt.Errorf("cross-node: no %s path", path)
	}
	id := c.ID()
	return func(b []byte) error { return t.producer.Post(id, wsactor.Binary(b)) }, nil
}

// sendClients opens n registered clients on a new fixture of path, once the
// previous fixture's connections are gone (so that their teardown never
// overlaps this measurement), and waits until node B has registered them all.
// The clients close when tb ends.
func (c *xnCluster) sendClients(tb testing.TB, path string, n int) (*xnTarget, []*websocket.Conn) {
	tb.Helper()
	if err := c.quiesce(); err != nil {
		tb.Fatal(err)
	}
	t := c.target(path)
	conns := clients(tb, t, n)
	if err := waitRegistered(t, n, pushPost); err != nil {
		tb.Fatal(err)
	}
	return t, conns
}

// xnSendResult is op=send's per-message timing.
type xnSendResult struct {
	calls    []time.Duration // Server.Send, call to return
	delivers []time.Duration // Server.Send called to the client's Read returning
}

// xnSendRun sends n 256-byte binary messages to the connection of client c
// with Server.Send, one at a time: each Send starts once the client has read
// and checked the previous message (xnSendWindow = 1).
func xnSendRun(t *xnTarget, c *websocket.Conn, n int) (xnSendResult, error) {
	res := xnSendResult{calls: make([]time.Duration, n), delivers: make([]time.Duration, n)}
	sc, err := t.conn(0)
	if err != nil {
		return res, err
	}
	id := sc.ID()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	arrivals := make(chan time.Time, xnSendWindow)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait: stops the reader if the producer failed
	wg.Go(func() {
		for seq := range uint64(n) {
			typ, b, err := c.Read(ctx)
			now := time.Now()
			if err == nil {
				err = checkMessage(typ, b, seq)
			}
			if err != nil {
				readErr <- fmt.Errorf("client: %w", err)
				return
			}
			arrivals <- now // never blocks: the producer waits for each
		}
	})
	for seq := range n {
		buf := make([]byte, payloadSize) // queued, not copied: one per message
		fill(buf, uint64(seq))
		start := time.Now()
		err := t.producer.Send(ctx, id, wsactor.Binary(buf))
		res.calls[seq] = time.Since(start)
		if err != nil {
			return res, fmt.Errorf("send %d: %w", seq, err)
		}
		select {
		case at := <-arrivals:
			res.delivers[seq] = at.Sub(start)
		case err := <-readErr:
			return res, err
		case <-ctx.Done():
			return res, fmt.Errorf("message %d: %w", seq, ctx.Err())
		}
	}
	return res, nil
}

func xnUs(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

var xnPaths = []string{"local", "remote"}

// BenchmarkCrossNodeSend pushes 256-byte binary messages by connection ID to
// connections on node B, from node B itself (path=local) or from node A
// (path=remote, through protoactor remote), side by side in the same run:
//
//   - op=send: Server.Send, which waits until the connection has queued the
//     message for its socket (across nodes, a request/response over remote).
//     One message in flight at a time; ns/op is the whole cycle until the
//     client has read it. call-p50/p99-us time the Send call itself,
//     deliver-p50/p99-us until the client's Read returned.
//   - op=post: Server.Post, fire and forget, to one connection, paced by
//     pushWindow (128) messages not yet read by the client; msgs/s until
//     the client has read all b.N.
//   - op=post-50conns: the same on 50 connections at once, one producer each.
//
// The clients are in this process and check every message's sequence number
// and content; a lost, repeated, reordered or corrupted message fails the run.
func BenchmarkCrossNodeSend(b *testing.B) {
	c := xnStart(b)
	b.Run("op=send", func(b *testing.B) {
		for _, path := range xnPaths {
			b.Run("path="+path, func(b *testing.B) {
				t, conns := c.sendClients(b, path, 1)
				problems := c.problems()
				before := readCounters()
				b.ResetTimer()
				res, err := xnSendRun(t, conns[0], b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if err := c.checkProblems(problems); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(xnUs(percentile(res.calls, 50)), "call-p50-us")
				b.ReportMetric(xnUs(percentile(res.calls, 99)), "call-p99-us")
				b.ReportMetric(xnUs(mean(res.calls)), "call-mean-us")
				b.ReportMetric(xnUs(percentile(res.delivers, 50)), "deliver-p50-us")
				b.ReportMetric(xnUs(percentile(res.delivers, 99)), "deliver-p99-us")
				reportPerMessage(b, before, readCounters(), b.N)
			})
		}
	})
	for _, tc := range []struct {
		op    string
		conns int
	}{{"post", 1}, {"post-50conns", xnPostConns}} {
		b.Run("op="+tc.op, func(b *testing.B) {
			for _, path := range xnPaths {
				b.Run("path="+path, func(b *testing.B) {
					t, conns := c.sendClients(b, path, tc.conns)
					problems := c.problems()
					before := readCounters()
					var framesBefore uint64
					if c.a.lane != nil {
						framesBefore = c.a.lane.Stats().FramesOut
					}
					b.ResetTimer()
					d, err := pushRun(t, conns, b.N, pushPost)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if err := c.checkProblems(problems); err != nil {
						b.Fatal(err)
					}
					msgs := b.N * tc.conns
					b.ReportMetric(float64(msgs)/d.Seconds(), "msgs/s")
					if path == "remote" && c.a.lane != nil {
						// How well the outbox batches: messages per lane frame.
						b.ReportMetric(float64(msgs)/float64(c.a.lane.Stats().FramesOut-framesBefore), "msgs/frame")
					}
					reportPerMessage(b, before, readCounters(), msgs)
				})
			}
		})
	}
}

// xnLayout places a broadcast group's members on the nodes.
type xnLayout struct {
	name       string
	solo       int // members on the single-node server (no cluster)
	onA, onB   int // members on cluster nodes A (the sender) and B
	senderSolo bool
}

func xnLayouts(members int) []xnLayout {
	half := members / 2
	return []xnLayout{
		// The baseline: one node, no cluster, nothing crosses the network.
		{name: "one-node", solo: members, senderSolo: true},
		// Half the members on the sending node, half on the other.
		{name: "split", onA: half, onB: members - half},
		// Every member on the other node: one network message, then the
		// whole fan-out happens there.
		{name: "remote", onB: members},
	}
}

// xnBroadcastFixture is a group whose members are connections held by a
// client process, laid out over the nodes as its layout says.
type xnBroadcastFixture struct {
	broadcastRounds
	c       *xnCluster
	layout  xnLayout
	group   string
	sender  *wsactor.Server
	local   int // members on the sender's node: what Broadcast returns
	members int
}

func (c *xnCluster) newBroadcastFixture(l xnLayout) (_ *xnBroadcastFixture, err error) {
	if err := c.quiesce(); err != nil {
		return nil, err
	}
	f := &xnBroadcastFixture{c: c, layout: l, group: "xn" + strconv.FormatInt(xnSeq.Add(1), 10)}
	var targets []clientTarget
	add := func(n *xnNode, count int) {
		if count > 0 {
			targets = append(targets, clientTarget{url: n.url + "/group/" + f.group, n: count})
			f.members += count
		}
	}
	add(c.solo, l.solo)
	add(c.a, l.onA)
	add(c.b, l.onB)
	if l.senderSolo {
		f.sender, f.local = c.solo.srv, l.solo
	} else {
		f.sender, f.local = c.a.srv, l.onA
	}
	clients, err := startXNClients(targets)
	if err != nil {
		return nil, err
	}
	f.broadcastRounds = broadcastRounds{clients: clients, send: f.broadcast, perTarget: true}
	// Members join in OnOpen, which may run after the client's dial returned.
	err = waitUntil("every member to join", func() bool {
		return c.solo.joined.Load() == int64(l.solo) && c.a.joined.Load() == int64(l.onA) && c.b.joined.Load() == int64(l.onB)
	})
	if err != nil {
		return nil, errors.Join(err, f.close())
	}
	return f, nil
}

// close stops the client process, which closes every connection, and waits
// until the servers have let them go.
func (f *xnBroadcastFixture) close() error {
	return errors.Join(f.clients.stop(), f.c.quiesce())
}

func (f *xnBroadcastFixture) broadcast(b []byte) error {
	n, err := f.sender.Groups().Broadcast(context.Background(), f.group, wsactor.Binary(b))
	if err == nil && n != f.local {
		err = fmt.Errorf("broadcast reached %d local members, want %d", n, f.local)
	}
	return err
}

// BenchmarkCrossNodeBroadcast broadcasts one 256-byte binary message at a
// time from node A to a group of 5,000 members held by a client process, and
// times each broadcast until the last member has read it:
//
//   - layout=one-node: all 5,000 on a single-node server (no cluster view):
//     the baseline, nothing crosses the network.
//   - layout=split: 2,500 on node A (the sender) and 2,500 on node B. The
//     message crosses the network once, to B's groups node process, which
//     fans it out to its members.
//   - layout=remote: all 5,000 on node B.
//
// Each op is one broadcast; the next starts once every member has read and
// checked the previous one. A layout's connections are kept across the runs
// the testing package makes of it; use -benchtime=<n>x.
func BenchmarkCrossNodeBroadcast(b *testing.B) {
	c := xnStart(b)
	fixtures := holdFixtures[*xnBroadcastFixture](b)
	for _, l := range xnLayouts(xnBroadcastMembers) {
		b.Run("layout="+l.name, func(b *testing.B) {
			f := fixtures.get(b, l.name, func() (*xnBroadcastFixture, error) { return c.newBroadcastFixture(l) })
			xnRunBroadcast(b, c, f)
		})
	}
}

func xnRunBroadcast(b *testing.B, c *xnCluster, f *xnBroadcastFixture) {
	problems := c.problems()
	s := f.measure(b)
	if err := c.checkProblems(problems); err != nil {
		b.Fatal(err)
	}
	before, after := s.before, s.after
	n := float64(b.N)
	b.ReportMetric(ms(s.lastP50), "last-p50-ms")
	b.ReportMetric(ms(s.lastP99), "last-p99-ms")
	b.ReportMetric(ms(s.firstP50), "first-p50-ms")
	b.ReportMetric(xnUs(s.callMean), "call-us")
	for i, name := range xnTargetNames(f.layout) {
		b.ReportMetric(ms(s.targetP50[i]), "last-"+name+"-p50-ms")
	}
	b.ReportMetric(float64(f.members)*n/s.elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(after.mallocs-before.mallocs)/n, "allocs/bcast")
	b.ReportMetric(s.callAllocs, "call-allocs/bcast")
	b.ReportMetric(float64(after.cpu-before.cpu)/n/float64(time.Millisecond), "cpu-ms/bcast")
}

// xnTargetNames names the client targets of a layout in order, for the
// per-node completion metrics: nodeA is the sender's node.
func xnTargetNames(l xnLayout) []string {
	var names []string
	if l.solo > 0 {
		names = append(names, "nodeA")
	}
	if l.onA > 0 {
		names = append(names, "nodeA")
	}
	if l.onB > 0 {
		names = append(names, "nodeB")
	}
	return names
}

// TestCrossNodeBenchmarks runs both cross-node benchmarks' machinery with
// tiny sizes, so that go test (and -race) proves every path delivers every
// message in order and that the harness notices a lost one.
func TestCrossNodeBenchmarks(t *testing.T) {
	c := xnStart(t)
	for _, path := range xnPaths {
		t.Run("send/"+path, func(t *testing.T) {
			tg, conns := c.sendClients(t, path, 1)
			res, err := xnSendRun(tg, conns[0], 50)
			if err != nil {
				t.Fatal(err)
			}
			for i := range res.calls {
				if res.calls[i] <= 0 || res.delivers[i] <= 0 {
					t.Fatalf("message %d: call %v, delivered after %v", i, res.calls[i], res.delivers[i])
				}
			}
			t.Logf("%s send: call p50 %v, delivered p50 %v", path,
				percentile(res.calls, 50), percentile(res.delivers, 50))
		})
		for _, n := range []int{1, 4} {
			t.Run(fmt.Sprintf("post-%dconns/%s", n, path), func(t *testing.T) {
				if err := c.quiesce(); err != nil {
					t.Fatal(err)
				}
				problems := c.problems()
				tg := c.target(path)
				conns := clients(t, tg, n)
				if err := waitRegistered(tg, n, pushPost); err != nil {
					t.Fatal(err)
				}
				// More than the window, so that the producers wait for the readers.
				if _, err := pushRun(tg, conns, 3*pushWindow, pushPost); err != nil {
					t.Fatal(err)
				}
				if err := c.checkProblems(problems); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	if testing.Short() {
		t.Skip("the broadcast part starts a client process")
	}
	for _, l := range xnLayouts(20) {
		t.Run("broadcast/"+l.name, func(t *testing.T) {
			f, err := c.newBroadcastFixture(l)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					_ = f.close()
				}
			}()
			var rs []roundResult
			for range 10 {
				r, err := f.round()
				if err != nil {
					t.Fatal(err)
				}
				if r.first > r.last || r.last <= 0 || len(r.lasts) != len(xnTargetNames(l)) {
					t.Fatalf("inconsistent round: %+v", r)
				}
				rs = append(rs, r)
			}
			allocs, err := f.callAllocs(3)
			if err != nil {
				t.Fatal(err)
			}
			s := summarize(rs)
			t.Logf("%s: last p50 %v p99 %v, per target %v, call %v, %.0f allocs in the call",
				l.name, s.lastP50, s.lastP99, s.targetP50, s.callMean, allocs)
			// Skip a sequence number: the clients must report the gap.
			f.seq++
			if _, err := f.round(); err == nil || !strings.Contains(err.Error(), "lost or out of order") {
				t.Fatalf("a lost message went unnoticed: %v", err)
			}
			closed = true
			if err := f.close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
