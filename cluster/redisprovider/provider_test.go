package redisprovider_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/cluster/redisprovider"
)

// Short timings keep the package fast; production defaults are 1s / 3s.
const (
	testHeartbeat = 300 * time.Millisecond
	testTTL       = 1500 * time.Millisecond
	// slack absorbs scheduling delays under -race on a busy 2-core machine.
	slack = time.Second

	helperEnv      = "WSACTOR_REDISPROVIDER_HELPER"
	helperAddrEnv  = "WSACTOR_REDISPROVIDER_HELPER_REDIS"
	helperNameEnv  = "WSACTOR_REDISPROVIDER_HELPER_CLUSTER"
	helperIDPrefix = "MEMBER "
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    redisprovider.Options
		wantErr string
	}{
		{"zero value uses defaults", redisprovider.Options{}, ""},
		{"ttl above heartbeat", redisprovider.Options{HeartbeatInterval: 300 * time.Millisecond, TTL: time.Second}, ""},
		{"ttl equal to heartbeat", redisprovider.Options{HeartbeatInterval: time.Second, TTL: time.Second}, "TTL 1s must be greater than HeartbeatInterval 1s"},
		{"default ttl below heartbeat", redisprovider.Options{HeartbeatInterval: 5 * time.Second}, "TTL 3s must be greater than HeartbeatInterval 5s"},
		{"negative heartbeat", redisprovider.Options{HeartbeatInterval: -time.Second}, "HeartbeatInterval -1s is negative"},
		{"negative ttl", redisprovider.Options{TTL: -time.Second}, "TTL -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStartFailsWhenRedisUnreachable(t *testing.T) {
	addr := closedPort(t)
	for _, member := range []bool{true, false} {
		client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = client.Close() })
		p := redisprovider.New(client, redisprovider.Options{})
		system := actor.NewActorSystem(quietActorLogs)
		t.Cleanup(system.Shutdown)
		c := cluster.New(system, cluster.Configure("unreachable", p, disthash.New(), remote.Configure("127.0.0.1", 0)))

		start := p.StartMember
		if !member {
			start = p.StartClient
		}
		err := start(c)
		if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+addr) {
			t.Fatalf("member=%v: start error = %v, want one naming %s", member, err, addr)
		}
		if p.Healthy() {
			t.Fatal("Healthy() after a failed start")
		}
		if err := p.Shutdown(true); err != nil {
			t.Fatalf("Shutdown after a failed start: %v", err)
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t)})
	t.Cleanup(func() { _ = client.Close() })
	p := redisprovider.New(client, redisprovider.Options{HeartbeatInterval: 2 * time.Second, TTL: time.Second})
	system := actor.NewActorSystem(quietActorLogs)
	t.Cleanup(system.Shutdown)
	c := cluster.New(system, cluster.Configure("bad", p, disthash.New(), remote.Configure("127.0.0.1", 0)))
	if err := p.StartMember(c); err == nil || !strings.Contains(err.Error(), "must be greater than HeartbeatInterval") {
		t.Fatalf("StartMember error = %v, want the TTL/HeartbeatInterval error", err)
	}
}

