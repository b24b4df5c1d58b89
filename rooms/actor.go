package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/wire"
)

// handoffWait bounds how long an activation waits for the previous one, on a
// live node, to save its state and let go (a room moving to a node that
// joined): past it, the new one takes over regardless (fencing keeps the old
// one from writing).
const handoffWait = 3 * time.Second

// roomState is where an activation is in its life.
type roomState int

const (
	starting roomState = iota
	running
	disposed // Close or EmptyTimeout: its snapshot is deleted, nothing is saved
	failed   // never started, lost its fence, or panicked past its budget
)

// Private messages of the room actor.
type (
	tickDue     struct{ gen uint64 }
	snapshotDue struct{}
	seatExpired struct {
		seat int
		gen  uint64
	}
	emptyDue struct {
		gen   uint64
		force bool // Room.Close
	}
	snapshotNow struct{}
	// connEnded is a player's connection's Terminated, queued behind the
	// messages already in the mailbox (see Receive).
	connEnded  struct{ id actors.ID }
	saveResult struct {
		err     error
		fenced  bool
		lost    bool // the store holds nothing of the room: claim it again
		listing bool // the result of a publish, not a save
	}
	roomTimerTick struct{ t *Timer }
)

// roomActor is one activation of a room.
type roomActor struct {
	m    *Manager
	key  Key
	kind Kind

	ctx     actor.Context // of the message being handled
	room    *Room
	handler Handler
	state   roomState
	failure error // why it is failed, for the joins it refuses
	epoch   int64

	players map[int]*Player       // by seat
	byConn  map[actors.ID]*Player // online players, by connection
	label   map[string]string
	locked  bool
	used    []string // reservations taken since the last publish
	gen     uint64   // for timers: a fired timer of an earlier arming does nothing

	tickTimer  *time.Timer
	tickGen    uint64
	tickN      int64
	tickAt     time.Time // when the next tick is due
	lastTick   time.Time
	snapTimer  *time.Timer
	emptyTimer *time.Timer
	emptyGen   uint64
	timers     map[*Timer]struct{}

	registered   bool // counted in the manager's running activations
	dirty        bool // state changed since the last snapshot taken
	listingDirty bool
	lastApp      []byte    // the game state of the last snapshot taken, for RestartFromSnapshot
	lastSaved    time.Time // when the last snapshot was handed to the saver
	restarts     []time.Time
	saver        *saver
}

func newRoomActor(m *Manager, key Key) *roomActor {
	return &roomActor{m: m, key: key, players: map[int]*Player{}, byConn: map[actors.ID]*Player{}}
}

func (a *roomActor) Receive(ctx actor.Context) {
	a.ctx = ctx
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *wire.RoomJoin:
		a.onJoin(msg)
	case *wire.RoomInput:
		a.onInput(msg)
	case *wire.RoomLeave:
		id := actors.ID(msg.GetConn())
		switch p := a.byConn[id]; {
		case p != nil && msg.GetDropped():
			a.drop(p)
		case p != nil:
			a.leave(p, LeaveLeft, false)
		case !msg.GetDropped():
			// A leave that came after its connection's end was handled
			// (the two took different ways from another node): the seat
			// is held, and the leave still gives it up.
			if p := a.heldFor(id); p != nil {
				a.leave(p, LeaveLeft, false)
			}
		}
	case *actor.Terminated:
		// A system message: it overtakes the user messages in the mailbox,
		// and so what the connection sent before it ended (its last input,
		// a Leave). Those come first: the drop is queued behind them.
		if id, err := idOf(msg.GetWho()); err == nil && a.byConn[id] != nil {
			ctx.Send(ctx.Self(), &connEnded{id: id})
		}
	case *connEnded:
		if p := a.byConn[msg.id]; p != nil {
			a.drop(p)
		}
	case *tickDue:
		a.onTick(msg)
	case *snapshotDue:
		// A room that has not written for a while writes anyway: the store
		// forgets rooms whose keys see no write for a day (abandoned ones).
		a.snapshot(time.Since(a.lastSaved) > keepAliveEvery)
		a.armSnapshot()
	case *seatExpired:
		if p := a.players[msg.seat]; p != nil && p.generation == msg.gen && !p.Online {
			a.leave(p, LeaveSeatExpired, false)
		}
	case *emptyDue:
		if a.state == running && (msg.force || msg.gen == a.emptyGen && len(a.players) == 0) {
			a.dispose(nil)
		}
	case *snapshotNow:
		a.snapshot(false)
	case *saveResult:
		a.onSaved(msg)
	case *roomTimerTick:
		if msg.t.fired() {
			a.receive(msg.t.msg)
		}
	case *actor.Stopping:
		a.onStopping()
	case *actor.Stopped:
		a.stopTimers()
		if a.registered {
			a.registered = false
			a.m.running.Delete(a)
			a.m.runs.Done()
		}
	case *wire.Value:
		v, err := actors.DecodeValue(msg)
		if err != nil {
			a.m.undecodable.Add(1)
			actors.WarnUndecodable(a.m.logger, msg, err)
			return
		}
		a.receive(v)
	case actor.SystemMessage, actor.AutoReceiveMessage:
	case *actor.DeadLetterResponse:
		// protoactor's answer to a message the room sent to an actor that
		// is gone (a player's connection that ended meanwhile): the room
		// learns of departures from Terminated, not from this.
	default:
		a.receive(msg)
	}
}

