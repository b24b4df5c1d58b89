package rooms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/metrics"
)

// Options configure a Manager. The zero value is the single-node default:
// rooms in this process, their state in memory.
type Options struct {
	// Store keeps snapshots, listings and reservations. Default: a new
	// MemoryStore. A cluster sets a shared one (package cluster).
	Store Store
	// Placement finds rooms. Default: in this process. A cluster sets its
	// identity lookup (package cluster).
	Placement Placement
	// StoreTimeout bounds each store call. Default 2 s.
	StoreTimeout time.Duration
	// ReservationTTL is how long matchmaking holds a seat for a joining
	// connection. Default 10 s.
	ReservationTTL time.Duration
	// JoinTimeout bounds a join, reconnect or attachment, from the request
	// to the room's answer; past it the connection gets JoinFailed
	// (ErrUnavailable). Default 10 s.
	JoinTimeout time.Duration
	// Logger receives the rooms' logs. Default slog.Default().
	Logger *slog.Logger
}

// Manager runs the rooms of one server: it defines their kinds, finds and
// activates rooms, and joins connections of the server to them. A Server
// has one (Server.Rooms).
type Manager struct {
	rt           *actors.Runtime
	opts         Options
	store        Store
	placement    Placement
	local        *localPlacement // nil with another placement
	logger       *slog.Logger
	stopDelivery func() // removes the node's delivery process

	mu    sync.RWMutex
	kinds map[string]Kind

	active, panics, restarts, fenced atomic.Int64
	storeErrors, snapshotErrors      atomic.Int64
	undecodable, deliveries          atomic.Int64
	failovers                        atomic.Int64
	storeDown                        atomic.Bool
	ticks                            tickStats
	savers                           sync.WaitGroup
	stopped                          atomic.Bool
	// running holds the activations on this node (*actor.PID), which Stop
	// stops: those a cluster's identity lookup spawned are not children of
	// the manager.
	running sync.Map
	runs    sync.WaitGroup
}

// NewManager returns the manager of rt's server and installs its hook on
// rt's connections. It panics if the server already has one (a programming
// error).
func NewManager(rt *actors.Runtime, opts Options) *Manager {
	if opts.Store == nil {
		opts.Store = NewMemoryStore()
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 2 * time.Second
	}
	if opts.ReservationTTL <= 0 {
		opts.ReservationTTL = 10 * time.Second
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{rt: rt, opts: opts, store: opts.Store, placement: opts.Placement, logger: opts.Logger, kinds: map[string]Kind{}}
	if m.placement == nil {
		lp, err := newLocalPlacement(m)
		if err != nil {
			panic(err)
		}
		m.local, m.placement = lp, lp
	}
	_, m.stopDelivery = rt.HandleInline(deliveryName(rt.ServerName()), m.receiveDelivery)
	managers.Store(managerKey{system: rt.System(), server: rt.ServerName()}, m)
	stoppedManagers.Delete(managerKey{system: rt.System(), server: rt.ServerName()})
	systemsWithServers.Store(rt.System(), struct{}{})
	rt.AddMailboxHook(m.hook)
	rt.AddCloseHook(m.closed)
	return m
}

// Define adds a kind of room. Call it before serving, for every kind, on
// every node. It panics on an invalid kind or a name already defined (a
// programming error, like http.Handle).
func (m *Manager) Define(k Kind) {
	if err := k.validate(); err != nil {
		panic(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.kinds[k.Name]; dup {
		panic(fmt.Sprintf("rooms: kind %q defined twice", k.Name))
	}
	m.kinds[k.Name] = k.withDefaults()
}

// Kinds returns the names of the kinds defined, sorted.
func (m *Manager) Kinds() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Sorted(maps.Keys(m.kinds))
}

func (m *Manager) kind(name string) (Kind, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.kinds[name]
	return k, ok
}

// check validates a room's key against the kinds defined here.
func (m *Manager) check(key Key) error {
	if _, ok := m.kind(key.Kind); !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, key.Kind)
	}
	if !ValidName(key.Name) {
		return fmt.Errorf("%w %q", ErrBadName, key.Name)
	}
	return nil
}

// Join asks room kind/name, activated on first use, for a seat for c, with
// meta for the room (and its other players) to see. It returns at once: the
// answer reaches c's handler's Receive as a Joined (with the room's Ref and
// a reconnection token) or a JoinFailed. An unknown kind or an invalid name
// is an error at once.
func (m *Manager) Join(c *actors.Conn, kind, name string, meta map[string]string) error {
	key := Key{Kind: kind, Name: name}
	if err := m.check(key); err != nil {
		return err
	}
	m.startJoin(c, &pendingJoin{key: key, meta: meta})
	return nil
}

// Create makes a new room of kind, with a random name and label, and joins
// c to it, as Join does.
func (m *Manager) Create(c *actors.Conn, kind string, label, meta map[string]string) error {
	key := Key{Kind: kind, Name: newRoomName()}
	if err := m.check(key); err != nil {
		return err
	}
	m.startJoin(c, &pendingJoin{key: key, meta: meta, label: label})
	return nil
}

