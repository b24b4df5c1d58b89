package cluster

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// memberView is a node's view of the live members, kept current from
// protoactor's topology events so that the runtime's fail-fast check on every
// cross-node send is one map lookup. It implements wsactor.ClusterView.
type memberView struct {
	system  *actor.ActorSystem
	members atomic.Pointer[map[string]bool] // addresses of live members, self included
	sub     *eventstream.Subscription

	mu     sync.Mutex
	onLeft []func(address, memberID string)
}

// newMemberView follows c's topology. Call it before c.StartMember: the view
// must see every topology event from the first one, because protoactor
// offers no race-free read of the current member set (MemberList.Members
// reads it without the lock UpdateClusterTopology holds while it swaps it),
// and a member joining between such a read and the subscription would be
// missed until the next change.
func newMemberView(c *cluster.Cluster) *memberView {
	v := &memberView{system: c.ActorSystem}
	v.members.Store(&map[string]bool{})
	v.sub = c.ActorSystem.EventStream.Subscribe(func(evt any) {
		t, ok := evt.(*cluster.ClusterTopology)
		if !ok {
			return
		}
		v.set(t.Members)
		// Handlers run on protoactor's goroutine, inside the member list's
		// lock: hand the departures over rather than work here.
		v.mu.Lock()
		callbacks := slices.Clone(v.onLeft)
		v.mu.Unlock()
		for _, m := range t.Left {
			for _, f := range callbacks {
				go f(m.Address(), m.Id)
			}
		}
	})
	return v
}

// self is this node's address. Remote sets it when it starts, before the
// provider publishes the first topology.
func (v *memberView) self() string { return v.system.Address() }

func (v *memberView) set(members []*cluster.Member) {
	m := make(map[string]bool, len(members)+1)
	m[v.self()] = true
	for _, member := range members {
		m[member.Address()] = true
	}
	v.members.Store(&m)
}

// close stops following the topology.
func (v *memberView) close() { v.system.EventStream.Unsubscribe(v.sub) }

// OnLeft registers f to run (on its own goroutine) for every member that
// leaves, with its address and member ID (a process restarted on the same
// address is another member).
func (v *memberView) OnLeft(f func(address, memberID string)) {
	v.mu.Lock()
	v.onLeft = append(v.onLeft, f)
	v.mu.Unlock()
}

// Alive implements wsactor.ClusterView.
func (v *memberView) Alive(address string) bool { return (*v.members.Load())[address] }

// Peers implements wsactor.ClusterView.
func (v *memberView) Peers() []string {
	m := *v.members.Load()
	peers := make([]string, 0, len(m))
	self := v.self()
	for addr := range m {
		if addr != self {
			peers = append(peers, addr)
		}
	}
	slices.Sort(peers)
	return peers
}
