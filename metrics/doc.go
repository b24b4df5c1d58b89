// Package metrics exports a wsactor server's counters to Prometheus.
//
// NewCollector returns a prometheus.Collector that reads the counters the
// runtime keeps anyway (Server.Stats, the groups hub's, the rooms', and a
// cluster node's) when Prometheus scrapes, and only then: the per-message
// path pays one atomic add per counter, as it did before, and nothing for
// being exported. Register it in your own registry and serve that registry:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(srv, metrics.WithNode(node)))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every metric is named wsactor_* and carries the label server (Options.Name),
// so that two servers of one process can be registered side by side. The
// README's Operations section lists them with their meaning.
package metrics
