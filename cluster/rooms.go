package cluster

import (
	"context"
	"fmt"

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
}

// Get implements rooms.Placement. protoactor's lookup waits up to 5 s for
// an activation and takes no context: Get gives up when ctx ends.
func (p *roomPlacement) Get(ctx context.Context, key rooms.Key) (*actor.PID, error) {
	id := rooms.ClusterIdentity(p.server, key)
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
