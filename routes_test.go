package wsactor_test

import (
	"testing"

	"github.com/wsactor/wsactor"
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