// start claims the room in the store, restores its last snapshot and
// creates its Handler. A room that cannot start answers the joins already
// queued as unavailable and stops.
func (a *roomActor) start(ctx actor.Context) {
	k, ok := a.m.kind(a.key.Kind)
	if !ok {
		a.fail(fmt.Errorf("%w %q", ErrUnknownKind, a.key.Kind), false)
		return
	}
	a.kind = k
	a.room = &Room{a: a}
	a.m.runs.Add(1)
	a.m.running.Store(a, ctx.Self())
	a.registered = true
	snap, err := a.claim()
	if err != nil {
		a.m.logger.Warn("rooms: cannot activate room", slog.String("room", a.key.String()), slog.Any("err", err))
		a.fail(fmt.Errorf("%w: %v", ErrUnavailable, err), false)
		return
	}
	a.saver = newSaver(a.m, a.key, a.epoch, ctx.Self())
	doc, err := decodeSnapshot(snap)
	if err != nil {
		a.m.logger.Error("rooms: ignoring the room's snapshot", slog.String("room", a.key.String()), slog.Any("err", err))
	}
	var app []byte
	if doc != nil {
		a.restore(doc)
		app = doc.App
	}
	a.lastApp = app
	a.handler = a.kind.New()
	if err := a.create(app); err != nil {
		a.m.logger.Error("rooms: OnCreate failed", slog.String("room", a.key.String()), slog.Any("err", err))
		a.fail(fmt.Errorf("%w: the room failed to start", ErrUnavailable), true)
		return
	}
	a.state = running
	a.m.active.Add(1)
	a.armTick()
	a.armSnapshot()
	// A new room is listed once it has a player, with the label of the
	// matchmaking that created it: listed earlier without that label, it
	// would not match the next players' filter, and matchmaking would open
	// more rooms than needed.
	a.listingDirty = doc != nil || a.label != nil
	a.publish()
	a.checkEmpty()
}

// claim makes this activation the room's current one, waiting for a
// previous activation on a live node to hand over.
func (a *roomActor) claim() ([]byte, error) {
	owner := a.m.rt.System().Address()
	deadline := time.Now().Add(handoffWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), a.m.opts.StoreTimeout)
		force := time.Now().After(deadline)
		epoch, snap, err := a.m.store.Claim(ctx, a.key, owner, force)
		cancel()
		var held *HeldError
		switch {
		case err == nil:
			a.epoch = epoch
			if force {
				a.m.failovers.Add(1)
			}
			return snap, nil
		case errors.As(err, &held) && a.m.rt.NodeAlive(held.Owner):
			time.Sleep(50 * time.Millisecond) // the other activation is saving its state
		case errors.As(err, &held):
			deadline = time.Time{} // its node is gone: take over now
		default:
			return nil, err
		}
	}
}

// restore seats the players of a snapshot, all dropped: those whose
// connections survived are attached again by their nodes, the others
// reconnect with their tokens.
func (a *roomActor) restore(d *snapshotDoc) {
	a.label, a.locked = maps.Clone(d.Label), d.Locked
	for _, s := range d.Seats {
		p := &Player{Seat: s.Seat, ID: s.ID, User: s.User, Meta: s.Meta, Joined: s.Joined}
		copy(p.tokenHash[:], s.Token)
		a.players[s.Seat] = p
		a.holdSeat(p, true)
	}
}

