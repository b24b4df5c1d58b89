// Package groups puts connections into named groups (rooms) and indexes
// them by user, so that one call reaches a whole room or every tab of a
// user, and lists who is present.
//
// The Directory interface holds that state. MemoryDirectory is the
// single-node default; a cluster plugs in a shared implementation, and
// RunDirectoryContract holds every implementation to the same behaviour.
// The Hub puts a Directory to work for one server: joins and leaves, automatic
// leave when a connection closes, broadcasts serialized once and fanned out
// through each member's mailbox, presence events batched per group and
// interval (PresenceEvent).
package groups

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/wsactor/wsactor/actors"
)

// Member is a connection in a group.
type Member struct {
	ID actors.ID `json:"id"`
	// User is the authenticated user's ID, or "" for an anonymous connection.
	User string `json:"user,omitempty"`
	// Meta is what the connection chose to show others (a display name...).
	Meta map[string]string `json:"meta,omitempty"`
}

// ErrInvalidGroup is returned for an empty group name or one over MaxGroupLen.
var ErrInvalidGroup = errors.New("wsactor/groups: invalid group name")

// MaxGroupLen bounds group names.
const MaxGroupLen = 256

// ValidGroup reports whether name may name a group.
func ValidGroup(name string) bool { return name != "" && len(name) <= MaxGroupLen }

// Directory stores group membership and the user index. Every method is
// safe for concurrent use. Implementations return members sorted by ID so
// that listings are stable.
type Directory interface {
	// Join adds m to group, or updates its Meta; joined is false if m was
	// already a member.
	Join(ctx context.Context, group string, m Member) (joined bool, err error)
	// Leave removes id from group; left is false if it was not a member.
	Leave(ctx context.Context, group string, id actors.ID) (left bool, err error)
	// LeaveAll removes id from every group and returns them.
	LeaveAll(ctx context.Context, id actors.ID) (groups []string, err error)
	// Members lists group.
	Members(ctx context.Context, group string) ([]Member, error)
	// Count returns how many members group has, without listing them: a
	// Hub asks for every presence event it sends.
	Count(ctx context.Context, group string) (int, error)
	// Groups lists the groups id is in, sorted.
	Groups(ctx context.Context, id actors.ID) ([]string, error)
	// AddUserConn and RemoveUserConn maintain the user → connections index.
	AddUserConn(ctx context.Context, user string, id actors.ID) error
	RemoveUserConn(ctx context.Context, user string, id actors.ID) error
	// UserConns lists a user's connections, sorted.
	UserConns(ctx context.Context, user string) ([]actors.ID, error)
}

// MemoryDirectory is a Directory in this process's memory.
type MemoryDirectory struct {
	mu     sync.RWMutex
	groups map[string]map[actors.ID]Member
	byConn map[actors.ID]*groupSet
	users  map[string]map[actors.ID]struct{}
}

// NewMemoryDirectory returns an empty MemoryDirectory.
func NewMemoryDirectory() *MemoryDirectory {
	return &MemoryDirectory{
		groups: make(map[string]map[actors.ID]Member),
		byConn: make(map[actors.ID]*groupSet),
		users:  make(map[string]map[actors.ID]struct{}),
	}
}

// Join implements Directory.
func (d *MemoryDirectory) Join(_ context.Context, group string, m Member) (bool, error) {
	if !ValidGroup(group) {
		return false, ErrInvalidGroup
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.groups[group]
	if g == nil {
		g = make(map[actors.ID]Member)
		d.groups[group] = g
	}
	_, had := g[m.ID]
	m.Meta = cloneMeta(m.Meta)
	g[m.ID] = m
	gs := d.byConn[m.ID]
	if gs == nil {
		gs = new(groupSet)
		d.byConn[m.ID] = gs
	}
	gs.add(group)
	return !had, nil
}

// Leave implements Directory.
func (d *MemoryDirectory) Leave(_ context.Context, group string, id actors.ID) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leaveLocked(group, id), nil
}

func (d *MemoryDirectory) leaveLocked(group string, id actors.ID) bool {
	g := d.groups[group]
	if _, ok := g[id]; !ok {
		return false
	}
	delete(g, id)
	if len(g) == 0 {
		delete(d.groups, group)
	}
	if gs := d.byConn[id]; gs != nil {
		gs.remove(group)
		if gs.len() == 0 {
			delete(d.byConn, id)
		}
	}
	return true
}

// LeaveAll implements Directory.
func (d *MemoryDirectory) LeaveAll(_ context.Context, id actors.ID) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gs := d.byConn[id]
	if gs == nil {
		return nil, nil
	}
	left := gs.sorted()
	for _, g := range left {
		d.leaveLocked(g, id)
	}
	return left, nil
}

// Members implements Directory.
func (d *MemoryDirectory) Members(_ context.Context, group string) ([]Member, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[group]
	out := make([]Member, 0, len(g))
	for _, m := range g {
		m.Meta = cloneMeta(m.Meta)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return compareIDs(a.ID, b.ID) })
	return out, nil
}

// Count implements Directory.
func (d *MemoryDirectory) Count(_ context.Context, group string) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.groups[group]), nil
}

// Groups implements Directory.
func (d *MemoryDirectory) Groups(_ context.Context, id actors.ID) ([]string, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	gs := d.byConn[id]
	if gs == nil {
		return []string{}, nil
	}
	return gs.sorted(), nil
}

// AddUserConn implements Directory.
func (d *MemoryDirectory) AddUserConn(_ context.Context, user string, id actors.ID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users[user] == nil {
		d.users[user] = make(map[actors.ID]struct{})
	}
	d.users[user][id] = struct{}{}
	return nil
}

// RemoveUserConn implements Directory.
func (d *MemoryDirectory) RemoveUserConn(_ context.Context, user string, id actors.ID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.users[user], id)
	if len(d.users[user]) == 0 {
		delete(d.users, user)
	}
	return nil
}

// UserConns implements Directory.
func (d *MemoryDirectory) UserConns(_ context.Context, user string) ([]actors.ID, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]actors.ID, 0, len(d.users[user]))
	for id := range d.users[user] {
		out = append(out, id)
	}
	slices.SortFunc(out, compareIDs)
	return out, nil
}

func compareIDs(a, b actors.ID) int { return cmp.Compare(a, b) }

func cloneMeta(m map[string]string) map[string]string { return maps.Clone(m) }
