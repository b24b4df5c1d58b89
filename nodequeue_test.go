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
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// stallReceiver makes the receiving node's lane reader stop reading what
// one sends it, at the next frame for two's server, until the returned
// function is called.
func stallReceiver(t *testing.T, two *remoteNode, receiver *actor.ActorSystem) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	hub := lane.Of(receiver)
	deliver := hub.Current(two.Name())
	if deliver == nil {
		t.Fatal("the receiving server handles no lane frames")
	}
	t.Cleanup(hub.Swap(two.Name(), func(from string, payload []byte) {
		<-gate
		deliver(from, payload)
	}))
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
//
// On the lane only: through protoactor's remote (a peer without a lane)
// the outbox hands each batch to protoactor's endpoint writer, whose queue
// it cannot see, so the bound holds nothing back there (see
// Options.NodeQueueBytes).
func TestNodeQueueIsBounded(t *testing.T) {
	const limit = 256 << 10
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{NodeQueueBytes: limit, Transport: wsactor.TransportOptions{SendQueueBytes: 64 << 20}}, memberHandler)
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	postUntilOnLane(t, lane.Of(pool[1]), one, id, c)
	release := stallReceiver(t, two, pool[1])

	// Post until the queue stays full. The socket buffers between
	// the nodes take some megabytes first; the bound is on what
	// waits behind them.
	accepted, refused := fillNodeQueue(t, one, id, limit)
	// While the node does not read, everything but a close is
	// refused, a Send at once rather than at its timeout.
	for i := range 50 {
		if err := one.Post(id, numberedMessage(-1)); !errors.Is(err, wsactor.ErrNodeQueueFull) {
			t.Fatalf("Post %d after the queue filled: %v, want ErrNodeQueueFull", i, err)
		}
		refused++
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	if err := one.Send(ctx, id, numberedMessage(-1)); !errors.Is(err, wsactor.ErrNodeQueueFull) {
		t.Fatalf("Send to a connection behind a full queue: %v, want ErrNodeQueueFull", err)
	}
	refused++
	if waited := time.Since(start); waited > testTimeout/2 {
		t.Errorf("the refused Send took %v", waited)
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
	for i := range accepted {
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
	t.Logf("%d messages of 1 KiB accepted before the queue of %d KiB filled; %d refused", accepted, limit>>10, refused)
}

// fillNodeQueue posts 1 KiB messages from one to id, on a node that does
// not read, until the queue to it stays full: a refusal is retried after
// yielding, so that the outbox's flusher runs, and the queue counts as full
// after lastingRefusals in a row. It fails the test if more than
// bound+allowance is accepted, and returns how many messages were, and
// how many refused.
func fillNodeQueue(t *testing.T, one *remoteNode, id wsactor.ID, bound int) (accepted int, refused int64) {
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
			refused++
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
	return accepted, refused
}

// teller is member with more commands, each with a connection's ID:
// "tell <id>" has the connection Tell the connection id a message of 2 KiB
// (larger than fillNodeQueue's, so that it cannot fit what they left) and
// answer with Tell's error; "request <id>" Requests it instead, waits for
// the future and answers with its error; "request-unregistered <id>"
// Requests with a message that cannot cross nodes.
type teller struct{ member }

func (h *teller) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	cmd, target, ok := strings.Cut(m.Text(), " ")
	if !ok {
		return h.member.OnMessage(c, m)
	}
	pid, err := wsactor.ID(target).PID()
	if err != nil {
		return err
	}
	switch cmd {
	case "tell":
		err = c.Tell(pid, wrapperspb.Bytes(make([]byte, 2048)))
	case "request":
		_, err = c.Request(pid, wrapperspb.Bytes(make([]byte, 2048))).Result()
	case "request-unregistered":
		_, err = c.Request(pid, struct{ N int }{1}).Result()
	default:
		return h.member.OnMessage(c, m)
	}
	if err != nil {
		return c.SendText("error: " + err.Error())
	}
	return c.SendText("ok " + cmd)
}

// TestConnTellReportsAFullNodeQueue: a connection's Tell to a connection on
// a node whose queue is full is dropped, and says so with ErrNodeQueueFull,
// as Server.Tell does, rather than returning nil. A Request's future fails
// at once with actor.ErrDeadLetter, as does one with a message that cannot
// cross nodes, rather than at its timeout (5 s).
func TestConnTellReportsAFullNodeQueue(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{NodeQueueBytes: 256 << 10, Transport: wsactor.TransportOptions{SendQueueBytes: 256 << 20}},
		func(s *wsactor.Server, opened chan wsactor.ID) wsactor.Handler {
			return &teller{member{opened: opened, srv: s}}
		})
	one, two := nodes[0], nodes[1]
	target, id := two.connect(t)
	asker, _ := one.connect(t)
	postUntilOnLane(t, lane.Of(pool[1]), one, id, target)
	release := stallReceiver(t, two, pool[1])
	defer release()
	fillNodeQueue(t, one, id, 256<<10)
	write(t, asker, websocket.MessageText, "tell "+string(id))
	if got, want := readText(t, asker), "error: "+wsactor.ErrNodeQueueFull.Error(); got != want {
		t.Fatalf("Conn.Tell behind a full queue answered %q, want %q", got, want)
	}
	for _, cmd := range []string{"request", "request-unregistered"} {
		write(t, asker, websocket.MessageText, cmd+" "+string(id))
		if got, want := readText(t, asker), "error: "+actor.ErrDeadLetter.Error(); got != want {
			t.Fatalf("%s: the future answered %q, want %q", cmd, got, want)
		}
	}
}