// create runs OnCreate, if the Handler has it.
func (a *roomActor) create(snapshot []byte) error {
	c, ok := a.handler.(Creator)
	if !ok {
		return nil
	}
	var err error
	if !a.guard("OnCreate", func() { err = c.OnCreate(a.room, snapshot) }) {
		return errors.New("OnCreate panicked")
	}
	return err
}

// fail ends an activation that cannot go on: the joins already queued are
// refused (the room poisons itself so that they are read), and the claim is
// released unless the room lost it.
func (a *roomActor) fail(why error, release bool) {
	a.state = failed
	a.failure = why
	if release && a.saver != nil {
		a.saver.release()
	}
	a.ctx.Poison(a.ctx.Self())
}

// onJoin seats a player, new or coming back with its token.
func (a *roomActor) onJoin(m *wire.RoomJoin) {
	conn := actors.ID(m.GetConn())
	if a.state != running {
		err := a.failure
		if err == nil {
			err = ErrUnavailable
		}
		a.reply(conn, joinFailure(a.key, err))
		return
	}
	if m.GetToken() != "" {
		a.onReconnect(conn, m)
		return
	}
	if p := a.byConn[conn]; p != nil {
		// Asked twice: the same seat, with a fresh token.
		tok, hash := newToken(a.key, p.Seat)
		p.tokenHash = hash
		a.dirty = true
		a.reply(conn, a.joined(p, tok, false))
		return
	}
	if err := a.admit(conn, m); err != nil {
		a.reply(conn, joinFailure(a.key, err))
		return
	}
}

// admit runs the checks of a new seat and gives it.
func (a *roomActor) admit(conn actors.ID, m *wire.RoomJoin) error {
	if m.GetReservation() != "" {
		a.used = append(a.used, m.GetReservation())
		a.listingDirty = true
	}
	if a.locked {
		return ErrLocked
	}
	if a.kind.MaxPlayers > 0 && len(a.players) >= a.kind.MaxPlayers {
		return ErrFull
	}
	pid, err := conn.PID()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req := &JoinRequest{ID: conn, User: m.GetUser(), Meta: maps.Clone(m.GetMeta())}
	if g, ok := a.handler.(JoinGate); ok {
		var refusal error
		if !a.guard("OnJoinAttempt", func() { refusal = g.OnJoinAttempt(a.room, req) }) {
			return fmt.Errorf("%w: the room failed", ErrUnavailable)
		}
		if refusal != nil {
			return refusal
		}
	}
	for k, v := range m.GetLabel() { // a room matchmaking created, or chose
		if _, set := a.label[k]; !set {
			if a.label == nil {
				a.label = map[string]string{}
			}
			a.label[k] = v
		}
	}
	seat := 0
	for a.players[seat] != nil {
		seat++
	}
	tok, hash := newToken(a.key, seat)
	a.gen++
	p := &Player{Seat: seat, ID: conn, User: req.User, Meta: req.Meta, Online: true, Joined: time.Now(), tokenHash: hash, generation: a.gen, asked: m.GetAsked()}
	a.players[seat] = p
	a.byConn[conn] = p
	a.ctx.Watch(pid)
	a.changed()
	a.cancelEmpty()
	a.reply(conn, a.joined(p, tok, false))
	if j, ok := a.handler.(Joiner); ok {
		a.guard("OnJoin", func() { j.OnJoin(a.room, p) })
	}
	return nil
}

