package wsactor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/groupstest"
	"github.com/wsactor/wsactor/groups/redisdir"
	"github.com/wsactor/wsactor/internal/redistest"
)

// presenceView is a member's list of a group kept the way PresenceEvent
// tells clients to: a listing taken after joining, then every event in the
// order received, those received before the listing applied after it.
type presenceView struct {
	listed  bool
	members map[wsactor.ID]groups.Member
	early   []groups.PresenceEvent
}

func (v *presenceView) listing(ms []groups.Member) {
	v.listed = true
	v.members = make(map[wsactor.ID]groups.Member, len(ms))
	for _, m := range ms {
		v.members[m.ID] = m
	}
	for _, ev := range v.early {
		v.apply(ev)
	}
	v.early = nil
}

func (v *presenceView) event(ev groups.PresenceEvent) {
	if !v.listed {
		v.early = append(v.early, ev)
		return
	}
	v.apply(ev)
}

func (v *presenceView) apply(ev groups.PresenceEvent) {
	for _, m := range ev.Leaves {
		delete(v.members, m.ID)
	}
	for _, m := range ev.Joins {
		v.members[m.ID] = m
	}
}

// equals reports whether the view holds exactly ms, with their users and meta.
func (v *presenceView) equals(ms []groups.Member) bool {
	if !v.listed || len(v.members) != len(ms) {
		return false
	}
	for _, m := range ms {
		got, ok := v.members[m.ID]
		if !ok || got.User != m.User || !maps.Equal(got.Meta, m.Meta) {
			return false
		}
	}
	return true
}

// watcher reads a member's messages on a goroutine of its own until the
// connection ends: presence events (kept whole, or only counted when lists
// is false), "members" listings, and anything else.
type watcher struct {
	lists bool

	mu        sync.Mutex
	view      presenceView
	events    []groups.PresenceEvent // when lists
	nEvents   int
	lastCount int
	others    []string
	err       error
}

// watch starts reading c. A member that joined an empty group needs no
// listing: it hears every join after its own, so listed starts its view
// empty.
func watch(c *websocket.Conn, lists, listed bool) *watcher {
	w := &watcher{lists: lists, lastCount: -1}
	if listed {
		w.view.listing(nil)
	}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.message(b)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) message(b []byte) {
	switch {
	case bytes.HasPrefix(b, []byte("members ")):
		var ms []groups.Member
		if err := json.Unmarshal(b[len("members "):], &ms); err != nil {
			w.others = append(w.others, string(b))
			return
		}
		w.view.listing(ms)
	case bytes.HasPrefix(b, []byte(`{"type":"presence"`)):
		w.nEvents++
		if !w.lists {
			// 2,000 members each read ~1,000 joins: count them, do not decode them.
			w.lastCount = countOf(b)
			return
		}
		var ev groups.PresenceEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			w.others = append(w.others, string(b))
			return
		}
		w.lastCount = ev.Count
		w.events = append(w.events, ev)
		w.view.event(ev)
	default:
		w.others = append(w.others, string(b))
	}
}

// countOf reads an event's "count" (MarshalJSON writes it right after "group").
func countOf(b []byte) int {
	_, rest, ok := bytes.Cut(b, []byte(`,"count":`))
	if !ok {
		return -1
	}
	end := bytes.IndexAny(rest, ",}")
	n, err := strconv.Atoi(string(rest[:max(end, 0)]))
	if err != nil {
		return -1
	}
	return n
}

// state returns a copy of what the watcher has read so far.
func (w *watcher) state() (nEvents, lastCount int, others []string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nEvents, w.lastCount, slices.Clone(w.others), w.err
}

func (w *watcher) viewEquals(ms []groups.Member) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view.equals(ms)
}

func (w *watcher) viewIDs() []wsactor.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.view.members))
}

func (w *watcher) allEvents() []groups.PresenceEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

