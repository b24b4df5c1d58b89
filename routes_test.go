package wsactor_test

import (
	"testing"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/lane"
)

// TestDepartedNodesOutboxesAreDropped: a server keeps an outbox for each
// server on another node it sends to, with the buffers of its largest
// burst. Once that node has left the cluster and the outbox is idle, it is
// dropped, so that a cluster whose nodes come and go on new addresses does
// not grow the process for ever; a node that comes back gets a new one.
func TestDepartedNodesOutboxesAreDropped(t *testing.T) {
	nodes := startNodes(t, 3, wsactor.Options{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	postAndRead := func(to *remoteNode, text string) {
		t.Helper()
		client, id := to.connect(t)
		if err := a.Post(id, wsactor.Text(text)); err != nil {
			t.Fatalf("Post to %s: %v", to.addr, err)
		}
		if got := readText(t, client); got != text {
			t.Fatalf("got %q, want %q", got, text)
		}
	}
	postAndRead(b, "to b")
	if got := wsactor.RoutesOf(a.Server); got != 1 {
		t.Fatalf("after a post to one other node: %d outboxes, want 1", got)
	}

	a.view.quiet = true       // a view that does not tell of departures
	a.view.set(b.addr, false) // b leaves the cluster, as a sees it
	// Adding the outbox to c drops b's, once idle; so does PruneRoutes.
	postAndRead(c, "to c")
	waitFor(t, "the departed node's outbox dropped", func() bool {
		wsactor.PruneRoutes(a.Server)
		return wsactor.RoutesOf(a.Server) == 1
	})
	// c is a member: its outbox stays however often routes are pruned.
	wsactor.PruneRoutes(a.Server)
	if got := wsactor.RoutesOf(a.Server); got != 1 {
		t.Fatalf("after pruning: %d outboxes, want c's", got)
	}

	a.view.set(b.addr, true) // b is back
	postAndRead(b, "to b again")
	postAndRead(c, "to c again")
	if got := wsactor.RoutesOf(a.Server); got != 2 {
		t.Fatalf("with both nodes members: %d outboxes, want 2", got)
	}
}

// TestOutboxIsDroppedWhenItsNodeLeaves: with a cluster view that tells of
// departures (as the cluster package's does), a server drops its outbox to
// a node as soon as the node leaves, without waiting for another outbox to
// be added; and one that was busy sending when its node left is dropped
// once it has sent everything.
func TestOutboxIsDroppedWhenItsNodeLeaves(t *testing.T) {
	pool := pooledSystems(t, 2)
	nodes := startNodesOn(t, pool, wsactor.Options{NodeQueueBytes: 256 << 10, Transport: wsactor.TransportOptions{SendQueueBytes: 64 << 20}}, memberHandler)
	one, two := nodes[0], nodes[1]
	c, id := two.connect(t)
	postUntilOnLane(t, lane.Of(pool[1]), one, id, c)
	if got := wsactor.RoutesOf(one.Server); got != 1 {
		t.Fatalf("after posts to one other node: %d outboxes, want 1", got)
	}

	// Idle when its node leaves: dropped then.
	one.view.set(two.addr, false)
	waitFor(t, "the outbox dropped when its node left", func() bool { return wsactor.RoutesOf(one.Server) == 0 })
	one.view.set(two.addr, true)

	// Busy when its node leaves: kept until it has sent what it holds.
	postUntilOnLane(t, lane.Of(pool[1]), one, id, c)
	release := stallReceiver(t, two, pool[1])
	fillNodeQueue(t, one, id, 256<<10)
	one.view.set(two.addr, false) // the prune on departure runs now, and keeps it
	if got := wsactor.RoutesOf(one.Server); got != 1 {
		t.Fatalf("an outbox with messages queued was dropped when its node left (%d outboxes)", got)
	}
	release()
	waitFor(t, "the outbox dropped once it had sent what it held", func() bool { return wsactor.RoutesOf(one.Server) == 0 })
}
