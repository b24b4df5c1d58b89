package rooms

import (
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/routing"
)

// Room is a live room, as its Handler sees it. Its methods are valid only
// inside the Handler's methods, on the room's actor goroutine.
type Room struct {
	a *roomActor
}

// Key returns the room's kind and name.
func (r *Room) Key() Key { return r.a.key }

// Kind returns the room's kind, with its defaults filled in.
func (r *Room) Kind() Kind { return r.a.kind }

// Name returns the room's name.
func (r *Room) Name() string { return r.a.key.Name }

// Players returns the seats taken, held ones included, by seat.
func (r *Room) Players() []*Player {
	out := make([]*Player, 0, len(r.a.players))
	for _, seat := range slices.Sorted(maps.Keys(r.a.players)) {
		out = append(out, r.a.players[seat])
	}
	return out
}

// Player returns the player in seat, or nil.
func (r *Room) Player(seat int) *Player { return r.a.players[seat] }

// PlayerOf returns the online player whose connection is id, or nil.
func (r *Room) PlayerOf(id actors.ID) *Player { return r.a.byConn[id] }

// Send sends m to one player's client. A player whose seat is held gets
// nothing (ErrNotPlayer).
func (r *Room) Send(p *Player, m actors.Message) error {
	if !p.Online || r.a.players[p.Seat] != p {
		return ErrNotPlayer
	}
	r.a.deliver([]*Player{p}, m)
	return nil
}

// SendJSON sends v encoded as JSON to one player.
func (r *Room) SendJSON(p *Player, v any) error {
	m, err := actors.JSON(v)
	if err != nil {
		return err
	}
	return r.Send(p, m)
}

// Broadcast sends m to every online player but those listed, at a cost of
// one network message per node where some of them are.
func (r *Room) Broadcast(m actors.Message, except ...*Player) {
	targets := make([]*Player, 0, len(r.a.byConn))
	for _, p := range r.a.byConn {
		if !slices.Contains(except, p) {
			targets = append(targets, p)
		}
	}
	r.a.deliver(targets, m)
}

// BroadcastJSON encodes v once and broadcasts it.
func (r *Room) BroadcastJSON(v any, except ...*Player) error {
	m, err := actors.JSON(v)
	if err != nil {
		return err
	}
	r.Broadcast(m, except...)
	return nil
}

// SendEach sends every online player its own message — view(p), or
// nothing when ok is false — at a cost of one network message per node:
// per-player views of the state, fog of war.
func (r *Room) SendEach(view func(p *Player) (m actors.Message, ok bool)) {
	r.a.deliverEach(view)
}

// Tell delivers msg to the Receive of the handler of a player's connection:
// any value on this node; on another node, a protobuf message or a type
// registered with actors.RegisterMessage (ErrNotRegistered otherwise).
func (r *Room) Tell(p *Player, msg any) error {
	if !p.Online {
		return ErrNotPlayer
	}
	pid, err := p.ID.PID()
	if err != nil {
		return err
	}
	if pid.Address != r.a.m.rt.System().Address() {
		if msg, err = actors.EncodeValue(msg); err != nil {
			return err
		}
	}
	return r.a.m.rt.SendAs(pid, msg, r.a.ctx.Self()) // actors.ErrNodeQueueFull: dropped
}

// Label returns the room's label (a copy).
func (r *Room) Label() map[string]string { return maps.Clone(r.a.label) }

// SetLabel replaces the room's label: what listing and matchmaking filter
// on (a mode, a map, a region). Keep it small; it is published to the store
// when it changes.
func (r *Room) SetLabel(label map[string]string) {
	r.a.label = maps.Clone(label)
	r.a.changed()
}

// Lock stops new players from joining (the room is no longer open in its
// listing); players holding a seat still reconnect. Unlock reopens it.
func (r *Room) Lock() { r.a.locked = true; r.a.changed() }

// Unlock reopens a locked room.
func (r *Room) Unlock() { r.a.locked = false; r.a.changed() }

// Locked reports whether the room is locked.
func (r *Room) Locked() bool { return r.a.locked }

// Kick removes a player (OnLeave with LeaveKicked); its connection is told
// (Left).
func (r *Room) Kick(p *Player) {
	if r.a.players[p.Seat] == p {
		r.a.leave(p, LeaveKicked, false)
	}
}

// Close ends the room for good once the current method returns: every
// player leaves (LeaveRoomClosed, told with Left), OnDispose runs, and its
// snapshot and listing are deleted.
func (r *Room) Close() {
	self, root := r.a.ctx.Self(), r.a.m.rt.System().Root
	root.Send(self, &emptyDue{gen: r.a.emptyGen, force: true})
}

// SaveSnapshot saves the room's state now (after the current method), not
// only at the kind's interval.
func (r *Room) SaveSnapshot() {
	r.a.dirty = true
	self, root := r.a.ctx.Self(), r.a.m.rt.System().Root
	root.Send(self, &snapshotNow{})
}

// Tick returns the number of the last tick run.
func (r *Room) Tick() int64 { return r.a.tickN }

// Logger returns the manager's logger with the room attached.
func (r *Room) Logger() *slog.Logger { return r.a.m.logger.With(slog.String("room", r.a.key.String())) }

// Actor returns the protoactor context of the message being handled: the
// escape hatch to everything protoactor offers.
func (r *Room) Actor() actor.Context { return r.a.ctx }

// After delivers msg to the Handler's Receive once, after d.
func (r *Room) After(d time.Duration, msg any) *Timer { return r.a.startTimer(d, 0, msg) }

// Every delivers msg to the Handler's Receive every d; the next is
// scheduled when the previous one has been handled.
func (r *Room) Every(d time.Duration, msg any) *Timer { return r.a.startTimer(d, d, msg) }

// Timer is a running Room.After or Room.Every. Timers stop when the room's
// activation ends and when its Handler restarts.
type Timer struct {
	a       *roomActor
	msg     any
	every   time.Duration
	t       *time.Timer
	stopped atomic.Bool
}

// Stop cancels the timer; a tick already in the mailbox is discarded.
func (t *Timer) Stop() {
	if t.stopped.Swap(true) {
		return
	}
	t.t.Stop()
}

func (t *Timer) fired() bool {
	if t.stopped.Load() {
		return false
	}
	if t.every > 0 {
		t.t.Reset(t.every)
	} else {
		t.stopped.Store(true)
		delete(t.a.timers, t)
	}
	return true
}

func (a *roomActor) startTimer(d, every time.Duration, msg any) *Timer {
	t := &Timer{a: a, msg: msg, every: every}
	if a.timers == nil {
		a.timers = map[*Timer]struct{}{}
	}
	a.timers[t] = struct{}{}
	tick := &roomTimerTick{t: t}
	self, root := a.ctx.Self(), a.m.rt.System().Root
	t.t = time.AfterFunc(d, func() { root.Send(self, tick) })
	return t
}

// errorEnvelope is the code and text of an error told to a player: a
// routing.Error's own, or "internal" for anything else.
func errorEnvelope(err error) (code, text string) {
	var re *routing.Error
	if errors.As(err, &re) {
		return re.Code, re.Message
	}
	return routing.CodeInternal, "the room failed to handle the message"
}
