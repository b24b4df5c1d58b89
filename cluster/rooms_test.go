package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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

// orderRoom reaches its one player every way a room can: its answer to the
// join, Room.Send and Room.Broadcast (a RoomDeliver to another node), and
// its server's Post by ID. On join it posts "welcome"; on "burst" it sends
// 0…burstLen-1, each a different way in turn, then "end".
type orderRoom struct{ servers *sync.Map } // actor-system address → *wsactor.Server

const burstLen = 300

func (o orderRoom) server(r *rooms.Room) *wsactor.Server {
	s, _ := o.servers.Load(r.Actor().ActorSystem().Address())
	return s.(*wsactor.Server)
}

func (o orderRoom) OnJoin(r *rooms.Room, p *rooms.Player) {
	if err := o.server(r).Post(p.ID, wsactor.Text("welcome")); err != nil {
		r.Logger().Error("post", slog.Any("err", err))
	}
}

func (o orderRoom) OnMessage(r *rooms.Room, p *rooms.Player, m wsactor.Message) error {
	if m.Text() != "burst" {
		return nil
	}
	for i := range burstLen {
		t := wsactor.Text(strconv.Itoa(i))
		switch i % 3 {
		case 0:
			if err := r.Send(p, t); err != nil {
				return err
			}
		case 1:
			r.Broadcast(t)
		default:
			if err := o.server(r).Post(p.ID, t); err != nil {
				return err
			}
		}
	}
	r.Broadcast(wsactor.Text("end"))
	return nil
}

// TestRoomMessagesKeepTheirOrderOnEveryWay: what a room sends a player on
// another node arrives in the order sent, whichever of the room's ways each
// message takes (its answers and deliveries, its server's Post by ID), on
// the data lane (between a[0] and a[1]) and through the remote (with a[2]).
func TestRoomMessagesKeepTheirOrderOnEveryWay(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	var servers sync.Map
	kind := rooms.Kind{Name: "order", New: func() rooms.Handler { return orderRoom{&servers} }}
	s := startRoomServers(t, p.a, rooms.NewMemoryStore(), kind)
	for _, srv := range s {
		servers.Store(srv.node.Address(), srv.Server)
	}
	active := func() []int64 {
		n := make([]int64, len(s))
		for i, srv := range s {
			n[i] = srv.Rooms().Stats().RoomsActive
		}
		return n
	}
	// Players join rooms of their own until there is a room with its
	// player on another node both on the lane and through the remote:
	// where a room lives is the identity lookup's choice.
	laneDone, remoteDone := false, false
	for i := 0; i < 60 && !(laneDone && remoteDone); i++ {
		at := i % len(s)
		before := active()
		c := roomstest.Dial(t, s[at].url, fmt.Sprintf("p%d", i))
		// The room's join answer comes before its Post in OnJoin.
		c.Join("order", fmt.Sprintf("o%d", i))
		c.Expect("welcome")
		host := -1
		for j, n := range active() {
			if n > before[j] {
				host = j
			}
		}
		viaLane := host >= 0 && host != at && host != 2 && at != 2
		viaRemote := host >= 0 && host != at && !viaLane
		if host < 0 || host == at || (viaLane && laneDone) || (viaRemote && remoteDone) {
			continue
		}
		t.Logf("room o%d on node %d, its player on node %d (lane: %v)", i, host, at, viaLane)
		c.Send(map[string]string{"op": "say", "text": "burst"})
		for k := range burstLen {
			if got := c.Read(); got != strconv.Itoa(k) {
				t.Fatalf("room on node %d, player on node %d: message %d is %q", host, at, k, got)
			}
		}
		c.Expect("end")
		laneDone, remoteDone = laneDone || viaLane, remoteDone || viaRemote
	}
	if !laneDone || !remoteDone {
		t.Fatalf("no room with a player on another node on each way (lane %v, remote %v)", laneDone, remoteDone)
	}
}
