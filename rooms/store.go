package rooms

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Key names a room.
type Key struct {
	Kind, Name string
}

// String returns "kind/name".
func (k Key) String() string { return k.Kind + "/" + k.Name }

// Listing is what the store says of a room: its label, for listing and
// matchmaking.
type Listing struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Label is what the room set (Room.SetLabel): mode, map, region...
	Label map[string]string `json:"label,omitempty"`
	// Players counts the seats taken, held ones included.
	Players int `json:"players"`
	// Max is Kind.MaxPlayers (0: no bound).
	Max int `json:"max"`
	// Open is false for a locked room (Room.Lock).
	Open bool `json:"open"`
	// Node is the address of the node hosting the room ("" until it is
	// first activated).
	Node string `json:"node,omitempty"`
}

// Store keeps what outlives a room's activation: its snapshot, under a
// fencing epoch; its listing; and matchmaking's seat reservations. The
// MemoryStore is the single-node default; a cluster uses a shared one (the
// Redis store of package cluster). RunStoreContract (package roomstest)
// holds implementations to the same behaviour. Every method is safe for
// concurrent use.
type Store interface {
	// Claim makes owner (a node address) the room's current activation: it
	// raises the room's epoch and returns the new epoch and the last
	// snapshot (nil if none). If the room is held by an activation of
	// another owner that has not released it, Claim fails with a *HeldError
	// unless force is set: the caller waits for that activation to hand
	// over, or forces when the holder's node is gone.
	Claim(ctx context.Context, key Key, owner string, force bool) (epoch int64, snapshot []byte, err error)
	// Save stores snapshot if epoch is still the room's; otherwise it
	// fails with ErrFenced and stores nothing. Save, Release, Delete and
	// Publish fail with ErrLost when the store holds nothing of the room.
	Save(ctx context.Context, key Key, epoch int64, snapshot []byte) error
	// Release ends the activation of epoch (its last snapshot saved): the
	// next Claim needs no force. It fails with ErrFenced for an old epoch.
	Release(ctx context.Context, key Key, epoch int64) error
	// Delete forgets the room (snapshot and listing) if epoch is still its.
	// The room's epoch is kept for a day (a tombstone), so that a stale
	// activation cannot write to the next room of that name.
	Delete(ctx context.Context, key Key, epoch int64) error
	// Publish sets the room's listing, if epoch is still its, and drops the
	// reservations the room has used.
	Publish(ctx context.Context, key Key, epoch int64, l Listing, used []string) error
	// List returns the listings of kind, sorted by name.
	List(ctx context.Context, kind string) ([]Listing, error)
	// Reserve holds a seat for ttl in an open room of kind whose label has
	// every key and value of filter and which has a free seat counting the
	// seats already reserved (the fullest such room, then the first by
	// name), or else lists newName as a new room of kind with at most max
	// seats and reserves there. It returns the room's name and the
	// reservation, which a join hands the room.
	Reserve(ctx context.Context, kind string, filter map[string]string, newName string, max int, ttl time.Duration) (name, reservation string, err error)
}

// ErrFenced: a newer activation of the room has claimed it; this one must
// stop without writing.
var ErrFenced = errors.New("rooms: a newer activation holds the room")

// ErrLost: the store holds nothing of the room (it lost its data, or the
// room's keys expired): no activation holds it, and the writer may Claim it
// again. A room whose store restarted empty does so and runs on.
var ErrLost = errors.New("rooms: the store has lost the room")

// HeldError is Claim's answer when another node's activation holds the room.
type HeldError struct {
	Owner string // the holder's node address
}

func (e *HeldError) Error() string { return "rooms: room held by an activation on " + e.Owner }

// MemoryStore is a Store in this process's memory: the single-node default,
// where a room's snapshot serves its restarts.
type MemoryStore struct {
	mu    sync.Mutex
	rooms map[Key]*memRoom
	now   func() time.Time
}

type memRoom struct {
	epoch    int64
	owner    string
	active   bool
	snapshot []byte
	listing  *Listing             // nil until published or reserved
	pending  map[string]time.Time // reservation → expiry
	deleted  time.Time            // a tombstone since then
}

// tombstoneTTL is how long a deleted room's epoch is kept.
const tombstoneTTL = 24 * time.Hour

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{rooms: make(map[Key]*memRoom), now: time.Now}
}

