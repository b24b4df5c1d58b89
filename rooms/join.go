package rooms

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/wire"
)

// What a connection's handler receives (in Receive) about its rooms.
type (
	// Joined: the connection has a seat in the room.
	Joined struct {
		// Room is the connection's handle on the room: keep it (for
		// example with Conn.SetValue) to send the room messages and leave.
		Room *Ref
		// Seat is the player's seat.
		Seat int
		// Token takes the seat back after the connection is lost, on any
		// node (Manager.Reconnect), for Kind.SeatReservation: give it to the
		// client. Empty when the seat was taken back (Reconnected).
		Token string
		// Reconnected is true when the connection took back a held seat:
		// with a token, or on its own after the room moved to another
		// node (its node died): the room's state may have gone back to its
		// last snapshot, and the client may want to resynchronise.
		Reconnected bool
	}
	// JoinFailed: the room refused the connection, or could not be reached.
	JoinFailed struct {
		Room Key
		// Err wraps ErrFull, ErrLocked, ErrBadToken, ErrUnknownKind,
		// ErrBadName or ErrUnavailable, or is the room's *Refusal.
		Err error
	}
	// Left: the connection no longer has a seat: the room removed it
	// (LeaveKicked, LeaveRoomClosed, LeaveRoomFailed), or moved and could
	// not be reached again (LeaveRoomFailed). Leaving by Ref.Leave is not
	// told.
	Left struct {
		Room *Ref
		Why  LeaveReason
		Text string
	}
)

// Ref is a connection's handle on a room it plays in (Joined.Room).
type Ref struct {
	m   *Manager
	key Key
}

// Key returns the room's kind and name.
func (r *Ref) Key() Key { return r.key }

// String returns "kind/name".
func (r *Ref) String() string { return r.key.String() }

// Send sends a data message from player c to the room's OnMessage. It fails
// with ErrNotPlayer if c has no seat there, and with ErrUnavailable while the
// room moves to another node (c is attached again on its own).
func (r *Ref) Send(c *actors.Conn, m actors.Message) error {
	mb := membershipsOf(c, false).get(r.key)
	if mb == nil {
		return ErrNotPlayer
	}
	pid := mb.pid.Load()
	if pid == nil {
		return ErrUnavailable
	}
	r.m.rt.System().Root.Send(pid, &wire.RoomInput{Conn: string(c.ID()), Type: actors.WireType(m), Data: m.Data})
	return nil
}

// Leave gives up c's seat: the room sees OnLeave with LeaveLeft. c may
// close right after: the room handles what c sent before its end (its last
// messages, then the leave) before the end. A leave that still comes after
// it (from another node, the two take different ways) gives up the seat
// held for c: the room sees OnDrop, then OnLeave.
func (r *Ref) Leave(c *actors.Conn) error {
	ms := membershipsOf(c, false)
	mb := ms.remove(r.key)
	if mb == nil {
		return ErrNotPlayer
	}
	if pid := mb.pid.Load(); pid != nil {
		c.Actor().Unwatch(pid)
		r.m.rt.System().Root.Send(pid, &wire.RoomLeave{Conn: string(c.ID())})
	}
	return nil
}

// membership is a connection's seat in one room.
type membership struct {
	ref   *Ref
	token string
	seat  int
	epoch atomic.Int64
	pid   atomic.Pointer[actor.PID] // nil while the room is being reached again
	asked time.Time                 // when the connection first asked for the seat (see wire.RoomJoin.asked)
}

// pendingJoin is a join in flight: what to ask for, and how often it has
// been tried.
type pendingJoin struct {
	key         Key
	meta, label map[string]string
	token       string
	match       bool // matchmaking: key.Name is chosen by Reserve
	reattach    bool // the room moved: take the held seat back
	attempts    int
	started     time.Time // the first attempt
	asked       time.Time // when the connection asked for the seat: the first attempt, or the seat's first join on a reattach
	gen         uint64
	pid         *actor.PID // the room asked
}

// memberships is a connection's rooms: its seats and the joins in flight.
// The connection's actor changes it; other nodes' deliveries read the
// epochs.
type memberships struct {
	mu      sync.Mutex
	seats   map[Key]*membership
	pending map[Key]*pendingJoin
	gen     uint64
}

