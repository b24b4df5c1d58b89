package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/wire"
)

// Placement finds the actor of a room, activating the room where it belongs:
// in this process on a single node (the default), or on the node a cluster's
// identity lookup chooses (package cluster provides that one).
type Placement interface {
	// Get returns the PID of the room's actor, activating it on first use.
	// It may wait on the network.
	Get(ctx context.Context, key Key) (*actor.PID, error)
	// Forget drops what Get may have cached for the room, after pid was
	// found stopped.
	Forget(key Key, pid *actor.PID)
}

// localPlacement activates rooms as children of a host actor of the
// manager, which keeps one actor per room.
type localPlacement struct {
	m    *Manager
	host *actor.PID
}

type (
	getRoom struct{ key Key }
	gotRoom struct{ pid *actor.PID }
)

func newLocalPlacement(m *Manager) (*localPlacement, error) {
	lp := &localPlacement{m: m}
	// A room actor recovers its handler's panics itself; anything that
	// escapes is a runtime bug, and the room is stopped rather than
	// restarted with its state lost.
	stop := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	props := actor.PropsFromProducer(func() actor.Actor { return &roomHost{m: m, rooms: map[Key]*actor.PID{}} }, actor.WithSupervisor(stop))
	pid, err := m.rt.System().Root.SpawnNamed(props, "wsactor-rooms-"+m.rt.ServerName())
	if err != nil {
		return nil, fmt.Errorf("rooms: spawn host for server %q: %w", m.rt.ServerName(), err)
	}
	lp.host = pid
	return lp, nil
}

// Get implements Placement.
func (lp *localPlacement) Get(ctx context.Context, key Key) (*actor.PID, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	res, err := lp.m.rt.System().Root.RequestFuture(lp.host, &getRoom{key: key}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res.(*gotRoom).pid, nil
}

// Forget implements Placement: the host forgets rooms when they stop.
func (lp *localPlacement) Forget(Key, *actor.PID) {}

// stop stops every room (each saves and releases its state) and the host.
func (lp *localPlacement) stop(ctx context.Context) error {
	f := lp.m.rt.System().Root.StopFuture(lp.host)
	done := make(chan error, 1)
	go func() { done <- f.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type roomHost struct {
	m     *Manager
	rooms map[Key]*actor.PID
}

func (h *roomHost) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *getRoom:
		pid := h.rooms[msg.key]
		if pid == nil {
			key := msg.key
			props := actor.PropsFromProducer(func() actor.Actor { return newRoomActor(h.m, key) })
			var err error
			pid, err = ctx.SpawnNamed(props, "room-"+key.Kind+"."+key.Name)
			if err != nil {
				// A room of that name is still stopping: the caller retries.
				ctx.Respond(&gotRoom{})
				return
			}
			h.rooms[key] = pid
		}
		ctx.Respond(&gotRoom{pid: pid})
	case *actor.Terminated:
		for k, pid := range h.rooms {
			if pid.Equal(msg.Who) {
				delete(h.rooms, k)
			}
		}
	}
}

// managers lets an actor that a cluster's identity lookup activates find
// the manager of its server: a room's cluster identity is
// "<server>/<kind>/<name>".
var managers sync.Map // managerKey → *Manager

type managerKey struct {
	system *actor.ActorSystem
	server string
}

// ClusterIdentity returns the identity of a room in a cluster's identity
// lookup, under the cluster kind that hosts rooms (see NewClusterRoom).
func ClusterIdentity(server string, key Key) string {
	return server + "/" + key.Kind + "/" + key.Name
}

// errNoManager: a room of a server that does not run on this node.
var errNoManager = errors.New("rooms: no server of that name on this node")

// errServerStopped: a room of a server that has shut down on this node.
var errServerStopped = errors.New("rooms: the server of that name on this node has shut down")

// errNoServerYet: a room asked of a node that has no server yet (it is
// starting).
var errNoServerYet = errors.New("rooms: no server on this node yet")

// systemsWithServers holds the actor systems that a manager has been made
// for: on the others, no server has started yet.
var systemsWithServers sync.Map // *actor.ActorSystem → struct{}

// stoppedManagers holds the keys of the managers that stopped (and no new
// one took their place), so that a room asked of a node that is shutting
// down is refused quietly.
var stoppedManagers sync.Map // managerKey → struct{}

// NewClusterRoom returns the actor of a room activated by a cluster's
// identity lookup. Package cluster registers it as the cluster kind that
// hosts rooms; identity is what ClusterIdentity returned. The actor learns
// its identity when it starts (protoactor gives it then), so ident is called
// from its first message on.
func NewClusterRoom(system *actor.ActorSystem, ident func(actor.Context) string) actor.Actor {
	return &clusterShell{system: system, ident: ident}
}

// clusterShell becomes the room named by its identity at its first
// message.
type clusterShell struct {
	system *actor.ActorSystem
	ident  func(actor.Context) string
	room   *roomActor
	key    Key
	err    error
}

func (s *clusterShell) Receive(ctx actor.Context) {
	if s.room == nil && s.err == nil {
		s.room, s.err = s.resolve(ctx)
		if s.err != nil {
			level := slog.LevelWarn
			if errors.Is(s.err, errServerStopped) || errors.Is(s.err, errNoServerYet) {
				// Routine while the node starts or shuts down: it is a
				// member, and hosts rooms, a moment before its servers
				// exist and after they have handed their rooms over. The
				// room's players retry, and find it here or elsewhere.
				level = slog.LevelDebug
			}
			ctx.Logger().Log(context.Background(), level, "rooms: cannot host room", "identity", s.ident(ctx), "err", s.err)
			// Poison: the joins already queued are refused, then it stops,
			// and a later request tries again.
			ctx.Poison(ctx.Self())
		}
	}
	if _, ok := ctx.Message().(*cluster.ClusterInit); ok {
		// protoactor's grain initialisation, after Started: the room
		// learnt its identity from the context already.
		return
	}
	if s.room != nil {
		s.room.Receive(ctx)
		return
	}
	if j, ok := ctx.Message().(*wire.RoomJoin); ok {
		if pid, err := actors.ID(j.GetConn()).PID(); err == nil {
			ctx.Request(pid, joinFailure(s.key, fmt.Errorf("%w: %v", ErrUnavailable, s.err)))
		}
	}
}

func (s *clusterShell) resolve(ctx actor.Context) (*roomActor, error) {
	id := s.ident(ctx)
	server, rest, ok1 := strings.Cut(id, "/")
	kind, name, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("rooms: malformed room identity %q", id)
	}
	s.key = Key{Kind: kind, Name: name}
	key := managerKey{system: s.system, server: server}
	v, ok := managers.Load(key)
	if !ok {
		if _, ok := stoppedManagers.Load(key); ok {
			return nil, errServerStopped
		}
		if _, ok := systemsWithServers.Load(s.system); !ok {
			return nil, errNoServerYet
		}
		return nil, errNoManager
	}
	return newRoomActor(v.(*Manager), s.key), nil
}
