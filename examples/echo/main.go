// Command echo serves a WebSocket echo endpoint and a page to try it in a
// browser.
//
//	go run ./examples/echo            # then open http://localhost:8080
//	go run ./examples/echo -addr 127.0.0.1:9000
//
// Flags set the per-connection limits (wsactor's defaults otherwise):
//
//	-max-message N     the largest inbound message, in bytes (default 64 KiB; larger closes with 1009)
//	-rate-messages R   messages per second a client may send (default 200, burst 400; negative: no limit)
//	-rate-bytes R      bytes per second a client may send (default 1 MiB, burst 2 MiB; negative: no limit)
//
// Messages beyond the rate limit are answered with an error envelope instead
// of their echo. A conformance suite (Autobahn) sends messages of up to
// 16 MiB in fast bursts:
//
//	go run ./examples/echo -addr 127.0.0.1:9001 -max-message 16777216 -rate-messages -1 -rate-bytes -1
//
// ws://HOST/ws/echo echoes every text message as text and every binary
// message as binary. The page at / is served by the same process, so the
// browser's Origin matches the host and wsactor's default origin check lets
// it in; a page served from another origin would get 403 unless the route
// allows it with wsactor.WithOriginPatterns.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
	"github.com/wsactor/wsactor/statuspage"
)

//go:embed index.html
var indexHTML []byte

// shutdownTimeout bounds the graceful stop: clients get 1001 "going away"
// and every OnClose runs, or the remaining sockets are torn down.
const shutdownTimeout = 10 * time.Second

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	limits := limitFlags(flag.CommandLine)
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, logger, *limits); err != nil {
		logger.Error("echo: stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

// limitFlags defines the limit flags on fs; the options they fill are
// complete once fs is parsed. Zero values keep wsactor's defaults.
func limitFlags(fs *flag.FlagSet) *wsactor.TransportOptions {
	o := &wsactor.TransportOptions{}
	fs.Int64Var(&o.MaxMessageSize, "max-message", 0, "largest inbound message in bytes (0: 64 KiB)")
	fs.Float64Var(&o.RateLimit.MessagesPerSecond, "rate-messages", 0, "messages per second per client (0: 200; negative: no limit)")
	fs.Float64Var(&o.RateLimit.BytesPerSecond, "rate-bytes", 0, "bytes per second per client (0: 1 MiB; negative: no limit)")
	return o
}

// run serves on addr until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, addr string, logger *slog.Logger, limits wsactor.TransportOptions) error {
	mux, s := newMux(logger, limits)
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServeHandler(addr, mux) }()
	logger.Info("echo: starting", slog.String("addr", addr), slog.String("page", pageURL(addr)))

	var serveErr error
	select {
	case serveErr = <-served: // the listener failed (address in use, …)
	case <-ctx.Done():
		logger.Info("echo: shutting down")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.Shutdown(shutdownCtx)
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, err)
}

// newMux returns the example's routes: the page at / and the wsactor server
// (with its route /ws/echo) under /ws/, whose connections have limits. The
// caller owns s and must Shutdown it.
func newMux(logger *slog.Logger, limits wsactor.TransportOptions) (mux *http.ServeMux, s *wsactor.Server) {
	s = wsactor.New(wsactor.Options{Logger: logger, Transport: limits})
	s.Handle("/ws/echo", func() wsactor.Handler { return echo{} })

	mux = http.NewServeMux()
	mux.Handle("/ws/", s)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
	// What an operator looks at: Prometheus metrics, liveness, readiness
	// and the live status page.
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(s), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", wsactor.HealthHandler())
	mux.Handle("GET /readyz", s.ReadyHandler())
	status := statuspage.Handler(s)
	mux.Handle("GET /status", status)
	mux.Handle("GET /status.json", status)
	return mux, s
}

// echo sends every message back as it came: text as text, binary as binary.
// It holds no state, so one value could serve every connection; the factory
// still returns one per connection, as a stateful handler would need.
type echo struct{}

func (echo) OnOpen(c *wsactor.Conn) error {
	c.Logger().Info("echo: connected", slog.String("remote", c.RemoteAddr()))
	return nil
}

func (echo) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

func (echo) OnClose(c *wsactor.Conn, code wsactor.StatusCode, reason string) {
	c.Logger().Info("echo: closed", slog.Int("code", int(code)), slog.String("reason", reason))
}

// pageURL turns a listen address into the URL to open in a browser.
func pageURL(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		addr = "localhost" + addr
	}
	return fmt.Sprintf("http://%s/", addr)
}
