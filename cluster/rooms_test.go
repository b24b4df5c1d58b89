package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// roomServer is a server of a pool node with rooms, and its Player route.
type roomServer struct {
	*wsactor.Server
	node *poolNode
	name string // the server's name, the same on every node
	url  string // ws://…/play
}

// startRoomServers starts a server with the given room kinds on each node,
// sharing store (the nodes of one process can share a MemoryStore), or the
// nodes' Redis store when store is nil.
func startRoomServers(t *testing.T, nodes []*poolNode, store rooms.Store, kinds ...rooms.Kind) []*roomServer {
	t.Helper()
	name := fmt.Sprintf("t%d", serverSeq.Add(1))
	out := make([]*roomServer, len(nodes))
	for i, n := range nodes {
		o := n.ServerOptions(wsactor.Options{Name: name, Logger: slog.New(n.logs)})
		if store != nil {
			o.Rooms.Store = store
		}
		s := wsactor.New(o)
		n.Attach(s)
		for _, k := range kinds {
			s.Rooms().Define(k)
		}
		s.Handle("/play", func() wsactor.Handler { return roomstest.NewPlayer(s.Rooms()) },
			wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}))
		hs := httptest.NewServer(s)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown of %s on %s: %v", name, n.Address(), err)
			}
			hs.Close()
		})
		out[i] = &roomServer{Server: s, node: n, name: name, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/play"}
	}
	return out
}

// echoRoom broadcasts "<seat>:<text>" for every message, and "join:<seat>"
// when a player takes a seat.
type echoRoom struct{}

func (echoRoom) OnMessage(r *rooms.Room, p *rooms.Player, m wsactor.Message) error {
	r.Broadcast(wsactor.Text(fmt.Sprintf("%d:%s", p.Seat, m.Text())))
	return nil
}

func (echoRoom) OnJoin(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("join:%d", p.Seat)))
}

var echoKind = rooms.Kind{Name: "echo", New: func() rooms.Handler { return echoRoom{} }}

// host returns the index of the server whose node runs the room (the one
// activation among them), failing if there is not exactly one.
func host(t *testing.T, servers []*roomServer) int {
	t.Helper()
	at := -1
	for i, s := range servers {
		switch n := s.Rooms().Stats().RoomsActive; {
		case n == 1 && at < 0:
			at = i
		case n != 0:
			t.Fatalf("%d activations on node %d (and one on %d): a room must live on exactly one node", n, i, at)
		}
	}
	if at < 0 {
		t.Fatal("no node runs the room")
	}
	return at
}

// TestRoomReachedByNameFromEveryNode: a room is activated once, on the node
// the identity lookup chooses, and players of every node share it.
func TestRoomReachedByNameFromEveryNode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, rooms.NewMemoryStore(), echoKind)
	var clients []*roomstest.Client
	for i, srv := range s {
		c := roomstest.Dial(t, srv.url, fmt.Sprintf("p%d", i))
		if j := c.Join("echo", "shared"); j["seat"] != float64(i) {
			t.Fatalf("player of node %d: %v", i, j)
		}
		for _, earlier := range clients {
			earlier.Expect(fmt.Sprintf("join:%d", i))
		}
		c.Expect(fmt.Sprintf("join:%d", i))
		clients = append(clients, c)
	}
	at := host(t, s)
	t.Logf("the room lives on node %d (%s)", at, s[at].node.Address())
	clients[2].Send(map[string]string{"op": "say", "text": "hello"})
	for _, c := range clients {
		c.Expect("2:hello")
	}
	// protoactor's ClusterInit is the runtime's business, not the room's
	// (echoRoom has no Receive: it would be logged as a dropped message).
	if l := s[at].node.logs.String(); strings.Contains(l, "ClusterInit") {
		t.Errorf("the room's node logged protoactor's ClusterInit:\n%s", l)
	}
}

// TestRoomDeliversOncePerNode: a room's message to players of another node
// crosses the network once for all of them.
func TestRoomDeliversOncePerNode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, rooms.NewMemoryStore(), echoKind)
	first := roomstest.Dial(t, s[0].url, "first")
	first.Join("echo", "fan")
	at := host(t, s)
	remote := s[(at+1)%len(s)]
	var players []*roomstest.Client
	for i := range 4 {
		c := roomstest.Dial(t, remote.url, fmt.Sprintf("r%d", i))
		c.Join("echo", "fan")
		players = append(players, c)
	}
	// Let the join announcements pass.
	for i, c := range players {
		for j := i + 1; j <= 4; j++ {
			c.Expect(fmt.Sprintf("join:%d", j))
		}
	}
	before := remote.Rooms().Stats().Deliveries
	const rounds = 10
	for i := range rounds {
		first.Send(map[string]string{"op": "say", "text": fmt.Sprint(i)})
		for _, c := range players {
			c.Expect(fmt.Sprintf("0:%d", i))
		}
	}
	if got := remote.Rooms().Stats().Deliveries - before; got != rounds {
		t.Fatalf("node %s received %d deliveries for %d broadcasts to its 4 players; want one per broadcast", remote.node.Address(), got, rounds)
	}
}

// tickerRoom counts its ticks (20 a second) and keeps the count in its
// snapshot; every fifth tick it broadcasts "t:<count>". It echoes messages
// as echoRoom does, and broadcasts "back:<seat>" when a player comes back.
type tickerRoom struct {
	echoRoom
	n int64
}

func (r *tickerRoom) OnCreate(_ *rooms.Room, snapshot []byte) error {
	if len(snapshot) == 0 {
		return nil
	}
	return json.Unmarshal(snapshot, &r.n)
}

func (r *tickerRoom) OnTick(room *rooms.Room, _ rooms.Tick) {
	r.n++
	if r.n%5 == 0 {
		room.Broadcast(wsactor.Text(fmt.Sprintf("t:%d", r.n)))
	}
}

func (r *tickerRoom) OnReconnect(room *rooms.Room, p *rooms.Player) {
	room.Broadcast(wsactor.Text(fmt.Sprintf("back:%d", p.Seat)))
}

func (r *tickerRoom) Snapshot(*rooms.Room) ([]byte, error) { return json.Marshal(r.n) }

var tickerKind = rooms.Kind{Name: "ticker", TickRate: 20, SnapshotInterval: 100 * time.Millisecond,
	New: func() rooms.Handler { return &tickerRoom{} }}

// handoverKind is tickerKind without periodic snapshots (one an hour): a
// room's next activation finds the count it had when it stopped only if
// its final snapshot was saved.
var handoverKind = rooms.Kind{Name: "handover", TickRate: 20, SnapshotInterval: time.Hour,
	New: func() rooms.Handler { return &tickerRoom{} }}

// watchRoom broadcasts "drop:<seat>" when a player drops.
type watchRoom struct{ echoRoom }

func (watchRoom) OnDrop(r *rooms.Room, p *rooms.Player) {
	r.Broadcast(wsactor.Text(fmt.Sprintf("drop:%d", p.Seat)))
}

var watchKind = rooms.Kind{Name: "watch", New: func() rooms.Handler { return watchRoom{} }}