func members(t *testing.T, hub *groups.Hub, group string) []groups.Member {
	t.Helper()
	ms, err := hub.Members(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Filling a room of 2,000 and emptying it again sends each member one event
// per interval at most (here with lists all along: the large-group threshold
// is above the room), and the members that listed the room hold exactly its
// members at the end of each.
func TestPresenceFillingARoomSendsFewEventsPerMember(t *testing.T) {
	const listers, fill = 5, 2000
	const total = listers + fill
	// Longer than the default: each event costs a delivery per member, and
	// under -race on a busy machine the default's 20,000 deliveries a second
	// would slow the fill; what is tested is that events are one per interval.
	const interval = 500 * time.Millisecond
	opened := make(chan wsactor.ID, total)
	ts, _ := groupServerOpened(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true, PresenceInterval: interval, PresenceLargeGroup: total}}, opened)
	start := time.Now()
	var all, lists []*watcher
	for range listers {
		c, _ := joined(t, ts, opened, "?user=lister", "fill", "lister")
		w := watch(c, true, false)
		write(t, c, websocket.MessageText, "who fill")
		lists, all = append(lists, w), append(all, w)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // OnOpen reports every connection: drain
		for {
			select {
			case <-opened:
			case <-done:
				return
			}
		}
	}()

	conns := make([]*websocket.Conn, fill)
	fillers := make([]*watcher, fill)
	parallel(t, fill, func(i int) error {
		c, err := dialErr(t, ts.url+"/ws", nil)
		if err != nil {
			return err
		}
		conns[i], fillers[i] = c, watch(c, false, false)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		return c.Write(ctx, websocket.MessageText, []byte("join fill m"+strconv.Itoa(i)))
	})
	all = append(all, fillers...)
	// A count can run ahead of the lists: a member that joined just after an
	// event was built is counted in it and listed in the next one.
	waitWithin(t, fillTimeout, "every member to hear the final count, and the listers every join", func() bool {
		for i, w := range all {
			if _, last, _, _ := w.state(); last != total || (i < listers && len(w.viewIDs()) != total) {
				return false
			}
		}
		return true
	})
	// Events are at least an interval apart: this many fit since the start.
	filled := time.Since(start)
	bound := 1 + int(filled/interval)
	most := 0
	for i, w := range all {
		n, _, others, err := w.state()
		most = max(most, n)
		if n > bound {
			t.Errorf("member %d got %d presence events in %v; at most %d fit", i, n, filled, bound)
		}
		if err != nil || (i >= listers && !slices.Equal(others, []string{"ok join"})) {
			t.Fatalf("member %d: other messages %q, error %v", i, others, err)
		}
	}
	t.Logf("%d members joined in %v: at most %d presence events per member (%d fit)", fill, filled, most, bound)
	ms := members(t, ts.Groups(), "fill")
	if len(ms) != total {
		t.Fatalf("%d members, want %d", len(ms), total)
	}
	for i, w := range lists {
		if !w.viewEquals(ms) {
			t.Fatalf("lister %d holds %d members, not the %d listed", i, len(w.viewIDs()), len(ms))
		}
	}
	if st := ts.Stats(); st.ConnectionsOpen != total || st.SlowConsumerCloses != 0 {
		t.Fatalf("members were closed: %+v", st)
	}

	// Everyone but the listers goes, without a word.
	parallel(t, fill, func(i int) error { return conns[i].CloseNow() })
	waitWithin(t, fillTimeout, "the listers to hear that the room emptied", func() bool {
		for _, w := range lists {
			if _, last, _, _ := w.state(); last != listers || len(w.viewIDs()) != listers {
				return false
			}
		}
		return true
	})
	elapsed := time.Since(start)
	bound = 1 + int(elapsed/interval)
	ms = members(t, ts.Groups(), "fill")
	most = 0
	for i, w := range lists {
		n, _, _, err := w.state()
		most = max(most, n)
		if n > bound || err != nil || !w.viewEquals(ms) {
			t.Fatalf("lister %d: %d events in %v (%d fit), error %v, holds %d of %d members", i, n, elapsed, bound, err, len(w.viewIDs()), len(ms))
		}
	}
	t.Logf("filled and emptied in %v: at most %d presence events per lister (%d fit)", elapsed, most, bound)
}

// fillTimeout bounds the waits of the tests that fill a room: thousands of
// connections under -race on a shared machine take longer than testTimeout.
const fillTimeout = time.Minute