// onReconnect gives a held seat back to the holder of its token.
func (a *roomActor) onReconnect(conn actors.ID, m *wire.RoomJoin) {
	key, seat, secret, ok := parseToken(m.GetToken())
	p := a.players[seat]
	if !ok || key != a.key || p == nil || !checkSecret(secret, p.tokenHash) {
		a.reply(conn, joinFailure(a.key, ErrBadToken))
		return
	}
	pid, err := conn.PID()
	if err != nil {
		a.reply(conn, joinFailure(a.key, ErrBadToken))
		return
	}
	if p.Online && p.ID == conn {
		a.reply(conn, a.joined(p, "", true)) // attached already
		return
	}
	if p.Online && m.GetAsked() != 0 && m.GetAsked() < p.asked {
		// The holder asked later: this is an older tab, or an attempt its
		// client gave up (it tried another node meanwhile) whose request
		// came late. The newest keeps the seat.
		a.reply(conn, joinFailure(a.key, ErrSeatTaken))
		return
	}
	if p.Online {
		// The token's holder is back on a new connection while the old one
		// is still open (a second tab, or a loss not noticed yet): the new
		// one wins, the old one is told.
		a.unwatch(p)
		a.tellLeft(p.ID, LeaveKicked, "replaced by a new connection")
		delete(a.byConn, p.ID)
	}
	if p.expiry != nil {
		p.expiry.Stop()
		p.expiry = nil
	}
	p.ID, p.Online, p.droppedAt, p.asked = conn, true, time.Time{}, m.GetAsked()
	a.byConn[conn] = p
	a.ctx.Watch(pid)
	a.changed()
	a.reply(conn, a.joined(p, "", true))
	if r, ok := a.handler.(Reconnector); ok {
		a.guard("OnReconnect", func() { r.OnReconnect(a.room, p) })
	}
}

func (a *roomActor) joined(p *Player, token string, again bool) *wire.RoomJoined {
	return &wire.RoomJoined{Kind: a.key.Kind, Name: a.key.Name, Ok: true, Seat: int32(p.Seat), Token: token, Epoch: a.epoch, Reconnected: again}
}

func joinFailure(key Key, err error) *wire.RoomJoined {
	code, reason := joinErrorCode(err)
	return &wire.RoomJoined{Kind: key.Kind, Name: key.Name, Code: code, Reason: reason}
}

// reply answers a connection, with the room as the sender so that the
// connection learns the room's PID.
func (a *roomActor) reply(conn actors.ID, msg any) {
	if pid, err := conn.PID(); err == nil {
		a.m.rt.SendAs(pid, msg, a.ctx.Self())
	}
}

func (a *roomActor) tellLeft(conn actors.ID, why LeaveReason, text string) {
	a.reply(conn, &wire.RoomLeft{Kind: a.key.Kind, Name: a.key.Name, Reason: string(why), Text: text})
}

func (a *roomActor) onInput(m *wire.RoomInput) {
	p := a.byConn[actors.ID(m.GetConn())]
	if p == nil || a.state != running {
		// A message that raced its player's leave or drop.
		a.m.logger.Debug("rooms: message from a connection that is not a player; dropped", slog.String("room", a.key.String()), slog.String("conn", m.GetConn()))
		return
	}
	msg := actors.MessageFromWire(m.GetType(), m.GetData())
	var err error
	a.guard("OnMessage", func() { err = a.handler.OnMessage(a.room, p, msg) })
	if _, ok := a.handler.(Snapshotter); ok {
		a.dirty = true
	}
	if err != nil {
		a.answerError(p, err)
	}
}

// drop handles the end of an online player's connection: its seat is held,
// or it leaves when the kind holds no seats.
func (a *roomActor) drop(p *Player) {
	a.unwatch(p)
	delete(a.byConn, p.ID)
	if a.kind.SeatReservation < 0 {
		a.leave(p, LeaveClosed, true)
		return
	}
	a.holdSeat(p, false)
	a.changed()
	if d, ok := a.handler.(Dropper); ok {
		a.guard("OnDrop", func() { d.OnDrop(a.room, p) })
	}
}

// holdSeat marks p dropped and arms the expiry of its seat: the kind's
// reservation, or, for seats restored from a snapshot, at least long enough
// for their players to be attached again.
func (a *roomActor) holdSeat(p *Player, restored bool) {
	p.Online, p.droppedAt = false, time.Now()
	hold := a.kind.SeatReservation
	if restored && hold < restoredHold {
		hold = restoredHold
	}
	a.gen++
	p.generation = a.gen
	msg := &seatExpired{seat: p.Seat, gen: p.generation}
	self, root := a.ctx.Self(), a.m.rt.System().Root
	p.expiry = time.AfterFunc(hold, func() { root.Send(self, msg) })
}

// restoredHold is the least a seat restored from a snapshot is held: its
// player's node must notice that the room moved and attach it again.
const restoredHold = 10 * time.Second

