package wsactor_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/lane"
)

// Sends to connections on another node travel on the nodes' data lane when
// both have one (pooled nodes 0 and 1) and through protoactor's remote when
// the receiver has none (pooled node 2). These tests run the same traffic
// both ways and check which way it went.

func memberHandler(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler {
	return &member{opened: opened, srv: s}
}

// untilOnLane calls post until a frame for the server of id (its channel)
// has come on receiver's lane: a node sets its lane to a peer up in the
// background, at its first send there, and changes to it at a later one.
// Frames are counted at that server's handler, not in the hub's totals:
// frames for an earlier test's servers may still be arriving, and counting
// them let a test go on while its own sends still went through the remote.
func untilOnLane(t *testing.T, receiver *lane.Hub, id wsactor.ID, post func()) {
	t.Helper()
	channel, _, _ := strings.Cut(string(id), ".")
	deliver := receiver.Current(channel)
	if deliver == nil {
		t.Fatalf("no lane handler for server %q", channel)
	}
	var came atomic.Bool
	defer receiver.Swap(channel, func(from string, payload []byte) {
		came.Store(true)
		deliver(from, payload)
	})()
	waitFor(t, "a frame on the lane", func() bool {
		post()
		return came.Load()
	})
}

// postUntilOnLane posts "first" from one to the connection id, which c
// reads, until a post has come on receiver's lane.
func postUntilOnLane(t *testing.T, receiver *lane.Hub, one *remoteNode, id wsactor.ID, c *websocket.Conn) {
	t.Helper()
	untilOnLane(t, receiver, id, func() {
		if err := one.Post(id, wsactor.Text("first")); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, c); got != "first" {
			t.Fatalf("got %q", got)
		}
	})
}

// onBothWays runs fn as a subtest for each way a node reaches another's
// connections: on the lane (pooled node 1, which has one, receives) and
// through protoactor's remote (pooled node 2, which has none). Node one
// (pooled node 0) sends; both serve memberHandler with room for 1,024
// queued messages per connection.
func onBothWays(t *testing.T, fn func(t *testing.T, one, two *remoteNode, receiver *actor.ActorSystem, onLane bool)) {
	pool := pooledSystems(t, 3)
	for _, way := range []struct {
		name     string
		receiver int
	}{{"lane", 1}, {"remote", 2}} {
		t.Run(way.name, func(t *testing.T) {
			nodes := startNodesOn(t, []*actor.ActorSystem{pool[0], pool[way.receiver]},
				wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 1024}}, memberHandler)
			fn(t, nodes[0], nodes[1], pool[way.receiver], way.name == "lane")
		})
	}
}