// waitWithin is waitFor with its own deadline.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// parallel runs f(0..n-1) from 16 goroutines and fails the test if any fails.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					t.Errorf("%d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// gatedCount is a MemoryDirectory whose first Count waits until released.
// The presence event it is for is held, so every change made meanwhile goes
// into the next event, however fast or slow the machine.
type gatedCount struct {
	*groups.MemoryDirectory
	held    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGatedCount() *gatedCount {
	return &gatedCount{MemoryDirectory: groups.NewMemoryDirectory(), entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (d *gatedCount) Count(ctx context.Context, group string) (int, error) {
	if d.held.CompareAndSwap(false, true) {
		d.entered <- struct{}{}
		<-d.release
	}
	return d.MemoryDirectory.Count(ctx, group)
}

// A member that joins and leaves within one interval is in no event's
// joins; it is in the leaves, and a member that listed the room while it was
// there drops it.
func TestPresenceJoinAndLeaveWithinOneInterval(t *testing.T) {
	dir := newGatedCount()
	t.Cleanup(func() {
		select {
		case <-dir.release:
		default:
			close(dir.release)
		}
	})
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{Directory: dir, PresenceEvents: true}})
	a, aID := joined(t, ts, opened, "", "lobby", "Ann")
	recv(t, dir.entered, "the first event's count") // held until release

	x, xID := joined(t, ts, opened, "", "lobby", "Xavier")
	b, bID := joined(t, ts, opened, "", "lobby", "Bob")
	write(t, b, websocket.MessageText, "who lobby") // Bob lists the room while Xavier is in it
	var listed []groups.Member
	if got := readText(t, b); !strings.HasPrefix(got, "members ") || json.Unmarshal([]byte(got[len("members "):]), &listed) != nil {
		t.Fatalf("who: %q", got)
	}
	if len(listed) != 3 {
		t.Fatalf("Bob listed %v, want Ann, Xavier and Bob", listed)
	}
	write(t, x, websocket.MessageText, "leave lobby")
	if got := readText(t, x); got != "ok leave" {
		t.Fatalf("leave: %q", got)
	}
	_, yID := joined(t, ts, opened, "", "lobby", "Yvonne")
	close(dir.release)

	joins := slices.Sorted(slices.Values([]wsactor.ID{bID, yID}))
	v := presenceView{}
	v.listing(listed)
	for _, c := range []*websocket.Conn{a, b} {
		first := wantPresence(t, c, []wsactor.ID{aID}, nil)
		second := wantPresence(t, c, joins, []wsactor.ID{xID})
		if c == b {
			v.event(first)
			v.event(second)
		}
	}
	if ms := members(t, ts.Groups(), "lobby"); !v.equals(ms) {
		t.Fatalf("Bob's list %v, members %v", slices.Sorted(maps.Keys(v.members)), ms)
	}
}

// The first change in a quiet group goes out at once, even with an interval
// of an hour; the next one waits for the interval (a broadcast sent after it
// arrives first), and groups are batched separately.
func TestPresenceQuietGroupFirstChangeAtOnce(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true, PresenceInterval: time.Hour}})
	a, aID := joined(t, ts, opened, "", "quiet", "Ann")
	wantPresence(t, a, []wsactor.ID{aID}, nil)
	b, bID := joined(t, ts, opened, "", "quiet", "Bob")
	write(t, b, websocket.MessageText, "say quiet marker")
	for _, c := range []*websocket.Conn{a, b} {
		if got := readText(t, c); got != "marker" {
			t.Fatalf("got %q, want the marker: Bob's join must wait for the interval", got)
		}
	}
	write(t, b, websocket.MessageText, "join other Bob")
	if got := readText(t, b); got != "ok join" {
		t.Fatalf("join: %q", got)
	}
	wantPresence(t, b, []wsactor.ID{bID}, nil) // another group, quiet: at once
}

