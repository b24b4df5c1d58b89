package wsactor_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/remotestart"
	"github.com/wsactor/wsactor/internal/wire"
)

// staticCluster is a membership view for tests without a cluster provider.
// It tells of departures as the cluster package's view does, but at once:
// when set has returned, the callbacks have run.
type staticCluster struct {
	mu     sync.Mutex
	self   string
	alive  map[string]bool
	onLeft []func(address, memberID string)
	quiet  bool // tells of no departures, as a view without OnLeft
}

func (s *staticCluster) OnLeft(f func(address, memberID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onLeft = append(s.onLeft, f)
}

func (s *staticCluster) Alive(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive[addr]
}

func (s *staticCluster) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a, ok := range s.alive {
		if ok && a != s.self {
			out = append(out, a)
		}
	}
	return out
}

func (s *staticCluster) set(addr string, alive bool) {
	s.mu.Lock()
	left := s.alive[addr] && !alive && !s.quiet
	s.alive[addr] = alive
	callbacks := slices.Clone(s.onLeft)
	s.mu.Unlock()
	if left {
		for _, f := range callbacks {
			f(addr, addr)
		}
	}
}

type remoteNode struct {
	*testServer
	addr   string
	view   *staticCluster
	opened chan wsactor.ID
}

// The in-process nodes' actor systems, remote endpoints and lanes are started once
// for the whole test binary, before any traffic, and never stopped:
// protoactor's remote.Start writes gRPC's global logger while earlier
// endpoints' goroutines read it (see internal/remotestart), so starting
// endpoints while others run or wind down is a data race in the library.
var (
	nodePoolOnce sync.Once
	nodePool     []*actor.ActorSystem
	serverSeq    atomic.Int64
)

func pooledSystems(t *testing.T, n int) []*actor.ActorSystem {
	t.Helper()
	nodePoolOnce.Do(func() {
		for i := range 3 {
			system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }))
			r := remote.NewRemote(system, remote.Configure("127.0.0.1", 0, remote.WithEndpointWriterQueueSize(1024),
				remote.WithServerOptions(cluster.RemoteReceiveLimit())))
			// Nodes 0 and 1 have a data lane, as cluster.Node's do; node
			// 2 has none, like a node of an older version, so sends
			// between it and the others go through the remote.
			if i < 2 {
				if _, err := lane.Start(system, lane.Config{Listen: "127.0.0.1:0", Logger: discardLogger()}); err != nil {
					panic(err)
				}
			}
			if err := remotestart.Start(r, system.Address); err != nil {
				panic(err)
			}
			nodePool = append(nodePool, system)
		}
	})
	if n > len(nodePool) {
		t.Fatalf("only %d pooled nodes", len(nodePool))
	}
	return nodePool[:n]
}

// startNodes starts a wsactor server on each of n in-process nodes (each its
// own actor system with protoactor remote on loopback), seeing each other
// through static membership views. Every call uses fresh server names, so
// tests do not see each other's connections.
func startNodes(t *testing.T, n int, opts wsactor.Options) []*remoteNode {
	t.Helper()
	return startNodesWith(t, n, opts, func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler {
		return &member{opened: opened, srv: s}
	})
}

// startNodesWith is startNodes with the route's handler made by newHandler,
// which must send each connection's ID to opened in OnOpen.
func startNodesWith(t *testing.T, n int, opts wsactor.Options, newHandler func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler) []*remoteNode {
	t.Helper()
	return startNodesOn(t, pooledSystems(t, n), opts, newHandler)
}

// startNodesOn is startNodesWith on the given pooled systems.
func startNodesOn(t *testing.T, systems []*actor.ActorSystem, opts wsactor.Options, newHandler func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler) []*remoteNode {
	t.Helper()
	name := fmt.Sprintf("n%d", serverSeq.Add(1))
	nodes := make([]*remoteNode, len(systems))
	for i, system := range systems {
		o := opts
		o.Name = name
		o.ActorSystem = system
		view := &staticCluster{self: system.Address(), alive: map[string]bool{}}
		o.Cluster = view
		opened := make(chan wsactor.ID, 100)
		ts := newTestServer(t, o, func(s *wsactor.Server) {
			s.Handle("/ws", func() wsactor.Handler { return newHandler(s, opened) })
		})
		nodes[i] = &remoteNode{testServer: ts, addr: system.Address(), view: view, opened: opened}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			a.view.set(b.addr, true)
		}
	}
	return nodes
}

