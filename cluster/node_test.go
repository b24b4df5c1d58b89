package cluster_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/metrics"
)

var seq atomic.Int64

// testSeq returns a name no other test of the binary uses: the pool's
// nodes, and so their directory, are shared.
func testSeq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

func TestCrossNodeSendPostClose(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	s := startServers(t, p.a[:2], wsactor.Options{})
	one, two := s[0], s[1]
	c := two.connect(t, "")
	if addr, _ := c.id.Address(); addr != two.node.Address() {
		t.Fatalf("the ID names node %q, want node two %q", addr, two.node.Address())
	}
	ctx := testCtx(t)

	if err := one.Send(ctx, c.id, wsactor.Text("sent from one")); err != nil {
		t.Fatalf("cross-node Send: %v", err)
	}
	c.expect("sent from one")
	if err := one.Post(c.id, wsactor.Text("posted from one")); err != nil {
		t.Fatalf("cross-node Post: %v", err)
	}
	c.expect("posted from one")
	// The reply path: the client's message is echoed by its handler on two.
	c.write("echo")
	c.expect("echo")

	closed := c.closed()
	if err := one.Close(ctx, c.id, 4005, "closed from node one"); err != nil {
		t.Fatalf("cross-node Close: %v", err)
	}
	wantCloseCode(t, closed, 4005, "closed from node one")
	if err := one.Send(ctx, c.id, wsactor.Text("late")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("Send to a closed connection on another node: want ErrConnectionNotFound, got %v", err)
	}
	if err := one.Close(ctx, c.id, 4005, ""); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("Close of a closed connection on another node: want ErrConnectionNotFound, got %v", err)
	}
}

// TestLaneCarriesSendsAndFallsBack sends from a node with a data lane to
// connections on a node with one (the sends take the lane) and on a node
// without (they take the remote), and checks both arrive, and the way.
func TestLaneCarriesSendsAndFallsBack(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startServers(t, p.a, wsactor.Options{})
	one := s[0]
	ctx := testCtx(t)
	if p.a[2].Stats().Lane != nil {
		t.Fatal("a node with remote.lane_port -1 has a lane")
	}
	before := *p.a[1].Stats().Lane
	for i, to := range s[1:] {
		c := to.connect(t, "")
		if i == 0 {
			// a[0] sets its lane to a[1] up at its first send there, in the
			// background, and changes to it at a later one.
			waitUntil(t, 10*time.Second, "a frame on a[1]'s lane", func() bool {
				if err := one.Post(c.id, wsactor.Text("first")); err != nil {
					t.Fatal(err)
				}
				c.expect("first")
				return p.a[1].Stats().Lane.FramesIn > before.FramesIn
			})
		}
		if err := one.Send(ctx, c.id, wsactor.Text("sent")); err != nil {
			t.Fatalf("Send to %s: %v", to.node.Address(), err)
		}
		c.expect("sent")
		if err := one.Post(c.id, wsactor.Text("posted")); err != nil {
			t.Fatalf("Post to %s: %v", to.node.Address(), err)
		}
		c.expect("posted")
		closed := c.closed()
		if err := one.Close(ctx, c.id, 4005, "bye"); err != nil {
			t.Fatalf("Close on %s: %v", to.node.Address(), err)
		}
		wantCloseCode(t, closed, 4005, "bye")
	}
	after := *p.a[1].Stats().Lane
	if after.FramesIn <= before.FramesIn || after.Sessions == 0 {
		t.Fatalf("the node with a lane received nothing on it: before %+v, after %+v", before, after)
	}
	if l := p.a[0].Stats().Lane; l == nil || l.Links == 0 || l.FramesLost != 0 {
		t.Fatalf("sender's lane stats %+v: want a link and nothing lost", l)
	}
	// The same numbers reach Prometheus.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(one.Server, metrics.WithNode(p.a[0].Node)))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					name += "/" + l.GetValue()
				}
			}
			found[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if found["wsactor_lane_frames_total/out"] == 0 || found["wsactor_lane_connections/out"] == 0 {
		t.Fatalf("lane metrics missing or zero: %v", found)
	}
	if _, ok := found["wsactor_lane_frames_lost_total"]; !ok {
		t.Fatal("wsactor_lane_frames_lost_total is not exported")
	}
}

