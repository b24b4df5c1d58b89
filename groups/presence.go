package groups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wsactor/wsactor/actors"
)

// EventPresence is the "type" of the messages that tell a group's members
// who joined and left it (Options.PresenceEvents).
const EventPresence = "presence"

// Defaults of the presence options.
const (
	// DefaultPresenceInterval is Options.PresenceInterval's default: a
	// group's members get at most ten presence events a second from each
	// node, and a change waits at most this long to be told (in groups of up
	// to DefaultPresenceLargeGroup members).
	DefaultPresenceInterval = 100 * time.Millisecond
	// DefaultPresenceLargeGroup is Options.PresenceLargeGroup's default.
	DefaultPresenceLargeGroup = 1000
)

// PresenceEvent is the message a group's members receive when its
// membership changes, with Options.PresenceEvents on. Each node sends at most
// one per group per Options.PresenceInterval, with the joins and leaves of
// its own connections in that interval and the departures it announces for
// a dead node (Hub.AnnounceDepartures); the first change in a quiet group
// goes out at once. The events of one node arrive in order.
//
//	{"type":"presence","group":"lobby","count":3,
//	 "joins":[{"id":"<connection ID>","user":"<user ID>","name":"Ann"}],
//	 "leaves":[{"id":"<connection ID>","name":"Bob"}]}
//
// Each entry is a member with its meta fields spread beside "id" and "user"
// (which they cannot override); "user" is left out for anonymous members.
// A connection hears its own join too. A member that joined and left within
// the interval is not in joins, but it is in leaves: a member that listed the
// group meanwhile holds it. One that left and joined again is in both, with
// its new meta.
//
// To keep a list of the group, start from a listing taken after joining
// (Hub.Members) and apply each event in the order received, those that
// arrived before the listing after it: remove the leaves, then add or
// replace the joins; a leave of an ID you do not hold changes nothing.
//
// Large groups get counts only: when the group has more than
// Options.PresenceLargeGroup members, or the interval's changes are more
// than that many, the event has no "joins" and "leaves" keys (Lists is
// false), and events are spaced further apart (see Options.PresenceInterval).
// A list kept from earlier events is then out of date: list the group again
// when events with lists come back.
type PresenceEvent struct {
	// Group is the group whose membership changed.
	Group string
	// Count is how many members the group had across the cluster when the
	// event was sent, as the Directory counted them (it may already include
	// changes that a later event announces: on other nodes, or here when a
	// member joined or left while this event was being built), or -1
	// when the directory could not be read; the JSON then has no "count".
	Count int
	// Lists reports whether the event carries Joins and Leaves. It is false
	// for large groups.
	Lists bool
	// Joins and Leaves are the members that joined and left, sorted by ID,
	// with the user and meta they joined with.
	Joins, Leaves []Member
}

