package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
)

// readyz fetches url and decodes the report.
func readyz(t *testing.T, url string) (int, wsactor.HealthReport) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var rep wsactor.HealthReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, rep
}

// failed names the checks that failed.
func failed(rep wsactor.HealthReport) []string {
	var out []string
	for _, c := range rep.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

// waitReady polls /readyz until it answers status with exactly the failed
// checks given.
func waitReady(t *testing.T, url string, status int, failing ...string) wsactor.HealthReport {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		got, rep := readyz(t, url)
		f := failed(rep)
		if got == status && len(f) == len(failing) && (len(f) == 0 || f[0] == failing[0]) {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %+v; want %d failing %v", got, rep, status, failing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadyzFollowsRedis: a node's /readyz turns 503, naming the redis
// check, when its Redis is stopped, and back to 200 when Redis returns; the
// node's redis_up gauge follows at its next heartbeat; /healthz stays 200.
// Once the server shuts down, the server check fails. It runs on the pool's
// cluster b, whose Redis the tests may stop (in-process nodes must all start
// at once: see pool_test.go), and leaves both nodes healthy again.
func TestReadyzFollowsRedis(t *testing.T) {
	p := getPool(t)
	node := p.b[0]
	srv := startServers(t, p.b[:1], wsactor.Options{})[0].Server
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", wsactor.HealthHandler())
	mux.Handle("GET /readyz", srv.ReadyHandler(node.ReadyChecks()...))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(srv, metrics.WithNode(node.Node)))
	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}

	rep := waitReady(t, hs.URL+"/readyz", http.StatusOK)
	if rep.Status != "ready" || len(rep.Checks) != 3 {
		t.Fatalf("ready report: %+v; want ready with the server, cluster and redis checks", rep)
	}
	if n := testutil.CollectAndCount(metrics.NewCollector(srv, metrics.WithNode(node.Node)), "wsactor_cluster_members"); n != 1 {
		t.Fatalf("wsactor_cluster_members series: %d", n)
	}
	if got := gauge("wsactor_cluster_members"); got != float64(len(p.b)) {
		t.Fatalf("cluster members = %v, want %d", got, len(p.b))
	}

	p.redisB.Stop()
	rep = waitReady(t, hs.URL+"/readyz", http.StatusServiceUnavailable, "redis")
	if rep.Status != "not ready" {
		t.Fatalf("status %q, want not ready", rep.Status)
	}
	if got, _ := readyz(t, hs.URL+"/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz during the outage: %d, want 200 (alive, only not ready)", got)
	}
	waitUntil(t, testTimeout, "redis_up 0", func() bool { return gauge("wsactor_redis_up") == 0 })

	restartRedis(t, p.redisB)
	waitReady(t, hs.URL+"/readyz", http.StatusOK)
	waitUntil(t, testTimeout, "redis_up 1", func() bool { return gauge("wsactor_redis_up") == 1 })
	for i, n := range p.b {
		waitUntil(t, testTimeout, fmt.Sprintf("node b%d healthy again", i), func() bool { return n.Stats().RedisHealthy && !n.Isolated() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, hs.URL+"/readyz", http.StatusServiceUnavailable, "server")
}
