// Package etcdtest runs a real etcd for tests: a single member on free
// loopback ports (client and peer), with its data in a temporary directory,
// stoppable and restartable on the same ports.
//
// When the etcd binary cannot be found the test is skipped with a loud
// message, except when WSACTOR_REQUIRE_ETCD=1: then it fails, so that a CI
// run that is meant to have etcd cannot pass by skipping. Debian's package is
// etcd-server.
//
// Reads go through etcd's JSON gateway (plain HTTP), not a gRPC client: a
// test process that also runs protoactor nodes must not start gRPC clients of
// its own (protoactor replaces gRPC's process-wide logger, see
// internal/remotestart).
package etcdtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the variable that turns a missing etcd into a failure.
const RequireEnv = "WSACTOR_REQUIRE_ETCD"

// Server is a running (or stopped) single-member etcd.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	port     int // client port
	peerPort int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

// Start starts an etcd for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		for _, p := range []string{"/usr/bin/etcd", "/usr/local/bin/etcd", "/usr/sbin/etcd"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("etcd not found and %s=1: install it (apt-get install etcd-server)", RequireEnv)
		}
		t.Skip("!!! SKIPPED: etcd not found on PATH; install it (apt-get install etcd-server) to run the etcd tests !!!")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t), peerPort: freePort(t)}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Endpoint is the client endpoint as host:port, the form of
// membership.etcd.endpoints.
func (s *Server) Endpoint() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the client endpoint's URL.
func (s *Server) URL() string { return "http://" + s.Endpoint() }

// Stop kills the server (SIGKILL: no graceful shutdown, as in a crash).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same ports, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	data := filepath.Join(s.dir, "data")
	if err := os.RemoveAll(data); err != nil {
		s.t.Fatalf("etcd data dir: %v", err)
	}
	peer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.peerPort))
	cmd := exec.Command(s.bin,
		"--name", "wsactor-test", "--data-dir", data,
		"--listen-client-urls", s.URL(), "--advertise-client-urls", s.URL(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "wsactor-test="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
	// Die with the test binary, even when it is killed (a -timeout, SIGPIPE):
	// no orphaned etcds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &syncBuilder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !healthy(s.URL()) {
		select {
		case <-exited:
			s.t.Fatalf("%s on %s exited at start; its output:\n%s", filepath.Base(s.bin), s.Endpoint(), out)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			s.t.Fatalf("%s on %s did not become healthy; its output:\n%s", filepath.Base(s.bin), s.Endpoint(), out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd, s.exited = cmd, exited
}

// healthy reports whether etcd answers /health with a leader.
func healthy(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// Get returns every key under prefix with its value, read through etcd's
// JSON gateway.
func (s *Server) Get(ctx context.Context, prefix string) (map[string]string, error) {
	body, err := json.Marshal(map[string]string{
		"key":       base64.StdEncoding.EncodeToString([]byte(prefix)),
		"range_end": base64.StdEncoding.EncodeToString(prefixEnd(prefix)),
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v3/kv/range", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: range %q: %w", prefix, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcdtest: range %q: %s", prefix, resp.Status)
	}
	var r struct {
		Kvs []struct{ Key, Value []byte } // base64 in JSON, as encoding/json decodes []byte
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("etcdtest: range %q: %w", prefix, err)
	}
	kvs := make(map[string]string, len(r.Kvs))
	for _, kv := range r.Kvs {
		kvs[string(kv.Key)] = string(kv.Value)
	}
	return kvs, nil
}

// prefixEnd is the range end that selects every key starting with prefix
// (clientv3.GetPrefixRangeEnd).
func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0} // every key
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// String describes the server for logs.
func (s *Server) String() string { return fmt.Sprintf("etcd %s", s.Endpoint()) }

type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuilder) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
