package wsactor_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/lane"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// relay: on node one, "go <id> <n>" makes the connection send n numbered
// messages to the connection <id>'s PID, alternating Conn.Tell and
// Conn.Request; on node two, the connection writes each number it receives
// to its client.
type relay struct{ opened chan wsactor.ID }

func (h *relay) OnOpen(c *wsactor.Conn) error { h.opened <- c.ID(); return nil }

func (h *relay) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	f := strings.Fields(m.Text())
	if len(f) != 3 || f[0] != "go" {
		return nil
	}
	pid, err := wsactor.ID(f[1]).PID()
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(f[2])
	for i := range n {
		v := wrapperspb.String(strconv.Itoa(i))
		if i%2 == 0 {
			if err := c.Tell(pid, v); err != nil {
				return err
			}
		} else {
			c.Request(pid, v) // the answer does not matter
		}
	}
	return c.SendText("done")
}

func (h *relay) Receive(c *wsactor.Conn, msg any) {
	if v, ok := msg.(*wrapperspb.StringValue); ok {
		_ = c.SendText(v.GetValue())
	}
}

// TestConnTellAndRequestKeepOrder: a connection's Tells and Requests to a
// connection on another node arrive in the order sent, on the lane.
func TestConnTellAndRequestKeepOrder(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 4096}},
		func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler { return &relay{opened: opened} })
	one, two := nodes[0], nodes[1]
	x, _ := one.connect(t)
	y, yID := two.connect(t)
	// Wait until node one sends to node two's server on the lane.
	postUntilOnLane(t, lane.Of(pool[1]), one, yID, y)
	relayRound(t, x, y, yID, 400)
}

// relayRound has x's relay Tell and Request n numbered messages to y, and
// checks that y gets them in the order sent.
func relayRound(t *testing.T, x, y *websocket.Conn, yID wsactor.ID, n int) {
	t.Helper()
	write(t, x, websocket.MessageText, "go "+string(yID)+" "+strconv.Itoa(n))
	if got := readText(t, x); got != "done" {
		t.Fatalf("x: %q", got)
	}
	for i := range n {
		if got := readText(t, y); got != strconv.Itoa(i) {
			t.Fatalf("message %d: got %q (Tell and Request from one connection crossed)", i, got)
		}
	}
}

// TestConnTellAndRequestKeepOrderRemote is TestConnTellAndRequestKeepOrder
// without a lane on the receiving node: everything goes through
// protoactor's remote, while another sender keeps the outbox busy.
func TestConnTellAndRequestKeepOrderRemote(t *testing.T) {
	pool := pooledSystems(t, 3)
	nodes := startNodesOn(t, []*actor.ActorSystem{pool[0], pool[2]}, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 4096}},
		func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler { return &relay{opened: opened} })
	one, two := nodes[0], nodes[1]
	x, _ := one.connect(t)
	y, yID := two.connect(t)
	z, zID := two.connect(t)
	// Another sender keeps node one's outbox to node two's server busy,
	// as any traffic there does.
	stop := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = one.Post(zID, wsactor.Text("z"))
		}
	}()
	go func() {
		for {
			if _, _, err := z.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-busy }()
	for range 5 {
		relayRound(t, x, y, yID, 2000)
	}
	_ = one
}

// mixed is member (groups commands) plus a Receive that writes the
// StringValues it is told.
type mixed struct{ member }

func (h *mixed) Receive(c *wsactor.Conn, msg any) {
	if v, ok := msg.(*wrapperspb.StringValue); ok {
		_ = c.SendText(v.GetValue())
	}
}

// TestMixedWaysKeepOrderDuringTheSwitch: a fresh server pair starts on the
// remote and changes to the lane mid-stream; Post, Send, Tell by ID and
// group broadcasts from one goroutine arrive in order. (It also caught
// posts that waited for a connection's actor to be marked spawned, which the
// supervisor did late, being overtaken by Tells sent to its PID.)
func TestMixedWaysKeepOrderDuringTheSwitch(t *testing.T) {
	pool := pooledSystems(t, 2)
	for round := range 8 {
		nodes := startNodesOn(t, pool, wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 4096}},
			func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler {
				return &mixed{member{opened: opened, srv: s}}
			})
		one, two := nodes[0], nodes[1]
		c, id := two.connect(t)
		write(t, c, websocket.MessageText, "join g m")
		if got := readText(t, c); got != "ok join" {
			t.Fatalf("join: %q", got)
		}
		ctx := context.Background()
		const n = 800
		for i := range n {
			var err error
			s := strconv.Itoa(i)
			switch i % 4 {
			case 0:
				err = one.Post(id, wsactor.Text(s))
			case 1:
				_, err = one.Groups().Broadcast(ctx, "g", wsactor.Text(s))
			case 2:
				err = one.Tell(id, wrapperspb.String(s))
			default:
				if i%20 == 3 {
					err = one.Send(ctx, id, wsactor.Text(s))
				} else {
					err = one.Post(id, wsactor.Text(s))
				}
			}
			if err != nil {
				t.Fatalf("round %d message %d: %v", round, i, err)
			}
		}
		for i := range n {
			if got := readText(t, c); got != strconv.Itoa(i) {
				t.Fatalf("round %d message %d: got %q", round, i, got)
			}
		}
	}
}

// barrierHolder answers the first LaneSync once release is closed, and none
// after it: a peer slow to answer the barrier that changes to the lane.
type barrierHolder struct {
	real    actor.Process
	n       *atomic.Int32
	release chan struct{}
	later   chan struct{}
}

func (p barrierHolder) SendUserMessage(pid *actor.PID, m any) {
	if p.n.Add(1) == 1 {
		go func() {
			<-p.release
			p.real.SendUserMessage(pid, m)
		}()
		return
	}
	select {
	case p.later <- struct{}{}:
	default:
	}
}
func (p barrierHolder) SendSystemMessage(pid *actor.PID, m any) { p.real.SendSystemMessage(pid, m) }
func (p barrierHolder) Stop(pid *actor.PID)                     { p.real.Stop(pid) }

// TestALateBarrierDoesNotHoldSendsUp: once a lane is set up, a node changes
// to it behind a barrier Sync if it sent through the remote meanwhile. A
// peer that does not answer that barrier holds the sends up for at most 1 s
// (barrierTimeout), not the 5 s a Sync may wait; they go on through the
// remote.
func TestALateBarrierDoesNotHoldSendsUp(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{}, memberHandler)
	one, two := nodes[0], nodes[1]
	real, _ := pool[1].ProcessRegistry.GetLocal(lane.ProcessName) // swapLaneProcess fails the test if there is none
	p := barrierHolder{real: real, n: new(atomic.Int32), release: make(chan struct{}), later: make(chan struct{}, 1)}
	swapLaneProcess(t, pool[1], p)
	c, id := two.connect(t)
	post := func(i int) {
		t.Helper()
		if err := one.Post(id, wsactor.Text(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second) // well before the 5 s a Sync waits
		defer cancel()
		start := time.Now()
		if _, b, err := c.Read(ctx); err != nil || string(b) != strconv.Itoa(i) {
			t.Fatalf("post %d: %q, %v after %v", i, b, err, time.Since(start))
		}
	}
	// The first posts set the lane up, and go through the remote while
	// its Sync waits: the change to it needs a barrier.
	post(0)
	post(1)
	close(p.release)
	barrier := false
	for i := 2; !barrier; i++ {
		if i == 500 {
			t.Fatal("no barrier was asked for in 500 posts")
		}
		post(i)
		select {
		case <-p.later:
			barrier = true
		default:
		}
	}
	post(1000) // after the barrier that was not answered
}
