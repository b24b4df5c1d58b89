package groups

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/internal/wire"
)

// Options configure a Hub. The zero value is the single-node default.
type Options struct {
	// Directory stores membership and the user index. Default: a new MemoryDirectory.
	Directory Directory
	// PresenceEvents tells a group's members who joined and left it
	// (including by closing, and when its node leaves the cluster: see
	// AnnounceDepartures), in PresenceEvent messages: each node sends at
	// most one per group per PresenceInterval, with its joins and leaves of
	// that interval, or only the member count in large groups. See
	// PresenceEvent for the format and how to keep a list from it.
	PresenceEvents bool
	// PresenceInterval is how long a node gathers a group's changes into one
	// presence event. The first change in a quiet group goes out at once;
	// the next ones wait until the interval has passed since the last event.
	// Above PresenceLargeGroup members it stretches in proportion (1 s for
	// 10,000 members by default), so that a group's events cost a node at
	// most about PresenceLargeGroup / PresenceInterval deliveries a second,
	// whatever its size. Default DefaultPresenceInterval (100 ms).
	PresenceInterval time.Duration
	// PresenceLargeGroup is the largest group whose presence events list the
	// members that joined and left; a larger group's events carry its count
	// only, and so do those of an interval with more changes than this.
	// Default DefaultPresenceLargeGroup (1,000).
	PresenceLargeGroup int
	// Logger reports directory failures. Default slog.Default().
	Logger *slog.Logger
}

// Hub runs groups for one server: it keeps the Directory up to date and
// delivers broadcasts to the local members of a group. A broadcast is
// serialized once and handed to each member with Conn.Post (one shared
// message, no goroutine per member: straight into an idle member's send
// queue, else behind its mailbox); a slow member only fills its own send
// queue.
type Hub struct {
	rt     *actors.Runtime
	dir    Directory // counts its calls (stats.go)
	rawDir Directory // as the options gave it
	pres   *presence // nil without Options.PresenceEvents
	logger *slog.Logger

	stopNodeProcess func() // removes the process that receives broadcasts and joins from peers

	// Directory calls may wait on the network (a Redis round trip, or its
	// timeouts during an outage), so no lock that other connections need is
	// held across one. A change to a connection's groups or user entry holds
	// writes.RLock (Resync takes the write lock, to see and write a still
	// state) and the connection's stripe of conns (ordering it with the
	// connection's other changes and its close). localMu guards local, the
	// members maps and byConn, and is held only for in-memory work.
	writes  sync.RWMutex
	conns   [connStripes]sync.Mutex
	seed    maphash.Seed
	localMu sync.Mutex
	local   map[string]*localGroup
	// byConn indexes the groups of this node's connections. It, not the
	// directory, says what a closing connection leaves: a shared directory
	// that lost its data (Redis restarted empty, FLUSHALL) reports no
	// groups, and a dead connection left in local would be delivered to,
	// and written back to the directory by the next Resync.
	byConn map[*actors.Conn]*groupSet
	// errors counts directory failures, for Stats.
	errors atomic.Int64
	// stopped is set by Stop.
	stopped atomic.Bool

	dirStats  dirStats
	bcastTime metrics.Histogram
	bcastN    metrics.CountHistogram
}

// localGroup is a group's members on this node. Joins and leaves change
// the map (under Hub.localMu) in O(1) and drop the snapshot; the next broadcast
// rebuilds it once, so filling a room of N costs O(N), not O(N²), and
// broadcasts between changes read the snapshot without locking.
type localGroup struct {
	members map[*actors.Conn]map[string]string // connection → meta; guarded by Hub.localMu
	snap    atomic.Pointer[[]localMember]      // nil after a change
}

// snapshot returns the members to broadcast to.
func (h *Hub) snapshot(lg *localGroup) []localMember {
	if s := lg.snap.Load(); s != nil {
		return *s
	}
	h.localMu.Lock()
	defer h.localMu.Unlock()
	if s := lg.snap.Load(); s != nil {
		return *s
	}
	s := make([]localMember, 0, len(lg.members))
	for c, meta := range lg.members {
		s = append(s, localMember{conn: c, meta: meta})
	}
	lg.snap.Store(&s)
	return s
}

type localMember struct {
	conn *actors.Conn
	meta map[string]string
}

