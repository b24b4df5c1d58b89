package redisprovider

import (
	"log/slog"
	"maps"
	"slices"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// TestLocalViewLeavesOutEveryIncarnation: the poll that reads the member
// keys can run while a Rejoin writes its new incarnation's key and before
// it makes that incarnation current. A CI run of TestStalledMemberRejoins
// caught it: the member's own topology showed the new incarnation as a
// peer at its own address, saw it leave at the next poll, and left it a
// tombstone, so the member rejoined a second time. Every incarnation of
// this process is left out of its local view, the current one whatever
// the poll saw.
func TestLocalViewLeavesOutEveryIncarnation(t *testing.T) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	p := &Provider{cluster: &cluster.Cluster{ActorSystem: system}}
	id := system.ID
	rec := func(id string, port int) *record {
		return &record{ID: id, Host: "127.0.0.1", Port: port, Kinds: []string{"room"}}
	}
	self := &incarnation{rec: rec(id, 7000)} // the poll ran before the Rejoin made r2 current
	peer := rec("PEERID.r1", 7001)
	lookalike := rec(id+"x", 7002) // another process whose ID merely starts alike
	found := map[string]*cluster.Member{
		id:           rec(id, 7000).member(),       // the first incarnation's key, not expired yet
		id + ".r1":   rec(id+".r1", 7000).member(), // an earlier one's
		id + ".r2":   rec(id+".r2", 7000).member(), // the key the Rejoin just wrote
		peer.ID:      peer.member(),
		lookalike.ID: lookalike.member(),
	}
	p.localView(self, found)
	got := slices.Sorted(maps.Keys(found))
	want := slices.Sorted(slices.Values([]string{id, peer.ID, lookalike.ID}))
	if !slices.Equal(got, want) {
		t.Fatalf("local view %v, want %v: this process once, under its system ID, and its peers", got, want)
	}
	if m := found[id]; m.Port != 7000 || m.Host != "127.0.0.1" {
		t.Fatalf("this process is shown at %s:%d", m.Host, m.Port)
	}
}
