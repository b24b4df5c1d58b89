package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/coder/websocket"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// The helper processes are this test binary run again with
// -test.run=^TestHelper...$ and these variables.
const (
	helperEnv       = "WSACTOR_CLUSTER_TEST_HELPER" // which helper: "node" or "failed-start"
	helperRedisEnv  = "WSACTOR_CLUSTER_TEST_REDIS"
	helperNameEnv   = "WSACTOR_CLUSTER_TEST_CLUSTER"
	helperPrefixEnv = "WSACTOR_CLUSTER_TEST_PREFIX"
	helperServerEnv = "WSACTOR_CLUSTER_TEST_SERVER"
	helperPortEnv   = "WSACTOR_CLUSTER_TEST_PORT" // the remote port; default any
	helperTTLEnv    = "WSACTOR_CLUSTER_TEST_TTL"  // the member TTL; default testTTL
	helperDropEnv   = "WSACTOR_CLUSTER_TEST_WHEN_DROPPED"
	helperLogEnv    = "WSACTOR_CLUSTER_TEST_LOG"         // "json": every record, Debug and up, as JSON on stderr
	helperWithinEnv = "WSACTOR_CLUSTER_TEST_STOP_WITHIN" // the context of Shutdown and Stop; default 2*testTimeout

	helperURLPrefix  = "HELPER_URL="
	helperNodePrefix = "HELPER_NODE="
	helperMemberID   = "HELPER_MEMBER="
	helperStopped    = "HELPER_STOPPED="
	helperRejoined   = "HELPER_REJOINED=" // the new member ID, once the node rejoined
	helperIsolated   = "HELPER_ISOLATED=" // once the node is out of its cluster
	helperFenced     = "HELPER_FENCED="   // the room activations that lost their fence
	helperOverrun    = "HELPER_OVERRUN="  // how long after their context's deadline Shutdown and Stop returned
)

// helper runs this test binary as a helper process.
type helper struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	lines  chan string
}

func startHelper(t *testing.T, test string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), raceEnv(t.TempDir())), env...)
	h := &helper{cmd: cmd, stderr: &syncBuffer{}, lines: make(chan string, 100)}
	cmd.Stderr = h.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("stderr of the helper process:\n%s", h.stderr)
		}
	})
	return h
}

// value waits for the line starting with prefix and returns the rest.
func (h *helper) value(t *testing.T, prefix string, output *[]string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("the helper process ended without printing %s; its output:\n%s", prefix, strings.Join(*output, "\n"))
			}
			*output = append(*output, line)
			if v, ok := strings.CutPrefix(line, prefix); ok {
				return v
			}
		case <-deadline:
			t.Fatalf("the helper process did not print %s", prefix)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSIGKILLedNode runs a node of pool cluster a in another process, with a
