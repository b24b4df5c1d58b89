package gameserver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/metrics"
	"github.com/wsactor/wsactor/statuspage"
)

// operationsRoutes serves what an operator looks at: Prometheus metrics
// (wsactor's and the Go runtime's) at /metrics, liveness at /healthz,
// readiness at /readyz (with the cluster's checks on a node) and the live
// status page at /status.
func operationsRoutes(mux *http.ServeMux, s *wsactor.Server, node *cluster.Node) {
	var collect []metrics.Option
	var page []statuspage.Option
	var checks []wsactor.ReadyCheck
	if node != nil {
		collect = append(collect, metrics.WithNode(node))
		page = append(page, statuspage.WithNode(node))
		checks = node.ReadyChecks()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(s, collect...), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", wsactor.HealthHandler())
	mux.Handle("GET /readyz", s.ReadyHandler(checks...))
	status := statuspage.Handler(s, page...)
	mux.Handle("GET /status", status)
	mux.Handle("GET /status.json", status)
}
