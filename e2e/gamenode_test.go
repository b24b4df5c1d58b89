package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/examples/game/gameserver"
	"github.com/wsactor/wsactor/internal/redistest"
)

// Game nodes as separate processes: this test binary run again with
// gameNodeEnv set runs one node of a game cluster, as examples/game does
// with -config and -peers, so that a test can SIGKILL a node. The node
// serves on a listener the test made and passed as file descriptor 3, so
// that every node's address (the -peers list) is known before any starts.

const (
	gameNodeEnv = "WSACTOR_E2E_GAME_NODE" // the node's gameNodeConfig, in JSON
	// gameNodeLine prefixes the line a node prints when it serves: its
	// cluster address.
	gameNodeLine = "GAME_NODE="
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(gameNodeEnv); cfg != "" {
		os.Exit(runGameNode(cfg))
	}
	os.Exit(m.Run())
}

// gameNodeConfig is what a node process is told.
type gameNodeConfig struct {
	Cluster   string        `json:"cluster"` // the cluster's name
	Redis     string        `json:"redis"`
	Prefix    string        `json:"prefix"` // Redis key prefix
	Peers     []string      `json:"peers"`  // every node's base URL
	Heartbeat time.Duration `json:"heartbeat"`
	TTL       time.Duration `json:"ttl"`
}

// runGameNode is a node process's main. It also serves GET /e2e/status,
// its cluster address and the peers it sees.
func runGameNode(raw string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var gc gameNodeConfig
	if err := json.Unmarshal([]byte(raw), &gc); err != nil {
		logger.Error("game node: bad configuration", slog.Any("err", err))
		return 2
	}
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		logger.Error("game node: no listener on fd 3", slog.Any("err", err))
		return 2
	}
	cfg := cluster.Default()
	cfg.Cluster.Name = gc.Cluster
	cfg.Redis.Addr = gc.Redis
	cfg.Redis.KeyPrefix = gc.Prefix
	cfg.Redis.DialTimeout = 2 * time.Second
	cfg.Redis.ReadTimeout = time.Second
	cfg.Redis.WriteTimeout = time.Second
	cfg.Membership.HeartbeatInterval = gc.Heartbeat
	cfg.Membership.MemberTTL = gc.TTL
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	node, err := cluster.Start(ctx, cfg, logger)
	if err != nil {
		logger.Error("game node: start", slog.Any("err", err))
		return 1
	}
	mux, s := gameserver.New(gameserver.Config{Node: node, Address: l.Addr().String(), Peers: gc.Peers, Logger: logger})
	mux.HandleFunc("GET /e2e/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(gameNodeStatus{Address: node.Address(), Peers: node.Peers()})
	})
	served := make(chan error, 1)
	go func() { served <- s.ServeHandler(l, mux) }()
	fmt.Println(gameNodeLine + node.Address())
	select {
	case <-ctx.Done():
	case err := <-served:
		logger.Error("game node: serve", slog.Any("err", err))
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = s.Shutdown(stopCtx)
	_ = node.Stop(stopCtx)
	return 0
}

// gameNodeStatus is what GET /e2e/status answers.
type gameNodeStatus struct {
	Address string   `json:"address"`
	Peers   []string `json:"peers"`
}

// gameNode is a node process seen from the test.
type gameNode struct {
	name    string
	base    string // http://127.0.0.1:port
	address string // its cluster address: the welcome's and the room list's "node"
	cmd     *exec.Cmd
	stderr  *lockedBuffer

	once   sync.Once
	killed time.Time
	// logFrom is how much of stderr the node had written when the cluster
	// was formed: redisOutage looks after it.
	logFrom int
}

// redisOutage tells whether the node's membership lost Redis (a call past
// its deadline) since the cluster formed: redisprovider logs it once per
// outage, at Warn, the level the nodes log at.
func (n *gameNode) redisOutage() bool {
	return strings.Contains(n.stderr.String()[n.logFrom:], "Redis unreachable")
}

// kill SIGKILLs the node and waits for it; it returns when the signal was
// sent (the first time).
func (n *gameNode) kill() time.Time {
	n.once.Do(func() {
		n.killed = time.Now()
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	})
	return n.killed
}

// startGameCluster starts a redis-server and n game nodes, each a process,
// and waits until every node sees every other. Membership is fast (heartbeat,
// member TTL ttl) so that a killed node is replaced within seconds.
func startGameCluster(t *testing.T, n int, heartbeat, ttl time.Duration) []*gameNode {
	t.Helper()
	redis := redistest.Start(t)
	var ls []*net.TCPListener
	var peers []string
	for range n {
		l := listen(t, "127.0.0.1:0").(*net.TCPListener)
		ls = append(ls, l)
		peers = append(peers, "http://"+l.Addr().String())
	}
	cfg, _ := json.Marshal(gameNodeConfig{
		Cluster: fmt.Sprintf("e2e-game-%d", time.Now().UnixNano()), Redis: redis.Addr(), Prefix: "e2e-game:",
		Peers: peers, Heartbeat: heartbeat, TTL: ttl,
	})
	nodes := make([]*gameNode, n)
	for i, l := range ls {
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		nd := &gameNode{name: fmt.Sprintf("node%d", i+1), base: peers[i], stderr: &lockedBuffer{}}
		nd.cmd = exec.Command(os.Args[0], "-test.run=^$")
		nd.cmd.Env = append(os.Environ(), gameNodeEnv+"="+string(cfg))
		nd.cmd.ExtraFiles = []*os.File{f}
		nd.cmd.Stderr = nd.stderr
		nd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // die with the test, as redistest's servers do
		out, err := nd.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		_ = l.Close() // the node has its own copy
		t.Cleanup(func() { nd.kill() })
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's log:\n%s", nd.name, nd.stderr)
			}
		})
		addrs := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if a, ok := strings.CutPrefix(sc.Text(), gameNodeLine); ok {
					addrs <- a
				}
			}
			close(addrs)
		}()
		select {
		case a, ok := <-addrs:
			if !ok {
				t.Fatalf("%s exited before serving:\n%s", nd.name, nd.stderr)
			}
			nd.address = a
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start:\n%s", nd.name, nd.stderr)
		}
		nodes[i] = nd
	}
	for _, nd := range nodes {
		waitUntil(t, fmt.Sprintf("%s sees every node", nd.name), func() bool {
			st, ok := nodeStatus(nd)
			if !ok {
				return false
			}
			for _, o := range nodes {
				if o != nd && !slices.Contains(st.Peers, o.address) {
					return false
				}
			}
			return true
		})
	}
	for _, nd := range nodes {
		nd.logFrom = len(nd.stderr.String())
	}
	return nodes
}

// nodeStatus asks a node for its status; ok is false if it does not answer.
func nodeStatus(n *gameNode) (gameNodeStatus, bool) {
	var st gameNodeStatus
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/e2e/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

// waitUntil polls cond until it holds, for at most stepTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting until %s: timeout", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
