package cluster

import (
	"context"
	"errors"

	"github.com/wsactor/wsactor"
)

// ReadyChecks are the node's conditions of readiness, for
// Server.ReadyHandler: "cluster" (the node has joined and not left, and its
// peers have not dropped it: see Isolated) and "redis" (Redis answers a
// PING within the probe's deadline; without it the directory, rooms and
// Redis membership stop working across nodes).
func (n *Node) ReadyChecks() []wsactor.ReadyCheck {
	return []wsactor.ReadyCheck{
		{Name: "cluster", Check: n.checkMember},
		{Name: "redis", Check: func(ctx context.Context) error { return n.Redis.Ping(ctx).Err() }},
	}
}

func (n *Node) checkMember(context.Context) error {
	select {
	case <-n.stop:
		return errors.New("left the cluster")
	default:
	}
	if n.Isolated() {
		return errors.New("isolated: the other members dropped this node; rejoining")
	}
	return nil
}
