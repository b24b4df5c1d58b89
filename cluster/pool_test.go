package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/internal/remotestart"
	"github.com/wsactor/wsactor/internal/wire"
)

// These tests run several cluster nodes in one process. protoactor-go is not
// race-detector clean with more than one node per process, so the pool works
// around its data races:
//
//   - remote.(*Remote).Start writes gRPC's process-wide logger
//     (protoactor-go remote/server.go:74) while gRPC goroutines of the
//     endpoints already running read it. Every in-process node is started
//     once, in one batch, before any cross-node traffic, through a
//     remotestart.Gate: a later start would race with the gRPC client
//     goroutines that traffic creates, which no probe can order. Tests share
//     the nodes.
//   - every gossip actor shuffles one package-level math/rand.Rand
//     (cluster/informer.go:25) in its gossip rounds: wsactor's nodes run none
//     (see withoutGossipRounds in node.go).
//   - BlockList.IsBlocked reads the block list unlocked (remote/blocklist.go:44)
//     on every new inbound connection: see connectAll.
//   - Remote.Shutdown races with endpoint writers to peers that are going
//     away (remote/endpoint_manager.go:120 against :292): the nodes are never
//     stopped; the process ends with them. Node.Stop runs in process_test.go.
//   - MemberList.Members() reads the member set without the lock its writer
//     holds: tests read membership with Node.Peers, which follows topology
//     events.
//
// Scenarios that kill or stop a node run it in another OS process
// (process_test.go).

const (
	testTimeout   = 10 * time.Second
	testHeartbeat = 300 * time.Millisecond
	testTTL       = 1500 * time.Millisecond
)

func TestMain(m *testing.M) {
	code := m.Run()
	if p := thePool.p; p != nil {
		p.close()
	}
	os.Exit(code)
}