// MarshalJSON encodes the event as documented on the type.
func (e PresenceEvent) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"type":"` + EventPresence + `","group":`)
	if err := writeJSON(&b, e.Group); err != nil {
		return nil, err
	}
	if e.Count >= 0 {
		b.WriteString(`,"count":` + strconv.Itoa(e.Count))
	}
	if e.Lists {
		for i, list := range [][]Member{e.Joins, e.Leaves} {
			b.WriteString([]string{`,"joins":[`, `,"leaves":[`}[i])
			for j, m := range list {
				if j > 0 {
					b.WriteByte(',')
				}
				if err := writeJSON(&b, presenceEntry(m)); err != nil {
					return nil, err
				}
			}
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) error {
	data, err := json.Marshal(v)
	b.Write(data)
	return err
}

// presenceEntry spreads m's meta beside its "id" and "user".
func presenceEntry(m Member) map[string]string {
	e := make(map[string]string, len(m.Meta)+2)
	maps.Copy(e, m.Meta)
	delete(e, "user")
	e["id"] = string(m.ID)
	if m.User != "" {
		e["user"] = m.User
	}
	return e
}

// errNotPresence is returned when decoding a message of another type.
var errNotPresence = errors.New(`wsactor/groups: not a "` + EventPresence + `" message`)

// UnmarshalJSON decodes an event encoded by MarshalJSON, for Go clients and
// tests. Entries' keys other than "id" and "user" become Meta.
func (e *PresenceEvent) UnmarshalJSON(data []byte) error {
	var raw struct {
		Type   string               `json:"type"`
		Group  string               `json:"group"`
		Count  *int                 `json:"count"`
		Joins  *[]map[string]string `json:"joins"`
		Leaves *[]map[string]string `json:"leaves"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if raw.Type != EventPresence {
		return fmt.Errorf("%w: type %q", errNotPresence, raw.Type)
	}
	*e = PresenceEvent{Group: raw.Group, Count: -1, Lists: raw.Joins != nil || raw.Leaves != nil}
	if raw.Count != nil {
		e.Count = *raw.Count
	}
	members := func(entries *[]map[string]string) []Member {
		if entries == nil {
			return nil
		}
		out := make([]Member, 0, len(*entries))
		for _, en := range *entries {
			m := Member{ID: actors.ID(en["id"]), User: en["user"]}
			delete(en, "id")
			delete(en, "user")
			if len(en) > 0 {
				m.Meta = en
			}
			out = append(out, m)
		}
		return out
	}
	e.Joins, e.Leaves = members(raw.Joins), members(raw.Leaves)
	return nil
}

// presence batches a hub's presence changes: per group, the changes of one
// interval go out in one PresenceEvent. The first change in a quiet group
// goes out at once; the ones after it wait until an interval has passed
// since the last event (longer in a large group: see spacing), so a group's
// members get at most one event per interval from this node, however fast
// its members come and go.
//
// Events are built and sent on timer goroutines, never on the goroutine
// that reported the change (a connection's actor, or the node's clean-up):
// they read the directory (Count), which may wait on the network.
type presence struct {
	h        *Hub
	interval time.Duration
	large    int

	mu      sync.Mutex
	groups  map[string]*pendingGroup // groups with changes, a flush, or a flush less than an interval ago
	busy    int                      // flushes running
	idle    *sync.Cond               // signalled when busy drops, for stop
	stopped bool                     // by stop: changes are dropped, nothing is rescheduled
}

// pendingGroup is one group's state in the batcher; guarded by presence.mu.
type pendingGroup struct {
	changes   map[actors.ID]*change
	timer     *time.Timer // while a tick is scheduled
	busy      bool        // while its flush runs: the next waits, so events go out in order
	last      time.Time   // when its last flush started
	lastCount int         // the last count read, or -1
}

// change is what happened to one member during the interval.
type change struct {
	m      Member // with the meta it joined with
	before bool   // a member when the interval began
	now    bool   // a member now
}

func newPresence(h *Hub, interval time.Duration, large int) *presence {
	p := &presence{h: h, interval: interval, large: large, groups: make(map[string]*pendingGroup)}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// record notes that m joined (joined) or left group. The caller orders the
// records of one connection (it holds the connection's lock): the batch must
// see a join and a leave of the same member in the order they happened.
func (p *presence) record(group string, m Member, joined bool) {
	p.recordAll(group, []Member{m}, joined)
}

// recordAll notes that all of ms joined or left group, in the same event.
func (p *presence) recordAll(group string, ms []Member, joined bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || len(ms) == 0 {
		return
	}
	pg := p.groups[group]
	if pg == nil {
		pg = &pendingGroup{lastCount: -1}
		p.groups[group] = pg
	}
	if pg.changes == nil {
		pg.changes = make(map[actors.ID]*change, len(ms))
	}
	for _, m := range ms {
		ch := pg.changes[m.ID]
		if ch == nil {
			ch = &change{before: !joined}
			pg.changes[m.ID] = ch
		}
		ch.m, ch.now = m, joined
	}
	if pg.timer == nil && !pg.busy {
		p.scheduleLocked(group, pg)
	}
}

// scheduleLocked arms group's next tick: a spacing after its last flush, or
// at once if that is past.
func (p *presence) scheduleLocked(group string, pg *pendingGroup) {
	delay := max(time.Until(pg.last.Add(p.spacing(pg.lastCount))), 0)
	pg.timer = time.AfterFunc(delay, func() { p.tick(group, pg) })
}

// spacing is the least time between two events of a group of count
// members: the interval, stretched in proportion above the large-group
// threshold, so that a group's events cost this node at most about
// large/interval deliveries a second (10,000 by default) however big it is.
func (p *presence) spacing(count int) time.Duration {
	if count <= p.large {
		return p.interval
	}
	return time.Duration(int64(p.interval) * int64(count) / int64(p.large))
}

// tick flushes group's changes, or forgets the group when it had none for
// a spacing.
func (p *presence) tick(group string, pg *pendingGroup) {
	p.mu.Lock()
	if p.groups[group] != pg {
		p.mu.Unlock()
		return
	}
	pg.timer = nil
	if pg.busy {
		p.mu.Unlock() // stop is flushing it
		return
	}
	if len(pg.changes) == 0 {
		delete(p.groups, group)
		p.mu.Unlock()
		return
	}
	changes, lastCount := p.takeLocked(pg), pg.lastCount
	p.mu.Unlock()
	count := p.send(group, changes, lastCount)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doneLocked(pg, count)
	if !p.stopped {
		// Flush what came meanwhile a spacing from now, or forget the
		// group then if nothing did: a change in between must wait too.
		p.scheduleLocked(group, pg)
	}
}

// takeLocked starts a flush of pg's changes.
func (p *presence) takeLocked(pg *pendingGroup) map[actors.ID]*change {
	changes := pg.changes
	pg.changes = nil
	pg.busy = true
	pg.last = time.Now()
	p.busy++
	return changes
}

// doneLocked ends a flush started by takeLocked.
func (p *presence) doneLocked(pg *pendingGroup, count int) {
	pg.busy = false
	if count >= 0 {
		pg.lastCount = count
	}
	p.busy--
	p.idle.Broadcast()
}

// send broadcasts one interval's changes to group's members on every node
// and returns the count it read (-1 if it could not). lastCount stands in
// for the count, to choose between lists and counts only, when the
// directory cannot be read.
func (p *presence) send(group string, changes map[actors.ID]*change, lastCount int) int {
	ev := PresenceEvent{Group: group}
	for _, ch := range changes {
		if ch.before || !ch.now {
			ev.Leaves = append(ev.Leaves, ch.m)
		}
		if ch.now {
			ev.Joins = append(ev.Joins, ch.m)
		}
	}
	ctx := context.Background()
	count, err := p.h.dir.Count(ctx, group)
	if err != nil {
		p.h.failed("count", err)
		count = -1
	}
	ev.Count = count
	size := count
	if size < 0 {
		size = lastCount
	}
	ev.Lists = size <= p.large && len(ev.Joins)+len(ev.Leaves) <= p.large
	if !ev.Lists && count < 0 {
		return count // nothing to tell: the next event will have the count
	}
	if ev.Lists {
		byID := func(a, b Member) int { return compareIDs(a.ID, b.ID) }
		slices.SortFunc(ev.Joins, byID)
		slices.SortFunc(ev.Leaves, byID)
	} else {
		ev.Joins, ev.Leaves = nil, nil
	}
	data, err := ev.MarshalJSON()
	if err != nil {
		return count // strings and maps of strings always encode
	}
	_, _ = p.h.Broadcast(ctx, group, actors.Message{Type: actors.MessageText, Data: data})
	return count
}

// stop sends every pending change now and waits for the flushes under way;
// changes reported after it are dropped. The hub stops after its connections
// have closed, so their members elsewhere still hear that they left.
func (p *presence) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for {
		flushed := false
		for group, pg := range p.groups {
			if pg.timer != nil && pg.timer.Stop() {
				pg.timer = nil
			}
			if pg.busy || len(pg.changes) == 0 {
				continue
			}
			changes, lastCount := p.takeLocked(pg), pg.lastCount
			p.mu.Unlock()
			count := p.send(group, changes, lastCount)
			p.mu.Lock()
			p.doneLocked(pg, count)
			flushed = true
			break // the map may have changed while unlocked
		}
		if flushed {
			continue
		}
		if p.busy == 0 {
			return
		}
		p.idle.Wait()
	}
}