// leave takes p out of the room for good.
func (a *roomActor) leave(p *Player, why LeaveReason, gone bool) {
	if p.expiry != nil {
		p.expiry.Stop()
		p.expiry = nil
	}
	if p.Online {
		a.unwatch(p)
		delete(a.byConn, p.ID)
		if !gone && why != LeaveLeft {
			a.tellLeft(p.ID, why, "")
		}
	}
	p.Online = false
	delete(a.players, p.Seat)
	a.changed()
	if l, ok := a.handler.(Leaver); ok {
		a.guard("OnLeave", func() { l.OnLeave(a.room, p, why) })
	}
	a.checkEmpty()
}

// heldFor returns the player whose seat is held after its connection id
// ended, or nil (a player that took its seat back has a new ID).
func (a *roomActor) heldFor(id actors.ID) *Player {
	for _, p := range a.players {
		if !p.Online && p.ID == id {
			return p
		}
	}
	return nil
}

func (a *roomActor) unwatch(p *Player) {
	if pid, err := p.ID.PID(); err == nil {
		a.ctx.Unwatch(pid)
	}
}

// changed marks the seats changed: for the next snapshot and the listing.
func (a *roomActor) changed() {
	a.dirty, a.listingDirty = true, true
	a.publish()
}

// checkEmpty arms the empty timer when the room has no seat taken.
func (a *roomActor) checkEmpty() {
	if len(a.players) > 0 || a.kind.EmptyTimeout < 0 || a.state != running || a.emptyTimer != nil {
		return
	}
	a.emptyGen++
	msg := &emptyDue{gen: a.emptyGen}
	self, root := a.ctx.Self(), a.m.rt.System().Root
	a.emptyTimer = time.AfterFunc(a.kind.EmptyTimeout, func() { root.Send(self, msg) })
}

func (a *roomActor) cancelEmpty() {
	if a.emptyTimer != nil {
		a.emptyTimer.Stop()
		a.emptyTimer = nil
		a.emptyGen++
	}
}

// armTick schedules the next tick. Ticks are scheduled one at a time, when
// the previous one has been handled; one that is already late runs at once,
// and the ticks it missed are skipped (Tick.Delta says how much time passed).
func (a *roomActor) armTick() {
	period := a.kind.tickPeriod()
	if period == 0 {
		return
	}
	if _, ok := a.handler.(Ticker); !ok {
		return
	}
	now := time.Now()
	if a.tickAt.IsZero() {
		a.tickAt = now.Add(period)
	}
	a.tickGen++
	msg := &tickDue{gen: a.tickGen}
	self, root := a.ctx.Self(), a.m.rt.System().Root
	a.tickTimer = time.AfterFunc(max(a.tickAt.Sub(now), 0), func() { root.Send(self, msg) })
}

func (a *roomActor) onTick(m *tickDue) {
	if m.gen != a.tickGen || a.state != running {
		return
	}
	now := time.Now()
	period := a.kind.tickPeriod()
	t := Tick{N: a.tickN + 1, At: a.tickAt, Late: max(now.Sub(a.tickAt), 0), Delta: period}
	if !a.lastTick.IsZero() {
		t.Delta = now.Sub(a.lastTick)
	}
	a.tickN, a.lastTick = t.N, now
	a.m.ticks.observe(t.Late)
	if tk, ok := a.handler.(Ticker); ok {
		a.guard("OnTick", func() { tk.OnTick(a.room, t) })
	}
	if _, ok := a.handler.(Snapshotter); ok {
		a.dirty = true
	}
	a.tickAt = a.tickAt.Add(period)
	if end := time.Now(); a.tickAt.Before(end) {
		a.tickAt = end // behind: the next runs at once, the missed ones are skipped
	}
	if a.state == running {
		a.armTick()
	}
}

func (a *roomActor) armSnapshot() {
	if a.state != running {
		return
	}
	every := a.kind.SnapshotInterval
	if every <= 0 {
		every = keepAliveEvery
	}
	self, root := a.ctx.Self(), a.m.rt.System().Root
	a.snapTimer = time.AfterFunc(every, func() { root.Send(self, &snapshotDue{}) })
}

// keepAliveEvery is the longest a running room goes without writing to its
// store.
const keepAliveEvery = time.Hour

// snapshot hands the room's state to the saver if it changed (or always,
// when forced); release also ends the claim once it is saved.
func (a *roomActor) snapshot(force bool) []byte {
	if a.saver == nil || (!a.dirty && !force) {
		return nil
	}
	b, err := a.encode()
	if err != nil {
		a.m.logger.Error("rooms: cannot take a snapshot; the room keeps running", slog.String("room", a.key.String()), slog.Any("err", err))
		return nil
	}
	a.dirty = false
	a.lastSaved = time.Now()
	a.saver.save(b)
	return b
}

