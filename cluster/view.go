package cluster

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/cluster"
)

// memberView is a node's view of the live members, kept current from
// protoactor's topology events so that the runtime's fail-fast check on every
// cross-node send is one map lookup. It implements wsactor.ClusterView.
type memberView struct {
	self    string
	members atomic.Pointer[map[string]bool] // addresses of live members, self included

	mu     sync.Mutex
	onLeft []func(address string)
}

func newMemberView(c *cluster.Cluster) *memberView {
	v := &memberView{self: c.ActorSystem.Address()}
	v.set(c.MemberList.Members().Members())
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
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
				go f(m.Address())
			}
		}
	})
	return v
}

func (v *memberView) set(members []*cluster.Member) {
	m := make(map[string]bool, len(members)+1)
	m[v.self] = true
	for _, member := range members {
		m[member.Address()] = true
	}
	v.members.Store(&m)
}

// OnLeft registers f to run (on its own goroutine) for every member that leaves.
func (v *memberView) OnLeft(f func(address string)) {
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
	for addr := range m {
		if addr != v.self {
			peers = append(peers, addr)
		}
	}
	slices.Sort(peers)
	return peers
}