// Above PresenceLargeGroup members, events carry the count only; lists come
// back when the group shrinks.
func TestPresenceCountsOnlyInLargeGroups(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true, PresenceLargeGroup: 3}})
	a, aID := joined(t, ts, opened, "", "big", "a")
	wantPresence(t, a, []wsactor.ID{aID}, nil)
	var conns []*websocket.Conn
	for i := range 4 {
		c, _ := joined(t, ts, opened, "", "big", "m"+strconv.Itoa(i))
		conns = append(conns, c)
	}
	for {
		raw := readText(t, a)
		var ev groups.PresenceEvent
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if ev.Lists != (ev.Count <= 3) {
			t.Fatalf("event %s: lists must be given for 3 members or fewer, and only then", raw)
		}
		if ev.Count == 5 {
			if raw != `{"type":"presence","group":"big","count":5}` {
				t.Fatalf("counts-only event: %s", raw)
			}
			break
		}
	}
	for _, c := range conns[2:] {
		write(t, c, websocket.MessageText, "leave big")
	}
	for {
		ev := nextPresence(t, a)
		if ev.Count == 3 {
			if !ev.Lists || len(ev.Leaves) == 0 {
				t.Fatalf("back to 3 members: %+v, want lists", ev)
			}
			break
		}
	}
}

// Across two nodes sharing a Redis directory: each node sends its own
// changes once, to the members of both; a member that listed the room holds
// its members at the end, counts are cluster-wide, and a dead node's
// departures go out in one event.
func TestPresenceAcrossNodesWithRedis(t *testing.T) {
	r := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	dir := redisdir.New(rdb, redisdir.Options{KeyPrefix: "presence:", Logger: discardLogger()})
	nodes := startNodes(t, 2, wsactor.Options{Groups: wsactor.GroupsOptions{Directory: dir, PresenceEvents: true}})
	start := time.Now()
	var listers []*watcher
	for _, n := range nodes {
		c, _ := n.connect(t)
		w := watch(c, true, false)
		write(t, c, websocket.MessageText, "join xn lister")
		write(t, c, websocket.MessageText, "who xn")
		listers = append(listers, w)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		n := nodes[i%2]
		c, _ := n.connect(t)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_ = c.Write(ctx, websocket.MessageText, []byte("join xn m"+strconv.Itoa(i)))
			switch i % 4 {
			case 1:
				_ = c.Write(ctx, websocket.MessageText, []byte("leave xn"))
			case 2:
				for {
					if _, b, err := c.Read(ctx); err != nil || string(b) == "ok join" {
						break
					}
				}
				_ = c.CloseNow()
			}
		})
	}
	wg.Wait()
	waitFor(t, "both listers to hold the room's members", func() bool {
		ms, err := nodes[0].Groups().Members(context.Background(), "xn")
		return err == nil && len(ms) == 2+20 && listers[0].viewEquals(ms) && listers[1].viewEquals(ms)
	})
	elapsed := time.Since(start)
	bound := 2 * (1 + int(elapsed/groups.DefaultPresenceInterval)) // two nodes send
	for i, w := range listers {
		if n, _, _, err := w.state(); n > bound || err != nil {
			t.Fatalf("lister %d: %d events in %v (at most %d fit), error %v", i, n, elapsed, bound, err)
		}
	}
	for _, n := range nodes {
		if c, err := n.Groups().Count(context.Background(), "xn"); err != nil || c != 22 {
			t.Fatalf("Count on %s = %d, %v; want 22", n.addr, c, err)
		}
	}

	// Twenty members of a dead node, announced by node two: one event each.
	before := make([]int, len(listers))
	for i, w := range listers {
		before[i] = len(w.allEvents())
	}
	var gone []groups.Member
	for i := range 20 {
		gone = append(gone, groups.Member{ID: groupstest.ID("127.0.0.9:1", i), Meta: map[string]string{"name": "ghost"}})
	}
	nodes[1].Groups().AnnounceDepartures(context.Background(), groups.Departures{Conns: 20, Groups: map[string][]groups.Member{"xn": gone}})
	// The event that carries them (an earlier phase's last event may still
	// arrive first).
	departures := func(w *watcher, from int) (groups.PresenceEvent, bool) {
		for _, ev := range w.allEvents()[from:] {
			for _, m := range ev.Leaves {
				if m.Meta["name"] == "ghost" {
					return ev, true
				}
			}
		}
		return groups.PresenceEvent{}, false
	}
	for i, w := range listers {
		waitFor(t, "the departures", func() bool { _, ok := departures(w, before[i]); return ok })
		ev, _ := departures(w, before[i])
		if len(ev.Leaves) != 20 || len(ev.Joins) != 0 || ev.Count != 22 {
			t.Fatalf("lister %d: departures event %+v, want the 20 leaves at once", i, ev)
		}
	}
}

