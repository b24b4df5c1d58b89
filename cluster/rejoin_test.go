package cluster_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
)

// stalledHelper runs a node of pool cluster a in another process, with a
// client of it in group, stops the process (SIGSTOP: a long GC pause, a
// frozen VM) until the survivors drop it, and resumes it. It returns the
// helper, the client and the channel of the client's close.
func stalledHelper(t *testing.T, p *pool, survivors []*testServer, members []wsactor.ID, group, whenDropped string) (*helper, string, string, *client, <-chan error) {
	t.Helper()
	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+p.redisA.Addr(),
		helperNameEnv+"="+survivors[0].node.cfg.Cluster.Name,
		helperPrefixEnv+"="+survivors[0].node.cfg.Redis.KeyPrefix,
		helperServerEnv+"="+survivors[0].name,
		helperDropEnv+"="+whenDropped,
	)
	t.Cleanup(func() { _ = h.cmd.Process.Signal(syscall.SIGCONT) }) // a stopped process dies only once resumed
	var output []string
	url := h.value(t, helperURLPrefix, &output)
	addr := h.value(t, helperNodePrefix, &output)
	for _, n := range p.a {
		waitUntil(t, testTimeout, "the pool sees the helper node", func() bool { return slices.Contains(n.Peers(), addr) })
	}
	stalled := dialClient(t, url+"?group="+group+"&name=stalled")
	waitMembers(t, survivors[0].Server, group, append(slices.Clone(members), stalled.id)...)
	closed := stalled.closed()

	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for _, n := range p.a {
		waitUntil(t, testTTL+testHeartbeat+5*time.Second, "the pool drops the stopped node", func() bool {
			return !slices.Contains(n.Peers(), addr)
		})
	}
	if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("the helper node was stopped for %v (member TTL %v)", time.Since(stopped).Round(time.Millisecond), testTTL)
	return h, url, addr, stalled, closed
}

// joinAll connects a client of each server to group and returns them and
// their IDs.
func joinAll(t *testing.T, servers []*testServer, group string) ([]*client, []wsactor.ID) {
	var clients []*client
	var ids []wsactor.ID
	for i, s := range servers {
		c := s.connect(t, "group="+group+"&name=s"+strconv.Itoa(i))
		clients, ids = append(clients, c), append(ids, c.id)
	}
	return clients, ids
}

// TestStalledNodeRejoins is the deaf-node defect of issue 8: a node stopped
// for longer than the member TTL used to come back with every peer refusing
// to see it (protoactor never re-admits a member ID that left), while it
// still listed them and took clients, who then received nothing from other
// nodes. Now its clients are closed with 1012 (they may have missed
// messages) and it rejoins under a new member ID: the survivors see it
// again, and a new client of it is reached from every node.
func TestStalledNodeRejoins(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	// A server on every pool node, not only the two the test uses: any
	// survivor may be the one that removes the departed node's entries
	// from the directory, and it announces the "left" events through its
	// own servers (Node.nodeGone), so a node without this server would
	// swallow them.
	survivors := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})[:2]
	group := testSeq("stalled")
	locals, ids := joinAll(t, survivors, group)
	h, url, addr, stalled, closed := stalledHelper(t, p, survivors, ids, group, cluster.WhenDroppedRejoin)
	var output []string

	wantCloseCode(t, closed, wsactor.StatusServiceRestart, "service restart: node rejoining its cluster")
	newID := h.value(t, helperRejoined, &output)
	if !strings.Contains(newID, ".") {
		t.Fatalf("the node rejoined as %q, want a new incarnation's member ID", newID)
	}
	for _, n := range p.a {
		waitUntil(t, testTimeout, "the pool admits the rejoined node", func() bool { return slices.Contains(n.Peers(), addr) })
	}
	// The stalled client is gone from the directory; the survivors' members
	// heard it leave (once) when they dropped the node.
	waitMembers(t, survivors[1].Server, group, ids...)
	wantEvent(t, locals[0], left, group, stalled.id, "stalled", "")

	// A new client of the rejoined node is reached from every node.
	fresh := dialClient(t, url+"?group="+group+"&name=fresh")
	waitMembers(t, survivors[0].Server, group, append(slices.Clone(ids), fresh.id)...)
	ctx := testCtx(t)
	if err := survivors[1].Send(ctx, fresh.id, wsactor.Text("across")); err != nil {
		t.Fatalf("Send from a survivor to the rejoined node's client: %v", err)
	}
	fresh.expect("across")
	if _, err := survivors[0].Groups().Broadcast(ctx, group, wsactor.Text("all")); err != nil {
		t.Fatal(err)
	}
	fresh.expect("all")
	fresh.write("echo")
	fresh.expect("echo")
	stopHelper(t, p, h, addr)
}

// stopHelper stops a helper node cleanly and waits until the pool has
// dropped it: a node killed instead would leave the pool's endpoint writers
// redialling it for a TTL, goroutines that later tests count as leaks.
func stopHelper(t *testing.T, p *pool, h *helper, addr string) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var output []string
	if res := h.value(t, helperStopped, &output); res != "<nil>" {
		t.Fatalf("the helper node's Shutdown and Stop: %s", res)
	}
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every pool node drops the stopped helper", func() bool {
			return !slices.Contains(n.Peers(), addr)
		})
	}
}

// TestStalledNodeStaysOut: with when_dropped stay-out the node does not
// rejoin: its clients are closed with 1012, upgrades get 503, and the
// survivors never see it again.
func TestStalledNodeStaysOut(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	// A server on every pool node, not only the two the test uses: any
	// survivor may be the one that removes the departed node's entries
	// from the directory, and it announces the "left" events through its
	// own servers (Node.nodeGone), so a node without this server would
	// swallow them.
	survivors := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})[:2]
	group := testSeq("stayout")
	_, ids := joinAll(t, survivors, group)
	h, url, addr, _, closed := stalledHelper(t, p, survivors, ids, group, cluster.WhenDroppedStayOut)
	var output []string
	wantCloseCode(t, closed, wsactor.StatusServiceRestart, "service restart: node rejoining its cluster")
	stats := h.value(t, helperIsolated, &output)
	if !strings.Contains(stats, "Drops:1 ") || !strings.Contains(stats, "Rejoins:0") {
		t.Fatalf("the isolated node's stats: %s; want one drop and no rejoin", stats)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url+"?group="+group, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("an upgrade to the isolated node: status %d, err %v; want 503", status, err)
	}
	// Three heartbeats later, still out.
	deadline := time.Now().Add(3 * testHeartbeat)
	for time.Now().Before(deadline) {
		for _, n := range p.a {
			if slices.Contains(n.Peers(), addr) {
				t.Fatalf("node %s admitted the node that stays out", n.Address())
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopHelper(t, p, h, addr)
}
