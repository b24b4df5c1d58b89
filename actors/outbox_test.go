package actors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/internal/wire"
)

// TestPackedRoundTrip packs items of every shape and reads them back.
func TestPackedRoundTrip(t *testing.T) {
	items := []outItem{
		{name: "AAAAAAAAAAAAAAAAAAAAAA", typ: 2, data: []byte("payload")},
		{name: "x", reqID: 1<<32 - 1, typ: 1, data: nil},
		{name: "", reqID: 7, typ: -1, data: bytes.Repeat([]byte{0xff}, 300)},
		{name: string(bytes.Repeat([]byte("n"), 200)), typ: 1, data: bytes.Repeat([]byte{1}, 70000)},
	}
	var p []byte
	want := 0
	for i := range items {
		p = appendPacked(p, &items[i])
		want += packedSize(&items[i])
	}
	if len(p) != want {
		t.Fatalf("packed %d bytes, packedSize says %d", len(p), want)
	}
	for i, w := range items {
		it, rest, ok := nextPacked(p)
		if !ok {
			t.Fatalf("item %d: not read", i)
		}
		if string(it.name) != w.name || it.reqID != w.reqID || it.typ != w.typ || !bytes.Equal(it.data, w.data) {
			t.Fatalf("item %d: got %q/%d/%d/%d bytes, want %q/%d/%d/%d bytes", i, it.name, it.reqID, it.typ, len(it.data), w.name, w.reqID, w.typ, len(w.data))
		}
		p = rest
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes left over", len(p))
	}
}

// TestPackedRejectsTruncation cuts a packed item at every length: no prefix
// of it reads as an item.
func TestPackedRejectsTruncation(t *testing.T) {
	p := appendPacked(nil, &outItem{name: "conn", reqID: 300, typ: 2, data: []byte("hello")})
	for n := range len(p) {
		if _, _, ok := nextPacked(p[:n]); ok {
			t.Fatalf("a %d-byte prefix of a %d-byte item was read as an item", n, len(p))
		}
	}
	// A request ID or type over 32 bits is refused, not truncated.
	bad := []byte{1, 'n', 0x80, 0x80, 0x80, 0x80, 0x10, 2, 0}
	if _, _, ok := nextPacked(bad); ok {
		t.Fatal("a 33-bit request ID was accepted")
	}
}

// FuzzNextPacked reads arbitrary bytes as packed items: it never panics,
// each item it reads is within the input, and what it reads packs back to
// the bytes it consumed.
func FuzzNextPacked(f *testing.F) {
	f.Add(appendPacked(nil, &outItem{name: "conn", reqID: 1, typ: 2, data: []byte("x")}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		for len(p) > 0 {
			it, rest, ok := nextPacked(p)
			if !ok {
				return
			}
			if len(rest) >= len(p) {
				t.Fatalf("no progress: %d bytes then %d", len(p), len(rest))
			}
			again := appendPacked(nil, &outItem{name: string(it.name), reqID: it.reqID, typ: it.typ, data: it.data})
			// Varints may be encoded longer than needed in the input; the
			// item must still read the same from its canonical form.
			back, left, ok := nextPacked(again)
			if !ok || len(left) != 0 || !bytes.Equal(back.name, it.name) || back.reqID != it.reqID || back.typ != it.typ || !bytes.Equal(back.data, it.data) {
				t.Fatalf("item %+v does not survive packing again", it)
			}
			p = rest
		}
	})
}