// client of this process connected to it and joined to a group, then kills it
// with SIGKILL. The survivors drop its connections from the directory within
// the member TTL, the group's remaining member hears one "left" event, and
// sends to them fail at once.
func TestSIGKILLedNode(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	// A server on every pool node, not only the two the test uses: any
	// survivor may be the one that removes the departed node's entries
	// from the directory, and it announces the "left" events through its
	// own servers (Node.nodeGone), so a node without this server would
	// swallow them.
	survivors := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})[:2]
	name := survivors[0].node.cfg.Cluster.Name
	group, user := testSeq("doomed"), testSeq("fay")

	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+p.redisA.Addr(),
		helperNameEnv+"="+name,
		helperPrefixEnv+"="+survivors[0].node.cfg.Redis.KeyPrefix,
		// The same server name: one logical server across the nodes, so
		// that broadcasts and presence events cross between them.
		helperServerEnv+"="+survivors[0].name,
	)
	var output []string
	url := h.value(t, helperURLPrefix, &output)
	deadAddr := h.value(t, helperNodePrefix, &output)
	for _, s := range survivors {
		waitUntil(t, testTimeout, "the survivors see the helper node", func() bool {
			return slices.Contains(s.node.Peers(), deadAddr)
		})
	}

	local := survivors[0].connect(t, "group="+group+"&name=local")
	doomed := dialClient(t, url+"?group="+group+"&name=doomed&user="+user)
	if addr, _ := doomed.id.Address(); addr != deadAddr {
		t.Fatalf("the helper's connection has address %q, want %q", addr, deadAddr)
	}
	wantEvent(t, local, joined, group, doomed.id, "doomed", user)
	ctx := testCtx(t)
	for _, s := range survivors {
		waitMembers(t, s.Server, group, local.id, doomed.id)
	}
	if err := survivors[1].Send(ctx, doomed.id, wsactor.Text("from another process")); err != nil {
		t.Fatalf("Send to the helper's connection: %v", err)
	}
	doomed.expect("from another process")
	if n, err := survivors[0].Groups().SendToUser(ctx, user, wsactor.Text("to the user")); err != nil || n != 1 {
		t.Fatalf("SendToUser to the helper's connection: %d, %v", n, err)
	}
	doomed.expect("to the user")

	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = h.cmd.Wait()

	// Within the TTL, plus one poll of the survivors, plus slack for a
	// loaded machine: the node leaves and its connections with it.
	for i, s := range survivors {
		waitUntil(t, testTTL+testHeartbeat+5*time.Second, fmt.Sprintf("survivor %d drops the killed node's connection", i), func() bool {
			ids, err := memberIDs(ctx, s.Server, group)
			return err == nil && slices.Equal(ids, []wsactor.ID{local.id}) && !slices.Contains(s.node.Peers(), deadAddr)
		})
	}
	t.Logf("the killed node's connection left the directory %v after SIGKILL (member TTL %v, heartbeat %v)",
		time.Since(killed).Round(time.Millisecond), testTTL, testHeartbeat)
	// The remaining member hears that the dead node's connection left, as
	// if it had closed: once, though both survivors clean up (the check of
	// "once" is the "still here" below, which must be the next message).
	wantEvent(t, local, left, group, doomed.id, "doomed", user)
	// Every node of the pool's cluster drops it before the test ends: a
	// later helper node connecting to one still blocking this one would race
	// in protoactor (see connectAll).
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every pool node drops the killed node", func() bool {
			return !slices.Contains(n.Peers(), deadAddr)
		})
	}
	if ids, err := survivors[1].Groups().Directory().UserConns(ctx, user); err != nil || len(ids) != 0 {
		t.Fatalf("the killed node's user connections: %v, %v; want none", ids, err)
	}
	if n, err := survivors[1].Groups().SendToUser(ctx, user, wsactor.Text("x")); err != nil || n != 0 {
		t.Fatalf("SendToUser to a user whose only connection died with its node: %d, %v", n, err)
	}

	// Sends to the dead node's connection fail at once rather than stall in
	// protoactor's reconnect loop (which would end the 1 s context first).
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for op, err := range map[string]error{
		"Send":  survivors[0].Send(short, doomed.id, wsactor.Text("x")),
		"Close": survivors[0].Close(short, doomed.id, 4000, ""),
		"Post":  survivors[0].Post(doomed.id, wsactor.Text("x")),
		"Join":  survivors[0].Groups().Join(short, group, doomed.id, nil),
	} {
		if !errors.Is(err, wsactor.ErrConnectionNotFound) {
			t.Errorf("%s to a connection of the killed node: want ErrConnectionNotFound, got %v", op, err)
		}
	}
	if short.Err() != nil {
		t.Fatalf("the calls took the whole context: %v", short.Err())
	}
	// The survivors still work together.
	if _, err := survivors[1].Groups().Broadcast(ctx, group, wsactor.Text("still here")); err != nil {
		t.Fatal(err)
	}
	local.expect("still here")
	wantNoEvent(t, local, left, doomed.id)
}

// TestStoppedNodeLeaves stops a node of another process cleanly (Server
// Shutdown, then Node.Stop): its clients get 1001, and the survivors drop its
// connections and the node itself without waiting for the member TTL.
func TestStoppedNodeLeaves(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	// A server on every pool node, not only the two the test uses: any
	// survivor may be the one that removes the departed node's entries
	// from the directory, and it announces the "left" events through its
	// own servers (Node.nodeGone), so a node without this server would
	// swallow them.
	survivors := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})[:2]
	group := testSeq("leaving")
	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+p.redisA.Addr(),
		helperNameEnv+"="+survivors[0].node.cfg.Cluster.Name,
		helperPrefixEnv+"="+survivors[0].node.cfg.Redis.KeyPrefix,
		helperServerEnv+"="+survivors[0].name,
	)
	var output []string
	url := h.value(t, helperURLPrefix, &output)
	addr := h.value(t, helperNodePrefix, &output)
	for _, n := range p.a {
		waitUntil(t, testTimeout, "the pool nodes see the helper node", func() bool { return slices.Contains(n.Peers(), addr) })
	}
	local := survivors[1].connect(t, "group="+group+"&name=local")
	leaving := dialClient(t, url+"?group="+group+"&name=leaving")
	wantEvent(t, local, joined, group, leaving.id, "leaving", "")
	waitMembers(t, survivors[0].Server, group, local.id, leaving.id)

	closed := leaving.closed()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	wantCloseCode(t, closed, wsactor.StatusGoingAway, "going away")
	wantEvent(t, local, left, group, leaving.id, "leaving", "")
	if res := h.value(t, helperStopped, &output); res != "<nil>" {
		t.Fatalf("the helper node's Shutdown and Stop: %s", res)
	}
	stopped := time.Now()
	for _, n := range p.a {
		waitUntil(t, testTimeout, "the pool nodes drop the stopped node", func() bool { return !slices.Contains(n.Peers(), addr) })
	}
	t.Logf("Shutdown and Stop took %v; the survivors dropped the node %v after Stop returned (member TTL %v)",
		stopped.Sub(asked).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond), testTTL)
	waitMembers(t, survivors[0].Server, group, local.id)
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("the helper process: %v\n%s", err, strings.Join(output, "\n"))
	}
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := survivors[0].Send(short, leaving.id, wsactor.Text("x")); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("Send to a connection of the stopped node: want ErrConnectionNotFound, got %v", err)
	}
}

