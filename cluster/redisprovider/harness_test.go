package redisprovider_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/cluster/redisprovider"
	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/internal/remotestart"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial through its own global logger; the
	// outage test would print dozens of lines. The provider logs outages itself.
	redis.SetLogger(quietRedisLog{})
	os.Exit(m.Run())
}

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

var quietActorLogs = actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
	return slog.New(slog.DiscardHandler)
})

type env struct {
	t     *testing.T
	redis *redistest.Server // nil in the helper process
	addr  string
	name  string
}

func newEnv(t *testing.T) *env {
	s := redistest.Start(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &env{t: t, redis: s, addr: s.Addr(), name: "test-" + hex.EncodeToString(b)}
}

func (e *env) client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                  e.addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           300 * time.Millisecond,
		MaxRetries:            1,
	})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

type node struct {
	c    *cluster.Cluster
	p    *redisprovider.Provider
	view *topologyView
	logs *logRecorder
	once sync.Once
}

func (n *node) id() string { return n.c.ActorSystem.ID }

// shutdownGraceful is protoactor's Cluster.Shutdown(true): it calls
// Provider.Shutdown(true) and then sleeps 2 s.
func (n *node) shutdownGraceful() {
	n.once.Do(func() {
		remotestart.Forget(n.c.ActorSystem.Address())
		n.c.Shutdown(true)
	})
}

// shutdownAbrupt is Cluster.Shutdown(false), which never calls the provider.
func (n *node) shutdownAbrupt() {
	n.once.Do(func() {
		remotestart.Forget(n.c.ActorSystem.Address())
		n.c.Shutdown(false)
	})
}

// stop deregisters and stops the node without protoactor's 2 s graceful
// wait, then waits for the provider's goroutines. It does not call
// Cluster.Shutdown on clients: that panics on the gossiper that StartClient
// never started (protoactor-go cluster/gossiper.go:108).
func (n *node) stop() {
	n.once.Do(func() {
		_ = n.p.Shutdown(true)
		if n.c.Remote == nil { // never started
			n.c.ActorSystem.Shutdown()
			return
		}
		remotestart.Forget(n.c.ActorSystem.Address())
		n.c.ActorSystem.Shutdown()
		n.c.Remote.Shutdown(false)
	})
	_ = n.p.Shutdown(false)
}

// startNodes starts k members. Their 1 s StartMember sleeps overlap, but the
// remote starts are serialized (see remotestart.Gate).
func (e *env) startNodes(k int, opts redisprovider.Options) []*node {
	nodes := make([]*node, k)
	var wg sync.WaitGroup
	gate := remotestart.OpenGate()
	defer gate.Close()
	for i := range nodes {
		n := e.newNode(opts)
		if err := gate.Before(); err != nil {
			e.t.Fatal(err)
		}
		wg.Go(func() { n.c.StartMember() })
		gate.After(e.registeredEndpoint(n.id()))
		nodes[i] = n
	}
	wg.Wait()
	return nodes
}

// startClient starts a cluster client (StartClient does not sleep).
func (e *env) startClient(opts redisprovider.Options) *node {
	n := e.newNode(opts)
	gate := remotestart.OpenGate()
	defer gate.Close()
	if err := gate.Before(); err != nil {
		e.t.Fatal(err)
	}
	n.c.StartClient()
	gate.After(n.c.ActorSystem.Address())
	return n
}

func (e *env) newNode(opts redisprovider.Options) *node {
	logs := &logRecorder{}
	if opts.Logger == nil {
		opts.Logger = slog.New(logs)
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = testHeartbeat
	}
	if opts.TTL == 0 {
		opts.TTL = testTTL
	}
	p := redisprovider.New(e.client(), opts)
	system := actor.NewActorSystem(quietActorLogs)
	view := &topologyView{}
	system.EventStream.Subscribe(view.handle)
	cfg := cluster.Configure(e.name, p, disthash.New(),
		remote.Configure("127.0.0.1", 0, remote.WithEndpointWriterQueueSize(1024)),
		noGossipRounds)
	n := &node{c: cluster.New(system, cfg), p: p, view: view, logs: logs}
	e.t.Cleanup(n.stop)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("provider log of %s:\n%s", n.id(), strings.Join(logs.lines(), "\n"))
		}
	})
	return n
}

// registeredEndpoint waits for member id's key and returns its remote address.
func (e *env) registeredEndpoint(id string) string {
	rdb := e.client()
	key := "wsactor:cluster:" + e.name + ":member:" + id
	var rec struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	}
	waitUntil(e.t, 10*time.Second, id+" registers", func() bool {
		b, err := rdb.Get(context.Background(), key).Bytes()
		return err == nil && json.Unmarshal(b, &rec) == nil
	})
	return net.JoinHostPort(rec.Host, strconv.Itoa(rec.Port))
}

// noGossipRounds disables protoactor's periodic gossip in tests: every
// gossip actor of the process shuffles one package-level math/rand.Rand
// (protoactor-go cluster/informer.go:25, used at :122), a data race as soon
// as one process runs two cluster members. Membership does not use gossip.
var noGossipRounds cluster.ConfigOption = func(c *cluster.Config) { c.GossipInterval = time.Hour }

func idsOf(nodes []*node) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.id()
	}
	slices.Sort(ids)
	return ids
}

// topologyView follows protoactor's ClusterTopology events. Reading
// MemberList.Members() from a test goroutine would race: protoactor swaps
// the set under a lock that Members() does not take.
type topologyView struct {
	mu      sync.Mutex
	members []string
	left    []string
}

func (v *topologyView) handle(evt any) {
	top, ok := evt.(*cluster.ClusterTopology)
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.members = v.members[:0]
	for _, m := range top.Members {
		v.members = append(v.members, m.Id)
	}
	slices.Sort(v.members)
	for _, m := range top.Left {
		v.left = append(v.left, m.Id)
	}
}

func (v *topologyView) ids() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.members)
}

func (v *topologyView) len() int { return len(v.ids()) }

func (v *topologyView) has(id string) bool { return slices.Contains(v.ids(), id) }

func (v *topologyView) removed() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.left)
}

// logRecorder is a slog.Handler that keeps records for assertions.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

func (r *logRecorder) count(level slog.Level, msgPrefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.HasPrefix(rec.Message, msgPrefix) {
			n++
		}
	}
	return n
}

func (r *logRecorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.recs))
	for _, rec := range r.recs {
		line := rec.Time.Format("15:04:05.000") + " " + rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		out = append(out, line)
	}
	return out
}

// waitUntil polls cond until it holds or d passes; it fails the test on timeout.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// providerGoroutines returns the stacks of goroutines running provider code.
func providerGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cluster/redisprovider.(*Provider)") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