type membershipsKey struct{}

// membershipsOf returns c's rooms, made on first use when create is set;
// nil otherwise.
func membershipsOf(c *actors.Conn, create bool) *memberships {
	if ms, ok := c.Value(membershipsKey{}).(*memberships); ok {
		return ms
	}
	if !create {
		return nil
	}
	ms := &memberships{seats: map[Key]*membership{}, pending: map[Key]*pendingJoin{}}
	c.SetValue(membershipsKey{}, ms)
	return ms
}

func (ms *memberships) get(key Key) *membership {
	if ms == nil {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.seats[key]
}

func (ms *memberships) remove(key Key) *membership {
	if ms == nil {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	mb := ms.seats[key]
	delete(ms.seats, key)
	return mb
}

// Internal messages to a connection's own mailbox, handled by the hook.
type (
	joinTimedOut struct {
		key Key
		gen uint64
	}
	joinUnreachable struct {
		key Key
		gen uint64
		err error
	}
	joinAsked struct { // the room's PID, for matching a dead letter
		key Key
		gen uint64
		pid *actor.PID
	}
)

// startJoin records a join in flight on c and sends it.
func (m *Manager) startJoin(c *actors.Conn, pj *pendingJoin) {
	ms := membershipsOf(c, true)
	ms.mu.Lock()
	ms.gen++
	pj.gen = ms.gen
	if pj.started.IsZero() {
		pj.started = time.Now()
	}
	if pj.asked.IsZero() {
		pj.asked = pj.started
	}
	ms.pending[pj.key] = pj
	ms.mu.Unlock()
	self, root := c.Self(), m.rt.System().Root
	key, gen := pj.key, pj.gen
	time.AfterFunc(m.opts.JoinTimeout, func() { root.Send(self, &joinTimedOut{key: key, gen: gen}) })
	m.send(c, pj)
}

// send asks the room, off the connection's goroutine: finding a room may
// wait on the network, and a reservation on the store.
func (m *Manager) send(c *actors.Conn, pj *pendingJoin) {
	self, root := c.Self(), m.rt.System().Root
	req := &wire.RoomJoin{Conn: string(c.ID()), Meta: pj.meta, Token: pj.token, Reattach: pj.reattach, Asked: pj.asked.UnixNano()}
	if u := c.User(); u != nil {
		req.User = u.ID
	}
	pending, gen := pj.key, pj.gen // what the answers are recorded under
	key := pj.key
	label, match := maps.Clone(pj.label), pj.match
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.JoinTimeout)
		defer cancel()
		if match {
			k, _ := m.kind(key.Kind)
			name, res, err := m.store.Reserve(ctx, key.Kind, label, newRoomName(), k.MaxPlayers, m.opts.ReservationTTL)
			if err != nil {
				root.Send(self, &joinUnreachable{key: pending, gen: gen, err: fmt.Errorf("%w: matchmaking: %v", ErrUnavailable, err)})
				return
			}
			key.Name, req.Reservation = name, res
		}
		req.Label = label
		pid, err := m.placement.Get(ctx, key)
		if err == nil && pid == nil {
			err = ErrUnavailable
		}
		if err != nil {
			root.Send(self, &joinUnreachable{key: pending, gen: gen, err: err})
			return
		}
		root.Send(self, &joinAsked{key: pending, gen: gen, pid: pid})
		root.RequestWithCustomSender(pid, req, self)
	}()
}