func (n *remoteNode) connect(t *testing.T) (*websocket.Conn, wsactor.ID) {
	t.Helper()
	c := dial(t, n.url+"/ws")
	return c, recv(t, n.opened, "open")
}

func TestCrossNodeSendCloseAndOrder(t *testing.T) {
	// Room for the 500 fire-and-forget posts below, which outrun the writer.
	nodes := startNodes(t, 2, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 1024}})
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	if addr, _ := id.Address(); addr != two.addr || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("the ID should carry node two's address %s, got %q", two.addr, addr)
	}
	ctx := context.Background()
	if err := one.Send(ctx, id, wsactor.Text("from node one")); err != nil {
		t.Fatalf("cross-node Send: %v", err)
	}
	if got := readText(t, c); got != "from node one" {
		t.Fatalf("got %q", got)
	}
	// Order per sender across the network, from several goroutines.
	const senders, each = 5, 100
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := one.Post(id, wsactor.Text(fmt.Sprintf("%d:%d", s, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * each {
		var s, i int
		if _, err := fmt.Sscanf(readText(t, c), "%d:%d", &s, &i); err != nil || i != next[s] {
			t.Fatalf("sender %d: got %d, want %d (%v)", s, i, next[s], err)
		}
		next[s]++
	}
	wg.Wait()

	if err := one.Tell(id, "a Go string"); !errors.Is(err, wsactor.ErrNotRegistered) || !strings.Contains(err.Error(), "string") {
		t.Fatalf("Tell of an unregistered type across nodes: want ErrNotRegistered naming string, got %v", err)
	}
	go func() { // answer the closing handshake
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	if err := one.Close(ctx, id, 4005, "closed from node one"); err != nil {
		t.Fatalf("cross-node Close: %v", err)
	}
	if st := two.Stats(); st.ConnectionsOpen != 0 {
		t.Fatalf("node two still has it open: %+v", st)
	}
	if err := one.Send(ctx, id, wsactor.Text("late")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("send to a closed remote connection: want ErrConnectionNotFound, got %v", err)
	}
	if err := one.Close(ctx, id, 4005, ""); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("close a closed remote connection: want ErrConnectionNotFound, got %v", err)
	}
}

func TestCrossNodeFailsFastForDeadNodes(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{})
	one, two := nodes[0], nodes[1]
	_, id := two.connect(t)
	one.view.set(two.addr, false) // membership says node two is gone
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for name, err := range map[string]error{
		"Send":  one.Send(ctx, id, wsactor.Text("x")),
		"Post":  one.Post(id, wsactor.Text("x")),
		"Close": one.Close(ctx, id, 4000, ""),
		"Join":  one.Groups().Join(ctx, "g", id, nil),
	} {
		if !errors.Is(err, wsactor.ErrConnectionNotFound) || !strings.Contains(err.Error(), "not a live member") {
			t.Errorf("%s to a dead node: want ErrConnectionNotFound naming the node, got %v", name, err)
		}
	}
	// An ID from a node this one never heard of.
	foreign := wsactor.ID(strings.Replace(string(id), strings.Split(string(id), ".")[2], "MTI3LjAuMC45OjE", 1))
	if err := one.Send(ctx, foreign, wsactor.Text("x")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
}

func TestCrossNodeGroups(t *testing.T) {
	nodes := startNodes(t, 3, wsactor.Options{})
	ctx := context.Background()
	var clients []*websocket.Conn
	var ids []wsactor.ID
	for _, n := range nodes {
		for range 2 {
			c, id := n.connect(t)
			clients, ids = append(clients, c), append(ids, id)
		}
	}
	// Join by ID from node one, for connections on every node.
	for _, id := range ids {
		if err := nodes[0].Groups().Join(ctx, "everywhere", id, map[string]string{"name": "x"}); err != nil {
			t.Fatalf("join %s from node one: %v", id, err)
		}
	}
	if _, err := nodes[1].Groups().Broadcast(ctx, "everywhere", wsactor.Text("hello cluster"), ids[0]); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients[1:] {
		if got := readText(t, c); got != "hello cluster" {
			t.Fatalf("client %d: %q", i+1, got)
		}
	}
	if err := nodes[0].Groups().Leave(ctx, "everywhere", ids[5]); err != nil {
		t.Fatalf("leave by ID across nodes: %v", err)
	}
	if _, err := nodes[2].Groups().Broadcast(ctx, "everywhere", wsactor.Text("second")); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients[:5] {
		if got := readText(t, c); got != "second" {
			t.Fatalf("client %d: %q", i, got)
		}
	}
	if err := nodes[0].Send(ctx, ids[5], wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, clients[5]); got != "marker" {
		t.Fatalf("a member that left got %q", got)
	}
}

// TestCrossNodeSendsMatchTheirAnswers sends from many goroutines at once to
// live and closed connections on another node: every answer must reach the
// Send that asked, so each Send to a live connection succeeds, each to the
// closed one fails with ErrConnectionNotFound, and every client reads its
// senders' messages in order.
func TestCrossNodeSendsMatchTheirAnswers(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 1024}})
	one, two := nodes[0], nodes[1]
	const live, senders, each = 3, 6, 40
	clients := make([]*websocket.Conn, live)
	ids := make([]wsactor.ID, live)
	for i := range live {
		clients[i], ids[i] = two.connect(t)
	}
	gone, goneID := two.connect(t)
	_ = gone.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the closed connection to be gone", func() bool { return two.Stats().ConnectionsOpen == live })

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := one.Send(ctx, goneID, wsactor.Text("lost")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
					t.Errorf("sender %d: Send to the closed connection: want ErrConnectionNotFound, got %v", s, err)
					return
				}
				if err := one.Send(ctx, ids[s%live], wsactor.Text(fmt.Sprintf("%d:%d", s, i))); err != nil {
					t.Errorf("sender %d: Send %d to a live connection: %v", s, i, err)
					return
				}
			}
		})
	}
	for c := range live {
		next := map[int]int{}
		for range senders / live * each {
			var s, i int
			if _, err := fmt.Sscanf(readText(t, clients[c]), "%d:%d", &s, &i); err != nil || s%live != c || i != next[s] {
				t.Fatalf("client %d: got %d:%d, want %d:%d (%v)", c, s, i, s, next[s], err)
			}
			next[s]++
		}
	}
	wg.Wait()
}