func TestCrossNodeOrderPerSender(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	const senders, each = 6, 300
	// Fire-and-forget posts outrun the socket writer: leave room for all of them.
	s := startServers(t, p.a[:2], wsactor.Options{Transport: wsactor.TransportOptions{SendQueueMessages: 4 * senders * each}})
	one, two := s[0], s[1]
	c := two.connect(t, "")

	var wg sync.WaitGroup
	for sender := range senders {
		wg.Go(func() {
			for i := range each {
				m := wsactor.Text(fmt.Sprintf("%d:%d", sender, i))
				var err error
				if i%10 == 9 { // mix in Sends, which wait for the queue
					err = one.Send(context.Background(), c.id, m)
				} else {
					err = one.Post(c.id, m)
				}
				if err != nil {
					t.Errorf("sender %d, message %d: %v", sender, i, err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * each {
		var sender, i int
		got := c.read()
		if _, err := fmt.Sscanf(got, "%d:%d", &sender, &i); err != nil || sender < 0 || sender >= senders {
			t.Fatalf("unexpected message %q", got)
		}
		if i != next[sender] {
			t.Fatalf("sender %d: got message %d, want %d (lost or reordered)", sender, i, next[sender])
		}
		next[sender]++
	}
	wg.Wait()
	// Nothing beyond: the next message is a marker.
	if err := one.Send(testCtx(t), c.id, wsactor.Text("end")); err != nil {
		t.Fatal(err)
	}
	c.expect("end")
}

func TestBroadcastReachesEveryNodeOnce(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startServers(t, p.a, wsactor.Options{})
	group := testSeq("room")
	var clients []*client
	for _, srv := range s {
		for range 2 {
			clients = append(clients, srv.connect(t, "group="+group+"&name=x"))
		}
	}
	ctx := testCtx(t)
	ids := make([]wsactor.ID, len(clients))
	for i, c := range clients {
		ids[i] = c.id
	}
	waitMembers(t, s[2].Server, group, ids...)

	// From node two, except one client on node one.
	n, err := s[1].Groups().Broadcast(ctx, group, wsactor.Text("b1"), clients[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Broadcast posted to %d local members, want 2", n)
	}
	if _, err := s[1].Groups().Broadcast(ctx, group, wsactor.Text("b2")); err != nil {
		t.Fatal(err)
	}
	// Both broadcasts take the same path to each node, so a duplicate of b1
	// would arrive before b2.
	clients[0].expect("b2")
	for _, c := range clients[1:] {
		c.expect("b1")
		c.expect("b2")
	}
	// JSON from node three: encoded once, sent to each other node once.
	if _, err := s[2].Groups().BroadcastJSON(ctx, group, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.expect(`{"k":"v"}`)
	}
}

func TestPresenceAcrossNodes(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	group := testSeq("presence")
	ctx := testCtx(t)
	user := testSeq("ann")

	x := s[0].connect(t, "group="+group+"&name=x&user="+user)
	y := s[1].connect(t, "group="+group+"&name=y")
	wantEvent(t, x, joined, group, y.id, "y", "")
	z := s[2].connect(t, "group="+group+"&name=z")
	wantEvent(t, x, joined, group, z.id, "z", "")
	wantEvent(t, y, joined, group, z.id, "z", "")

	// Members lists the members of every node, with user and meta, from any node.
	for _, srv := range s {
		ms, err := srv.Groups().Members(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ms, func(a, b groups.Member) int { return cmp.Compare(a.Meta["name"], b.Meta["name"]) })
		if len(ms) != 3 || ms[0].ID != x.id || ms[1].ID != y.id || ms[2].ID != z.id ||
			ms[0].User != user || ms[1].User != "" || ms[0].Meta["name"] != "x" || ms[2].Meta["name"] != "z" {
			t.Fatalf("members seen from %s: %+v", srv.node.Address(), ms)
		}
	}

	// A member on node three closes: the members on nodes one and two hear it left.
	closed := z.closed()
	_ = z.c.Close(websocket.StatusNormalClosure, "bye")
	<-closed
	wantEvent(t, x, left, group, z.id, "z", "")
	wantEvent(t, y, left, group, z.id, "z", "")
	waitMembers(t, s[1].Server, group, x.id, y.id)

	// x, with a user, leaves by ID, asked on node two: y hears it with the user.
	if err := s[1].Groups().Leave(ctx, group, x.id); err != nil {
		t.Fatalf("Leave by ID from another node: %v", err)
	}
	wantEvent(t, y, left, group, x.id, "x", user)
	waitMembers(t, s[2].Server, group, y.id)
}

// Which list of a presence event wantEvent looks in.
const (
	joined = "joins"
	left   = "leaves"
)

// wantEvent waits for a presence event of group that has id in its list
// (joined or left), and checks the entry. The events before it are dropped:
// a member may hear joins of others, its own included, in any batching.
func wantEvent(t *testing.T, c *client, list, group string, id wsactor.ID, name, user string) {
	t.Helper()
	for {
		ev := c.nextPresence()
		entries := ev.Joins
		if list == left {
			entries = ev.Leaves
		}
		for _, m := range entries {
			if m.ID != id {
				continue
			}
			if ev.Group != group || m.Meta["name"] != name || m.User != user {
				t.Fatalf("client %s: %s entry %+v in %+v, want %s (%s) of user %q in %s", c.id, list, m, ev, id, name, user, group)
			}
			return
		}
	}
}

// wantNoEvent fails if a presence event c has received and not looked at
// has id in its list: each join and leave is told once.
func wantNoEvent(t *testing.T, c *client, list string, id wsactor.ID) {
	t.Helper()
	for _, ev := range c.presence {
		entries := ev.Joins
		if list == left {
			entries = ev.Leaves
		}
		for _, m := range entries {
			if m.ID == id {
				t.Fatalf("client %s: told twice: %+v", c.id, ev)
			}
		}
	}
}

func TestJoinAndLeaveByIDFromAnotherNode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startServers(t, p.a, wsactor.Options{})
	group := testSeq("byid")
	ctx := testCtx(t)
	a := s[0].connect(t, "")
	b := s[1].connect(t, "")
	c := s[2].connect(t, "")

	// Node one joins connections of nodes two and three, and its own.
	for _, cl := range []*client{a, b, c} {
		if err := s[0].Groups().Join(ctx, group, cl.id, map[string]string{"name": "n"}); err != nil {
			t.Fatalf("Join %s from node one: %v", cl.id, err)
		}
	}
	waitMembers(t, s[1].Server, group, a.id, b.id, c.id)
	for _, srv := range s {
		gs, err := srv.Groups().GroupsOf(ctx, b.id)
		if err != nil || !slices.Equal(gs, []string{group}) {
			t.Fatalf("GroupsOf(%s) on %s: %v, %v", b.id, srv.node.Address(), gs, err)
		}
	}
	// The owning node's local index took the join: its broadcasts reach them.
	if _, err := s[2].Groups().Broadcast(ctx, group, wsactor.Text("one")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{a, b, c} {
		cl.expect("one")
	}

	// Node three takes the client of node two out again.
	if err := s[2].Groups().Leave(ctx, group, b.id); err != nil {
		t.Fatalf("Leave by ID from node three: %v", err)
	}
	waitMembers(t, s[0].Server, group, a.id, c.id)
	other := testSeq("byid-marker")
	if err := s[0].Groups().Join(ctx, other, b.id, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s[0].Groups().Broadcast(ctx, group, wsactor.Text("two")); err != nil {
		t.Fatal(err)
	}
	a.expect("two")
	c.expect("two")
	// The marker takes the path "two" would have taken to b: after it.
	if _, err := s[0].Groups().Broadcast(ctx, other, wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	b.expect("marker")

	// A connection that does not exist on a live node: not found, at once.
	closed := b.closed()
	if err := s[0].Close(ctx, b.id, 4000, ""); err != nil {
		t.Fatal(err)
	}
	<-closed
	if err := s[0].Groups().Join(ctx, group, b.id, nil); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("Join of a closed connection on another node: want ErrConnectionNotFound, got %v", err)
	}
}

func TestSendToUserAcrossNodes(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startServers(t, p.a, wsactor.Options{})
	ctx := testCtx(t)
	user, other := testSeq("bob"), testSeq("carol")
	b1 := s[0].connect(t, "user="+user)
	b2 := s[1].connect(t, "user="+user)
	c3 := s[2].connect(t, "user="+other)

	waitUntil(t, testTimeout, "the user index lists both connections", func() bool {
		ids, err := s[2].Groups().Directory().UserConns(ctx, user)
		return err == nil && slices.Equal(sortedIDs(ids...), sortedIDs(b1.id, b2.id))
	})
	// From node three, which has none of the user's connections.
	n, err := s[2].Groups().SendToUser(ctx, user, wsactor.Text("hi bob"))
	if err != nil || n != 2 {
		t.Fatalf("SendToUser from node three: %d, %v; want 2", n, err)
	}
	b1.expect("hi bob")
	b2.expect("hi bob")
	// From node one, which has one of them.
	if n, err := s[0].Groups().SendToUser(ctx, user, wsactor.Text("again")); err != nil || n != 2 {
		t.Fatalf("SendToUser from node one: %d, %v; want 2", n, err)
	}
	b1.expect("again")
	b2.expect("again")
	// The other user got nothing: a marker to them by the same path comes first.
	if n, err := s[0].Groups().SendToUser(ctx, other, wsactor.Text("marker")); err != nil || n != 1 {
		t.Fatalf("SendToUser to the other user: %d, %v", n, err)
	}
	c3.expect("marker")

	// One of the user's connections closes: only the other one remains.
	closed := b1.closed()
	_ = b1.c.Close(websocket.StatusNormalClosure, "")
	<-closed
	waitUntil(t, testTimeout, "the user index drops the closed connection", func() bool {
		ids, err := s[2].Groups().Directory().UserConns(ctx, user)
		return err == nil && slices.Equal(ids, []wsactor.ID{b2.id})
	})
	if n, err := s[2].Groups().SendToUser(ctx, user, wsactor.Text("last")); err != nil || n != 1 {
		t.Fatalf("SendToUser after one closed: %d, %v; want 1", n, err)
	}
	b2.expect("last")
}

// TestServersSharingANode runs two wsactor servers on one node: attaching the
// second (and any resync) must keep the first one's directory entries.
func TestServersSharingANode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	first := startServers(t, p.a[:2], wsactor.Options{})
	group := testSeq("shared")
	user := testSeq("dan")
	a := first[0].connect(t, "group="+group+"&name=a&user="+user)
	b := first[1].connect(t, "group="+group+"&name=b")
	waitMembers(t, first[1].Server, group, a.id, b.id)

	second := startServers(t, p.a[:1], wsactor.Options{}) // another server on node one
	c := second[0].connect(t, "group="+group+"&name=c&user="+user)
	waitMembers(t, first[1].Server, group, a.id, b.id, c.id)
	ctx := testCtx(t)
	ids, err := first[1].Groups().Directory().UserConns(ctx, user)
	if err != nil || !slices.Equal(sortedIDs(ids...), sortedIDs(a.id, c.id)) {
		t.Fatalf("user connections after a second server attached: %v, %v; want %v and %v", ids, err, a.id, c.id)
	}
	if _, err := first[1].Groups().Broadcast(ctx, group, wsactor.Text("all")); err != nil {
		t.Fatal(err)
	}
	a.expect("all")
	b.expect("all")
}

// TestRedisOutageAndRestart stops the Redis of cluster b and starts it again
// empty: local traffic carries on, directory operations fail visibly, and
// then each node writes its entries back and membership re-registers.
func TestRedisOutageAndRestart(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.b...)
	s := startServers(t, p.b, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	one, two := s[0], s[1]
	group, user := testSeq("outage"), testSeq("erin")
	ctx := testCtx(t)

	u1 := one.connect(t, "group="+group+"&name=u1&user="+user)
	extra := one.connect(t, "group="+group+"&name=extra")
	wantEvent(t, u1, joined, group, extra.id, "extra", "")
	u2 := two.connect(t, "group="+group+"&name=u2&user="+user)
	wantEvent(t, u1, joined, group, u2.id, "u2", user)
	wantEvent(t, extra, joined, group, u2.id, "u2", user)
	// u2 may have heard of the earlier joins: they came from node one, by
	// the path of this marker.
	if _, err := one.Groups().Broadcast(ctx, group, wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	u1.expect("marker")
	extra.expect("marker")
	u2.expect("marker")
	waitMembers(t, one.Server, group, u1.id, u2.id, extra.id)

	before := []cluster.Stats{p.b[0].Stats(), p.b[1].Stats()}
	errsBefore := []int64{one.Groups().DirectoryErrors(), two.Groups().DirectoryErrors()}
	for i, st := range before {
		if !st.RedisHealthy {
			t.Fatalf("node %d: Redis unhealthy before the outage: %+v", i, st)
		}
	}

	p.redisB.Stop()
	for i, n := range p.b {
		waitUntil(t, testTimeout, fmt.Sprintf("node %d notices the outage", i), func() bool { return !n.Stats().RedisHealthy })
	}

	// Local traffic carries on: sends, broadcasts to members, echoes.
	if err := one.Send(ctx, u1.id, wsactor.Text("local send")); err != nil {
		t.Fatalf("local Send during the outage: %v", err)
	}
	u1.expect("local send")
	u1.write("echo")
	u1.expect("echo")
	if n, err := one.Groups().Broadcast(ctx, group, wsactor.Text("during")); err != nil || n != 2 {
		t.Fatalf("Broadcast during the outage: %d local members, %v; want 2", n, err)
	}
	u1.expect("during")
	extra.expect("during")
	// Membership keeps the last topology, so the other node is still reached.
	u2.expect("during")
	if err := one.Send(ctx, u2.id, wsactor.Text("cross-node send")); err != nil {
		t.Fatalf("cross-node Send during the outage: %v", err)
	}
	u2.expect("cross-node send")

	// Directory operations fail, visibly.
	if _, err := one.Groups().Members(ctx, group); err == nil {
		t.Fatal("Members succeeded with Redis stopped")
	}
	if _, err := two.Groups().SendToUser(ctx, user, wsactor.Text("x")); err == nil {
		t.Fatal("SendToUser succeeded with Redis stopped")
	}
	// A member closes and a new connection of the user opens meanwhile; the
	// directory misses both, which resynchronisation must repair.
	closed := extra.closed()
	_ = extra.c.Close(websocket.StatusNormalClosure, "")
	<-closed
	wantEvent(t, u1, left, group, extra.id, "extra", "")
	wantEvent(t, u2, left, group, extra.id, "extra", "")
	u3 := two.connect(t, "user="+user)
	if got := two.Groups().DirectoryErrors(); got <= errsBefore[1] {
		t.Fatalf("node two: DirectoryErrors %d, want more than %d", got, errsBefore[1])
	}
	waitUntil(t, testTimeout, "node one counts its directory errors", func() bool {
		return one.Groups().DirectoryErrors() > errsBefore[0]
	})
	for i, n := range p.b {
		st := n.Stats()
		if st.RedisHealthy || st.RedisOutages != before[i].RedisOutages+1 {
			t.Fatalf("node %d during the outage: %+v, want unhealthy and outages %d", i, st, before[i].RedisOutages+1)
		}
	}

	restartRedis(t, p.redisB) // empty
	for i, n := range p.b {
		waitUntil(t, testTimeout, fmt.Sprintf("node %d resynchronises", i), func() bool {
			st := n.Stats()
			return st.RedisHealthy && st.Resyncs > before[i].Resyncs
		})
	}
	// Every live member is listed again, from both nodes; the closed one is not.
	waitMembers(t, one.Server, group, u1.id, u2.id)
	waitMembers(t, two.Server, group, u1.id, u2.id)
	waitUntil(t, testTimeout, "the user index lists the user's three connections", func() bool {
		ids, err := one.Groups().Directory().UserConns(ctx, user)
		return err == nil && slices.Equal(sortedIDs(ids...), sortedIDs(u1.id, u2.id, u3.id))
	})
	if n, err := one.Groups().SendToUser(ctx, user, wsactor.Text("welcome back")); err != nil || n != 3 {
		t.Fatalf("SendToUser after the restart: %d, %v; want 3", n, err)
	}
	u1.expect("welcome back")
	u2.expect("welcome back")
	u3.expect("welcome back")

	// Membership: both nodes registered again and still see each other.
	rdb := redis.NewClient(&redis.Options{Addr: p.redisB.Addr()})
	defer rdb.Close()
	pattern := p.b[0].cfg.Redis.KeyPrefix + "cluster:" + p.b[0].cfg.Cluster.Name + ":member:*"
	waitUntil(t, testTimeout, "both nodes re-register their member keys", func() bool {
		keys, err := rdb.Keys(ctx, pattern).Result()
		return err == nil && len(keys) == 2
	})
	for i, n := range p.b {
		other := p.b[1-i].Address()
		if !slices.Contains(n.Peers(), other) {
			t.Fatalf("node %d lost its peer %s: %v", i, other, n.Peers())
		}
		if st := n.Stats(); st.RedisOutages != before[i].RedisOutages+1 {
			t.Fatalf("node %d after the restart: %+v, want outages %d", i, st, before[i].RedisOutages+1)
		}
	}
	if err := two.Send(ctx, u1.id, wsactor.Text("still connected")); err != nil {
		t.Fatal(err)
	}
	u1.expect("still connected")
}