// hook handles the rooms' messages in a connection's mailbox.
func (m *Manager) hook(c *actors.Conn, msg any) (any, bool) {
	switch msg := msg.(type) {
	case *wire.RoomJoined:
		return m.onJoined(c, msg), true
	case *wire.RoomLeft:
		key := Key{Kind: msg.GetKind(), Name: msg.GetName()}
		mb := membershipsOf(c, false).remove(key)
		if mb == nil {
			return nil, true
		}
		if pid := mb.pid.Load(); pid != nil {
			c.Actor().Unwatch(pid)
		}
		return Left{Room: mb.ref, Why: LeaveReason(msg.GetReason()), Text: msg.GetText()}, true
	case *actor.Terminated:
		return m.onRoomGone(c, msg)
	case *actor.DeadLetterResponse:
		return m.onDeadLetter(c, msg)
	case *joinAsked:
		if pj := m.pending(c, msg.key, msg.gen, false); pj != nil {
			pj.pid = msg.pid
		}
		return nil, true
	case *joinUnreachable:
		return m.retryOrFail(c, msg.key, msg.gen, msg.err), true
	case *reattachDue:
		if membershipsOf(c, false).get(msg.key) != msg.mb {
			return nil, true
		}
		if msg.node != "" && m.rt.NodeAlive(msg.node) && time.Since(msg.since) < nodeGoneWait {
			self, root := c.Self(), m.rt.System().Root
			time.AfterFunc(50*time.Millisecond, func() { root.Send(self, msg) })
			return nil, true
		}
		m.startJoin(c, &pendingJoin{key: msg.key, token: msg.mb.token, reattach: true, asked: msg.mb.asked})
		return nil, true
	case *retryJoin:
		m.startJoin(c, msg.pj)
		return nil, true
	case *joinTimedOut:
		return m.retryOrFail(c, msg.key, msg.gen, fmt.Errorf("%w: no answer within %v", ErrUnavailable, m.opts.JoinTimeout)), true
	}
	return nil, false
}