// TestShortStopReturnsPromptly stops a node of another process with a
// context too short for a graceful stop: a client that never reads holds
// its closing handshake up for 5 s, a handler is stuck in OnMessage, a room
// must hand over, and protoactor takes 2 s to leave. Shutdown and Node.Stop together return the context's
// error shortly after it ends (Shutdown alone used to overrun it by up to 7 s).
func TestShortStopReturnsPromptly(t *testing.T) {
	r := redistest.Start(t)
	name := randomName("short-")
	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+r.Addr(),
		helperNameEnv+"="+name,
		helperPrefixEnv+"=wsactor-test:"+name+":",
		helperServerEnv+"=short",
		helperWithinEnv+"=500ms",
	)
	var output []string
	url := h.value(t, helperURLPrefix, &output)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	deaf, _, err := websocket.Dial(ctx, url, nil) // never reads: never answers the closing handshake
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.CloseNow()
	stuck, _, err := websocket.Dial(ctx, strings.TrimSuffix(url, "/ws")+"/stuck", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()
	if err := stuck.Write(ctx, websocket.MessageText, []byte("hold on")); err != nil {
		t.Fatal(err)
	}
	player := roomstest.Dial(t, strings.TrimSuffix(url, "/ws")+"/play", "p")
	player.Join("ticker", "short")
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	over, err := time.ParseDuration(h.value(t, helperOverrun, &output))
	if err != nil {
		t.Fatal(err)
	}
	res := h.value(t, helperStopped, &output)
	t.Logf("Shutdown and Stop returned %v after their context's deadline: %s", over, res)
	if !strings.Contains(res, "context deadline exceeded") {
		t.Fatalf("Shutdown and Stop: %s; want the context's error", res)
	}
	// Generous for a loaded machine, and far short of the 2 s protoactor's
	// leaving alone takes.
	if over > time.Second {
		t.Fatalf("Shutdown and Stop returned %v after their context ended", over)
	}
}