// TestLaneRecordsRoundTrip writes a lane frame's records of every kind and
// reads them back in order.
func TestLaneRecordsRoundTrip(t *testing.T) {
	o := &outbox{server: "chat", rt: &Runtime{logger: slog.New(slog.DiscardHandler)}}
	watcher := actor.NewPID("127.0.0.1:1", "watcher")
	room := &actor.PID{Address: "127.0.0.1:1", Id: "partition-activator/room$7", RequestId: 0}
	items := []outItem{
		{name: "conn1", typ: 2, data: []byte("payload")},
		{pid: actor.NewPID("127.0.0.1:2", SupervisorPrefix+"chat/conn2"), reqID: 9, msg: &wire.Close{Code: 4000, Reason: "bye"}},
		{pid: actor.NewPID("127.0.0.1:2", SupervisorPrefix+"chat/conn3"), msg: &actor.Watch{Watcher: watcher}, system: true},
		{name: "conn4", reqID: 5, typ: 1, data: bytes.Repeat([]byte{7}, 1000)},
		// A room's answer to a connection, with the room as its sender.
		{pid: actor.NewPID("127.0.0.1:2", SupervisorPrefix+"chat/conn5"), msg: &wire.RoomLeft{Kind: "k", Name: "n"}, sender: room},
		// A delivery to another process of the node, with no sender.
		{pid: actor.NewPID("127.0.0.1:2", "wsactor-rooms-deliver-chat"), msg: &wire.RoomDeliver{Kind: "k", Ids: []string{"x"}}},
		// A connection of another server of that node.
		{pid: actor.NewPID("127.0.0.1:2", SupervisorPrefix+"game/conn6"), msg: &wire.Close{Code: 4001}},
	}
	p := binary.AppendUvarint(nil, uint64(len("replies-1")))
	p = append(p, "replies-1"...)
	for i := range items {
		p = o.appendRecord(p, &items[i])
	}
	var got []packedItem
	var kinds []byte
	left, ok := readFrame(p, func(replyID string, kind byte, it packedItem) {
		if replyID != "replies-1" {
			t.Fatalf("reply ID %q", replyID)
		}
		got, kinds = append(got, it), append(kinds, kind)
	})
	if !ok || left != 0 || len(got) != len(items) {
		t.Fatalf("read %d records (ok %v, %d bytes left), want %d", len(got), ok, left, len(items))
	}
	if !bytes.Equal(kinds, []byte{recordData, recordUser, recordSystem, recordData, recordProcess, recordProcess, recordProcess}) {
		t.Fatalf("kinds %v", kinds)
	}
	if string(got[4].name) != SupervisorPrefix+"chat/conn5" || string(got[4].senderAddress) != room.Address || string(got[4].senderID) != room.Id {
		t.Fatalf("answer record %q from %q/%q", got[4].name, got[4].senderAddress, got[4].senderID)
	}
	if string(got[5].name) != "wsactor-rooms-deliver-chat" || len(got[5].senderID) != 0 || string(got[6].name) != SupervisorPrefix+"game/conn6" {
		t.Fatalf("process records %q (sender %q), %q", got[5].name, got[5].senderID, got[6].name)
	}
	m, err := remote.Deserialize(got[5].data, string(got[5].typeName), 0)
	if d, ok := m.(*wire.RoomDeliver); err != nil || !ok || d.GetKind() != "k" || len(d.GetIds()) != 1 {
		t.Fatalf("delivery record decodes to %v (%v)", m, err)
	}
	if string(got[0].name) != "conn1" || string(got[0].data) != "payload" || got[3].reqID != 5 || len(got[3].data) != 1000 {
		t.Fatalf("data records %+v %+v", got[0], got[3])
	}
	if string(got[1].name) != "conn2" || got[1].reqID != 9 || string(got[2].name) != "conn3" || got[2].reqID != 0 {
		t.Fatalf("message records %q/%d %q/%d", got[1].name, got[1].reqID, got[2].name, got[2].reqID)
	}
	m, err = remote.Deserialize(got[1].data, string(got[1].typeName), 0)
	if c, ok := m.(*wire.Close); err != nil || !ok || c.GetCode() != 4000 || c.GetReason() != "bye" {
		t.Fatalf("close record decodes to %v (%v)", m, err)
	}
	m, err = remote.Deserialize(got[2].data, string(got[2].typeName), 0)
	if w, ok := m.(*actor.Watch); err != nil || !ok || !w.GetWatcher().Equal(watcher) {
		t.Fatalf("watch record decodes to %v (%v)", m, err)
	}
	// Every proper prefix that cuts a record is refused, never misread.
	for n := len(p) - 1; n > 0; n-- {
		count := 0
		if _, ok := readFrame(p[:n], func(string, byte, packedItem) { count++ }); ok && count == len(items) {
			t.Fatalf("a %d-byte prefix read as the whole frame", n)
		}
	}
}

// FuzzReadFrame reads arbitrary bytes as a lane frame's payload: it never
// panics, and every record it passes on lies within the input.
func FuzzReadFrame(f *testing.F) {
	o := &outbox{server: "s", rt: &Runtime{logger: slog.New(slog.DiscardHandler)}}
	p := append(binary.AppendUvarint(nil, 1), 'r')
	p = o.appendRecord(p, &outItem{name: "c", typ: 1, data: []byte("x")})
	p = o.appendRecord(p, &outItem{pid: actor.NewPID("a", SupervisorPrefix+"s/c"), reqID: 3, msg: &wire.Close{Code: 4000}})
	p = o.appendRecord(p, &outItem{pid: actor.NewPID("a", "d"), msg: &wire.Close{}, sender: &actor.PID{Address: "b", Id: "r", RequestId: 2}})
	f.Add(p)
	f.Add([]byte{0})
	f.Add([]byte{0, 9})
	f.Fuzz(func(t *testing.T, p []byte) {
		total := 0
		left, ok := readFrame(p, func(_ string, kind byte, it packedItem) {
			if kind > recordProcess {
				t.Fatalf("kind %d passed on", kind)
			}
			total += len(it.name) + len(it.data) + len(it.typeName) + len(it.senderAddress) + len(it.senderID)
		})
		if total > len(p) || left > len(p) || (ok && left != 0) {
			t.Fatalf("read %d bytes of records and left %d (ok %v) from %d", total, left, ok, len(p))
		}
	})
}