// TestCrossNodeWaysKeepOrderAndClose posts and sends across nodes, then
// closes, on each way, and checks the order, that the close frame comes
// after every message, and the way taken.
func TestCrossNodeWaysKeepOrderAndClose(t *testing.T) {
	onBothWays(t, func(t *testing.T, one, two *remoteNode, receiver *actor.ActorSystem, onLane bool) {
		c, id := two.connect(t)
		var framesBefore uint64
		if h := lane.Of(receiver); h != nil {
			framesBefore = h.Stats().FramesIn
			postUntilOnLane(t, h, one, id, c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		const n = 400
		for i := range n {
			var err error
			switch {
			case i == n/2:
				err = one.Send(ctx, id, wsactor.Text(strconv.Itoa(i)))
			default:
				err = one.Post(id, wsactor.Text(strconv.Itoa(i)))
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- one.Close(ctx, id, 4005, "done") }()
		for i := range n {
			if got := readText(t, c); got != strconv.Itoa(i) {
				t.Fatalf("message %d: got %q", i, got)
			}
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != 4005 {
			t.Fatalf("after the messages: want the close frame 4005, got %v", err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		// A Close of a connection that is gone fails at once on both ways.
		if err := one.Close(ctx, id, 4005, ""); err == nil {
			t.Fatal("closing a closed connection succeeded")
		}
		h := lane.Of(receiver)
		switch {
		case onLane && (h == nil || h.Stats().FramesIn == framesBefore):
			t.Fatal("nothing came on the lane")
		case !onLane && h != nil:
			t.Fatal("the receiver has a lane")
		}
	})
}

// TestCrossNodeBroadcastsKeepOrderWithPosts: group broadcasts (one message
// to the member's node, fanned out there) arrive in order with the sender's
// posts and sends by ID, on the lane and through the remote.
func TestCrossNodeBroadcastsKeepOrderWithPosts(t *testing.T) {
	onBothWays(t, func(t *testing.T, one, two *remoteNode, receiver *actor.ActorSystem, _ bool) {
		c, id := two.connect(t)
		write(t, c, websocket.MessageText, "join g m")
		if got := readText(t, c); got != "ok join" {
			t.Fatalf("after the join: %q", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		const n = 300
		for i := range n {
			var err error
			switch m := wsactor.Text(strconv.Itoa(i)); i % 3 {
			case 0:
				err = one.Post(id, m)
			case 1:
				_, err = one.Groups().Broadcast(ctx, "g", m)
			default:
				err = one.Send(ctx, id, m)
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		for i := range n {
			if got := readText(t, c); got != strconv.Itoa(i) {
				t.Fatalf("message %d: got %q", i, got)
			}
		}
	})
}

// TestCrossNodePostsToManyConnections posts numbered streams to a dozen
// connections on another node, round robin so that each batch or lane
// frame holds messages for many of them, on both ways: every connection
// gets its whole stream, in order.
func TestCrossNodePostsToManyConnections(t *testing.T) {
	onBothWays(t, func(t *testing.T, one, two *remoteNode, receiver *actor.ActorSystem, _ bool) {
		const conns, n = 12, 300
		clients := make([]*websocket.Conn, conns)
		ids := make([]wsactor.ID, conns)
		for i := range conns {
			clients[i], ids[i] = two.connect(t)
		}
		if h := lane.Of(receiver); h != nil {
			postUntilOnLane(t, h, one, ids[0], clients[0])
		}
		for i := range n {
			for k := range conns {
				if err := one.Post(ids[k], wsactor.Text(strconv.Itoa(k)+":"+strconv.Itoa(i))); err != nil {
					t.Fatalf("post %d to connection %d: %v", i, k, err)
				}
			}
		}
		for k, c := range clients {
			for i := range n {
				if got, want := readText(t, c), strconv.Itoa(k)+":"+strconv.Itoa(i); got != want {
					t.Fatalf("connection %d, message %d: got %q, want %q", k, i, got, want)
				}
			}
		}
	})
}

// TestCrossNodeOrderAcrossLaneBreaks posts a numbered stream to a connection
// on another node while the lane between the nodes is broken again and
// again, from either end. Messages in flight when it breaks may be lost, as
// on the remote's stream, but none arrives out of order or twice, the stream
// goes on after each break, and the lane is set up again.
func TestCrossNodeOrderAcrossLaneBreaks(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 8192}}, memberHandler)
	one, two := nodes[0], nodes[1]
	sender, receiver := lane.Of(pool[0]), lane.Of(pool[1])
	c, id := two.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	lostBefore := sender.Stats().FramesLost

	type result struct {
		received, last int
		err            string
	}
	done := make(chan result, 1)
	go func() {
		r := result{last: -1}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				r.err = err.Error()
				done <- r
				return
			}
			if string(b) == "end" {
				done <- r
				return
			}
			seq, err := strconv.Atoi(string(b))
			if err != nil || seq <= r.last {
				r.err = "got " + string(b) + " after " + strconv.Itoa(r.last)
				done <- r
				return
			}
			r.last = seq
			r.received++
		}
	}()
	const rounds, each = 8, 300
	seq := 0
	for round := range rounds {
		for range each {
			if err := one.Post(id, wsactor.Text(strconv.Itoa(seq))); err != nil {
				t.Fatalf("post %d: %v", seq, err)
			}
			seq++
		}
		if round%2 == 0 {
			receiver.Reset()
		} else {
			sender.Reset()
		}
	}
	// The last messages go after the breaks, until the lane is set up
	// again and carries some; the Send waits for its answer, so once it
	// returns everything before it has been handed on.
	untilOnLane(t, receiver, id, func() {
		for range each / 10 {
			if err := one.Post(id, wsactor.Text(strconv.Itoa(seq))); err != nil {
				t.Fatalf("post %d: %v", seq, err)
			}
			seq++
		}
	})
	if err := one.Send(ctx, id, wsactor.Text("end")); err != nil {
		t.Fatalf("Send after the breaks: %v", err)
	}
	r := <-done
	if r.err != "" {
		t.Fatalf("after %d messages: %s", r.received, r.err)
	}
	if r.last != seq-1 {
		t.Fatalf("the last message read was %d, want %d: the stream did not go on after the breaks", r.last, seq-1)
	}
	// Nothing is lost silently: if messages were lost, the sender counted
	// the frames that carried them.
	lost := sender.Stats().FramesLost - lostBefore
	if r.received < seq && lost == 0 {
		t.Fatalf("%d of %d messages arrived and no lost frame was counted\nsender's log:\n%s", r.received, seq, one.logs.String())
	}
	t.Logf("%d of %d messages arrived across %d lane breaks; %d frames counted lost", r.received, seq, rounds, lost)
}

// holdSyncs is a lane process that answers no LaneSync: a peer whose lane
// cannot be set up for now (busy, or the answer lost).
type holdSyncs struct{ got chan struct{} }

func (p holdSyncs) SendUserMessage(*actor.PID, any) {
	select {
	case p.got <- struct{}{}:
	default:
	}
}
func (holdSyncs) SendSystemMessage(*actor.PID, any) {}
func (holdSyncs) Stop(*actor.PID)                   {}

// swapLaneProcess puts p in the place of system's lane process until the
// test ends, and returns the lane process.
func swapLaneProcess(t *testing.T, system *actor.ActorSystem, p actor.Process) (laneProcess actor.Process) {
	t.Helper()
	reg := system.ProcessRegistry
	laneProcess, ok := reg.GetLocal(lane.ProcessName)
	if !ok {
		t.Fatalf("node %s has no lane process", system.Address())
	}
	reg.Remove(actor.NewPID(reg.Address, lane.ProcessName))
	reg.Add(p, lane.ProcessName)
	t.Cleanup(func() {
		reg.Remove(actor.NewPID(reg.Address, lane.ProcessName))
		reg.Add(laneProcess, lane.ProcessName)
	})
	return laneProcess
}

// TestLaneSetUpDoesNotHoldSendsUp: while a node cannot set its lane to a
// peer up (here the peer answers no Sync, which a sender waits 5 s for),
// its sends to that peer go through the remote at once.
func TestLaneSetUpDoesNotHoldSendsUp(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{}, memberHandler)
	one, two := nodes[0], nodes[1]
	hold := holdSyncs{got: make(chan struct{}, 1)}
	swapLaneProcess(t, pool[1], hold)
	c, id := two.connect(t)
	for i := range 3 {
		if err := one.Post(id, wsactor.Text(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		// Well before the 5 s the Sync waits for.
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		_, b, err := c.Read(ctx)
		cancel()
		if err != nil || string(b) != strconv.Itoa(i) {
			t.Fatalf("post %d while the lane is being set up: %q, %v", i, b, err)
		}
	}
	recv(t, hold.got, "the sender's Sync")
}

// TestAStoppedServerLeavesNothingBehind: once a server has shut down, its
// node's lane no longer hands it frames and its batch receiver is gone, so
// neither keeps the stopped server reachable: a peer's Sync for it is
// refused, and the peer sends through the remote, where nothing takes it.
func TestAStoppedServerLeavesNothingBehind(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{}, memberHandler)
	_, id := nodes[1].connect(t)
	server, _, _ := strings.Cut(string(id), ".")
	ha := lane.Of(pool[0])
	if _, err := ha.Sync(pool[1].Address(), server, 0, testTimeout); err != nil {
		t.Fatalf("Sync for a running server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := nodes[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ha.Sync(pool[1].Address(), server, 0, testTimeout); !errors.Is(err, lane.ErrUnsupported) {
		t.Fatalf("Sync for a stopped server: %v, want ErrUnsupported", err)
	}
	if _, ok := pool[1].ProcessRegistry.GetLocal("wsactor-deliver-" + server); ok {
		t.Fatal("the stopped server's batch receiver is still registered")
	}
}
