package redisdir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/groupstest"
	"github.com/wsactor/wsactor/internal/redistest"
)

const (
	nodeA = "10.0.0.1:7000"
	nodeB = "10.0.0.2:7000"
)

// newClient returns a client with short timeouts, so that calls fail fast
// while the server is stopped.
func newClient(t testing.TB, s *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		DialTimeout:           300 * time.Millisecond,
		ReadTimeout:           300 * time.Millisecond,
		WriteTimeout:          300 * time.Millisecond,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the outage tests cause many on purpose.
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var prefixes atomic.Int64

// fresh returns a Directory with a key prefix no other test uses.
func fresh(t testing.TB, rdb redis.UniversalClient) *Directory {
	return New(rdb, Options{KeyPrefix: fmt.Sprintf("test%d:", prefixes.Add(1)), Logger: testLogger(t)})
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testCtx bounds every call of a test: a hang fails instead of stalling the run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDirectoryContract(t *testing.T) {
	rdb := newClient(t, redistest.Start(t))
	groupstest.RunDirectoryContract(t, func(t *testing.T) groups.Directory { return fresh(t, rdb) })
}

func TestKeyLayout(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	d := New(rdb, Options{KeyPrefix: "p:", Logger: testLogger(t)})
	a := groupstest.ID(nodeA, 1)
	if _, err := d.Join(ctx, "room:1", groups.Member{ID: a, User: "ann", Meta: map[string]string{"name": "Ann"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.AddUserConn(ctx, "ann", a); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"p:conn:{" + string(a) + "}:groups",
		"p:conn:{" + string(a) + "}:users",
		"p:group:{cm9vbTox}:members", // base64url("room:1")
		"p:node:{MTAuMC4wLjE6NzAwMA}:conns",
		"p:user:{YW5u}:conns",
	}
	if got := keys(t, rdb, "p:*"); !slices.Equal(got, want) {
		t.Fatalf("keys = %q\nwant %q", got, want)
	}
	if v, err := rdb.HGet(ctx, want[2], string(a)).Result(); err != nil || v != `{"user":"ann","meta":{"name":"Ann"}}` {
		t.Fatalf("member value = %s, %v", v, err)
	}
	// A connection that leaves everything leaves nothing behind.
	if _, err := d.LeaveAll(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveUserConn(ctx, "ann", a); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, rdb, "p:*"); len(got) != 0 {
		t.Fatalf("keys left after leaving everything: %q", got)
	}
}

func keys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ks, err := rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ks)
	return ks
}

func TestOddNamesDoNotCollide(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	d := fresh(t, rdb)
	names := []string{
		"a", "a}", "{a}", "a}:members", "a:b", "a b", "a}:members:x", "}", "{", ":", "{}", "*", "?",
		"ünïcødé", "日本語", "emoji 🎉", "nul\x00byte", "\xff\xfe", strings.Repeat("z", groups.MaxGroupLen),
	}
	for i, g := range names {
		id := groupstest.ID(nodeA, i)
		if joined, err := d.Join(ctx, g, groups.Member{ID: id, User: fmt.Sprint("u", i)}); err != nil || !joined {
			t.Fatalf("Join(%q) = %v, %v", g, joined, err)
		}
		// Users are opaque too: use the group name as a user ID.
		if err := d.AddUserConn(ctx, g, id); err != nil {
			t.Fatal(err)
		}
	}
	for i, g := range names {
		id := groupstest.ID(nodeA, i)
		ms, err := d.Members(ctx, g)
		if err != nil || len(ms) != 1 || ms[0].ID != id || ms[0].User != fmt.Sprint("u", i) {
			t.Fatalf("Members(%q) = %+v, %v; want only %s", g, ms, err, id)
		}
		if gs, err := d.Groups(ctx, id); err != nil || !slices.Equal(gs, []string{g}) {
			t.Fatalf("Groups(%s) = %q, %v; want [%q]", id, gs, err, g)
		}
		if ids, err := d.UserConns(ctx, g); err != nil || !slices.Equal(ids, []actors.ID{id}) {
			t.Fatalf("UserConns(%q) = %v, %v", g, ids, err)
		}
	}
	// LeaveAll decodes the names it returns.
	a := groupstest.ID(nodeA, 1000)
	for _, g := range names {
		mustJoin(t, d, g, groups.Member{ID: a})
	}
	left, err := d.LeaveAll(ctx, a)
	if want := slices.Sorted(slices.Values(names)); err != nil || !slices.Equal(left, want) {
		t.Fatalf("LeaveAll = %q, %v\nwant %q", left, err, want)
	}
}

func TestTwoNodesShareOneRedis(t *testing.T) {
	ctx := testCtx(t)
	s := redistest.Start(t)
	// Each node has its own client, as separate processes would.
	dA := New(newClient(t, s), Options{Logger: testLogger(t)})
	dB := New(newClient(t, s), Options{Logger: testLogger(t)})
	a1, b1, b2 := groupstest.ID(nodeA, 1), groupstest.ID(nodeB, 1), groupstest.ID(nodeB, 2)

	mustJoin(t, dA, "lobby", groups.Member{ID: a1, User: "ann", Meta: map[string]string{"name": "Ann"}})
	mustJoin(t, dB, "lobby", groups.Member{ID: b1, User: "bob"})
	mustAddUser(t, dA, "ann", a1)
	mustAddUser(t, dB, "ann", b2)
	mustAddUser(t, dB, "bob", b1)

	want := []groups.Member{{ID: a1, User: "ann", Meta: map[string]string{"name": "Ann"}}, {ID: b1, User: "bob"}}
	if b1 < a1 {
		slices.Reverse(want)
	}
	for _, d := range []*Directory{dA, dB} {
		wantMembers(t, d, "lobby", want)
		wantUserConns(t, d, "ann", sortedIDs(a1, b2))
	}
	// Joining again from the other node is an update, not a new member.
	if joined, err := dB.Join(ctx, "lobby", groups.Member{ID: a1, User: "ann", Meta: map[string]string{"name": "Annie"}}); err != nil || joined {
		t.Fatalf("Join from the other node = %v, %v; want an update", joined, err)
	}
	if left, err := dB.Leave(ctx, "lobby", a1); err != nil || !left {
		t.Fatalf("Leave from the other node = %v, %v", left, err)
	}
	wantMembers(t, dA, "lobby", []groups.Member{{ID: b1, User: "bob"}})
}

func TestRemoveNode(t *testing.T) {
	ctx := testCtx(t)
	s := redistest.Start(t)
	rdb := newClient(t, s)
	dA := fresh(t, rdb)
	dB := New(newClient(t, s), Options{KeyPrefix: dA.prefix, Logger: testLogger(t)})

	var aIDs, bIDs []actors.ID
	for i := range 3 {
		aIDs = append(aIDs, groupstest.ID(nodeA, i))
		bIDs = append(bIDs, groupstest.ID(nodeB, i))
	}
	for i := range 3 {
		mustJoin(t, dA, "lobby", groups.Member{ID: aIDs[i], User: "ann"})
		mustJoin(t, dA, "dev", groups.Member{ID: aIDs[i], User: "ann"})
		mustAddUser(t, dA, "ann", aIDs[i])
		mustJoin(t, dB, "lobby", groups.Member{ID: bIDs[i], User: "ann"})
		mustAddUser(t, dB, "ann", bIDs[i])
	}
	mustAddUser(t, dA, "carol", aIDs[0]) // in the user index only

	// Several survivors notice the death at once.
	var (
		mu  sync.Mutex
		all groups.Departures
		wg  sync.WaitGroup
	)
	for range 3 {
		d := New(newClient(t, s), Options{KeyPrefix: dA.prefix, Logger: testLogger(t)})
		wg.Go(func() {
			got, err := d.RemoveNode(ctx, nodeA, "")
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			all.Conns += got.Conns
			for g, ms := range got.Groups {
				if all.Groups == nil {
					all.Groups = map[string][]groups.Member{}
				}
				all.Groups[g] = append(all.Groups[g], ms...)
			}
		})
	}
	wg.Wait()
	if all.Conns != 3 {
		t.Fatalf("RemoveNode removed %d connections in all, want 3", all.Conns)
	}
	// Each membership is reported once, by the call that ended it, with
	// the user it joined with: what the leaves of presence events are made of.
	var anns []groups.Member
	for _, id := range sortedIDs(aIDs...) {
		anns = append(anns, groups.Member{ID: id, User: "ann"})
	}
	wantDepartures(t, all, map[string][]groups.Member{"lobby": anns, "dev": anns})
	var want []groups.Member
	for _, id := range sortedIDs(bIDs...) {
		want = append(want, groups.Member{ID: id, User: "ann"})
	}
	wantMembers(t, dB, "lobby", want)
	wantMembers(t, dB, "dev", nil)
	wantUserConns(t, dB, "ann", sortedIDs(bIDs...))
	wantUserConns(t, dB, "carol", nil)
	for _, id := range aIDs {
		wantGroups(t, dB, id, nil)
	}
	for _, id := range bIDs {
		wantGroups(t, dB, id, []string{"lobby"})
	}
	for _, id := range aIDs {
		if ks := keys(t, rdb, dA.prefix+"conn:{"+string(id)+"}:*"); len(ks) != 0 {
			t.Fatalf("keys of a removed connection remain: %q", ks)
		}
	}
	if again, err := dB.RemoveNode(ctx, nodeA, ""); err != nil || again.Conns != 0 || len(again.Groups) != 0 {
		t.Fatalf("RemoveNode again = %+v, %v; want nothing removed", again, err)
	}
}

// A process restarted on the same address replaces its predecessor's
// entries, reporting them as departures; the predecessor's membership expires
// later, and the RemoveNode the survivors then run for it must leave the new
// process's connections alone.
func TestRemoveNodeLeavesANewerProcessAlone(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	d := fresh(t, rdb)
	old, cur := groupstest.ID(nodeA, 1), groupstest.ID(nodeA, 2)

	if _, err := d.ReplaceNode(ctx, nodeA, NodeState{Owner: "process-1", Groups: map[string][]groups.Member{"lobby": {{ID: old, User: "ann"}}}}); err != nil {
		t.Fatal(err)
	}
	gone, err := d.ReplaceNode(ctx, nodeA, NodeState{Owner: "process-2", Groups: map[string][]groups.Member{"lobby": {{ID: cur, User: "bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	wantDepartures(t, gone, map[string][]groups.Member{"lobby": {{ID: old, User: "ann"}}})

	gone, err = d.RemoveNode(ctx, nodeA, "process-1")
	if err != nil || gone.Conns != 0 || len(gone.Groups) != 0 {
		t.Fatalf("RemoveNode of the earlier process = %+v, %v; want nothing removed", gone, err)
	}
	wantMembers(t, d, "lobby", []groups.Member{{ID: cur, User: "bob"}})

	gone, err = d.RemoveNode(ctx, nodeA, "process-2")
	if err != nil || gone.Conns != 1 {
		t.Fatalf("RemoveNode of the current process = %+v, %v; want its connection removed", gone, err)
	}
	wantDepartures(t, gone, map[string][]groups.Member{"lobby": {{ID: cur, User: "bob"}}})
	if ks := keys(t, rdb, d.prefix+"*"); len(ks) != 0 {
		t.Fatalf("keys left after the node was removed: %q", ks)
	}
}

func TestReplaceNodeAfterRedisRestart(t *testing.T) {
	ctx := testCtx(t)
	s := redistest.Start(t)
	dA := New(newClient(t, s), Options{Logger: testLogger(t)})
	dB := New(newClient(t, s), Options{Logger: testLogger(t)})
	a1, a2, b1 := groupstest.ID(nodeA, 1), groupstest.ID(nodeA, 2), groupstest.ID(nodeB, 1)
	annMeta := map[string]string{"name": "Ann"}

	mustJoin(t, dA, "lobby", groups.Member{ID: a1, User: "ann", Meta: annMeta})
	mustJoin(t, dA, "dev", groups.Member{ID: a2})
	mustAddUser(t, dA, "ann", a1)
	mustJoin(t, dB, "lobby", groups.Member{ID: b1})
	epoch, err := dA.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := dB.Epoch(ctx); err != nil || again != epoch {
		t.Fatalf("Epoch = %q, %v; want %q, as long as Redis keeps its data", again, err, epoch)
	}

	s.Stop()
	if _, err := dA.Join(ctx, "lobby", groups.Member{ID: a2}); err == nil {
		t.Fatal("Join with Redis stopped succeeded")
	}
	s.Restart() // empty
	waitUp(t, dA)
	waitUp(t, dB)
	if now, err := dA.Epoch(ctx); err != nil || now == epoch {
		t.Fatalf("Epoch after losing the data = %q, %v; want a new one", now, err)
	}
	wantMembers(t, dA, "lobby", nil)

	// Each node writes back what it holds in memory.
	// Redis lost the data, so no membership is known to have ended.
	gone, err := dA.ReplaceNode(ctx, nodeA, NodeState{
		Groups: map[string][]groups.Member{"lobby": {{ID: a1, User: "ann", Meta: annMeta}}, "dev": {{ID: a2}}},
		Users:  map[string][]actors.ID{"ann": {a1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDepartures(t, gone, nil)
	if _, err := dB.ReplaceNode(ctx, nodeB, NodeState{Groups: map[string][]groups.Member{"lobby": {{ID: b1}}}}); err != nil {
		t.Fatal(err)
	}
	want := []groups.Member{{ID: a1, User: "ann", Meta: annMeta}, {ID: b1}}
	if b1 < a1 {
		slices.Reverse(want)
	}
	wantMembers(t, dB, "lobby", want)
	wantMembers(t, dB, "dev", []groups.Member{{ID: a2}})
	wantGroups(t, dB, a1, []string{"lobby"})
	wantUserConns(t, dB, "ann", []actors.ID{a1})
}

func TestReplaceNodeRemovesStaleEntries(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	d := fresh(t, rdb)
	a1, a2, a3, b1 := groupstest.ID(nodeA, 1), groupstest.ID(nodeA, 2), groupstest.ID(nodeA, 3), groupstest.ID(nodeB, 1)

	// What Redis holds from before an outage...
	mustJoin(t, d, "lobby", groups.Member{ID: a1, User: "ann", Meta: map[string]string{"name": "Ann"}})
	mustJoin(t, d, "dev", groups.Member{ID: a1, User: "ann"})
	mustJoin(t, d, "lobby", groups.Member{ID: a2})
	mustAddUser(t, d, "ann", a1)
	mustAddUser(t, d, "ann", a2)
	mustJoin(t, d, "lobby", groups.Member{ID: b1, User: "ann"})
	mustAddUser(t, d, "ann", b1)

	// ...and the node's truth after it: a1 left dev and renamed itself, a2
	// closed, a3 opened.
	state := NodeState{
		Groups: map[string][]groups.Member{
			"lobby": {{ID: a1, User: "ann", Meta: map[string]string{"name": "Annie"}}},
			"dev":   {{ID: a3, User: "carol"}},
		},
		Users: map[string][]actors.ID{"ann": {a1}, "carol": {a3}},
	}
	gone, err := d.ReplaceNode(ctx, nodeA, state)
	if err != nil {
		t.Fatal(err)
	}
	// a1's rename is no departure; a2's close and a1's leave are.
	if gone.Conns != 1 {
		t.Fatalf("ReplaceNode removed %d connections, want 1 (a2)", gone.Conns)
	}
	wantDepartures(t, gone, map[string][]groups.Member{
		"lobby": {{ID: a2}},
		"dev":   {{ID: a1, User: "ann"}},
	})
	lobby := []groups.Member{{ID: a1, User: "ann", Meta: map[string]string{"name": "Annie"}}, {ID: b1, User: "ann"}}
	if b1 < a1 {
		slices.Reverse(lobby)
	}
	wantMembers(t, d, "lobby", lobby)
	wantMembers(t, d, "dev", []groups.Member{{ID: a3, User: "carol"}})
	wantGroups(t, d, a1, []string{"lobby"})
	wantGroups(t, d, a2, nil)
	wantUserConns(t, d, "ann", sortedIDs(a1, b1))
	wantUserConns(t, d, "carol", []actors.ID{a3})
	if ids, err := rdb.SMembers(ctx, d.nodeKey(nodeA)).Result(); err != nil || !slices.Equal(slices.Sorted(slices.Values(ids)), []string{string(a1), string(a3)}) {
		t.Fatalf("node set = %v, %v", ids, err)
	}
	// Replacing with the same state changes nothing.
	if gone, err := d.ReplaceNode(ctx, nodeA, state); err != nil {
		t.Fatal(err)
	} else {
		wantDepartures(t, gone, nil)
	}
	wantMembers(t, d, "lobby", lobby)

	// Another node's connections are refused, and nothing is written.
	_, err = d.ReplaceNode(ctx, nodeA, NodeState{Groups: map[string][]groups.Member{"lobby": {{ID: b1}}}})
	if err == nil || !strings.Contains(err.Error(), "belongs to node") {
		t.Fatalf("ReplaceNode with another node's connection: %v", err)
	}
	_, err = d.ReplaceNode(ctx, nodeA, NodeState{Groups: map[string][]groups.Member{"": {{ID: a1}}}})
	if !errors.Is(err, groups.ErrInvalidGroup) {
		t.Fatalf("ReplaceNode with an empty group name: %v", err)
	}
	wantMembers(t, d, "lobby", lobby)
}

func TestReplaceNodeInBatches(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	d := fresh(t, rdb)
	const n = 3000 // several script calls' worth
	state := NodeState{Groups: map[string][]groups.Member{}, Users: map[string][]actors.ID{}}
	for i := range n {
		id := groupstest.ID(nodeA, i)
		g := fmt.Sprintf("room%d", i%7)
		state.Groups[g] = append(state.Groups[g], groups.Member{ID: id, User: "u"})
		state.Groups["all"] = append(state.Groups["all"], groups.Member{ID: id, User: "u"})
		state.Users["u"] = append(state.Users["u"], id)
	}
	if _, err := d.ReplaceNode(ctx, nodeA, state); err != nil {
		t.Fatal(err)
	}
	if ms, err := d.Members(ctx, "all"); err != nil || len(ms) != n {
		t.Fatalf("Members(all) = %d, %v; want %d", len(ms), err, n)
	}
	if ids, err := d.UserConns(ctx, "u"); err != nil || len(ids) != n {
		t.Fatalf("UserConns = %d, %v; want %d", len(ids), err, n)
	}
	// An empty state removes the node's every connection, in batches too.
	if gone, err := d.ReplaceNode(ctx, nodeA, NodeState{}); err != nil || gone.Conns != n || len(gone.Groups["all"]) != n {
		t.Fatalf("ReplaceNode(empty) = %d connections, %d left all, %v; want %d", gone.Conns, len(gone.Groups["all"]), err, n)
	}
	if ks := keys(t, rdb, d.prefix+"*"); len(ks) != 0 {
		t.Fatalf("%d keys left, e.g. %q", len(ks), ks[0])
	}
	// RemoveNode's batches.
	if _, err := d.ReplaceNode(ctx, nodeA, state); err != nil {
		t.Fatal(err)
	}
	if gone, err := d.RemoveNode(ctx, nodeA, ""); err != nil || gone.Conns != n || len(gone.Groups["all"]) != n {
		t.Fatalf("RemoveNode = %d connections, %d left all, %v; want %d", gone.Conns, len(gone.Groups["all"]), err, n)
	}
	if ks := keys(t, rdb, d.prefix+"*"); len(ks) != 0 {
		t.Fatalf("%d keys left, e.g. %q", len(ks), ks[0])
	}
}

func TestInvalidIDs(t *testing.T) {
	ctx := testCtx(t)
	d := fresh(t, newClient(t, redistest.Start(t)))
	bad := actors.ID("not-an-id")
	if _, err := d.Join(ctx, "lobby", groups.Member{ID: bad}); !errors.Is(err, actors.ErrInvalidID) {
		t.Fatalf("Join with an invalid ID: %v", err)
	}
	if err := d.AddUserConn(ctx, "ann", bad); !errors.Is(err, actors.ErrInvalidID) {
		t.Fatalf("AddUserConn with an invalid ID: %v", err)
	}
	if left, err := d.Leave(ctx, "lobby", bad); err != nil || left {
		t.Fatalf("Leave = %v, %v", left, err)
	}
	if gs, err := d.LeaveAll(ctx, bad); err != nil || len(gs) != 0 {
		t.Fatalf("LeaveAll = %v, %v", gs, err)
	}
	if err := d.RemoveUserConn(ctx, "ann", bad); err != nil {
		t.Fatal(err)
	}
}

// TestRedisDown checks that every method fails, with context, while Redis
// is stopped, rather than hanging; and that the directory works again once
// it is back.
func TestRedisDown(t *testing.T) {
	s := redistest.Start(t)
	d := fresh(t, newClient(t, s))
	a := groupstest.ID(nodeA, 1)
	mustJoin(t, d, "lobby", groups.Member{ID: a})
	s.Stop()

	failAll(t, d)

	s.Restart()
	waitUp(t, d)
	mustJoin(t, d, "lobby", groups.Member{ID: a})
	wantMembers(t, d, "lobby", []groups.Member{{ID: a}})
}

// TestRedisUnresponsive checks the worse outage: a server that accepts
// connections and never answers (stopped process, black-holed route). The
// client's read timeout, not the test's context, must end every call.
func TestRedisUnresponsive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	t.Cleanup(held.Wait) // after closing l: cleanups run last first
	t.Cleanup(func() { l.Close() })
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	})
	rdb := redis.NewClient(&redis.Options{
		Addr:                  l.Addr().String(),
		DialTimeout:           300 * time.Millisecond,
		ReadTimeout:           300 * time.Millisecond,
		WriteTimeout:          300 * time.Millisecond,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rdb.Close() })
	failAll(t, fresh(t, rdb))
}

// failAll calls every method and wants each to fail, with context, well
// before a generous deadline.
func failAll(t *testing.T, d *Directory) {
	t.Helper()
	a := groupstest.ID(nodeA, 1)
	calls := map[string]func(context.Context) error{
		"Join":           func(ctx context.Context) error { _, err := d.Join(ctx, "lobby", groups.Member{ID: a}); return err },
		"Leave":          func(ctx context.Context) error { _, err := d.Leave(ctx, "lobby", a); return err },
		"LeaveAll":       func(ctx context.Context) error { _, err := d.LeaveAll(ctx, a); return err },
		"Members":        func(ctx context.Context) error { _, err := d.Members(ctx, "lobby"); return err },
		"Groups":         func(ctx context.Context) error { _, err := d.Groups(ctx, a); return err },
		"AddUserConn":    func(ctx context.Context) error { return d.AddUserConn(ctx, "ann", a) },
		"RemoveUserConn": func(ctx context.Context) error { return d.RemoveUserConn(ctx, "ann", a) },
		"UserConns":      func(ctx context.Context) error { _, err := d.UserConns(ctx, "ann"); return err },
		"RemoveNode":     func(ctx context.Context) error { _, err := d.RemoveNode(ctx, nodeB, ""); return err },
		"ReplaceNode":    func(ctx context.Context) error { _, err := d.ReplaceNode(ctx, nodeA, NodeState{}); return err },
		"Epoch":          func(ctx context.Context) error { _, err := d.Epoch(ctx); return err },
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		start := time.Now()
		err := calls[name](ctx)
		expired := ctx.Err()
		cancel()
		switch {
		case err == nil:
			t.Fatalf("%s succeeded with Redis unreachable", name)
		case expired != nil:
			t.Fatalf("%s ran until the test's deadline: %v", name, err)
		case !strings.HasPrefix(err.Error(), "redisdir: "):
			t.Errorf("%s error lacks context: %v", name, err)
		}
		t.Logf("%s failed after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
	}
}

// waitUp waits for the client to reconnect: after dial failures, go-redis
// probes in the background before it dials on demand again.
func waitUp(t testing.TB, d *Directory) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := d.rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis not reachable again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func BenchmarkDirectory(b *testing.B) {
	rdb := newClient(b, redistest.Start(b))
	d := fresh(b, rdb)
	ctx := context.Background()
	// A room with others in it, as a connection would find it.
	for i := range 100 {
		if _, err := d.Join(ctx, "lobby", groups.Member{ID: groupstest.ID(nodeB, i), User: "u", Meta: map[string]string{"name": "x"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Join+LeaveAll", func(b *testing.B) {
		i := 0
		for b.Loop() {
			id := groupstest.ID(nodeA, i)
			i++
			if _, err := d.Join(ctx, "lobby", groups.Member{ID: id, User: "u"}); err != nil {
				b.Fatal(err)
			}
			if _, err := d.LeaveAll(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Members/100", func(b *testing.B) {
		for b.Loop() {
			if ms, err := d.Members(ctx, "lobby"); err != nil || len(ms) != 100 {
				b.Fatal(len(ms), err)
			}
		}
	})
	b.Run("Join/parallel", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := groupstest.ID(nodeA, int(n.Add(1)))
				if _, err := d.Join(ctx, "busy", groups.Member{ID: id}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func mustJoin(t testing.TB, d *Directory, g string, m groups.Member) {
	t.Helper()
	if _, err := d.Join(context.Background(), g, m); err != nil {
		t.Fatal(err)
	}
}

func mustAddUser(t testing.TB, d *Directory, user string, id actors.ID) {
	t.Helper()
	if err := d.AddUserConn(context.Background(), user, id); err != nil {
		t.Fatal(err)
	}
}

func wantMembers(t testing.TB, d *Directory, g string, want []groups.Member) {
	t.Helper()
	got, err := d.Members(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, func(x, y groups.Member) bool {
		return x.ID == y.ID && x.User == y.User && maps.Equal(x.Meta, y.Meta)
	}) {
		t.Fatalf("Members(%q) = %+v\nwant %+v", g, got, want)
	}
}

func wantGroups(t testing.TB, d *Directory, id actors.ID, want []string) {
	t.Helper()
	got, err := d.Groups(context.Background(), id)
	if err != nil || !slices.Equal(got, want) && len(got)+len(want) > 0 {
		t.Fatalf("Groups(%s) = %q, %v; want %q", id, got, err, want)
	}
}

func wantUserConns(t testing.TB, d *Directory, user string, want []actors.ID) {
	t.Helper()
	got, err := d.UserConns(context.Background(), user)
	if err != nil || !slices.Equal(got, want) && len(got)+len(want) > 0 {
		t.Fatalf("UserConns(%q) = %v, %v; want %v", user, got, err, want)
	}
}

func sortedIDs(ids ...actors.ID) []actors.ID { return slices.Sorted(slices.Values(ids)) }

// wantDepartures checks d's memberships, in any order, against want.
func wantDepartures(t *testing.T, d groups.Departures, want map[string][]groups.Member) {
	t.Helper()
	got := make(map[string][]groups.Member, len(d.Groups))
	for g, ms := range d.Groups {
		got[g] = slices.SortedFunc(slices.Values(ms), func(a, b groups.Member) int { return cmp.Compare(a.ID, b.ID) })
	}
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("departures = %v, want %v", got, want)
	}
}