// TestNodeRestartedOnSameAddress kills a node of another process and
// restarts it on the same address before its membership expires, so that no
// survivor sees it leave. The new process clears what the old one left in the
// directory when it starts, and the group's members hear "left" for its
// connection once. When the old membership ends later, the survivors'
// clean-up for it must leave the new process's connections alone.
func TestNodeRestartedOnSameAddress(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	// A server on every pool node, not only the two the test uses: any
	// survivor may be the one that removes the departed node's entries
	// from the directory, and it announces the "left" events through its
	// own servers (Node.nodeGone), so a node without this server would
	// swallow them.
	survivors := startServers(t, p.a, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})[:2]
	cfg := survivors[0].node.cfg
	group, user := testSeq("restarted"), testSeq("gus")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	env := []string{
		helperEnv + "=node",
		helperRedisEnv + "=" + p.redisA.Addr(),
		helperNameEnv + "=" + cfg.Cluster.Name,
		helperPrefixEnv + "=" + cfg.Redis.KeyPrefix,
		helperServerEnv + "=" + survivors[0].name,
		helperPortEnv + "=" + port,
		// Longer than the test: the old membership ends when the test
		// deletes its key, after the new process is up.
		helperTTLEnv + "=2m",
	}

	first := startHelper(t, "TestHelperNode", env...)
	var output []string
	url := first.value(t, helperURLPrefix, &output)
	addr := first.value(t, helperNodePrefix, &output)
	oldMember := first.value(t, helperMemberID, &output)
	for _, s := range survivors {
		waitUntil(t, testTimeout, "the survivors see the helper node", func() bool { return slices.Contains(s.node.Peers(), addr) })
	}
	local := survivors[0].connect(t, "group="+group+"&name=local")
	doomed := dialClient(t, url+"?group="+group+"&name=doomed&user="+user)
	wantEvent(t, local, joined, group, doomed.id, "doomed", user)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startHelper(t, "TestHelperNode", env...)
	output = nil
	url = second.value(t, helperURLPrefix, &output)
	if again := second.value(t, helperNodePrefix, &output); again != addr {
		t.Fatalf("the restarted node's address is %s, want %s", again, addr)
	}
	if newMember := second.value(t, helperMemberID, &output); newMember == oldMember {
		t.Fatalf("the restarted node has the old member ID %s", newMember)
	}
	wantEvent(t, local, left, group, doomed.id, "doomed", user)
	fresh := dialClient(t, url+"?group="+group+"&name=fresh")
	wantEvent(t, local, joined, group, fresh.id, "fresh", "")
	ctx := testCtx(t)
	waitMembers(t, survivors[1].Server, group, local.id, fresh.id)
	if ids, err := survivors[1].Groups().Directory().UserConns(ctx, user); err != nil || len(ids) != 0 {
		t.Fatalf("the old process's user connections: %v, %v; want none", ids, err)
	}

	// The old membership ends, as its key would expire after the TTL.
	before := []int64{p.a[0].Stats().Departures, p.a[1].Stats().Departures}
	rdb := redis.NewClient(&redis.Options{Addr: p.redisA.Addr()})
	defer rdb.Close()
	if n, err := rdb.Del(ctx, cfg.Redis.KeyPrefix+"cluster:"+cfg.Cluster.Name+":member:"+oldMember).Result(); err != nil || n != 1 {
		t.Fatalf("deleting the old member's key: %d, %v", n, err)
	}
	for i, n := range p.a[:2] {
		waitUntil(t, testTimeout, fmt.Sprintf("survivor %d handles the old member's departure", i), func() bool {
			return n.Stats().Departures > before[i]
		})
	}
	// The new process's connection is still listed, and still reachable.
	if ids, err := memberIDs(ctx, survivors[0].Server, group); err != nil || !slices.Equal(ids, sortedIDs(local.id, fresh.id)) {
		t.Fatalf("members after the old member's departure: %v, %v; want %v", ids, err, sortedIDs(local.id, fresh.id))
	}
	if err := survivors[1].Send(ctx, fresh.id, wsactor.Text("still yours")); err != nil {
		t.Fatalf("Send to the new process's connection: %v", err)
	}
	fresh.expect("still yours")
	// No second "left": the next thing the local member hears is this.
	if _, err := survivors[1].Groups().Broadcast(ctx, group, wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	local.expect("marker")
	fresh.expect("marker")

	// Stop the new process cleanly, so that the pool drops it now rather than
	// after its long TTL (later tests need a pool without dead members).
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if res := second.value(t, helperStopped, &output); res != "<nil>" {
		t.Fatalf("the restarted node's Shutdown and Stop: %s", res)
	}
	for _, n := range p.a {
		waitUntil(t, testTimeout, "every pool node drops the restarted node", func() bool {
			return !slices.Contains(n.Peers(), addr)
		})
	}
}

