package cluster

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
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
	// broken holds the members whose connection from this node broke, and
	// when: a member killed outright is seen here at once, but stays in the
	// topology until its membership expires.
	broken map[string]time.Time
	// owners is protoactor's own rendezvous hashing over the same members,
	// to tell which member the identity lookup will ask to own an identity.
	owners *cluster.Rendezvous
}

// newMemberView follows c's topology. Call it before c.StartMember: the view
// must see every topology event from the first one, because protoactor
// offers no race-free read of the current member set (MemberList.Members
// reads it without the lock UpdateClusterTopology holds while it swaps it),
// and a member joining between such a read and the subscription would be
// missed until the next change.
func newMemberView(c *cluster.Cluster) *memberView {
	v := &memberView{system: c.ActorSystem, owners: cluster.NewRendezvous()}
	v.members.Store(&map[string]bool{})
	v.sub = c.ActorSystem.EventStream.Subscribe(func(evt any) {
		var t *cluster.ClusterTopology
		switch e := evt.(type) {
		case *remote.EndpointTerminatedEvent:
			v.endpoint(e.Address, true)
			return
		case *remote.EndpointConnectedEvent:
			v.endpoint(e.Address, false)
			return
		case *cluster.ClusterTopology:
			t = e
		default:
			return
		}
		v.set(t.Members)
		v.owners.UpdateMembers(t.Members)
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
	v.mu.Lock()
	for addr := range v.broken {
		if !m[addr] {
			delete(v.broken, addr)
		}
	}
	v.mu.Unlock()
}

// endpoint records that the connection to a member broke, or is up again.
func (v *memberView) endpoint(address string, broke bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case !broke:
		delete(v.broken, address)
	case v.Alive(address) && address != v.self():
		if v.broken == nil {
			v.broken = make(map[string]time.Time)
		}
		if _, ok := v.broken[address]; !ok {
			v.broken[address] = time.Now()
		}
	}
}

// suspectOwner reports whether the member that owns identity of kind (the
// one protoactor's identity lookup asks to activate it) is one whose
// connection broke less than within ago and that is still in the topology:
// most likely a node that died and that the membership has not dropped yet.
func (v *memberView) suspectOwner(identity, kind string, within time.Duration) bool {
	v.mu.Lock()
	empty := len(v.broken) == 0
	v.mu.Unlock()
	if empty {
		return false
	}
	owner := v.owners.GetByClusterIdentity(&cluster.ClusterIdentity{Identity: identity, Kind: kind})
	v.mu.Lock()
	defer v.mu.Unlock()
	since, broken := v.broken[owner]
	return broken && time.Since(since) < within && v.Alive(owner)
}

// close stops following the topology.
func (v *memberView) close() { v.system.EventStream.Unsubscribe(v.sub) }

// The runtime frees its outbox to a departed node when its view tells of
// departures with this method (see actors.Cluster).
var _ interface {
	OnLeft(f func(address, memberID string))
} = (*memberView)(nil)

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