// TestCrossNodeSendWithoutAnswer sends to a node that the view says is live
// but that never answers (nothing listens at its address): Send returns the
// context's error when it ends, and the next Send to a node that answers is
// not disturbed by the late or missing answer.
func TestCrossNodeSendWithoutAnswer(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{})
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	const silent = "127.0.0.1:1"
	one.view.set(silent, true)
	parts := strings.Split(string(id), ".")
	parts[2] = base64.RawURLEncoding.EncodeToString([]byte(silent))
	lost := wsactor.ID(strings.Join(parts, "."))

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := one.Send(ctx, lost, wsactor.Text("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a silent node: want the context's deadline, got %v", err)
	}
	if err := one.Send(context.Background(), id, wsactor.Text("after")); err != nil {
		t.Fatalf("Send to a live node after a silent one: %v", err)
	}
	if got := readText(t, c); got != "after" {
		t.Fatalf("got %q", got)
	}
}

// TestCrossNodeLargePosts posts messages that together, and one of them on
// its own, are larger than gRPC's default 4 MiB limit on a received message:
// the batches that carry them to the other node must stay under what it
// accepts, and every message arrives, in order.
func TestCrossNodeLargePosts(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{Transport: wsactor.TransportOptions{
		SendQueueMessages: 64, SendQueueBytes: 64 << 20, MaxMessageSize: 8 << 20,
	}})
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	c.SetReadLimit(16 << 20)
	sizes := []int{1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 5 << 20, 300, 2 << 20}
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i)
		}
		if err := one.Post(id, wsactor.Binary(b)); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i, n := range sizes {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d of %d: %v", i, len(sizes), err)
		}
		if len(b) != n || b[0] != byte(i) || b[n-1] != byte(i) {
			t.Fatalf("message %d: got %d bytes starting %d, want %d bytes of %d", i, len(b), b[0], n, i)
		}
	}
	// The path still works afterwards.
	deliverText(t, c, "after", func(m wsactor.Message) error { return one.Send(ctx, id, m) })
}