// TestHelperNode is the node process of TestSIGKILLedNode and
// TestStoppedNodeLeaves: cluster.NewServer with the route /ws, served on a
// free port. It prints the route's URL and the node's address, then waits to
// be killed, or for SIGTERM, on which it shuts the server down, stops the
// node and prints the result.
func TestHelperNode(t *testing.T) {
	if os.Getenv(helperEnv) != "node" {
		t.Skip("helper process of TestSIGKILLedNode and TestStoppedNodeLeaves")
	}
	cfg := testConfig(os.Getenv(helperRedisEnv), os.Getenv(helperNameEnv))
	cfg.Redis.KeyPrefix = os.Getenv(helperPrefixEnv)
	if v := os.Getenv(helperPortEnv); v != "" {
		port, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Node.Port = port
	}
	if v := os.Getenv(helperTTLEnv); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Membership.MemberTTL = ttl
	}
	if v := os.Getenv(helperDropEnv); v != "" {
		cfg.Membership.WhenDropped = v
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if os.Getenv(helperLogEnv) == "json" {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, node, err := cluster.NewServer(context.Background(), cfg, wsactor.Options{
		Name:   os.Getenv(helperServerEnv),
		Logger: logger,
		Groups: wsactor.GroupsOptions{PresenceEvents: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("/ws", func() wsactor.Handler { return &member{} }, wsactor.WithAuthenticator(userFromQuery))
	s.Rooms().Define(echoKind)
	s.Rooms().Define(tickerKind)
	s.Rooms().Define(watchKind)
	s.Rooms().Define(handoverKind)
	s.Handle("/play", func() wsactor.Handler { return roomstest.NewPlayer(s.Rooms()) },
		wsactor.WithRateLimit(wsactor.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}))
	// A handler stuck in OnMessage until the process ends: its actor can
	// neither close nor stop.
	s.HandleFunc("/stuck", func(*wsactor.Conn, wsactor.Message) error { select {} })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() { _ = s.Serve(l) }()
	// Open this node's connection to every member now, before the test's
	// scenario: protoactor reads its block list unlocked on each new inbound
	// connection, so this node's first message to a pool node, at the moment
	// that node blocks it for leaving, would race in the test process (see
	// connectAll in pool_test.go).
	if err := connectTo(node.System, node.Peers()); err != nil {
		t.Fatal(err)
	}
	fmt.Println(helperURLPrefix + "ws://" + l.Addr().String() + "/ws")
	fmt.Println(helperNodePrefix + node.Address())
	fmt.Println(helperMemberID + node.System.ID)
	go reportRejoins(node)
	go func() {
		for s.Rooms().Stats().Fenced == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("%s%d\n", helperFenced, s.Rooms().Stats().Fenced)
	}()
	// The parent kills this process, or asks it to stop with SIGTERM; the
	// bound only guards against orphans.
	select {
	case <-stop:
	case <-time.After(2 * time.Minute):
		t.Fatal("nobody stopped the helper node")
	}
	within := 2 * testTimeout
	if v := os.Getenv(helperWithinEnv); v != "" {
		if within, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	err = errors.Join(s.Shutdown(ctx), node.Stop(ctx))
	deadline, _ := ctx.Deadline()
	fmt.Printf("%s%v\n", helperOverrun, time.Since(deadline))
	fmt.Printf("%s%v\n", helperStopped, err)
	if err != nil && os.Getenv(helperWithinEnv) == "" {
		t.Fatal(err)
	}
	settleRaces(t)
}

// reportRejoins prints when the node is dropped from its cluster, and when
// it rejoins its new member ID and its stats.
func reportRejoins(node *cluster.Node) {
	for !node.Isolated() {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("%s%+v\n", helperIsolated, node.Stats())
	for node.MemberID() == node.System.ID || node.Isolated() {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(helperRejoined + node.MemberID())
}

// TestFailedStartLeavesNothingRunning runs, in a process of its own, a Start
// whose membership provider fails after protoactor's remote endpoint began
// listening: Start must return the error with nothing left running. (Its own
// process, because starting a remote endpoint while the in-process nodes run
// is a data race in protoactor: see harness_test.go.)
func TestFailedStartLeavesNothingRunning(t *testing.T) {
	r := redistest.Start(t)
	h := startHelper(t, "TestHelperFailedStart", helperEnv+"=failed-start", helperRedisEnv+"="+r.Addr())
	var output []string
	for line := range h.lines {
		output = append(output, line)
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("the helper process failed (%v):\n%s\n%s", err, strings.Join(output, "\n"), h.stderr)
	}
	if !slices.ContainsFunc(output, func(l string) bool { return strings.HasPrefix(l, "--- PASS: TestHelperFailedStart") }) {
		t.Fatalf("the helper process did not run the test:\n%s", strings.Join(output, "\n"))
	}
}

func TestHelperFailedStart(t *testing.T) {
	if os.Getenv(helperEnv) != "failed-start" {
		t.Skip("helper process of TestFailedStartLeavesNothingRunning")
	}
	cfg := testConfig(os.Getenv(helperRedisEnv), randomName("failed-"))
	cfg.Node.Port = freePort(t)
	before := goroutines()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := cluster.StartWithProvider(ctx, cfg, refusingProvider{}, logger)
	if err == nil {
		_ = n.Stop(ctx)
		t.Fatal("Start succeeded")
	}
	if !strings.Contains(err.Error(), "membership refused") {
		t.Fatalf("want the provider's error, got %v", err)
	}
	addr := net.JoinHostPort(cfg.Node.Host, strconv.Itoa(cfg.Node.Port))
	waitUntil(t, 5*time.Second, "the remote endpoint's port is free again", func() bool {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	})
	wantNoNewGoroutines(t, before)
}

// refusingProvider is a membership provider that cannot join.
type refusingProvider struct{}

func (refusingProvider) StartMember(*protocluster.Cluster) error {
	return errors.New("membership refused")
}
func (refusingProvider) StartClient(*protocluster.Cluster) error {
	return errors.New("membership refused")
}
func (refusingProvider) Shutdown(bool) error { return nil }
