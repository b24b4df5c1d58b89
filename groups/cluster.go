package groups

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/wire"
)

// Across a cluster, each node's Hub has a node process that its peers
// address by a well-known name. A broadcast crosses the network once per
// live node (never once per member) and each node fans out to its own
// members; a join or leave by ID goes to the node that owns the connection,
// whose local index it changes. Broadcasts go with actors' SendToNode and the
// node process hands them on inline (actors.HandleInline), so they keep
// their order with what the sending node sends to the same connections by ID.

// Departures are group memberships that a shared directory ended on behalf
// of connections that can no longer leave by themselves: those of a node that
// left the cluster, or those that closed or left while the directory was
// unreachable (found when a node rewrites its entries). Members of a group
// must still hear that they left: see Hub.AnnounceDepartures.
type Departures struct {
	// Conns is how many connections were removed from the directory entirely.
	Conns int
	// Groups maps a group to the members that left it, with the user and
	// meta they had joined with.
	Groups map[string][]Member
}

func nodeProcessName(server string) string { return "wsactor-groups-" + server }

// nodePID is the node process of the node at address.
func (h *Hub) nodePID(address string) *actor.PID {
	return actor.NewPID(address, nodeProcessName(h.rt.ServerName()))
}

// toNode sends msg to the node process of the node at address.
func (h *Hub) toNode(address string, msg any) error {
	return h.rt.SendToNode(address, nodeProcessName(h.rt.ServerName()), msg)
}

// startNodeProcess registers the process peers send to.
func (h *Hub) startNodeProcess() {
	_, h.stopNodeProcess = h.rt.HandleInline(nodeProcessName(h.rt.ServerName()), h.receiveFromPeer)
}

// Stop sends the presence events still gathering (the server calls it from
// Shutdown once its connections have closed, so that their members on other
// nodes hear that they left) and removes the hub's node process, so that a
// new server may later take the same name in the same actor system.
func (h *Hub) Stop() {
	if h.pres != nil {
		h.pres.stop()
	}
	h.stopped.Store(true)
	if h.stopNodeProcess != nil {
		h.stopNodeProcess()
	}
}

// receiveFromPeer handles a peer's message inline, on the goroutine that
// received it: it must not block.
func (h *Hub) receiveFromPeer(msg any, sender *actor.PID) {
	switch m := msg.(type) {
	case *wire.Broadcast:
		except := make([]actors.ID, len(m.GetExcept()))
		for i, id := range m.GetExcept() {
			except[i] = actors.ID(id)
		}
		h.broadcastLocal(m.GetGroup(), actors.MessageFromWire(m.GetType(), m.GetData()), except)
	case *wire.PostMany:
		p := actors.Prepare(actors.MessageFromWire(m.GetType(), m.GetData()))
		for _, id := range m.GetIds() {
			if c, err := h.rt.Lookup(actors.ID(id)); err == nil {
				c.Post(p)
			}
		}
	case *wire.Join:
		h.answerPeer(sender, func(c context.Context) error {
			return h.Join(c, m.GetGroup(), actors.ID(m.GetId()), m.GetMeta())
		})
	case *wire.Leave:
		h.answerPeer(sender, func(c context.Context) error {
			return h.Leave(c, m.GetGroup(), actors.ID(m.GetId()))
		})
	}
}

// answerPeer runs a directory operation off the receiving goroutine (it
// may wait on Redis) and answers the requesting peer.
func (h *Hub) answerPeer(sender *actor.PID, op func(context.Context) error) {
	root := h.rt.System().Root
	go func() {
		err := op(context.Background())
		if sender != nil {
			root.Send(sender, actors.ResultOf(err))
		}
	}()
}

// forward sends a group operation for a connection on another node to the
// node that owns it.
func (h *Hub) forward(ctx context.Context, id actors.ID, msg *wire.Join, leave *wire.Leave) error {
	addr, err := id.Address()
	if err != nil {
		return err
	}
	if !h.rt.NodeAlive(addr) {
		return fmt.Errorf("%w: node %s is not a live member", actors.ErrConnectionNotFound, addr)
	}
	if msg != nil {
		return h.rt.Request(ctx, h.nodePID(addr), msg)
	}
	return h.rt.Request(ctx, h.nodePID(addr), leave)
}

// toPeers sends msg to the node process of every other live node.
func (h *Hub) toPeers(msg any) int {
	cl := h.rt.ClusterView()
	if cl == nil {
		return 0
	}
	peers := cl.Peers()
	for _, addr := range peers {
		_ = h.toNode(addr, msg) // a full queue to the node is counted and logged
	}
	return len(peers)
}

// Stopped reports whether Stop was called: the server shut down, and the
// hub has no members left to serve.
func (h *Hub) Stopped() bool { return h.stopped.Load() }

// AnnounceDepartures tells the remaining members of each group, on every
// node, that the departed members left, as if each had left by itself: the
// leaves join this node's next presence event for the group. It does nothing
// unless Options.PresenceEvents is on. A directory reports each departure to
// exactly one caller, so each is announced once.
func (h *Hub) AnnounceDepartures(_ context.Context, d Departures) {
	if h.pres == nil {
		return
	}
	for group, members := range d.Groups {
		h.pres.recordAll(group, members, false)
	}
}

// AnnounceMembers tells every group's members, on every node, that this
// node's members of it joined, as if each had just joined: the joins go into
// the node's next presence event for each group. It is for a node whose
// connections the other nodes were told had left (it was dropped from the
// cluster, and came back with them). It does nothing unless
// Options.PresenceEvents is on.
func (h *Hub) AnnounceMembers() {
	if h.pres == nil {
		return
	}
	// Recorded under localMu: a leave drops the member from the index
	// before it records itself, so it is either not seen here or recorded
	// after this join. Never a join announced after the member's leave.
	h.localMu.Lock()
	defer h.localMu.Unlock()
	for g, lg := range h.local {
		ms := make([]Member, 0, len(lg.members))
		for c, meta := range lg.members {
			m := Member{ID: c.ID(), Meta: meta}
			if u := c.User(); u != nil {
				m.User = u.ID
			}
			ms = append(ms, m)
		}
		h.pres.recordAll(g, ms, true)
	}
}
