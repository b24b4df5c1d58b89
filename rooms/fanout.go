package rooms

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/wire"
)

// A room reaches its players through their nodes: the players of this node
// directly, through their mailboxes; those of another node with one
// RoomDeliver to that node's delivery process, whatever their number. It
// goes with SendToNode and is handed on inline (actors.HandleInline), so it
// keeps its order with what the room's node sends to those players by ID
// (Server.Post) or to their PIDs (the room's answers, Room.Tell). A
// delivery is tagged with the room's epoch, and a node drops what is for a
// connection attached to a newer activation: a stale activation on a node
// that was cut off cannot reach players that moved on.

func deliveryName(server string) string { return "wsactor-rooms-deliver-" + server }

// deliver sends m to targets.
func (a *roomActor) deliver(targets []*Player, m actors.Message) {
	if len(targets) == 0 {
		return
	}
	self := a.m.rt.System().Address()
	var prepared *actors.Prepared
	var remote map[string][]string
	for _, p := range targets {
		addr, err := p.ID.Address()
		if err != nil {
			continue
		}
		if addr == self {
			if c, err := a.m.rt.Lookup(p.ID); err == nil {
				if prepared == nil {
					prepared = actors.Prepare(m)
				}
				c.Post(prepared)
			}
			continue
		}
		if remote == nil {
			remote = map[string][]string{}
		}
		remote[addr] = append(remote[addr], string(p.ID))
	}
	for addr, ids := range remote {
		if a.m.rt.NodeAlive(addr) { // a dead node's players are dropped by their watch
			a.m.rt.SendToNode(addr, deliveryName(a.m.rt.ServerName()), &wire.RoomDeliver{Kind: a.key.Kind, Name: a.key.Name, Epoch: a.epoch,
				Ids: ids, Type: actors.WireType(m), Data: m.Data})
		}
	}
}

// deliverEach sends each online player its own view.
func (a *roomActor) deliverEach(view func(p *Player) (actors.Message, bool)) {
	self := a.m.rt.System().Address()
	var remote map[string][]*wire.RoomDeliver_Item
	for _, p := range a.byConn {
		m, ok := view(p)
		if !ok {
			continue
		}
		addr, err := p.ID.Address()
		if err != nil {
			continue
		}
		if addr == self {
			if c, err := a.m.rt.Lookup(p.ID); err == nil {
				c.Post(actors.Prepare(m))
			}
			continue
		}
		if remote == nil {
			remote = map[string][]*wire.RoomDeliver_Item{}
		}
		remote[addr] = append(remote[addr], &wire.RoomDeliver_Item{Id: string(p.ID), Type: actors.WireType(m), Data: m.Data})
	}
	for addr, items := range remote {
		if a.m.rt.NodeAlive(addr) {
			a.m.rt.SendToNode(addr, deliveryName(a.m.rt.ServerName()), &wire.RoomDeliver{Kind: a.key.Kind, Name: a.key.Name, Epoch: a.epoch, Items: items})
		}
	}
}

// receiveDelivery is the delivery process of this node: it hands a room's
// messages to the players that live here, inline.
func (m *Manager) receiveDelivery(msg any, _ *actor.PID) {
	d, ok := msg.(*wire.RoomDeliver)
	if !ok {
		return
	}
	m.deliveries.Add(1)
	key := Key{Kind: d.GetKind(), Name: d.GetName()}
	if ids := d.GetIds(); len(ids) > 0 {
		p := actors.Prepare(actors.MessageFromWire(d.GetType(), d.GetData()))
		for _, id := range ids {
			if c := m.current(actors.ID(id), key, d.GetEpoch()); c != nil {
				c.Post(p)
			}
		}
	}
	for _, it := range d.GetItems() {
		if c := m.current(actors.ID(it.GetId()), key, d.GetEpoch()); c != nil {
			c.Post(actors.Prepare(actors.MessageFromWire(it.GetType(), it.GetData())))
		}
	}
}

// current returns the local connection id if it is not attached to a
// newer activation of key than epoch.
func (m *Manager) current(id actors.ID, key Key, epoch int64) *actors.Conn {
	c, err := m.rt.Lookup(id)
	if err != nil {
		return nil
	}
	if ms := membershipsOf(c, false); ms != nil {
		if mb := ms.get(key); mb != nil && mb.epoch.Load() > epoch {
			return nil
		}
	}
	return c
}