// encode takes the snapshot: the seats, and the Handler's own state.
func (a *roomActor) encode() ([]byte, error) {
	d := snapshotDoc{V: snapshotVersion, Label: a.label, Locked: a.locked}
	for _, seat := range slices.Sorted(maps.Keys(a.players)) {
		p := a.players[seat]
		d.Seats = append(d.Seats, seatDoc{Seat: p.Seat, ID: p.ID, User: p.User, Meta: p.Meta, Token: p.tokenHash[:], Joined: p.Joined})
	}
	if s, ok := a.handler.(Snapshotter); ok {
		var app []byte
		var err error
		if !a.guard("Snapshot", func() { app, err = s.Snapshot(a.room) }) {
			return nil, errors.New("the handler's Snapshot panicked")
		}
		if err != nil {
			return nil, err
		}
		d.App = app
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if len(b) > a.kind.MaxSnapshotSize {
		a.m.snapshotErrors.Add(1)
		return nil, fmt.Errorf("snapshot of %d bytes is over the kind's MaxSnapshotSize (%d)", len(b), a.kind.MaxSnapshotSize)
	}
	a.lastApp = d.App
	return b, nil
}

// publish hands the room's listing to the saver if it changed.
func (a *roomActor) publish() {
	if !a.listingDirty || a.saver == nil || a.state != running {
		return
	}
	a.listingDirty = false
	open := !a.locked && (a.kind.MaxPlayers == 0 || len(a.players) < a.kind.MaxPlayers)
	l := Listing{Kind: a.key.Kind, Name: a.key.Name, Label: maps.Clone(a.label), Players: len(a.players),
		Max: a.kind.MaxPlayers, Open: open && !a.locked, Node: a.m.rt.System().Address()}
	a.saver.publish(l, a.used)
	a.used = nil
}

func (a *roomActor) onSaved(r *saveResult) {
	if r.lost {
		a.reclaim()
		return
	}
	if r.fenced {
		// A newer activation holds the room (this node was cut off and the
		// room moved): stop without writing anything more.
		a.m.logger.Warn("rooms: a newer activation of the room took over; this one stops", slog.String("room", a.key.String()), slog.Int64("epoch", a.epoch))
		a.m.fenced.Add(1)
		for _, p := range a.players {
			if p.Online {
				a.unwatch(p)
			}
		}
		a.state = failed
		a.ctx.Stop(a.ctx.Self())
		return
	}
	if r.err != nil && r.listing {
		a.listingDirty = true // published again with the next change or snapshot
	} else if r.err != nil {
		a.dirty = true // saved again at the next interval
	}
}

// reclaim claims again a room the store lost (Redis restarted empty, or
// the room's keys expired): no other activation can hold it, unless one
// claimed it since, and then this one is the stale one. The room goes on
// from its memory, under a new epoch, and saves at once.
func (a *roomActor) reclaim() {
	if a.state != running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.m.opts.StoreTimeout)
	epoch, _, err := a.m.store.Claim(ctx, a.key, a.m.rt.System().Address(), false)
	cancel()
	var held *HeldError
	switch {
	case errors.As(err, &held):
		a.onSaved(&saveResult{fenced: true})
		return
	case err != nil:
		a.m.storeFailed(a.key, err)
		a.saver.lost() // claim again at the next save
		a.dirty = true
		return
	}
	a.m.logger.Warn("rooms: the store had lost the room; it runs on from memory under a new epoch",
		slog.String("room", a.key.String()), slog.Int64("old_epoch", a.epoch), slog.Int64("epoch", epoch))
	a.epoch = epoch
	a.saver = newSaver(a.m, a.key, epoch, a.ctx.Self())
	a.dirty, a.listingDirty = true, true
	a.snapshot(true)
	a.publish()
}

// onStopping saves the room's last state and lets the next activation claim
// it: the room is moving (a node joined), or its node is shutting down.
func (a *roomActor) onStopping() {
	if a.state != running {
		return
	}
	a.state = failed // no more messages are handled
	a.m.active.Add(-1)
	a.snapshot(true)
	a.saver.release()
}