func (s *MemoryStore) room(key Key) *memRoom {
	r := s.rooms[key]
	if r == nil {
		r = &memRoom{pending: map[string]time.Time{}}
		s.rooms[key] = r
	}
	return r
}

// Claim implements Store.
func (s *MemoryStore) Claim(_ context.Context, key Key, owner string, force bool) (int64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.room(key)
	if r.active && r.owner != owner && !force {
		return 0, nil, &HeldError{Owner: r.owner}
	}
	r.epoch++
	r.owner, r.active, r.deleted = owner, true, time.Time{}
	return r.epoch, slices.Clone(r.snapshot), nil
}

// current returns the room if epoch is its current one.
func (s *MemoryStore) current(key Key, epoch int64) (*memRoom, error) {
	r := s.rooms[key]
	switch {
	case r == nil || r.epoch == 0:
		return nil, ErrLost
	case r.epoch != epoch || !r.deleted.IsZero():
		return nil, ErrFenced
	}
	return r, nil
}

// Save implements Store.
func (s *MemoryStore) Save(_ context.Context, key Key, epoch int64, snapshot []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.current(key, epoch)
	if err != nil {
		return err
	}
	r.snapshot = slices.Clone(snapshot)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key Key, epoch int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.current(key, epoch)
	if err != nil {
		return err
	}
	r.active = false
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(_ context.Context, key Key, epoch int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.current(key, epoch)
	if err != nil {
		return err
	}
	r.active, r.snapshot, r.listing, r.deleted = false, nil, nil, s.now()
	clear(r.pending)
	return nil
}

// Publish implements Store.
func (s *MemoryStore) Publish(_ context.Context, key Key, epoch int64, l Listing, used []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.current(key, epoch)
	if err != nil {
		return err
	}
	l.Kind, l.Name, l.Label = key.Kind, key.Name, maps.Clone(l.Label)
	r.listing = &l
	for _, id := range used {
		delete(r.pending, id)
	}
	return nil
}

// List implements Store.
func (s *MemoryStore) List(_ context.Context, kind string) ([]Listing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(kind)
	var out []Listing
	for key, r := range s.rooms {
		if key.Kind == kind && r.listing != nil {
			l := *r.listing
			l.Label = maps.Clone(l.Label)
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Listing) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// prune drops expired reservations, and the listings of rooms that were
// only reserved, never activated, and whose reservations all expired.
func (s *MemoryStore) prune(kind string) {
	now := s.now()
	for key, r := range s.rooms {
		if key.Kind != kind {
			continue
		}
		for id, exp := range r.pending {
			if !now.Before(exp) {
				delete(r.pending, id)
			}
		}
		if (r.epoch == 0 && len(r.pending) == 0) || (!r.deleted.IsZero() && now.Sub(r.deleted) > tombstoneTTL) {
			delete(s.rooms, key)
		}
	}
}

// Reserve implements Store.
func (s *MemoryStore) Reserve(_ context.Context, kind string, filter map[string]string, newName string, max int, ttl time.Duration) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(kind)
	var best *memRoom
	var bestName string
	bestTaken := -1
	for key, r := range s.rooms {
		if key.Kind != kind || r.listing == nil || !r.listing.Open || !matches(r.listing.Label, filter) {
			continue
		}
		taken := r.listing.Players + len(r.pending)
		if r.listing.Max > 0 && taken >= r.listing.Max {
			continue
		}
		if taken > bestTaken || (taken == bestTaken && key.Name < bestName) {
			best, bestName, bestTaken = r, key.Name, taken
		}
	}
	if best == nil {
		key := Key{Kind: kind, Name: newName}
		if r, taken := s.rooms[key]; taken && r.deleted.IsZero() {
			return "", "", fmt.Errorf("rooms: reserve: room %s already exists", key)
		}
		best, bestName = s.room(key), newName
		best.listing = &Listing{Kind: kind, Name: newName, Label: maps.Clone(filter), Max: max, Open: true}
	}
	id := newReservation()
	best.pending[id] = s.now().Add(ttl)
	return bestName, id, nil
}

// matches reports whether label has every key and value of filter.
func matches(label, filter map[string]string) bool {
	for k, v := range filter {
		if label[k] != v {
			return false
		}
	}
	return true
}

func newReservation() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
