// Command echo serves a WebSocket echo endpoint and a page to try it in a
// browser.
//
//	go run ./examples/echo            # then open http://localhost:8080
//	go run ./examples/echo -addr 127.0.0.1:9000
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

	"github.com/wsactor/wsactor"
)

//go:embed index.html
var indexHTML []byte

// shutdownTimeout bounds the graceful stop: clients get 1001 "going away"
// and every OnClose runs, or the remaining sockets are torn down.
const shutdownTimeout = 10 * time.Second

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, logger); err != nil {
		logger.Error("echo: stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

// run serves on addr until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, addr string, logger *slog.Logger) error {
	mux, s := newMux(logger)
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
// (with its route /ws/echo) under /ws/. The caller owns s and must Shutdown it.
func newMux(logger *slog.Logger) (mux *http.ServeMux, s *wsactor.Server) {
	s = wsactor.New(wsactor.Options{Logger: logger})
	s.Handle("/ws/echo", func() wsactor.Handler { return echo{} })

	mux = http.NewServeMux()
	mux.Handle("/ws/", s)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
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
