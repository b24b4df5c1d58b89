package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// helperRoom starts a helper node process in the pool's cluster, with the
// servers s of the pool nodes, and finds a room name that the identity
// lookup places on the helper. It returns the helper, its /play URL, its
// address and the room's name.
func helperRoom(t *testing.T, p *pool, s []*roomServer, kind string) (*helper, string, string, string) {
	t.Helper()
	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+p.redisA.Addr(),
		helperNameEnv+"="+s[0].node.cfg.Cluster.Name,
		helperPrefixEnv+"="+s[0].node.cfg.Redis.KeyPrefix,
		helperServerEnv+"="+s[0].name,
	)
	var output []string
	url := strings.TrimSuffix(h.value(t, helperURLPrefix, &output), "/ws") + "/play"
	addr := h.value(t, helperNodePrefix, &output)
	for _, n := range p.a {
		waitUntil(t, testTimeout, "the pool sees the helper node", func() bool { return slices.Contains(n.Peers(), addr) })
	}
	// A room placed on the helper: none of the pool's servers activates it.
	active := func() (n int64) {
		for _, srv := range s {
			n += srv.Rooms().Stats().RoomsActive
		}
		return n
	}
	for i := range 50 {
		// Named after the servers: the nodes' room store is the cluster's,
		// so the rooms of earlier tests' servers share its keys.
		name := fmt.Sprintf("%s-far%d", s[0].name, i)
		before := active()
		probe := roomstest.Dial(t, s[0].url, "probe")
		probe.Join(kind, name)
		probe.Send(map[string]string{"op": "leave"})
		_ = probe.Conn.CloseNow()
		if active() == before {
			return h, url, addr, name
		}
	}
	t.Fatal("no room name of 50 was placed on the helper node")
	return nil, "", "", ""
}

// TestRoomSurvivesItsNode: SIGKILL of the node hosting a room. The room is
// activated again on a survivor from its last snapshot, and goes on ticking
// from there; its players on the surviving nodes are attached to it again
// without doing anything; the player of the dead node reconnects with its
// token on another node and gets its seat back.
func TestRoomSurvivesItsNode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, nil, echoKind, tickerKind)
	h, helperURL, addr, room := helperRoom(t, p, s, "ticker")

	a := roomstest.Dial(t, s[0].url, "a")
	b := roomstest.Dial(t, s[1].url, "b")
	far := roomstest.Dial(t, helperURL, "far")
	seats := map[*roomstest.Client]float64{}
	var token string
	for _, c := range []*roomstest.Client{a, b, far} {
		j := c.Join("ticker", room)
		seats[c] = j["seat"].(float64)
		token = j["token"].(string) // far's, the last
	}
	last := waitTick(t, a, 20) // the room has ticked and saved a few times
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = h.cmd.Wait()
	// The dead node's player comes back through another node with its
	// token at once, as a page does, while the survivors still list the
	// dead node: the lookup must not be sent to it (protoactor would wait
	// 5 s for it, and every lookup of that node behind it).
	again := roomstest.Dial(t, s[1].url, "far-again")
	again.Send(map[string]string{"op": "reconnect", "token": token})
	for _, c := range []*roomstest.Client{a, b} {
		j := c.Event("joined")
		if j["again"] != true || j["seat"] != seats[c] {
			t.Fatalf("%s after the room's node died: %v", c.Name, j)
		}
	}
	after := waitTick(t, a, 0)
	t.Logf("the room ticked again %v after SIGKILL of its node (member TTL %v), at %d (last seen before: %d)",
		time.Since(killed).Round(time.Millisecond), testTTL, after, last)
	if after < last-5 {
		t.Fatalf("the room restarted at tick %d; its snapshot was at %d or later", after, last-5)
	}
	if j := again.Event("joined"); j["again"] != true || j["seat"] != seats[far] {
		t.Fatalf("the dead node's player reconnecting: %v", j)
	}
	t.Logf("the dead node's player was back in its seat %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	// (The room's "back:<seat>" may reach a before a is attached again: the
	// two happen at once now, so the test does not wait for it.)
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every node drops the killed one", func() bool { return !slices.Contains(n.Peers(), addr) })
	}
}

