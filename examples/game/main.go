// Command game serves a real-time multiplayer game in the browser: dots
// that pick up coins in rooms of up to 8, simulated by the server 20 times
// a second. Its protocol and how to play are in README.md.
//
//	go run ./examples/game                         # then open http://localhost:8080
//	go run ./examples/game -addr 127.0.0.1:9000
//	go run ./examples/game -config cluster.yaml -addr :8081 -peers http://localhost:8081,http://localhost:8082
//
// Every room is a wsactor room: its state and its clock live in one actor,
// on one node of the cluster, and move to a surviving node, from their last
// snapshot, when that node dies. The server itself is package gameserver, so
// that the tests run exactly this server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// shutdownTimeout bounds the graceful stop: players get 1001 "going away"
// (the page reconnects, to another node if there is one), and every room
// saves its state for its next activation.
const shutdownTimeout = 10 * time.Second

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	admin := flag.String("admin-token", os.Getenv("GAME_ADMIN_TOKEN"), "serve POST /api/send to this bearer token (default $GAME_ADMIN_TOKEN)")
	peers := flag.String("peers", "", "comma-separated base URLs of every node of the game (http://host:port), which the page tries when its node goes away; default: this node only")
	configPath := flag.String("config", "", "run as a cluster node configured by this file (e.g. cluster.yaml); the -cluster-*, -node-*, -redis-*... flags override it")
	clusterFlags := cluster.RegisterFlags(flag.CommandLine)
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("game: cannot listen", slog.Any("err", err))
		os.Exit(1)
	}
	cfg := gameserver.Config{AdminToken: *admin, Logger: logger, Address: l.Addr().String(), Peers: splitList(*peers)}
	if len(cfg.Peers) == 0 {
		cfg.Peers = []string{"http://" + pageHost(*addr, l)}
	}
	if *configPath != "" {
		ccfg, err := cluster.LoadWithFlags(*configPath, clusterFlags)
		if err != nil {
			logger.Error("game: bad cluster configuration", slog.Any("err", err))
			os.Exit(2)
		}
		if cfg.Node, err = cluster.Start(ctx, ccfg, logger); err != nil {
			logger.Error("game: cannot join the cluster", slog.Any("err", err))
			os.Exit(1)
		}
	}
	err = run(ctx, l, cfg)
	if cfg.Node != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		err = errors.Join(err, cfg.Node.Stop(stopCtx))
		cancel()
	}
	if err != nil {
		logger.Error("game: stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

// run serves on l until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, l net.Listener, cfg gameserver.Config) error {
	mux, s := gameserver.New(cfg)
	served := make(chan error, 1)
	go func() { served <- s.ServeHandler(l, mux) }()
	cfg.Logger.Info("game: starting", slog.String("page", "http://"+pageHost(l.Addr().String(), l)+"/"),
		slog.Bool("cluster", cfg.Node != nil), slog.Any("peers", cfg.Peers))
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
		cfg.Logger.Info("game: shutting down")
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

// pageHost is the host:port to open in a browser for a listen address.
func pageHost(addr string, l net.Listener) string {
	if strings.HasPrefix(addr, ":") || strings.HasPrefix(addr, "0.0.0.0:") || strings.HasPrefix(addr, "[::]:") {
		return fmt.Sprintf("localhost:%d", l.Addr().(*net.TCPAddr).Port)
	}
	return addr
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.TrimSuffix(p, "/"))
		}
	}
	return out
}