// deliverText sends text with send and checks that client c reads it next.
func deliverText(t *testing.T, c *websocket.Conn, text string, send func(wsactor.Message) error) {
	t.Helper()
	if err := send(wsactor.Text(text)); err != nil {
		t.Fatalf("sending %q: %v", text, err)
	}
	if got := readText(t, c); got != text {
		t.Fatalf("got %q, want %q", got, text)
	}
}

// TestCrossNodeRouteChecksEverySend sends to a node once, so that its route
// is kept, and then checks that a kept route still refuses what it must: a
// malformed connection name, and a node that membership says is gone.
func TestCrossNodeRouteChecksEverySend(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{})
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	post := func(m wsactor.Message) error { return one.Post(id, m) }
	deliverText(t, c, "first", post)
	parts := strings.Split(string(id), ".")
	for _, bad := range []string{
		parts[0] + "." + parts[1][:21] + "." + parts[2],           // name too short
		parts[0] + "." + parts[1][:21] + "!." + parts[2],          // not base64url
		parts[0] + "." + parts[1][:21] + "B." + parts[2],          // not canonical if B sets unused bits
		parts[0] + "." + strings.Repeat("A", 23) + "." + parts[2], // too long
	} {
		if _, err := wsactor.ParseID(bad); err == nil {
			continue // a valid name of no connection: covered below
		}
		if err := one.Post(wsactor.ID(bad), wsactor.Text("x")); !errors.Is(err, wsactor.ErrInvalidID) {
			t.Errorf("Post to %q: want ErrInvalidID, got %v", bad, err)
		}
	}
	// A well-formed name of no connection: the node answers a Send.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	other := parts[0] + "." + strings.Repeat("A", 22) + "." + parts[2]
	if err := one.Send(ctx, wsactor.ID(other), wsactor.Text("x")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Errorf("Send to a name of no connection: want ErrConnectionNotFound, got %v", err)
	}
	one.view.set(two.addr, false)
	if err := one.Post(id, wsactor.Text("x")); !errors.Is(err, wsactor.ErrConnectionNotFound) || !strings.Contains(err.Error(), "not a live member") {
		t.Errorf("Post on a kept route to a dead node: want ErrConnectionNotFound naming the node, got %v", err)
	}
	one.view.set(two.addr, true)
	deliverText(t, c, "back", post) // the node came back
}

// TestBatchReceiverReadsBothFormats sends batches to a server's receiver as
// a node of an earlier version does (one message per item), in the packed
// form, and malformed: the well-formed items arrive in order, and the
// malformed rest of a batch is counted as undecodable, not delivered and not
// fatal.
func TestBatchReceiverReadsBothFormats(t *testing.T) {
	nodes := startNodes(t, 2, wsactor.Options{})
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	name := strings.Split(string(id), ".")[1]
	receiver := actor.NewPID(two.addr, "wsactor-deliver-"+two.Name())
	root := pooledSystems(t, 2)[0].Root // node one's actor system
	root.Send(receiver, &wire.DeliverBatch{Items: []*wire.DeliverBatch_Item{
		{Name: name, Type: 1, Data: []byte("old 1")},
		{Name: "nobody", Type: 1, Data: []byte("lost")},
		{Name: name, Type: 1, Data: []byte("old 2")},
	}})
	packed := func(data string) []byte {
		b := binary.AppendUvarint(nil, uint64(len(name)))
		b = append(b, name...)
		b = append(b, 0, 1) // request ID 0, type 1 (text)
		b = binary.AppendUvarint(b, uint64(len(data)))
		return append(b, data...)
	}
	good := append(packed("new 1"), packed("new 2")...)
	root.Send(receiver, &wire.DeliverBatch{Packed: good})
	// A batch whose second item claims more bytes than there are.
	bad := append(packed("before the bad one"), 4, 'x', 'y', 0, 1, 0x7f)
	root.Send(receiver, &wire.DeliverBatch{Packed: bad})
	if err := one.Post(id, wsactor.Text("after")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"old 1", "old 2", "new 1", "new 2", "before the bad one", "after"} {
		if got := readText(t, c); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if n := two.Stats().MessagesUndecodable; n != 1 {
		t.Fatalf("MessagesUndecodable = %d, want 1 (the malformed rest of one batch)", n)
	}
}
