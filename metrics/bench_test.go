package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
)

// BenchmarkScrape measures one scrape of a server's metrics as Prometheus
// gets it: Collect, the text encoding and the handler, without the network.
// Its CPU time, once a second, over the server's CPU time per second at
// load is the collector's share (BENCHMARKS.md, "Metrics overhead").
func BenchmarkScrape(b *testing.B) {
	srv := wsactor.New(wsactor.Options{Logger: discardLogger()})
	b.Cleanup(func() { _ = srv.Shutdown(b.Context()) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
