package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/redistest"
)

// TestStartRejectsBadConfigs starts nodes with bad configurations: each is an
// error naming the field, and nothing is left running (no goroutine, no
// listening port).
func TestStartRejectsBadConfigs(t *testing.T) {
	r := redistest.Start(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name   string
		field  string
		adjust func(*cluster.Config)
	}{
		{"bad port", "node.port", func(c *cluster.Config) { c.Node.Port = 70000 }},
		{"unknown provider", "membership.provider", func(c *cluster.Config) { c.Membership.Provider = "zookeeper" }},
		{"ttl not above heartbeat", "membership.member_ttl", func(c *cluster.Config) { c.Membership.MemberTTL = c.Membership.HeartbeatInterval }},
		{"host with a port", "node.host", func(c *cluster.Config) { c.Node.Host = "127.0.0.1:7000" }},
		{"nothing listens at redis.addr", "redis.addr", func(c *cluster.Config) { c.Redis.Addr = closedPort(t) }},
		{"provider not built in", "membership.provider", func(c *cluster.Config) { c.Membership.Provider = cluster.ProviderK8s }},
		{"port in use", "node.port", func(c *cluster.Config) { c.Node.Port = heldPort }},
		{"host not of this machine", "node.host", func(c *cluster.Config) { c.Node.Host = "192.0.2.1" }},
		{"lane port in use", "remote.lane_port", func(c *cluster.Config) { c.Remote.LanePort = heldPort }},
		{"lane port out of range", "remote.lane_port", func(c *cluster.Config) { c.Remote.LanePort = 65536 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(r.Addr(), randomName("bad-"))
			// A fixed port, to check afterwards that nothing listens on it.
			cfg.Node.Port = freePort(t)
			port := cfg.Node.Port
			tc.adjust(&cfg)
			before := goroutines()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			n, err := cluster.Start(ctx, cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				_ = n.Stop(ctx)
				t.Fatal("Start succeeded")
			}
			var fe *cluster.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a *cluster.FieldError, got %T: %v", err, err)
			}
			if fe.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("want an error naming %s, got %s: %v", tc.field, fe.Field, err)
			}
			t.Logf("%v", err)
			if port != heldPort {
				if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
					t.Errorf("port %d is still taken after a failed Start: %v", port, err)
				} else {
					l.Close()
				}
			}
			wantNoNewGoroutines(t, before)
		})
	}
}

// TestLoadRejectsUnknownField loads a cluster.yaml with a misspelt field.
func TestLoadRejectsUnknownField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	yaml := "cluster:\n  name: c\nredis:\n  adress: 127.0.0.1:6379\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := cluster.Load(path)
	var fe *cluster.FieldError
	if !errors.As(err, &fe) || fe.Field != "redis.adress" || !strings.Contains(err.Error(), path+":4") {
		t.Fatalf("want a FieldError for redis.adress at %s:4, got %v", path, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func closedPort(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// goroutines returns the IDs and stacks of the running goroutines.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if m := goroutineID.FindStringSubmatch(g); m != nil {
			out[m[1]] = g
		}
	}
	return out
}

var goroutineID = regexp.MustCompile(`^goroutine (\d+) `)

// wantNoNewGoroutines waits until no goroutine started since before runs
// node code (wsactor's cluster, protoactor, gRPC, go-redis) and the count
// is back to before's, or fails listing them. Other in-process nodes may
// run transient goroutines meanwhile, hence the poll.
func wantNoNewGoroutines(t *testing.T, before map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var leaked []string
		now := goroutines()
		for id, stack := range now {
			if _, old := before[id]; !old && strings.Contains(stack, "created by") && isNodeCode(stack) && !redialsEarlierConn(stack, before) {
				leaked = append(leaked, stack)
			}
		}
		if len(leaked) == 0 && runtime.NumGoroutine() <= len(before) {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(leaked)
			t.Fatalf("goroutines: %d before Start, %d after; new ones running node code:\n\n%s",
				len(before), runtime.NumGoroutine(), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redialsEarlierConn reports whether stack is a gRPC subchannel (re)connect
// started by a goroutine that ran before Start: a client connection of
// another in-process node, not one of this Start. protoactor-go's endpoint
// writer never closes the client connection of a failed connect attempt
// (remote/endpoint_writer.go:84-95), and gRPC redials it with backoff until
// it goes idle, so the nodes that saw a peer die keep starting these.
func redialsEarlierConn(stack string, before map[string]string) bool {
	m := grpcConnectCreator.FindStringSubmatch(stack)
	if m == nil {
		return false
	}
	_, earlier := before[m[1]]
	return earlier
}

var grpcConnectCreator = regexp.MustCompile(`created by google\.golang\.org/grpc\.\(\*acBalancerWrapper\)\.Connect in goroutine (\d+)`)

func isNodeCode(stack string) bool {
	for _, s := range []string{"protoactor-go", "google.golang.org/grpc", "go-redis", "wsactor/cluster."} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// TestNoGossipRounds: a node runs no protoactor gossip rounds, which race in
// this protoactor-go version (see withoutGossipRounds in node.go).
func TestNoGossipRounds(t *testing.T) {
	p := getPool(t)
	for _, n := range p.a {
		if got := n.Cluster.Config.GossipInterval; got < 365*24*time.Hour {
			t.Fatalf("node %s gossips every %v", n.Address(), got)
		}
	}
}