// flappingView is a Cluster whose members are set by the test.
type flappingView struct{ alive atomic.Bool }

func (v *flappingView) Alive(string) bool { return v.alive.Load() }
func (v *flappingView) Peers() []string   { return nil }

// runtimeWithView returns a runtime, in an actor system without a remote
// (nothing it sends leaves the process), whose cluster view the test sets:
// every other node is departed until the test says it is alive.
func runtimeWithView(t *testing.T) (*Runtime, *flappingView) {
	t.Helper()
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	rt, err := NewRuntime(Config{System: system, ServerName: "here", Logger: slog.New(slog.DiscardHandler), Counters: &metrics.Counters{}})
	if err != nil {
		t.Fatal(err)
	}
	view := &flappingView{}
	rt.SetCluster(view)
	return rt, view
}

// TestRetiredOutboxHandsOnToItsSuccessor: a sender may hold an outbox it
// read from the route table just before the outbox was dropped (its node
// left while it was idle) and push after its node came back, when later
// sends go to a new outbox. Two outboxes to one peer would not keep each
// other's order, so what is pushed to the dropped one goes to the new one.
func TestRetiredOutboxHandsOnToItsSuccessor(t *testing.T) {
	rt, view := runtimeWithView(t)
	view.alive.Store(true)
	const address = "127.0.0.1:1" // nothing is sent: this system has no remote
	old := rt.route("there", "MTI3LjAuMC4xOjE", address)

	view.alive.Store(false) // the node leaves, and its idle outbox is dropped
	rt.PruneRoutes()
	if n := rt.Routes(); n != 0 {
		t.Fatalf("%d outboxes after the departed node's idle one was pruned, want 0", n)
	}
	view.alive.Store(true) // it comes back

	for i, send := range []func() error{
		func() error { return old.push(outItem{name: "conn", typ: 1, data: []byte("pushed")}) },
		func() error { return old.sendOrPush(outItem{name: "conn", typ: 1, data: []byte("sent")}, func() {}) },
	} {
		if err := send(); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		cur := rt.routes.Load().byKey[routeKey{"there", "MTI3LjAuMC4xOjE"}]
		if cur == nil || cur == old {
			t.Fatalf("send %d through the dropped outbox: the route table holds %p (the dropped one is %p), want its successor", i, cur, old)
		}
		old.mu.Lock()
		queued := len(old.items) + old.bytes
		old.mu.Unlock()
		if queued != 0 {
			t.Fatalf("send %d: the dropped outbox took it", i)
		}
	}
}

// TestOutboxIsDroppedWhenItsLinkEnds: an outbox setting up its lane when its
// node leaves is kept by the prune on departure, and dropped once the link
// ends, in success or failure: nothing else would drop it until another
// outbox is added. (Its flusher's end does the same; see the root
// package's TestOutboxIsDroppedWhenItsNodeLeaves.)
func TestOutboxIsDroppedWhenItsLinkEnds(t *testing.T) {
	rt, view := runtimeWithView(t)
	for _, end := range []struct {
		name string
		f    func(o *outbox)
	}{
		{"success", func(o *outbox) { o.linkSucceeded(nil, 0) }},
		{"failure", func(o *outbox) { o.linkFailed(errors.New("no lane")) }},
	} {
		view.alive.Store(true)
		o := rt.route("there", "MTI3LjAuMC4xOjE", "127.0.0.1:1")
		o.mu.Lock()
		o.linking = true // as startLink leaves it
		o.mu.Unlock()
		view.alive.Store(false)
		rt.PruneRoutes()
		if n := rt.Routes(); n != 1 {
			t.Fatalf("%s: %d outboxes while the departed node's one sets up its lane, want it kept", end.name, n)
		}
		end.f(o)
		if n := rt.Routes(); n != 0 {
			t.Fatalf("%s: %d outboxes once the link ended, want the departed node's dropped", end.name, n)
		}
	}
}