// AnnounceMembers re-announces the node's members, for a node that the
// others were told had left: its groups' members hear them join again.
func TestPresenceAnnounceMembers(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	a, aID := joined(t, ts, opened, "?user=ann", "lobby", "Ann")
	wantPresence(t, a, []wsactor.ID{aID}, nil)
	b, bID := joined(t, ts, opened, "", "lobby", "Bob")
	wantPresence(t, a, []wsactor.ID{bID}, nil)
	wantPresence(t, b, []wsactor.ID{bID}, nil)
	write(t, b, websocket.MessageText, "join kitchen Bob")
	if got := readText(t, b); got != "ok join" {
		t.Fatalf("join: %q", got)
	}
	wantPresence(t, b, []wsactor.ID{bID}, nil)

	ts.Groups().AnnounceMembers()
	both := slices.Sorted(slices.Values([]wsactor.ID{aID, bID}))
	ev := wantPresence(t, a, both, nil)
	for _, m := range ev.Joins {
		if m.ID == aID && (m.User != "ann" || m.Meta["name"] != "Ann") {
			t.Fatalf("Ann re-announced as %+v", m)
		}
	}
	got := map[string]bool{}
	for range 2 { // lobby and kitchen, in either order
		ev := nextPresence(t, b)
		got[ev.Group] = true
	}
	if !got["lobby"] || !got["kitchen"] {
		t.Fatalf("Bob heard re-announcements of %v, want lobby and kitchen", got)
	}
}

// envPresenceFill turns on TestPresenceFillCost with a room size.
const envPresenceFill = "WSACTOR_PRESENCE_FILL"

// TestPresenceFillCost measures what filling a room costs its members with
// the default presence options, for the README: members join as fast as 16
// goroutines can dial, and each counts the messages and bytes it receives.
// It runs only with WSACTOR_PRESENCE_FILL=<members> (at most ~9,000 within
// the process's file descriptors), outside -race:
//
//	WSACTOR_PRESENCE_FILL=5000 go test -run TestPresenceFillCost -v .
func TestPresenceFillCost(t *testing.T) {
	fill, err := strconv.Atoi(os.Getenv(envPresenceFill))
	if err != nil || fill < 2 {
		t.Skip("set " + envPresenceFill + "=<members> to measure")
	}
	opened := make(chan wsactor.ID, fill)
	ts, _ := groupServerOpened(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}}, opened)
	type tally struct{ msgs, bytes, last atomic.Int64 }
	tallies := make([]tally, fill)
	start := time.Now()
	parallel(t, fill, func(i int) error {
		c, err := dialErr(t, ts.url+"/ws", nil)
		if err != nil {
			return err
		}
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				if bytes.HasPrefix(b, []byte(`{"type":"presence"`)) {
					tallies[i].msgs.Add(1)
					tallies[i].bytes.Add(int64(len(b)))
					tallies[i].last.Store(int64(countOf(b)))
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		return c.Write(ctx, websocket.MessageText, []byte("join fill m"+strconv.Itoa(i)))
	})
	waitWithin(t, fillTimeout, "every member to hear the final count", func() bool {
		for i := range tallies {
			if tallies[i].last.Load() != int64(fill) {
				return false
			}
		}
		return true
	})
	elapsed := time.Since(start)
	var msgs, size, most int64
	for i := range tallies {
		msgs += tallies[i].msgs.Load()
		size += tallies[i].bytes.Load()
		most = max(most, tallies[i].msgs.Load())
	}
	for _, i := range []int{0, fill / 2, fill - 1} {
		t.Logf("member %d: %d presence events, %d bytes", i, tallies[i].msgs.Load(), tallies[i].bytes.Load())
	}
	t.Logf("%d members joined in %v: %d presence events (%d bytes) in all, at most %d per member; %+v",
		fill, elapsed.Round(time.Millisecond), msgs, size, most, ts.Stats())
}