// TestRoomHandsOverOnShutdown: the node hosting a room shuts down cleanly
// (Server.Shutdown, then Node.Stop). The room saves its final snapshot
// before the node leaves (its kind snapshots only hourly: nothing else
// carries its count), and its next activation, on a surviving node,
// restores it: the count goes on from where the players last saw it. The
// players of the surviving nodes are attached to it again; the player of
// the stopped node got 1001.
func TestRoomHandsOverOnShutdown(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, nil, echoKind, tickerKind, handoverKind)
	h, helperURL, addr, room := helperRoom(t, p, s, "handover")

	a := roomstest.Dial(t, s[0].url, "a")
	b := roomstest.Dial(t, s[1].url, "b")
	far := roomstest.Dial(t, helperURL, "far")
	seats := map[*roomstest.Client]float64{}
	for _, c := range []*roomstest.Client{a, b, far} {
		seats[c] = c.Join("handover", room)["seat"].(float64)
	}
	last := waitTick(t, a, 20) // the room has ticked a second since its first snapshot
	farClosed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := far.Conn.Read(context.Background()); err != nil {
				farClosed <- err
				return
			}
		}
	}()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// a reads the ticks until the room moves: the last it sees is at most
	// where the room stopped.
	for {
		msg := a.Read()
		var n int64
		if _, err := fmt.Sscanf(msg, "t:%d", &n); err == nil {
			last = n
			continue
		}
		var ev map[string]any
		if json.Unmarshal([]byte(msg), &ev) == nil && ev["ev"] == "joined" {
			if ev["again"] != true || ev["seat"] != seats[a] {
				t.Fatalf("a after the room's node stopped: %v", ev)
			}
			break
		}
	}
	if j := b.Event("joined"); j["again"] != true || j["seat"] != seats[b] {
		t.Fatalf("b after the room's node stopped: %v", j)
	}
	after := waitTick(t, a, 0)
	t.Logf("the room went on at tick %d; the players had last seen %d", after, last)
	if after <= last {
		t.Fatalf("the room's next activation started at tick %d, at or before %d that the players had seen: its final snapshot was lost", after, last)
	}
	if err := <-farClosed; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("the stopped node's player: want 1001, got %v", err)
	}
	var output []string
	if res := h.value(t, helperStopped, &output); res != "<nil>" {
		t.Fatalf("the helper node's Shutdown and Stop: %s", res)
	}
	ls, err := s[0].Rooms().List(testCtx(t), "handover", nil)
	if i := slices.IndexFunc(ls, func(l rooms.Listing) bool { return l.Name == room }); err != nil || i < 0 || ls[i].Node == "" || ls[i].Node == addr {
		t.Fatalf("the room's listing: %+v, %v; want it on a surviving node", ls, err)
	}
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every node drops the stopped one", func() bool { return !slices.Contains(n.Peers(), addr) })
	}
}

// waitTick reads c's messages until a tick broadcast "t:<n>" with n >= min
// and returns n.
func waitTick(t *testing.T, c *roomstest.Client, min int64) int64 {
	t.Helper()
	for {
		msg := c.Read()
		var n int64
		if _, err := fmt.Sscanf(msg, "t:%d", &n); err == nil && n >= min {
			return n
		}
	}
}

// TestStaleRoomActivationIsFenced: the node hosting a room is stopped
// (SIGSTOP) past the member TTL. The room is activated again on a survivor,
// under a higher epoch, and its players follow it. When the stopped node
// resumes, its old activation runs on for a moment: its messages must not
// reach the players (their nodes drop an older epoch), and its next save
// must fail, which stops it (it never writes over the new activation).
func TestStaleRoomActivationIsFenced(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, nil, echoKind, tickerKind)
	h, _, addr, room := helperRoom(t, p, s, "ticker")
	t.Cleanup(func() { _ = h.cmd.Process.Signal(syscall.SIGCONT) })
	a := roomstest.Dial(t, s[0].url, "a")
	b := roomstest.Dial(t, s[1].url, "b")
	a.Join("ticker", room)
	b.Join("ticker", room)
	before := waitTick(t, a, 10)

	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, n := range p.a {
		waitUntil(t, testTTL+testHeartbeat+5*time.Second, "the pool drops the stopped node", func() bool {
			return !slices.Contains(n.Peers(), addr)
		})
	}
	for _, c := range []*roomstest.Client{a, b} {
		if j := c.Event("joined"); j["again"] != true {
			t.Fatalf("%s after the room's node stopped: %v", c.Name, j)
		}
	}
	moved := waitTick(t, a, 0)
	t.Logf("the room moved: it ticked at %d before, and goes on from %d", before, moved)

	if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var output []string
	if n := h.value(t, helperFenced, &output); n != "1" {
		t.Fatalf("the resumed node's room activations fenced: %s, want 1", n)
	}
	// What a and b got meanwhile came from the new activation only: its
	// count goes up one step at a time, where the stale one's would jump
	// (it ticked on for the whole stop) and come back.
	last := moved
	for range 10 {
		n := waitTick(t, a, 0)
		if n != last+5 {
			t.Fatalf("tick %d after %d: a message of another activation reached the player", n, last)
		}
		last = n
	}
	stopHelper(t, p, h, addr)
}

// TestRoomLearnsThatAPlayersNodeDied: a room is told that a player is gone
// (OnDrop) when the player's whole node dies, within the member TTL, without
// polling.
func TestRoomLearnsThatAPlayersNodeDied(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a...)
	s := startRoomServers(t, p.a, nil, echoKind, tickerKind, watchKind)
	h, helperURL, addr, _ := helperRoom(t, p, s, "echo")
	// A room on one of the pool's nodes (not the helper's, which dies).
	active := func() (n int64) {
		for _, srv := range s {
			n += srv.Rooms().Stats().RoomsActive
		}
		return n
	}
	room := ""
	for i := 0; room == "" && i < 50; i++ {
		name := fmt.Sprintf("%s-w%d", s[0].name, i)
		before := active()
		probe := roomstest.Dial(t, s[0].url, "probe")
		probe.Join("watch", name)
		if active() > before {
			room = name
		}
		probe.Send(map[string]string{"op": "leave"})
		_ = probe.Conn.CloseNow()
	}
	if room == "" {
		t.Fatal("no room name of 50 was placed on the pool's nodes")
	}
	local := roomstest.Dial(t, s[0].url, "local")
	local.Join("watch", room)
	far := roomstest.Dial(t, helperURL, "far")
	seat := far.Join("watch", room)["seat"].(float64)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = h.cmd.Wait()
	local.Expect(fmt.Sprintf("drop:%d", int(seat)))
	t.Logf("the room saw its player's node die %v after SIGKILL (member TTL %v)", time.Since(killed).Round(time.Millisecond), testTTL)
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every node drops the killed one", func() bool { return !slices.Contains(n.Peers(), addr) })
	}
}