// NewHub returns a Hub for the connections of rt.
func NewHub(rt *actors.Runtime, opts Options) *Hub {
	if opts.Directory == nil {
		opts.Directory = NewMemoryDirectory()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PresenceInterval <= 0 {
		opts.PresenceInterval = DefaultPresenceInterval
	}
	if opts.PresenceLargeGroup <= 0 {
		opts.PresenceLargeGroup = DefaultPresenceLargeGroup
	}
	h := &Hub{
		rt: rt, rawDir: opts.Directory, logger: opts.Logger, seed: maphash.MakeSeed(),
		local: make(map[string]*localGroup), byConn: make(map[*actors.Conn]*groupSet),
	}
	h.dir = countedDirectory{d: opts.Directory, s: &h.dirStats}
	if opts.PresenceEvents {
		h.pres = newPresence(h, opts.PresenceInterval, opts.PresenceLargeGroup)
	}
	h.startNodeProcess()
	return h
}

// Directory returns the hub's directory.
func (h *Hub) Directory() Directory { return h.rawDir }

// DirectoryErrors counts directory operations that failed.
func (h *Hub) DirectoryErrors() int64 { return h.errors.Load() }

// Join adds the connection with this ID to group, from anywhere: on another
// node of the cluster, the node that owns the connection does it.
func (h *Hub) Join(ctx context.Context, group string, id actors.ID, meta map[string]string) error {
	if !ValidGroup(group) {
		return ErrInvalidGroup
	}
	c, err := h.rt.Lookup(id)
	if err != nil {
		if h.rt.IsLocal(id) || errors.Is(err, actors.ErrInvalidID) {
			return err
		}
		return h.forward(ctx, id, &wire.Join{Group: group, Id: string(id), Meta: meta}, nil)
	}
	return h.join(ctx, c, group, meta)
}

// Leave removes the connection with this ID from group, from anywhere.
func (h *Hub) Leave(ctx context.Context, group string, id actors.ID) error {
	c, err := h.rt.Lookup(id)
	if err != nil {
		if h.rt.IsLocal(id) || errors.Is(err, actors.ErrInvalidID) {
			return err
		}
		return h.forward(ctx, id, nil, &wire.Leave{Group: group, Id: string(id)})
	}
	return h.leave(ctx, c, group)
}

// Members lists group's members with their user and meta.
func (h *Hub) Members(ctx context.Context, group string) ([]Member, error) {
	return h.dir.Members(ctx, group)
}

// Count returns how many members group has, on every node.
func (h *Hub) Count(ctx context.Context, group string) (int, error) {
	return h.dir.Count(ctx, group)
}

// GroupsOf lists the groups a connection is in.
func (h *Hub) GroupsOf(ctx context.Context, id actors.ID) ([]string, error) {
	return h.dir.Groups(ctx, id)
}

// Broadcast sends m to every member of group except the listed IDs. It
// returns how many local members it was posted to; across a cluster it also
// sends the message once to every other live node, which delivers it to its
// own members.
func (h *Hub) Broadcast(_ context.Context, group string, m actors.Message, except ...actors.ID) (int, error) {
	if !ValidGroup(group) {
		return 0, ErrInvalidGroup
	}
	if h.rt.ClusterView() != nil {
		ex := make([]string, len(except))
		for i, id := range except {
			ex[i] = string(id)
		}
		h.toPeers(&wire.Broadcast{Group: group, Type: actors.WireType(m), Data: m.Data, Except: ex})
	}
	return h.broadcastLocal(group, m, except), nil
}

// broadcastLocal delivers m to this node's members of group.
func (h *Hub) broadcastLocal(group string, m actors.Message, except []actors.ID) int {
	h.localMu.Lock()
	lg := h.local[group]
	h.localMu.Unlock()
	if lg == nil {
		return 0
	}
	start := time.Now()
	p := actors.Prepare(m)
	n := 0
	for _, lm := range h.snapshot(lg) {
		if len(except) > 0 && slices.Contains(except, lm.conn.ID()) {
			continue
		}
		lm.conn.Post(p)
		n++
	}
	h.observeBroadcast(start, n)
	return n
}

// BroadcastJSON encodes v once and broadcasts it as a text message.
func (h *Hub) BroadcastJSON(ctx context.Context, group string, v any, except ...actors.ID) (int, error) {
	m, err := actors.JSON(v)
	if err != nil {
		return 0, err
	}
	return h.Broadcast(ctx, group, m, except...)
}

// SendToUser sends m to every open connection of the user (all their tabs
// and devices), on every node, and returns how many connections it was sent
// to: one message per node that has some.
func (h *Hub) SendToUser(ctx context.Context, user string, m actors.Message) (int, error) {
	ids, err := h.dir.UserConns(ctx, user)
	if err != nil {
		h.failed("user connections", err)
		return 0, err
	}
	p := actors.Prepare(m)
	n := 0
	remote := make(map[string][]string)
	for _, id := range ids {
		if c, err := h.rt.Lookup(id); err == nil {
			c.Post(p)
			n++
			continue
		}
		if addr, err := id.Address(); err == nil && !h.rt.IsLocal(id) && h.rt.NodeAlive(addr) {
			remote[addr] = append(remote[addr], string(id))
		}
	}
	for addr, list := range remote {
		if h.toNode(addr, &wire.PostMany{Ids: list, Type: actors.WireType(m), Data: m.Data}) == nil {
			n += len(list) // else the queue to the node was full: counted and logged
		}
	}
	return n, nil
}

// connStripes is how many locks order the connections' group changes: a
// directory call that hangs holds up the connections of its stripe only.
const connStripes = 256

// lockConn orders a change to c's groups or user entry with c's other
// changes and with Resync, and returns the unlock.
func (h *Hub) lockConn(c *actors.Conn) (unlock func()) {
	h.writes.RLock()
	mu := &h.conns[maphash.String(h.seed, string(c.ID()))%connStripes]
	mu.Lock()
	return func() {
		mu.Unlock()
		h.writes.RUnlock()
	}
}

// errClosed is returned when joining a connection that is closing.
var errClosed = errors.New("wsactor/groups: connection is closing")

func (h *Hub) join(ctx context.Context, c *actors.Conn, group string, meta map[string]string) error {
	if !ValidGroup(group) {
		return ErrInvalidGroup
	}
	m := Member{ID: c.ID(), Meta: meta}
	if u := c.User(); u != nil {
		m.User = u.ID
	}
	unlock := h.lockConn(c)
	// Checked under the connection's lock, which Closed also takes: a
	// connection is either joined before it leaves everything, or refused;
	// never a dead member.
	if c.Closed() {
		unlock()
		return errors.Join(actors.ErrConnectionNotFound, errClosed)
	}
	if _, err := h.dir.Join(ctx, group, m); err != nil {
		unlock()
		h.failed("join", err)
		return err
	}
	h.localMu.Lock()
	lg := h.local[group]
	if lg == nil {
		lg = &localGroup{members: make(map[*actors.Conn]map[string]string)}
		h.local[group] = lg
	}
	_, had := lg.members[c]
	lg.members[c] = m.Meta
	lg.snap.Store(nil)
	gs := h.byConn[c]
	if gs == nil {
		gs = new(groupSet)
		h.byConn[c] = gs
	}
	gs.add(group)
	h.localMu.Unlock()
	// Whether it is news is this node's to say, not the directory's: the
	// local index is the truth about local connections (a directory that
	// lost its data would call every join new).
	if !had && h.pres != nil {
		h.pres.record(group, m, true)
	}
	unlock()
	return nil
}

func (h *Hub) leave(ctx context.Context, c *actors.Conn, group string) error {
	unlock := h.lockConn(c)
	_, err := h.dir.Leave(ctx, group, c.ID())
	h.localMu.Lock()
	m, found := h.dropLocalLocked(group, c)
	h.localMu.Unlock()
	// Even when the directory failed: the connection has left as far as
	// deliveries go (this node no longer posts the group's broadcasts to
	// it), so its members hear it, as on close; the directory catches up
	// when the node resyncs.
	if found && h.pres != nil {
		h.pres.record(group, m, false)
	}
	unlock()
	if err != nil {
		h.failed("leave", err)
	}
	return err
}

// dropLocalLocked removes c from the local index of group and returns it as
// a Member (with the meta it joined with), and whether it was there. The
// caller holds localMu.
func (h *Hub) dropLocalLocked(group string, c *actors.Conn) (m Member, found bool) {
	m = Member{ID: c.ID()}
	if u := c.User(); u != nil {
		m.User = u.ID
	}
	lg := h.local[group]
	if lg == nil {
		return m, false
	}
	m.Meta, found = lg.members[c]
	if !found {
		return m, false
	}
	delete(lg.members, c)
	lg.snap.Store(nil)
	if len(lg.members) == 0 {
		delete(h.local, group)
	}
	if gs := h.byConn[c]; gs != nil {
		gs.remove(group)
		if gs.len() == 0 {
			delete(h.byConn, c)
		}
	}
	return m, true
}

func (h *Hub) failed(op string, err error) {
	h.errors.Add(1)
	h.logger.Warn("wsactor: group directory failed", slog.String("op", op), slog.Any("err", err))
}

// Service returns the hub as the actors.GroupService the runtime uses.
func (h *Hub) Service() actors.GroupService { return service{h} }

type service struct{ h *Hub }

func (s service) Join(ctx context.Context, c *actors.Conn, group string, meta map[string]string) error {
	return s.h.join(ctx, c, group, meta)
}

func (s service) Leave(ctx context.Context, c *actors.Conn, group string) error {
	return s.h.leave(ctx, c, group)
}

func (s service) Broadcast(ctx context.Context, group string, m actors.Message, except ...actors.ID) error {
	_, err := s.h.Broadcast(ctx, group, m, except...)
	return err
}

func (s service) Opened(c *actors.Conn) {
	if u := c.User(); u != nil {
		defer s.h.lockConn(c)()
		if err := s.h.dir.AddUserConn(context.Background(), u.ID, c.ID()); err != nil {
			s.h.failed("add user connection", err)
		}
	}
}

// Closed leaves every group (telling the other members, with presence
// events on) and drops the connection from the user index.
func (s service) Closed(c *actors.Conn) {
	h := s.h
	ctx := context.Background()
	unlock := h.lockConn(c)
	defer unlock()
	if _, err := h.dir.LeaveAll(ctx, c.ID()); err != nil {
		h.failed("leave all", err)
	}
	// What it leaves here comes from this node's own index: the directory
	// may have lost the connection's entries (its groups are then written
	// back by the next Resync, which must not find it).
	h.localMu.Lock()
	var groups []string
	if gs := h.byConn[c]; gs != nil {
		groups = gs.sorted()
	}
	gone := make([]Member, 0, len(groups))
	for _, g := range groups {
		m, _ := h.dropLocalLocked(g, c)
		gone = append(gone, m)
	}
	h.localMu.Unlock()
	if h.pres != nil {
		for i, g := range groups {
			h.pres.record(g, gone[i], false)
		}
	}
	if u := c.User(); u != nil {
		if err := h.dir.RemoveUserConn(ctx, u.ID, c.ID()); err != nil {
			h.failed("remove user connection", err)
		}
	}
}

// Resync hands replace this node's true state — its live connections' group
// memberships (with meta) and their users — so that a shared directory can be
// made to hold exactly that, after it lost data or missed updates (a Redis
// outage or restart). Joins and leaves wait while it runs.
func (h *Hub) Resync(ctx context.Context, replace func(ctx context.Context, groups map[string][]Member, users map[string][]actors.ID) error) error {
	h.writes.Lock()
	defer h.writes.Unlock()
	h.localMu.Lock()
	state := make(map[string][]Member, len(h.local))
	for g, lg := range h.local {
		for c, meta := range lg.members {
			// Closed, but its Closed has yet to run (it waits for the lock
			// held here): it will prune it, and the directory must not hold
			// it meanwhile.
			if c.Closed() {
				continue
			}
			m := Member{ID: c.ID(), Meta: meta}
			if u := c.User(); u != nil {
				m.User = u.ID
			}
			state[g] = append(state[g], m)
		}
	}
	h.localMu.Unlock()
	users := make(map[string][]actors.ID)
	for _, c := range h.rt.Conns() {
		if u := c.User(); u != nil && !c.Closed() {
			users[u.ID] = append(users[u.ID], c.ID())
		}
	}
	if err := replace(ctx, state, users); err != nil {
		h.failed("resync", err)
		return err
	}
	return nil
}
