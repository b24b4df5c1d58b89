package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
)

// TestRedisStallLongerThanTTL freezes redis-server (SIGSTOP) for longer than
// the member TTL, with both nodes of pool b connected to it. When it
// resumes, Redis finds every member key past its TTL; the nodes must neither
// drop each other (protoactor would block the dropped member for good) nor
// lose their directory entries.
func TestRedisStallLongerThanTTL(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.b...)
	s := startServers(t, p.b, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	one, two := s[0], s[1]
	group := testSeq("stall")
	ctx := testCtx(t)
	u1 := one.connect(t, "group="+group+"&name=u1")
	u2 := two.connect(t, "group="+group+"&name=u2")
	wantEvent(t, u1, joined, group, u2.id, "u2", "")
	waitMembers(t, one.Server, group, u1.id, u2.id)
	departures := []int64{p.b[0].Stats().Departures, p.b[1].Stats().Departures}

	p.redisB.Pause()
	paused := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			p.redisB.Resume()
		}
	})
	for i, n := range p.b {
		waitUntil(t, testTimeout, fmt.Sprintf("node %d notices the stall", i), func() bool { return !n.Stats().RedisHealthy })
	}
	// The stall must outlast the TTL (and a heartbeat), whatever the nodes
	// noticed: this is the length of the fault, not a wait for a result.
	if rest := testTTL + testHeartbeat - time.Since(paused); rest > 0 {
		time.Sleep(rest)
	}
	p.redisB.Resume()
	resumed = true
	t.Logf("redis-server was stopped for %v (member TTL %v)", time.Since(paused).Round(time.Millisecond), testTTL)

	for i, n := range p.b {
		waitUntil(t, testTimeout, fmt.Sprintf("node %d sees Redis again and resynchronises", i), func() bool {
			return n.Stats().RedisHealthy
		})
	}
	// Both members are registered again...
	for i, n := range p.b {
		other := p.b[1-i].Address()
		waitUntil(t, testTimeout, fmt.Sprintf("node %d lists its peer", i), func() bool { return slices.Contains(n.Peers(), other) })
	}
	waitMembers(t, two.Server, group, u1.id, u2.id)
	// ...and no node saw the other leave, which protoactor would not undo.
	for i, n := range p.b {
		if got := n.Stats().Departures; got != departures[i] {
			t.Fatalf("node %d handled %d departures during the stall, want none", i, got-departures[i])
		}
	}
	if err := one.Send(ctx, u2.id, wsactor.Text("across")); err != nil {
		t.Fatalf("cross-node Send after the stall: %v", err)
	}
	// u2 may have heard of u1's join, which raced its own.
	u2.expect("across")
	if _, err := two.Groups().Broadcast(ctx, group, wsactor.Text("all")); err != nil {
		t.Fatal(err)
	}
	u1.expect("all")
	u2.expect("all")
}
