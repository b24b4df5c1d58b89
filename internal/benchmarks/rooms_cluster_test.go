package benchmarks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/internal/redistest"
)

// Rooms over two nodes (node processes: see rooms_node_test.go), with a
// real redis-server:
//
//   - BenchmarkRoomFanout: a room on node A, its 8 players all connected to
//     node B; every tick sends them the 68-byte state, with one
//     Room.Broadcast (send=broadcast) or, the naive way, one Server.Post per
//     player (send=posts), in the same run on the same two nodes; and a
//     Broadcast to 4 players on A and 4 on B (send=broadcast-split).
//   - BenchmarkRoomFailover: a room on node A with a player on node B;
//     SIGKILL of A's process, until the player gets the room's tick again,
//     from its new activation on B.

const (
	// envFanoutSeconds sets BenchmarkRoomFanout's measured window (default
	// 10 s: 200 ticks).
	envFanoutSeconds = "WSACTOR_BENCH_FANOUT_SECONDS"
	// envFailoverRuns sets the SIGKILLs per timing of BenchmarkRoomFailover
	// (default 5).
	envFailoverRuns = "WSACTOR_BENCH_FAILOVER_RUNS"

	// testTTL and testHeartbeat are the cluster tests' membership timings
	// (cluster/pool_test.go); cluster.Default()'s are 3 s and 1 s.
	testTTL       = 1500 * time.Millisecond
	testHeartbeat = 300 * time.Millisecond
)

// roomCluster is a Redis server and the node processes of one cluster.
type roomCluster struct {
	redis     *redistest.Server
	name      string
	ttl, beat time.Duration
	nodes     []*roomNode
}

func newRoomCluster(tb testing.TB, ttl, heartbeat time.Duration) *roomCluster {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &roomCluster{redis: redistest.Start(tb), name: "rb" + hex.EncodeToString(b), ttl: ttl, beat: heartbeat}
}