// dispose ends the room for good: OnDispose, players told, state deleted.
func (a *roomActor) dispose(err error) {
	if d, ok := a.handler.(Disposer); ok {
		a.guard("OnDispose", func() { d.OnDispose(a.room) })
	}
	why := LeaveRoomClosed
	if err != nil {
		why = LeaveRoomFailed
	}
	for _, p := range a.players {
		if p.Online {
			a.unwatch(p)
			a.tellLeft(p.ID, why, "")
		}
		if p.expiry != nil {
			p.expiry.Stop()
		}
	}
	a.players, a.byConn = map[int]*Player{}, map[actors.ID]*Player{}
	a.state = disposed
	a.m.active.Add(-1)
	if err == nil {
		a.saver.delete()
	} else {
		a.saver.release() // the last snapshot stays, for a later activation
	}
	a.ctx.Stop(a.ctx.Self())
}

func (a *roomActor) stopTimers() {
	for _, t := range []*time.Timer{a.tickTimer, a.snapTimer, a.emptyTimer} {
		if t != nil {
			t.Stop()
		}
	}
	for _, p := range a.players {
		if p.expiry != nil {
			p.expiry.Stop()
		}
	}
	for t := range a.timers {
		t.Stop()
	}
}

// receive gives any other message to the Handler's Receive.
func (a *roomActor) receive(msg any) {
	if a.state != running {
		return
	}
	r, ok := a.handler.(Receiver)
	if !ok {
		a.m.logger.Warn("rooms: room handler has no Receive method; message dropped", slog.String("room", a.key.String()), slog.String("type", fmt.Sprintf("%T", msg)))
		return
	}
	a.guard("Receive", func() { r.Receive(a.room, msg) })
	if _, ok := a.handler.(Snapshotter); ok {
		a.dirty = true
	}
}

// guard runs a Handler method; a panic is logged with the room and its
// stack, counted, and handled by the kind's Restart policy. It reports
// whether f returned normally.
func (a *roomActor) guard(method string, f func()) (ok bool) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		ok = false
		a.m.panics.Add(1)
		a.m.logger.Error("rooms: room handler panicked", slog.String("room", a.key.String()), slog.String("method", method),
			slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		a.afterPanic()
	}()
	f()
	return true
}

// afterPanic restarts the Handler or closes the room.
func (a *roomActor) afterPanic() {
	if a.state != running {
		return // OnCreate: the start fails
	}
	now := time.Now()
	a.restarts = slices.DeleteFunc(a.restarts, func(t time.Time) bool { return now.Sub(t) > a.kind.RestartWithin })
	if a.kind.Restart == CloseOnPanic || len(a.restarts) >= a.kind.MaxRestarts {
		a.m.logger.Error("rooms: closing the room after its handler panicked", slog.String("room", a.key.String()), slog.Int("restarts", len(a.restarts)))
		a.dispose(errors.New("panicked"))
		return
	}
	a.restarts = append(a.restarts, now)
	a.m.restarts.Add(1)
	state := a.lastApp
	if s, ok := a.handler.(Snapshotter); ok && a.kind.Restart == RestartFromMemory {
		func() {
			defer func() {
				if recover() != nil {
					state = a.lastApp // the panicking value cannot even say its state
				}
			}()
			if b, err := s.Snapshot(a.room); err == nil {
				state = b
			}
		}()
	}
	for t := range a.timers {
		t.Stop()
	}
	a.timers = nil
	a.handler = a.kind.New()
	if err := a.create(state); err != nil {
		a.m.logger.Error("rooms: OnCreate failed on restart; closing the room", slog.String("room", a.key.String()), slog.Any("err", err))
		a.dispose(err)
		return
	}
	a.dirty = true
	if _, ok := a.handler.(Ticker); ok && a.tickTimer == nil {
		a.armTick()
	}
}

// answerError tells a player that its message was refused.
func (a *roomActor) answerError(p *Player, err error) {
	code, text := errorEnvelope(err)
	if code == "internal" {
		a.m.logger.Error("rooms: room handler failed", slog.String("room", a.key.String()), slog.Int("seat", p.Seat), slog.Any("err", err))
	}
	b, _ := json.Marshal(map[string]string{"type": "error", "code": code, "error": text})
	a.deliver([]*Player{p}, actors.Text(string(b)))
}

// idOf returns the connection ID of a PID the room watches.
func idOf(pid *actor.PID) (actors.ID, error) { return actors.IDFromPID(pid) }