// pending returns the join in flight for key, if gen is still its
// generation; take removes it.
func (m *Manager) pending(c *actors.Conn, key Key, gen uint64, take bool) *pendingJoin {
	ms := membershipsOf(c, false)
	if ms == nil {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	pj := ms.pending[key]
	if pj == nil || (gen != 0 && pj.gen != gen) {
		return nil
	}
	if take {
		delete(ms.pending, key)
	}
	return pj
}

// maxAttempts bounds the tries of a join: matchmaking's race to a room that
// filled meanwhile, or a room found stopped (moving, or restarting).
const maxAttempts = 4

// onJoined records a seat, or retries or reports a failure.
func (m *Manager) onJoined(c *actors.Conn, r *wire.RoomJoined) any {
	key := Key{Kind: r.GetKind(), Name: r.GetName()}
	ms := membershipsOf(c, true)
	ms.mu.Lock()
	pj := ms.pending[key]
	if pj == nil && !r.GetOk() {
		ms.mu.Unlock()
		return nil // a late answer to a join that was given up
	}
	// A matchmaking join is recorded under the kind only.
	if pj == nil {
		if mpj := ms.pending[Key{Kind: key.Kind}]; mpj != nil && mpj.match {
			pj = mpj
		}
	}
	if pj != nil {
		delete(ms.pending, pj.key)
	}
	ms.mu.Unlock()
	if !r.GetOk() {
		err := joinErrorFromCode(r.GetCode(), r.GetReason())
		if pj.match && (errors.Is(err, ErrFull) || errors.Is(err, ErrLocked)) && pj.attempts+1 < maxAttempts {
			pj.attempts++
			m.startJoin(c, pj) // the room filled or locked meanwhile: find another
			return nil
		}
		if pj.reattach {
			return Left{Room: &Ref{m: m, key: key}, Why: LeaveRoomFailed, Text: err.Error()}
		}
		return JoinFailed{Room: key, Err: err}
	}
	mb := ms.get(key)
	if mb == nil {
		mb = &membership{ref: &Ref{m: m, key: key}}
	}
	if r.GetToken() != "" {
		mb.token = r.GetToken()
	} else if pj != nil && pj.token != "" {
		mb.token = pj.token
	}
	mb.seat = int(r.GetSeat())
	mb.epoch.Store(r.GetEpoch())
	if pj != nil && !pj.reattach {
		mb.asked = pj.asked
	}
	if old := mb.pid.Load(); old != nil && c.Sender() != nil && !old.Equal(c.Sender()) {
		c.Actor().Unwatch(old)
	}
	if sender := c.Sender(); sender != nil {
		mb.pid.Store(sender)
		c.Actor().Watch(sender)
	}
	ms.mu.Lock()
	ms.seats[key] = mb
	ms.mu.Unlock()
	return Joined{Room: mb.ref, Seat: mb.seat, Token: r.GetToken(), Reconnected: r.GetReconnected()}
}

// onRoomGone attaches the connection again to a room whose actor stopped
// without letting it go: the room's node died or is shutting down, or the
// room moved to a node that joined. Its next activation, elsewhere, holds
// the seat (from its snapshot) for the connection to take back.
func (m *Manager) onRoomGone(c *actors.Conn, t *actor.Terminated) (any, bool) {
	ms := membershipsOf(c, false)
	if ms == nil {
		return nil, false
	}
	ms.mu.Lock()
	var mb *membership
	var key Key
	for k, s := range ms.seats {
		if pid := s.pid.Load(); pid != nil && pid.Equal(t.GetWho()) {
			mb, key = s, k
			break
		}
	}
	ms.mu.Unlock()
	if mb == nil {
		return nil, false
	}
	mb.pid.Store(nil)
	m.placement.Forget(key, t.GetWho())
	// Terminated is a system message: it overtakes the room's last user
	// messages. One of them may be a RoomLeft (a room that closed, or let
	// this player go, before it stopped): attach again only if none was.
	due := &reattachDue{key: key, mb: mb, since: time.Now()}
	if t.GetWhy() == actor.TerminatedReason_AddressTerminated {
		due.node = t.GetWho().GetAddress()
	}
	m.rt.System().Root.Send(c.Self(), due)
	return nil, true
}

// reattachDue attaches a connection again to a room that stopped, once the
// room's earlier messages have been read.
type reattachDue struct {
	key   Key
	mb    *membership
	node  string // the room's node, when the room was lost with it
	since time.Time
}

// nodeGoneWait bounds how long a connection waits for its cluster to drop
// the node of a room that was lost with it: the connection to a node can
// break before membership notices that the node died (a SIGKILL is seen at
// once), and looking the room up meanwhile would ask the dead node to
// activate it, which takes protoactor's lookup 5 s to give up.
const nodeGoneWait = 10 * time.Second

// onDeadLetter retries a join whose room was found stopped.
func (m *Manager) onDeadLetter(c *actors.Conn, d *actor.DeadLetterResponse) (any, bool) {
	ms := membershipsOf(c, false)
	if ms == nil {
		return nil, false
	}
	ms.mu.Lock()
	var pj *pendingJoin
	for _, p := range ms.pending {
		if p.pid != nil && p.pid.Equal(d.GetTarget()) {
			pj = p
			break
		}
	}
	ms.mu.Unlock()
	if pj == nil {
		return nil, false
	}
	m.placement.Forget(pj.key, pj.pid)
	return m.retryOrFail(c, pj.key, pj.gen, fmt.Errorf("%w: the room stopped", ErrUnavailable)), true
}

// retryOrFail tries a join again after a short pause (a room that moves is
// activated elsewhere within a heartbeat or so), or gives up and reports it.
func (m *Manager) retryOrFail(c *actors.Conn, key Key, gen uint64, err error) any {
	pj := m.pending(c, key, gen, true)
	if pj == nil {
		return nil
	}
	// A reattach follows a room that moved: its next activation may need a
	// while (its node's membership expiring, its claim taken over), so it
	// keeps trying for the whole JoinTimeout rather than a fixed count.
	retry := pj.attempts+1 < maxAttempts || pj.reattach && time.Since(pj.started) < m.opts.JoinTimeout
	if retry {
		pj.attempts++
		self, root := c.Self(), m.rt.System().Root
		time.AfterFunc(min(time.Duration(pj.attempts)*250*time.Millisecond, time.Second), func() { root.Send(self, &retryJoin{pj: pj}) })
		return nil
	}
	if pj.reattach {
		membershipsOf(c, false).remove(key)
		return Left{Room: &Ref{m: m, key: key}, Why: LeaveRoomFailed, Text: err.Error()}
	}
	return JoinFailed{Room: key, Err: err}
}

type retryJoin struct{ pj *pendingJoin }

// closed tells the rooms of a connection that ended: each holds its seat.
func (m *Manager) closed(c *actors.Conn) {
	ms := membershipsOf(c, false)
	if ms == nil {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, mb := range ms.seats {
		if pid := mb.pid.Load(); pid != nil {
			m.rt.System().Root.Send(pid, &wire.RoomLeave{Conn: string(c.ID()), Dropped: true})
		}
	}
}