// add starts k node processes, concurrently, and waits until every node
// sees every other.
func (c *roomCluster) add(k int) ([]*roomNode, error) {
	started := make([]*roomNode, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() { started[i], errs[i] = startRoomNode(c.redis.Addr(), c.name, c.ttl, c.beat) })
	}
	wg.Wait()
	for _, n := range started {
		if n != nil {
			c.nodes = append(c.nodes, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, m := range c.nodes {
		if err := m.waitPeers(len(c.nodes) - 1); err != nil {
			return nil, err
		}
	}
	return started, nil
}

// forget drops a node that was killed.
func (c *roomCluster) forget(n *roomNode) {
	c.nodes = slices.DeleteFunc(c.nodes, func(m *roomNode) bool { return m == n })
}

func (c *roomCluster) close() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = n.stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// playerConn is a player's connection to a node's /play route, read by a
// goroutine that timestamps every message.
type playerConn struct {
	c    *websocket.Conn
	msgs chan playerMsg
}

type playerMsg struct {
	typ websocket.MessageType
	b   []byte
	at  time.Time
	err error
}

// joinRoom opens a player connection to node n for room kind/name and
// waits for its "joined" message.
func joinRoom(ctx context.Context, n *roomNode, kind, name string) (*playerConn, error) {
	c, err := dial(ctx, n.url+"?kind="+kind+"&room="+name, -1)
	if err != nil {
		return nil, err
	}
	p := &playerConn{c: c, msgs: make(chan playerMsg, 4096)}
	go func() {
		for {
			typ, b, err := c.Read(context.Background())
			p.msgs <- playerMsg{typ: typ, b: b, at: time.Now(), err: err}
			if err != nil {
				close(p.msgs)
				return
			}
		}
	}()
	m, err := p.next(ctx)
	if err == nil && !strings.HasPrefix(string(m.b), "joined ") {
		err = fmt.Errorf("joining %s/%s: %q", kind, name, m.b)
	}
	if err != nil {
		_ = c.CloseNow()
		return nil, err
	}
	return p, nil
}

// next returns the next message.
func (p *playerConn) next(ctx context.Context) (playerMsg, error) {
	select {
	case m, ok := <-p.msgs:
		if !ok {
			return m, errors.New("connection closed")
		}
		return m, m.err
	case <-ctx.Done():
		return playerMsg{}, ctx.Err()
	}
}

func (p *playerConn) close() { _ = p.c.CloseNow() }

// --- fan-out ---

// fanoutResult is one window of one room's ticks.
type fanoutResult struct {
	ticks       int64
	deliveries  int64 // RoomDelivers node B received
	posts       int64 // Server.Post calls on node A
	bytes       int64 // TCP payload from node A to node B (-1: unknown)
	read        int64 // states the players read
	cpuA, cpuB  time.Duration
	window      time.Duration
	countsWrong error // a player read a state twice or skipped one
}

// measureFanout runs one room of kind ("fan" or "posts") on a, with local
// of its players on a and the others on b, lets it tick for warmup and
// measures window.
func measureFanout(a, b *roomNode, kind string, local int, warmup, window time.Duration) (res fanoutResult, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	name, err := a.place(kind, kind)
	if err != nil {
		return res, err
	}
	var players []*playerConn
	defer func() {
		for _, p := range players {
			p.close()
		}
		// The room disposes of itself once empty.
		err = errors.Join(err, a.waitActive(0), b.waitActive(0))
	}()
	for i := range gamePlayers {
		at := b
		if i < local {
			at = a
		}
		p, err := joinRoom(ctx, at, kind, name)
		if err != nil {
			return res, err
		}
		players = append(players, p)
	}
	var read atomic.Int64
	var wrong atomic.Value
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, p := range players {
		wg.Go(func() { countStates(p, &read, &wrong, stop) })
	}
	time.Sleep(warmup) // every player has had states
	sa0, err1 := a.stats()
	sb0, err2 := b.stats()
	bytes0 := tcpBytesReceived(b.port())
	read0 := read.Load()
	time.Sleep(window)
	sa1, err3 := a.stats()
	sb1, err4 := b.stats()
	bytes1 := tcpBytesReceived(b.port())
	read1 := read.Load()
	close(stop)
	wg.Wait()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return res, err
	}
	res = fanoutResult{
		ticks: sa1.ticks - sa0.ticks, deliveries: sb1.deliveries - sb0.deliveries, posts: sa1.posts - sa0.posts,
		bytes: -1, read: read1 - read0, cpuA: sa1.cpu - sa0.cpu, cpuB: sb1.cpu - sb0.cpu, window: window,
	}
	if bytes0 >= 0 && bytes1 >= 0 {
		res.bytes = bytes1 - bytes0
	}
	if w, _ := wrong.Load().(string); w != "" {
		res.countsWrong = errors.New(w)
	}
	return res, nil
}

// countStates counts the states a player reads, checking that their tick
// numbers follow each other, until stop.
func countStates(p *playerConn, read *atomic.Int64, wrong *atomic.Value, stop <-chan struct{}) {
	var last uint32
	for {
		select {
		case <-stop:
			return
		case m, ok := <-p.msgs:
			if !ok {
				wrong.CompareAndSwap(nil, "a player's connection closed")
				return
			}
			n, isState := decodeTick(m.b)
			switch {
			case !isState || m.typ != websocket.MessageBinary:
				wrong.CompareAndSwap(nil, fmt.Sprintf("a player read %q", m.b))
			case last != 0 && n != last+1:
				wrong.CompareAndSwap(nil, fmt.Sprintf("a player read state %d after %d", n, last))
			}
			last = n
			read.Add(1)
		}
	}
}

// tcpBytesReceived sums the bytes received by the established TCP sockets
// whose local port is port (a node's remote endpoint: what the other nodes
// sent it, HTTP/2 and gRPC framing included), as ss reports them; -1 when ss
// is not there or says nothing.
func tcpBytesReceived(port string) int64 {
	out, err := exec.Command("ss", "-tinH", "state", "established", "( sport = :"+port+" )").Output()
	if err != nil {
		return -1
	}
	var sum int64
	found := false
	for f := range strings.FieldsSeq(string(out)) {
		if v, ok := strings.CutPrefix(f, "bytes_received:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			sum, found = sum+n, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// fanoutKinds are BenchmarkRoomFanout's ways of sending, and how many of the
// 8 players are on the room's node (local): none, or half (the posts of
// a split room are not measured: a local Post is no network message).
var fanoutKinds = []struct {
	name, kind string
	local      int
}{{"broadcast", "fan", 0}, {"posts", "posts", 0}, {"broadcast-split", "fan", gamePlayers / 2}}

// BenchmarkRoomFanout reports, per tick of a room on node A whose 8 players
// are all on node B (send=broadcast, send=posts) or half on each node
// (send=broadcast-split): the messages that crossed from A to B
// (remote-msgs/tick: RoomDelivers counted by node B's Stats().Deliveries,
// or Server.Post calls), the TCP payload bytes node B received from A
// (bytes/tick, HTTP/2 and gRPC framing included), the states the players
// read (reads/tick: 8), and each node process's CPU per tick (the whole
// process's: its membership, gRPC and the 5 ms report poll dwarf the
// fan-out). Every way of sending runs on the same two nodes, one after the
// other. Each run measures one window of 10 s (envFanoutSeconds); use
// -benchtime=1x.
func BenchmarkRoomFanout(b *testing.B) {
	window := envSeconds(b, envFanoutSeconds, 10*time.Second)
	c := newRoomCluster(b, testTTL, testHeartbeat)
	defer func() {
		if err := c.close(); err != nil {
			b.Error(err)
		}
	}()
	nodes, err := c.add(2)
	if err != nil {
		b.Fatal(err)
	}
	nodeA, nodeB := nodes[0], nodes[1]
	for _, k := range fanoutKinds {
		b.Run("send="+k.name, func(b *testing.B) {
			res, err := measureFanout(nodeA, nodeB, k.kind, k.local, time.Second, window)
			if err == nil {
				err = res.countsWrong
			}
			if err != nil {
				b.Fatal(err)
			}
			ticks := float64(res.ticks)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(res.deliveries+res.posts)/ticks, "remote-msgs/tick")
			b.ReportMetric(float64(res.deliveries)/ticks, "deliveries/tick")
			if res.bytes >= 0 {
				b.ReportMetric(float64(res.bytes)/ticks, "bytes/tick")
			}
			b.ReportMetric(float64(res.read)/ticks, "reads/tick")
			b.ReportMetric(ticks/res.window.Seconds(), "ticks/s")
			b.ReportMetric(float64(res.cpuA)/ticks/1e3, "cpuA-us/tick")
			b.ReportMetric(float64(res.cpuB)/ticks/1e3, "cpuB-us/tick")
		})
	}
}

// --- failover ---

// failoverResult is one SIGKILL of a room's node, timed from the signal.
type failoverResult struct {
	dropped   time.Duration // the survivor's membership dropped the node
	activated time.Duration // the survivor runs the room
	attached  time.Duration // the player was told it is back in its seat
	ticked    time.Duration // the player read the room's first tick from there
	lost      int64         // ticks since the last snapshot: lost with the node
}

// measureFailover starts a node, places a "fail" room on it with a player
// on node at, lets it tick past a snapshot, SIGKILLs the node and times the
// room's return on a survivor (at, when it is the only one).
func measureFailover(c *roomCluster, at *roomNode, run int) (res failoverResult, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	added, err := c.add(1)
	if err != nil {
		return res, err
	}
	victim, killed := added[0], false
	defer func() {
		if !killed {
			c.forget(victim)
			err = errors.Join(err, victim.stop())
		}
	}()
	name, err := victim.place("fail", "x"+strconv.Itoa(run)+"-")
	if err != nil {
		return res, err
	}
	p, err := joinRoom(ctx, at, "fail", name)
	if err != nil {
		return res, err
	}
	defer func() {
		p.close()
		for _, n := range c.nodes {
			err = errors.Join(err, n.waitActive(0))
		}
	}()
	// 30 ticks: 1.5 s, past the first snapshot (the default interval, 1 s).
	var last int64
	for last < 30 {
		if last, err = readTick(ctx, p); err != nil {
			return res, err
		}
	}
	for _, n := range c.nodes {
		drainEvents(n)
	}
	start := time.Now()
	if err := victim.kill(); err != nil {
		return res, err
	}
	killed = true
	c.forget(victim)
	// States sent before the kill may still arrive; then the survivor's
	// activation attaches the player, and ticks.
	for res.attached == 0 {
		m, err := p.next(ctx)
		if err != nil {
			return res, fmt.Errorf("waiting for the room to come back: %w", err)
		}
		s := string(m.b)
		switch {
		case strings.HasPrefix(s, "t:"):
			last, _ = strconv.ParseInt(s[2:], 10, 64)
		case s == "joined 0 true":
			res.attached = m.at.Sub(start)
		default:
			return res, fmt.Errorf("after the kill the player read %q", s)
		}
	}
	first, err := readTick(ctx, p)
	if err != nil {
		return res, err
	}
	res.ticked = time.Since(start)
	res.lost = last + 1 - first
	// The survivors' reports: the first to drop the victim, and the one
	// that runs the room now.
	err = waitUntil("the survivors to report the drop and the activation", func() bool {
		for _, n := range c.nodes {
			for {
				var ev nodeEvent
				select {
				case ev = <-n.events:
				default:
				}
				if ev.what == "" {
					break
				}
				switch d := ev.at.Sub(start); {
				case ev.what == "dropped" && ev.value == victim.addr && (res.dropped == 0 || d < res.dropped):
					res.dropped = d
				case ev.what == "active" && ev.value == "1":
					res.activated = d
				}
			}
		}
		return res.dropped != 0 && res.activated != 0
	})
	return res, err
}

// readTick reads the player's next message, which must be a tick.
func readTick(ctx context.Context, p *playerConn) (int64, error) {
	m, err := p.next(ctx)
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(string(m.b), "t:")
	if !ok {
		return 0, fmt.Errorf("the player read %q, want a tick", m.b)
	}
	return strconv.ParseInt(n, 10, 64)
}

// drainEvents forgets what a node reported so far.
func drainEvents(n *roomNode) {
	for {
		select {
		case <-n.events:
		default:
			return
		}
	}
}

// failoverTimings are the membership timings BenchmarkRoomFailover runs
// with: the cluster tests' and cluster.Default()'s (cluster.yaml's).
var failoverTimings = []struct {
	name           string
	ttl, heartbeat time.Duration
}{{"test", testTTL, testHeartbeat}, {"default", 3 * time.Second, time.Second}}

// BenchmarkRoomFailover SIGKILLs the node of a room 5 times
// (envFailoverRuns) per membership timing, a new node each time, and
// reports the median and the maximum, from the signal, of: the survivor
// dropping the node from its membership (dropped), running the room again
// (activated), the player being told it is back in its seat (attached), and
// the player reading the room's first tick from there (ticked: the
// failover time). lost-ticks is the median of the ticks the room lost (run
// on the dead node after its last snapshot). Use -benchtime=1x.
func BenchmarkRoomFailover(b *testing.B) {
	runs := envInt(b, envFailoverRuns, 5)
	for _, tm := range failoverTimings {
		b.Run("timing="+tm.name, func(b *testing.B) {
			c := newRoomCluster(b, tm.ttl, tm.heartbeat)
			defer func() {
				if err := c.close(); err != nil {
					b.Error(err)
				}
			}()
			survivor, err := c.add(1)
			if err != nil {
				b.Fatal(err)
			}
			var rs []failoverResult
			for i := range runs {
				// The survivor is the only other node: the room comes back there.
				r, err := measureFailover(c, survivor[0], i)
				if err != nil {
					b.Fatalf("run %d: %v", i, err)
				}
				b.Logf("run %d: dropped %v, activated %v, attached %v, ticked %v after SIGKILL; %d ticks lost (TTL %v, heartbeat %v)",
					i, r.dropped, r.activated, r.attached, r.ticked, r.lost, tm.ttl, tm.heartbeat)
				rs = append(rs, r)
			}
			b.ReportMetric(0, "ns/op")
			for _, m := range []struct {
				name string
				f    func(failoverResult) time.Duration
			}{
				{"dropped", func(r failoverResult) time.Duration { return r.dropped }},
				{"activated", func(r failoverResult) time.Duration { return r.activated }},
				{"attached", func(r failoverResult) time.Duration { return r.attached }},
				{"ticked", func(r failoverResult) time.Duration { return r.ticked }},
			} {
				ds := make([]time.Duration, len(rs))
				for i, r := range rs {
					ds[i] = m.f(r)
				}
				b.ReportMetric(ms(percentile(ds, 50)), m.name+"-p50-ms")
				b.ReportMetric(ms(slices.Max(ds)), m.name+"-max-ms")
			}
			lost := make([]int64, len(rs))
			for i, r := range rs {
				lost[i] = r.lost
			}
			b.ReportMetric(float64(percentile(lost, 50)), "lost-ticks")
			b.ReportMetric(ms(tm.ttl+time.Second), "goal-ms")
		})
	}
}

// TestRoomClusterBenchmarks runs both room cluster benchmarks' machinery
// once, briefly, each on a cluster of its own (in parallel), with the
// cluster tests' membership timings, and checks what is structural: a
// broadcast to 8 players of another node (or 4 of it and 4 local) crosses
// the network once per tick and the posts 8 times, every player reads every
// state, and a room whose node is killed comes back on the survivor with
// its player attached.
func TestRoomClusterBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	t.Run("fanout", func(t *testing.T) {
		t.Parallel()
		c := newRoomCluster(t, testTTL, testHeartbeat)
		t.Cleanup(func() {
			if err := c.close(); err != nil {
				t.Error(err)
			}
		})
		nodes, err := c.add(2)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range fanoutKinds {
			res, err := measureFanout(nodes[0], nodes[1], k.kind, k.local, 300*time.Millisecond, time.Second)
			if err == nil {
				err = res.countsWrong
			}
			if err != nil {
				t.Fatalf("%s: %v", k.name, err)
			}
			// The counters are read one after the other, in two
			// processes, at each edge of the window: on a loaded machine
			// a few ticks fall on the other side. The states a player
			// reads in the window may lag the ticks by more (half a
			// second under -race on a busy machine): lost or repeated
			// states are caught by countStates, which checks each
			// player's sequence, so the count is only checked to be
			// there.
			const slack = 5 // ticks
			near := func(got, want, perTick int64) bool { return got >= want-slack*perTick && got <= want+slack*perTick }
			wantDeliveries, wantPosts, perTick := res.ticks, int64(0), int64(1)
			if k.kind == "posts" {
				wantDeliveries, wantPosts, perTick = 0, res.ticks*gamePlayers, gamePlayers
			}
			if res.ticks < 5 || !near(res.deliveries, wantDeliveries, 1) || !near(res.posts, wantPosts, perTick) || res.read == 0 {
				t.Errorf("%s: %d ticks: node B received %d deliveries (want %d), node A made %d posts (want %d), the players read %d states",
					k.name, res.ticks, res.deliveries, wantDeliveries, res.posts, wantPosts, res.read)
			}
			t.Logf("%s: %d ticks, %d deliveries, %d posts, %d bytes A→B, %d states read", k.name, res.ticks, res.deliveries, res.posts, res.bytes, res.read)
		}
	})
	t.Run("failover", func(t *testing.T) {
		t.Parallel()
		c := newRoomCluster(t, testTTL, testHeartbeat)
		t.Cleanup(func() {
			if err := c.close(); err != nil {
				t.Error(err)
			}
		})
		survivor, err := c.add(1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := measureFailover(c, survivor[0], 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.dropped <= 0 || r.activated <= 0 || r.attached <= 0 || r.ticked < r.attached {
			t.Errorf("inconsistent failover: %+v", r)
		}
		t.Logf("failover: %+v", r)
	})
}
