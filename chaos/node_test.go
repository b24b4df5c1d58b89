package chaos

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

// Each node is this test binary run again, with nodeEnv set, as the chat
// server of examples/chat on a cluster node.
const (
	nodeEnv       = "WSACTOR_CHAOS_NODE" // the cluster name
	nodeRedisEnv  = "WSACTOR_CHAOS_REDIS"
	nodePrefixEnv = "WSACTOR_CHAOS_PREFIX"

	nodeURLPrefix = "CHAOS_URL="

	// adminToken guards the chat's admin API on every node.
	adminToken = "chaos-admin"

	// Membership timing of the nodes: short, so that the suite runs in a
	// few minutes; the faults scale with it.
	heartbeat = 300 * time.Millisecond
	memberTTL = 1500 * time.Millisecond
	// writeTimeout is how long a write to a client that does not read may
	// stall before the client is closed as a slow consumer.
	writeTimeout = 2 * time.Second
)

func TestMain(m *testing.M) {
	if name := os.Getenv(nodeEnv); name != "" {
		os.Exit(runNode(name))
	}
	os.Exit(m.Run())
}

// runNode is a node process: a cluster node running the chat, plus
// /chaos/status for the suite. It prints the HTTP base URL, and shuts down
// gracefully on SIGTERM.
func runNode(clusterName string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := cluster.Default()
	cfg.Cluster.Name = clusterName
	cfg.Node.Host = "127.0.0.1"
	cfg.Redis.Addr = os.Getenv(nodeRedisEnv)
	cfg.Redis.KeyPrefix = os.Getenv(nodePrefixEnv)
	cfg.Membership.HeartbeatInterval = heartbeat
	cfg.Membership.MemberTTL = memberTTL
	cfg.Redis.DialTimeout = 2 * time.Second
	cfg.Redis.ReadTimeout = time.Second
	cfg.Redis.WriteTimeout = time.Second
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	node, err := cluster.Start(ctx, cfg, logger)
	if err != nil {
		logger.Error("chaos node: start", slog.Any("err", err))
		return 1
	}
	mux, s := chatserver.New(chatserver.Config{
		AdminToken: adminToken,
		Logger:     logger,
		Node:       node,
		Transport:  wsactor.TransportOptions{WriteTimeout: writeTimeout},
	})
	mux.HandleFunc("GET /chaos/status", func(w http.ResponseWriter, _ *http.Request) {
		ns := node.Stats()
		st := s.Stats()
		_ = json.NewEncoder(w).Encode(nodeStatus{
			Ready:              s.Ready() && !node.Isolated(),
			Isolated:           node.Isolated(),
			RedisHealthy:       ns.RedisHealthy,
			Address:            node.Address(),
			Member:             node.MemberID(),
			Peers:              node.Peers(),
			Drops:              ns.Drops,
			Rejoins:            ns.Rejoins,
			Open:               st.ConnectionsOpen,
			SlowConsumerCloses: st.SlowConsumerCloses,
		})
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error("chaos node: listen", slog.Any("err", err))
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeHandler(l, mux) }()
	fmt.Println(nodeURLPrefix + "http://" + l.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-served:
		logger.Error("chaos node: serve", slog.Any("err", err))
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(stopCtx); err != nil {
		logger.Error("chaos node: shutdown", slog.Any("err", err))
	}
	if err := node.Stop(stopCtx); err != nil {
		logger.Error("chaos node: stop", slog.Any("err", err))
	}
	return 0
}

// nodeStatus is what /chaos/status answers.
type nodeStatus struct {
	Ready              bool     `json:"ready"` // serving, and a member of its cluster
	Isolated           bool     `json:"isolated"`
	RedisHealthy       bool     `json:"redis_healthy"`
	Address            string   `json:"address"` // the node's cluster address
	Member             string   `json:"member"`
	Peers              []string `json:"peers"`
	Drops              int64    `json:"drops"`
	Rejoins            int64    `json:"rejoins"`
	Open               int64    `json:"open"`
	SlowConsumerCloses int64    `json:"slow_consumer_closes"`
}

// node is a node process seen from the suite.
type node struct {
	name   string // n0, n1, ... (a restarted node gets a new name)
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	stderr *lockedBuffer

	mu      sync.Mutex
	stopped bool // SIGSTOPped
	dead    bool
}

func (n *node) wsURL(room, name string) string {
	return "ws" + strings.TrimPrefix(n.base, "http") + "/ws/chat/" + room + "?name=" + name
}

// startNode starts a node process of the suite's cluster.
func (c *testCluster) startNode(t *testing.T) *node {
	t.Helper()
	c.seq++
	n := &node{name: fmt.Sprintf("n%d", c.seq), stderr: &lockedBuffer{}}
	n.cmd = exec.Command(os.Args[0], "-test.run=^$")
	n.cmd.Env = append(os.Environ(), nodeEnv+"="+c.name, nodeRedisEnv+"="+c.redis.Addr(), nodePrefixEnv+"="+c.prefix)
	n.cmd.Stderr = n.stderr
	// Die with the suite, even when it is killed.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), nodeURLPrefix); ok {
				urls <- u
			}
		}
		close(urls)
	}()
	t.Cleanup(func() { c.kill(n) })
	select {
	case u, ok := <-urls:
		if !ok {
			t.Fatalf("node %s exited before serving:\n%s", n.name, n.stderr)
		}
		n.base = u
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s did not start:\n%s", n.name, n.stderr)
	}
	return n
}

// kill SIGKILLs n (resuming it first if it is stopped, or it lingers).
func (c *testCluster) kill(n *node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead {
		return
	}
	n.dead = true
	_ = n.cmd.Process.Signal(syscall.SIGCONT)
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

func (n *node) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("node %s: %v: %v", n.name, sig, err)
	}
	n.stopped = sig == syscall.SIGSTOP
}

// status asks n for its status; ok is false if it does not answer.
func (n *node) status() (nodeStatus, bool) {
	var st nodeStatus
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/chaos/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

// members lists room's member IDs as n's admin API sees them.
func (n *node) members(room string) ([]string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/api/rooms/"+room+"/members", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	var ms []struct {
		ID string `json:"id"`
	}
	if json.NewDecoder(resp.Body).Decode(&ms) != nil {
		return nil, false
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids, true
}

// lockedBuffer collects a process's stderr.
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
