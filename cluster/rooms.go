package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/wsactor/wsactor/rooms"
)

// In a cluster, rooms are virtual actors of one protoactor cluster kind:
// protoactor's identity lookup (rendezvous hashing over the members that
// host the kind) places each room on exactly one node, and every node
// reaches it by name. Every node registers the kind, so every node hosts
// rooms; which kinds of room a server defines (rooms.Kind) is the
// application's, and must be the same on every node.

// RoomKind is the protoactor cluster kind that hosts wsactor's rooms.
const RoomKind = "wsactor-room"

// roomKind is the cluster kind of the node's actor system: its actor becomes
// the room that its identity names when it starts.
func roomKind(system *actor.ActorSystem) *cluster.Kind {
	ident := func(ctx actor.Context) string { return cluster.GetClusterIdentity(ctx).GetIdentity() }
	return cluster.NewKind(RoomKind, actor.PropsFromProducer(func() actor.Actor { return rooms.NewClusterRoom(system, ident) }))
}

// roomPlacement finds rooms through the cluster's identity lookup.
type roomPlacement struct {
	c      *cluster.Cluster
	server string
	// view and settle: a lookup waits (up to settle) while a member whose
	// connection broke is still in the topology; see Get.
	view   *memberView
	settle time.Duration
}

// Get implements rooms.Placement. protoactor's lookup waits up to 5 s for
// an activation and takes no context: Get gives up when ctx ends.
//
// Right after a node dies, the topology still lists it until its
// membership expires, and the identity lookup may place a room there (the
// room it hosted, or a new one): protoactor then waits its full 5 s for the
// dead node, and this node's other lookups queue behind that one. So a
// lookup that is not answered from the cache, and whose owner (by the same
// rendezvous hashing protoactor uses) is a member whose connection broke,
// waits first for that member to leave the topology or come back, at most
// settle (the member TTL and a heartbeat: by then the membership has
// decided). Lookups of rooms owned by other members go ahead.
func (p *roomPlacement) Get(ctx context.Context, key rooms.Key) (*actor.PID, error) {
	id := rooms.ClusterIdentity(p.server, key)
	if _, cached := p.c.PidCache.Get(id, RoomKind); !cached && p.view != nil {
		for p.view.suspectOwner(id, RoomKind, p.settle) {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %v", rooms.ErrUnavailable, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	got := make(chan *actor.PID, 1)
	go func() { got <- p.c.Get(id, RoomKind) }()
	select {
	case pid := <-got:
		if pid == nil {
			return nil, fmt.Errorf("%w: no node could activate room %s", rooms.ErrUnavailable, key)
		}
		return pid, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", rooms.ErrUnavailable, ctx.Err())
	}
}

// Forget implements rooms.Placement.
func (p *roomPlacement) Forget(key rooms.Key, pid *actor.PID) {
	p.c.PidCache.RemoveByValue(rooms.ClusterIdentity(p.server, key), RoomKind, pid)
}