// JoinOrCreate joins c to an open room of kind whose label has every key and
// value of filter and a free seat (the fullest such room: rooms fill up
// before new ones open), or to a new room labelled filter when there is
// none; the store holds the seat while c joins, so that racing joins fill
// rooms without overfilling them. The answer arrives as Join's does.
func (m *Manager) JoinOrCreate(c *actors.Conn, kind string, filter, meta map[string]string) error {
	if _, ok := m.kind(kind); !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	m.startJoin(c, &pendingJoin{key: Key{Kind: kind}, meta: meta, label: filter, match: true})
	return nil
}

// Reconnect takes back the seat that token (from an earlier Joined) holds,
// on connection c, which may be on any node: the room sees the same player
// (OnReconnect). A malformed token is an error at once (ErrBadToken); one
// that the room does not know, or whose seat expired, fails as JoinFailed.
func (m *Manager) Reconnect(c *actors.Conn, token string) error {
	key, _, _, ok := parseToken(token)
	if !ok {
		return ErrBadToken
	}
	if err := m.check(key); err != nil {
		return err
	}
	m.startJoin(c, &pendingJoin{key: key, token: token})
	return nil
}

// Tell delivers msg to the Receive of room kind/name, activating it: any
// value to a room of this node; to a room on another node, a protobuf
// message or a type registered with actors.RegisterMessage (ErrNotRegistered
// otherwise).
func (m *Manager) Tell(ctx context.Context, kind, name string, msg any) error {
	key := Key{Kind: kind, Name: name}
	if err := m.check(key); err != nil {
		return err
	}
	pid, err := m.placement.Get(ctx, key)
	if err != nil {
		return err
	}
	if pid == nil {
		return ErrUnavailable
	}
	if pid.Address != m.rt.System().Address() {
		if msg, err = actors.EncodeValue(msg); err != nil {
			return err
		}
	}
	m.rt.System().Root.Send(pid, msg)
	return nil
}

// List returns the rooms of kind whose label has every key and value of
// filter, sorted by name. Node is "" for a room whose node is not a live
// member (it is activated again where it belongs when it is next used).
func (m *Manager) List(ctx context.Context, kind string, filter map[string]string) ([]Listing, error) {
	ls, err := m.store.List(ctx, kind)
	if err != nil {
		return nil, fmt.Errorf("rooms: list %s: %w", kind, err)
	}
	out := ls[:0]
	for _, l := range ls {
		if !matches(l.Label, filter) {
			continue
		}
		if l.Node != "" && !m.rt.NodeAlive(l.Node) {
			l.Node = ""
		}
		out = append(out, l)
	}
	return out, nil
}

// Stats is a snapshot of a manager's counters.
type Stats struct {
	RoomsActive    int64 // activations running on this node
	Panics         int64 // room handler panics recovered
	Restarts       int64 // room handler restarts after a panic
	Fenced         int64 // activations stopped because a newer one took their room
	StoreErrors    int64 // store writes that failed (retried)
	SnapshotErrors int64 // snapshots not saved: over MaxSnapshotSize
	Undecodable    int64 // messages from another node that this node could not decode (dropped)
	// Deliveries counts the messages from rooms on other nodes that this
	// node received for its players: one per room message and node,
	// whatever the number of players here.
	Deliveries int64
	// Failovers counts rooms this node took over without a handover: their
	// previous activation's node was gone (or did not let go in time), so
	// they started from their last snapshot.
	Failovers int64
	// TickLateness is how late ticks ran (Tick.Late), over every room of
	// this node since it started.
	TickLateness metrics.Snapshot
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	return Stats{
		RoomsActive: m.active.Load(), Panics: m.panics.Load(), Restarts: m.restarts.Load(), Fenced: m.fenced.Load(),
		StoreErrors: m.storeErrors.Load(), SnapshotErrors: m.snapshotErrors.Load(), Undecodable: m.undecodable.Load(),
		Deliveries: m.deliveries.Load(), Failovers: m.failovers.Load(),
		TickLateness: m.ticks.h.Snapshot(),
	}
}

// Stop stops this node's rooms: each saves its state and releases its
// claim, so that its next activation (on another node) starts from it. It
// waits for the writes, bounded by ctx. The server calls it when it shuts
// down.
func (m *Manager) Stop(ctx context.Context) error {
	if m.stopped.Swap(true) {
		return nil
	}
	// First: no room of this server is activated here any more (a
	// cluster's lookup may still place one on this node until it leaves).
	stoppedManagers.Store(managerKey{system: m.rt.System(), server: m.rt.ServerName()}, struct{}{})
	managers.CompareAndDelete(managerKey{system: m.rt.System(), server: m.rt.ServerName()}, m)
	var err error
	if m.local != nil {
		err = m.local.stop(ctx)
	}
	m.running.Range(func(_, pid any) bool {
		m.rt.System().Root.Poison(pid.(*actor.PID))
		return true
	})
	done := make(chan struct{})
	go func() { m.runs.Wait(); m.savers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	m.stopDelivery()
	return err
}

// tickStats records tick lateness.
type tickStats struct{ h metrics.Histogram }

func (t *tickStats) observe(d time.Duration) { t.h.Observe(d) }

// newRoomName returns a random room name (96 bits, in hex).
func newRoomName() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