// testConfig is cluster.Default with a short heartbeat, on the Redis at
// redisAddr, for the cluster name, under its own key prefix.
func testConfig(redisAddr, name string) cluster.Config {
	cfg := cluster.Default()
	cfg.Cluster.Name = name
	cfg.Node.Host = "127.0.0.1"
	cfg.Node.Port = 0
	cfg.Redis.Addr = redisAddr
	cfg.Redis.KeyPrefix = "wsactor-test:" + name + ":"
	cfg.Membership.HeartbeatInterval = testHeartbeat
	cfg.Membership.MemberTTL = testTTL
	// Generous, for loaded CI machines: a stopped Redis refuses at once anyway.
	cfg.Redis.DialTimeout = 5 * time.Second
	cfg.Redis.ReadTimeout = 2 * time.Second
	cfg.Redis.WriteTimeout = 2 * time.Second
	return cfg
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// The pool: every in-process node of the test binary, started on first use.
//
//	a: three nodes of one cluster, shared by most tests (each test runs its
//	   own wsactor servers on them, with fresh server, group and user names);
//	   nodes a[0] and a[1] also run the chat example, once for the binary.
//	   a[0] and a[1] have data lanes (remote.lane_port); a[2] has none.
//	b: two nodes of another cluster with their own Redis, which
//	   TestRedisOutageAndRestart stops and restarts.
//	tls: two nodes of a third cluster, on a's Redis, with mutual TLS
//	   between them (remote.tls), and so on their lanes.
type pool struct {
	tb     *mainTB
	redisA *redistest.Server
	redisB *redistest.Server
	a      []*poolNode
	b      []*poolNode
	tls    []*poolNode

	chatOnce sync.Once
	chat     []*chatNode // see chat_test.go
	closers  []func()    // run when the binary ends
}

type poolNode struct {
	*cluster.Node
	cfg  cluster.Config
	logs *ringLog
}

var thePool struct {
	once sync.Once
	p    *pool
	skip string
	err  error
}

func getPool(t *testing.T) *pool {
	t.Helper()
	thePool.once.Do(func() {
		thePool.p, thePool.skip, thePool.err = newPool()
	})
	switch {
	case thePool.skip != "":
		t.Skip(thePool.skip)
	case thePool.err != nil:
		t.Fatalf("starting the in-process nodes: %v", thePool.err)
	}
	return thePool.p
}

func newPool() (p *pool, skip string, err error) {
	p = &pool{tb: &mainTB{}}
	defer func() {
		switch r := recover().(type) {
		case nil:
		case tbSkip:
			p.close()
			p, skip = nil, string(r)
		case tbFailure:
			p.close()
			p, err = nil, errors.New(string(r))
		default:
			panic(r)
		}
	}()
	p.redisA = redistest.Start(p.tb)
	p.redisB = redistest.Start(p.tb)
	cfgA := testConfig(p.redisA.Addr(), randomName("pool-a-"))
	cfgB := testConfig(p.redisB.Addr(), randomName("pool-b-"))
	// a[0] and a[1] run with a data lane (the default); a[2] without, like
	// a node of an older version: the others send to it through the
	// remote, and it to them.
	noLane := cfgA
	noLane.Remote.LanePort = -1
	// Two nodes of a third cluster with mutual TLS between them (and so on
	// their lanes), started here rather than by their test: a node started
	// late in the binary's life races, in gRPC's logger, with the clients
	// earlier tests left dialling nodes that are gone.
	cfgTLS := testConfig(p.redisA.Addr(), randomName("pool-tls-"))
	ca, cert, key := cluster.WritePKI(p.tb, p.tb.TempDir())
	cfgTLS.Remote.TLS = cluster.RemoteTLS{Enabled: true, CertFile: cert, KeyFile: key, CAFile: ca,
		ServerName: "node.wsactor", RequireClientCert: true}
	// The nodes are never stopped (see the top of this file).
	nodes, err := startNodes([]cluster.Config{cfgA, cfgA, noLane, cfgB, cfgB, cfgTLS, cfgTLS})
	if err != nil {
		p.close()
		return nil, "", err
	}
	p.a, p.b, p.tls = nodes[:3], nodes[3:5], nodes[5:]
	for _, group := range [][]*poolNode{p.a, p.b, p.tls} {
		if err := waitPeers(group); err != nil {
			p.close()
			return nil, "", err
		}
		if err := connectAll(group); err != nil {
			p.close()
			return nil, "", err
		}
	}
	return p, "", nil
}

// connectAll opens the remote connections between every two nodes of group,
// both ways, before any test runs. protoactor's BlockList.IsBlocked reads
// the block list without the lock that Block holds when a member leaves
// (remote/blocklist.go:44 against :37), and a node checks it for every new
// inbound connection: without this, a node that blocks the SIGKILLed member
// of process_test.go while a pool peer connects to it for the first time
// races. A request to an actor that does not exist comes back as a dead
// letter over the reverse connection.
func connectAll(group []*poolNode) error {
	for _, n := range group {
		var others []string
		for _, m := range group {
			if n != m {
				others = append(others, m.Address())
			}
		}
		if err := connectTo(n.System, others); err != nil {
			return err
		}
	}
	return nil
}

// connectTo opens system's remote connection to each of addresses: a
// message to a process that does not exist comes back as a dead letter.
func connectTo(system *actor.ActorSystem, addresses []string) error {
	for _, addr := range addresses {
		_, err := system.Root.RequestFuture(actor.NewPID(addr, "wsactor-test-warmup"), &wire.Result{}, testTimeout).Result()
		if !errors.Is(err, actor.ErrDeadLetter) {
			return fmt.Errorf("warming up the connection from %s to %s: %v", system.Address(), addr, err)
		}
	}
	return nil
}

// waitPeers waits until every node of group sees every other.
func waitPeers(group []*poolNode) error {
	deadline := time.Now().Add(testTimeout)
	for _, n := range group {
		for _, m := range group {
			for n != m && !slices.Contains(n.Peers(), m.Address()) {
				if time.Now().After(deadline) {
					return fmt.Errorf("node %s does not see %s (peers %v)", n.Address(), m.Address(), n.Peers())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	return nil
}

// close stops the servers and nodes (concurrently: each graceful leave takes
// protoactor's 2 s) and then Redis.
func (p *pool) close() {
	var wg sync.WaitGroup
	for _, f := range p.closers {
		wg.Go(f)
	}
	wg.Wait()
	p.tb.close()
}

// startNodes starts a node for each configuration, all through one
// remotestart.Gate. protoactor's StartMember sleeps 1 s after joining: the
// starts overlap, but each begins only once the previous node's remote
// endpoint runs (its member key is in Redis), so that the gate can probe it.
func startNodes(cfgs []cluster.Config) ([]*poolNode, error) {
	gate := remotestart.OpenGate()
	defer gate.Close()
	nodes := make([]*poolNode, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr})
		memberKeys := cfg.Redis.KeyPrefix + "cluster:" + cfg.Cluster.Name + ":member:*"
		before, err := rdb.Keys(context.Background(), memberKeys).Result()
		if err != nil {
			_ = rdb.Close()
			return nodes, err
		}
		if err := gate.Before(); err != nil {
			_ = rdb.Close()
			return nodes, err
		}
		logs := newRingLog(500)
		started := make(chan struct{})
		wg.Go(func() {
			defer close(started)
			n, err := cluster.Start(context.Background(), cfg, slog.New(logs))
			if err != nil {
				errs[i] = err
				return
			}
			nodes[i] = &poolNode{Node: n, cfg: cfg, logs: logs}
		})
		addr, err := newMember(rdb, memberKeys, before, started)
		_ = rdb.Close()
		if err != nil {
			wg.Wait()
			return nodes, errors.Join(append(errs, err)...)
		}
		if cfg.Remote.TLS.Enabled {
			_, client, err := cfg.RemoteTLS()
			if err != nil {
				wg.Wait()
				return nodes, err
			}
			gate.AfterTLS(addr, client)
		} else {
			gate.After(addr)
		}
	}
	wg.Wait()
	return nodes, errors.Join(errs...)
}

// newMember waits for a member key that is not in before and returns the
// remote address it registers, or fails once started is closed without one.
func newMember(rdb *redis.Client, pattern string, before []string, started <-chan struct{}) (string, error) {
	deadline := time.Now().Add(testTimeout)
	for {
		keys, err := rdb.Keys(context.Background(), pattern).Result()
		if err != nil {
			return "", err
		}
		for _, k := range keys {
			if slices.Contains(before, k) {
				continue
			}
			var rec struct {
				Host string `json:"host"`
				Port int    `json:"port"`
			}
			b, err := rdb.Get(context.Background(), k).Bytes()
			if err == nil && json.Unmarshal(b, &rec) == nil {
				return net.JoinHostPort(rec.Host, strconv.Itoa(rec.Port)), nil
			}
		}
		select {
		case <-started:
			// Start returned: its key must be there by now, or it failed.
			if keys, _ := rdb.Keys(context.Background(), pattern).Result(); len(keys) > len(before) {
				continue
			}
			return "", errors.New("the node did not register")
		default:
		}
		if time.Now().After(deadline) {
			return "", errors.New("timed out waiting for the node to register")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restartRedis restarts one of the pool's Redis servers, which report
// failures to the pool's mainTB, for t.
func restartRedis(t *testing.T, s *redistest.Server) {
	t.Helper()
	defer func() {
		switch r := recover().(type) {
		case nil:
		case tbFailure:
			t.Fatalf("restarting %s: %s", s, r)
		default:
			panic(r)
		}
	}()
	s.Restart()
}

// mainTB is the testing.TB that redistest gets for the pool's Redis servers,
// which outlive any one test. redistest calls only the methods below; the
// embedded nil TB makes any other call panic loudly.
type mainTB struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

type (
	tbSkip    string
	tbFailure string
)

func (m *mainTB) Helper() {}

func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "wsactor-cluster-test-")
	if err != nil {
		panic(tbFailure(err.Error()))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirs = append(m.dirs, d)
	return d
}

func (m *mainTB) Fatal(args ...any)                 { panic(tbFailure(fmt.Sprint(args...))) }
func (m *mainTB) Fatalf(format string, args ...any) { panic(tbFailure(fmt.Sprintf(format, args...))) }
func (m *mainTB) Skip(args ...any)                  { panic(tbSkip(fmt.Sprint(args...))) }

func (m *mainTB) close() {
	m.mu.Lock()
	cleanups, dirs := m.cleanups, m.dirs
	m.cleanups, m.dirs = nil, nil
	m.mu.Unlock()
	for _, f := range slices.Backward(cleanups) {
		f()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