func TestMembersSeeEachOther(t *testing.T) {
	e := newEnv(t)
	rdb := e.client()
	events := rdb.Subscribe(context.Background(), "wsactor:cluster:"+e.name+":events")
	t.Cleanup(func() { _ = events.Close() })
	if _, err := events.Receive(context.Background()); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	// A malformed key under the prefix must be ignored, not break the poll.
	if err := rdb.Set(context.Background(), "wsactor:cluster:"+e.name+":member:garbage", "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}

	nodes := e.startNodes(3, redisprovider.Options{})
	ids := idsOf(nodes)
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, n.id()+" sees all members", func() bool { return slices.Equal(n.view.ids(), ids) })
	}

	for _, n := range nodes {
		key := "wsactor:cluster:" + e.name + ":member:" + n.id()
		if got := redisprovider.MemberKey(n.p); got != key {
			t.Fatalf("member key = %q, want %q", got, key)
		}
		raw, err := rdb.Get(context.Background(), key).Bytes()
		if err != nil {
			t.Fatalf("GET %s: %v", key, err)
		}
		var rec struct {
			ID        string    `json:"id"`
			Host      string    `json:"host"`
			Port      int       `json:"port"`
			Kinds     []string  `json:"kinds"`
			StartedAt time.Time `json:"started_at"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatalf("value of %s: %v (%s)", key, err, raw)
		}
		host, port, _ := n.c.ActorSystem.GetHostPort()
		if rec.ID != n.id() || rec.Host != host || rec.Port != port || rec.StartedAt.IsZero() ||
			!slices.Contains(rec.Kinds, cluster.TopicActorKind) {
			t.Fatalf("value of %s = %s, want id %s at %s:%d with kinds and started_at", key, raw, n.id(), host, port)
		}
		pttl := rdb.PTTL(context.Background(), key).Val()
		if pttl <= 0 || pttl > testTTL {
			t.Fatalf("PTTL %s = %v, want in (0, %v]", key, pttl, testTTL)
		}
	}

	joined := map[string]bool{}
	for len(joined) < len(nodes) {
		msg, err := events.ReceiveTimeout(context.Background(), 5*time.Second)
		if err != nil {
			t.Fatalf("waiting for join events (have %v): %v", joined, err)
		}
		if m, ok := msg.(*redis.Message); ok && strings.Contains(m.Payload, `"type":"join"`) {
			var ev struct{ ID string }
			_ = json.Unmarshal([]byte(m.Payload), &ev)
			joined[ev.ID] = true
		}
	}
	for _, id := range ids {
		if !joined[id] {
			t.Fatalf("no join event for %s; got %v", id, joined)
		}
	}
	for _, n := range nodes {
		if !n.p.Healthy() || n.p.Outages() != 0 {
			t.Fatalf("%s: Healthy=%v Outages=%d", n.id(), n.p.Healthy(), n.p.Outages())
		}
		if n.logs.count(slog.LevelWarn, "ignoring malformed member key") != 1 {
			t.Fatalf("%s: the malformed key should be reported once: %v", n.id(), n.logs.lines())
		}
	}
}

func TestGracefulShutdownDeregistersAtOnce(t *testing.T) {
	e := newEnv(t)
	// A TTL far above the wait below: only deregistration can explain the removal.
	const longTTL = 20 * time.Second
	nodes := e.startNodes(3, redisprovider.Options{TTL: longTTL})
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, n.id()+" sees all members", func() bool { return n.view.len() == 3 })
	}
	leaving, survivors := nodes[2], nodes[:2]

	done := make(chan struct{})
	go func() {
		leaving.shutdownGraceful() // protoactor's Cluster.Shutdown(true), which calls Provider.Shutdown(true)
		close(done)
	}()
	for _, n := range survivors {
		waitUntil(t, longTTL/2, n.id()+" drops the member that left", func() bool { return !n.view.has(leaving.id()) })
		if !n.view.has(survivors[0].id()) || !n.view.has(survivors[1].id()) {
			t.Fatalf("%s lost a live member: %v", n.id(), n.view.ids())
		}
	}
	if n, err := e.client().Exists(context.Background(), redisprovider.MemberKey(leaving.p)).Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS after graceful shutdown = %d, %v; want 0", n, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Cluster.Shutdown(true) did not return")
	}
	if !redisprovider.Stopped(leaving.p, time.Second) {
		t.Fatal("provider goroutines still running after Shutdown")
	}
}

// TestEventsWakePeers uses a poll interval longer than the test: only the
// join and leave events published on the channel can explain the updates.
func TestEventsWakePeers(t *testing.T) {
	e := newEnv(t)
	slow := redisprovider.Options{HeartbeatInterval: 20 * time.Second, TTL: time.Minute}
	nodes := e.startNodes(2, slow)
	first, second := nodes[0], nodes[1]
	waitUntil(t, 5*time.Second, "the first member sees the second join", func() bool { return first.view.has(second.id()) })
	if err := second.p.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the first member sees the second leave", func() bool { return !first.view.has(second.id()) })
}

func TestStoppedHeartbeatsExpireWithinTTL(t *testing.T) {
	e := newEnv(t)
	nodes := e.startNodes(3, redisprovider.Options{})
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, n.id()+" sees all members", func() bool { return n.view.len() == 3 })
	}
	observer, crashed, killed := nodes[0], nodes[1], nodes[2]

	start := time.Now()
	// A crash or partition: heartbeats stop and nothing is deleted.
	redisprovider.Crash(crashed.p)
	// Cluster.Shutdown(false) never calls the provider; it must notice by itself.
	killed.shutdownAbrupt()

	limit := testTTL + testHeartbeat + slack
	waitUntil(t, limit, "the observer drops both stopped members", func() bool {
		return !observer.view.has(crashed.id()) && !observer.view.has(killed.id())
	})
	t.Logf("stopped members removed after %v (TTL %v, heartbeat %v)", time.Since(start).Round(time.Millisecond), testTTL, testHeartbeat)
	if !observer.view.has(observer.id()) {
		t.Fatalf("observer lost itself: %v", observer.view.ids())
	}
	if !redisprovider.Stopped(killed.p, 2*testHeartbeat+slack) {
		t.Fatal("provider of a Cluster.Shutdown(false) node kept running")
	}
}

func TestRedisOutageKeepsTopologyAndRecovers(t *testing.T) {
	e := newEnv(t)
	nodes := e.startNodes(2, redisprovider.Options{})
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, n.id()+" sees both members", func() bool { return n.view.len() == 2 })
	}

	e.redis.Stop()
	for _, n := range nodes {
		waitUntil(t, 2*time.Second, n.id()+" notices the outage", func() bool { return !n.p.Healthy() })
	}
	// Outlast the TTL: every key would have expired by now.
	time.Sleep(testTTL + 2*testHeartbeat)
	for _, n := range nodes {
		if n.view.len() != 2 {
			t.Fatalf("%s dropped members during the outage: %v", n.id(), n.view.ids())
		}
		if got := n.p.Outages(); got != 1 {
			t.Fatalf("%s: Outages() = %d, want 1", n.id(), got)
		}
		if got := n.logs.count(slog.LevelWarn, "Redis unreachable"); got != 1 {
			t.Fatalf("%s: %d outage warnings, want exactly 1:\n%s", n.id(), got, strings.Join(n.logs.lines(), "\n"))
		}
	}

	e.redis.Restart() // empty: every key is gone
	rdb := e.client()
	for _, n := range nodes {
		key := redisprovider.MemberKey(n.p)
		waitUntil(t, 5*time.Second, n.id()+" re-registers", func() bool {
			return n.p.Healthy() && rdb.Exists(context.Background(), key).Val() == 1
		})
	}
	// Past the grace period: the restored keys, not the grace, keep members in.
	time.Sleep(testTTL + 3*testHeartbeat)
	for _, n := range nodes {
		if n.view.len() != 2 || len(n.view.removed()) != 0 {
			t.Fatalf("%s: view %v, removed %v; want both members and no removal", n.id(), n.view.ids(), n.view.removed())
		}
		if n.logs.count(slog.LevelInfo, "Redis reachable again") != 1 {
			t.Fatalf("%s: no recovery log:\n%s", n.id(), strings.Join(n.logs.lines(), "\n"))
		}
		if got := n.p.Outages(); got != 1 {
			t.Fatalf("%s: Outages() = %d after recovery, want 1", n.id(), got)
		}
	}

	// Watching works again: a new member is seen by both.
	c := e.startNodes(1, redisprovider.Options{})[0]
	for _, n := range []*node{a, b, c} {
		waitUntil(t, 5*time.Second, n.id()+" sees all three members", func() bool { return n.view.len() == 3 })
	}
}

// TestLostKeysAreRestored covers Redis losing every key while staying up (a
// restart between two heartbeats, FLUSHALL, a failover to an empty replica):
// members re-register and nobody evicts anybody, although each node may poll
// before its peers have re-registered.
func TestLostKeysAreRestored(t *testing.T) {
	e := newEnv(t)
	nodes := e.startNodes(2, redisprovider.Options{})
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, n.id()+" sees both members", func() bool { return n.view.len() == 2 })
	}
	rdb := e.client()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		key := redisprovider.MemberKey(n.p)
		waitUntil(t, 2*time.Second, n.id()+" re-registers", func() bool { return rdb.Exists(context.Background(), key).Val() == 1 })
	}
	time.Sleep(testTTL + 2*testHeartbeat) // past the grace period
	for _, n := range nodes {
		if n.view.len() != 2 || len(n.view.removed()) != 0 {
			t.Fatalf("%s: view %v, removed %v; want both members and no removal", n.id(), n.view.ids(), n.view.removed())
		}
		if n.logs.count(slog.LevelWarn, "member key was missing from Redis") == 0 {
			t.Fatalf("%s did not report its lost key:\n%s", n.id(), strings.Join(n.logs.lines(), "\n"))
		}
		if n.p.Outages() != 0 {
			t.Fatalf("%s: Outages() = %d, want 0: Redis never went away", n.id(), n.p.Outages())
		}
	}
}

func TestClientWatchesWithoutRegistering(t *testing.T) {
	e := newEnv(t)
	m := e.startNodes(1, redisprovider.Options{})[0]
	cl := e.startClient(redisprovider.Options{})
	waitUntil(t, 5*time.Second, "client sees the member", func() bool { return slices.Equal(cl.view.ids(), []string{m.id()}) })
	if n := e.client().Exists(context.Background(), "wsactor:cluster:"+e.name+":member:"+cl.id()).Val(); n != 0 {
		t.Fatal("a client registered itself")
	}
	if !cl.p.Healthy() {
		t.Fatal("client not healthy")
	}
}

func TestShutdownLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t)
	m := e.startNodes(1, redisprovider.Options{})[0]
	cl := e.startClient(redisprovider.Options{})
	waitUntil(t, 5*time.Second, "client sees the member", func() bool { return cl.view.has(m.id()) })

	if err := m.p.Shutdown(true); err != nil {
		t.Fatalf("member Shutdown: %v", err)
	}
	if err := cl.p.Shutdown(true); err != nil {
		t.Fatalf("client Shutdown: %v", err)
	}
	if err := m.p.Shutdown(true); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	waitUntil(t, 2*time.Second, "no provider goroutine left", func() bool { return providerGoroutines() == "" })
	if s := providerGoroutines(); s != "" {
		t.Fatalf("leaked:\n%s", s)
	}
}

// TestADroppedMemberIsNotRegisteredAgain: a member whose peers dropped it
// (its key gone, its tombstone written) must not write its key back under
// the old ID, which the peers would admit again while it lived, even when
// its poll finds the key missing before its heartbeat finds the tombstone.
func TestADroppedMemberIsNotRegisteredAgain(t *testing.T) {
	e := newEnv(t)
	dropped := make(chan string, 1)
	n := e.startNodes(1, redisprovider.Options{OnDropped: func(id string) { dropped <- id }})[0]
	rdb := e.client()
	ctx := context.Background()
	key := redisprovider.MemberKey(n.p)
	waitUntil(t, 5*time.Second, "the member's key", func() bool { return rdb.Exists(ctx, key).Val() == 1 })
	prefix := strings.TrimSuffix(key, n.id())
	prefix = strings.TrimSuffix(prefix, "member:")
	// What the peers do when they drop it: a tombstone; its key is gone.
	if err := rdb.Set(ctx, prefix+"departed:"+n.id(), "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	// Wake its poll at once, ahead of its next heartbeat.
	if err := rdb.Publish(ctx, prefix+"events", `{"type":"join","id":"someone"}`).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-dropped:
		if id != n.id() {
			t.Fatalf("OnDropped(%q), want %q", id, n.id())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the member did not find its tombstone")
	}
	if rdb.Exists(ctx, key).Val() != 0 {
		t.Fatalf("the dropped member wrote its key %s back", key)
	}
	if n.logs.count(slog.LevelWarn, "member key was missing from Redis") != 0 {
		t.Fatalf("the dropped member re-registered:\n%s", strings.Join(n.logs.lines(), "\n"))
	}
}
