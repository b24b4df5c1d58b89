// Command chat serves chat rooms over WebSocket, a page to chat from, and an
// optional admin HTTP API. Its protocol is documented in README.md.
//
//	go run ./examples/chat                       # then open http://localhost:8080
//	go run ./examples/chat -addr 127.0.0.1:9000
//	go run ./examples/chat -jwt-secret S -admin-token T
//	go run ./examples/chat token -jwt-secret S -sub ann -name Ann -rooms private-dev
//
// Every connection to ws://HOST/ws/chat/{room}?name=NAME is an actor that
// joins the room's group; the runtime fans room messages out through each
// member's mailbox, tells members who joined and left, and takes a closed
// connection out of its room. The server itself is package chatserver, so
// that the browser tests run exactly this server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

// shutdownTimeout bounds the graceful stop: clients get 1001 "going away"
// (the browser client reconnects) and every OnClose runs.
const shutdownTimeout = 10 * time.Second

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := mintToken(os.Stdout, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "chat token:", err)
			os.Exit(2)
		}
		return
	}
	addr := flag.String("addr", ":8080", "address to listen on")
	secret := flag.String("jwt-secret", os.Getenv("CHAT_JWT_SECRET"), "require HS256 tokens signed with this secret (default $CHAT_JWT_SECRET)")
	admin := flag.String("admin-token", os.Getenv("CHAT_ADMIN_TOKEN"), "serve the admin API under /api/ to this bearer token (default $CHAT_ADMIN_TOKEN)")
	configPath := flag.String("config", "", "run as a cluster node configured by this file (e.g. cluster.yaml); the -cluster-*, -node-*, -redis-*... flags override it")
	clusterFlags := cluster.RegisterFlags(flag.CommandLine)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := chatserver.Config{JWTSecret: []byte(*secret), AdminToken: *admin, Logger: logger}
	if *configPath != "" {
		ccfg, err := cluster.LoadWithFlags(*configPath, clusterFlags)
		if err != nil {
			logger.Error("chat: bad cluster configuration", slog.Any("err", err))
			os.Exit(2)
		}
		node, err := cluster.Start(ctx, ccfg, logger)
		if err != nil {
			logger.Error("chat: cannot join the cluster", slog.Any("err", err))
			os.Exit(1)
		}
		cfg.Node = node
	}
	err := run(ctx, *addr, cfg)
	if cfg.Node != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		err = errors.Join(err, cfg.Node.Stop(stopCtx))
		cancel()
	}
	if err != nil {
		logger.Error("chat: stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

// run serves on addr until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, addr string, cfg chatserver.Config) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	mux, s := chatserver.New(cfg)
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServeHandler(addr, mux) }()
	logger.Info("chat: starting", slog.String("addr", addr), slog.String("page", pageURL(addr)),
		slog.Bool("jwt", len(cfg.JWTSecret) > 0), slog.Bool("admin_api", cfg.AdminToken != ""))

	var serveErr error
	select {
	case serveErr = <-served: // the listener failed (address in use, …)
	case <-ctx.Done():
		logger.Info("chat: shutting down")
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

// mintToken prints an HS256 token for trying the JWT mode:
//
//	chat token -jwt-secret S -sub ann [-name Ann] [-rooms private-dev,private-ops] [-ttl 1h]
func mintToken(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	secret := fs.String("jwt-secret", os.Getenv("CHAT_JWT_SECRET"), "the server's -jwt-secret")
	sub := fs.String("sub", "", "user ID (required)")
	name := fs.String("name", "", "display name (overrides ?name=)")
	rooms := fs.String("rooms", "", "comma-separated private rooms the token grants")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (0: no expiry)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" || *sub == "" {
		return errors.New("-jwt-secret and -sub are required")
	}
	claims := jwt.MapClaims{"sub": *sub}
	if *name != "" {
		claims["name"] = *name
	}
	if *rooms != "" {
		claims["rooms"] = strings.Split(*rooms, ",")
	}
	if *ttl > 0 {
		claims["exp"] = time.Now().Add(*ttl).Unix()
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(*secret))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, tok)
	return err
}

// pageURL turns a listen address into the URL to open in a browser.
func pageURL(addr string) string {
	if strings.HasPrefix(addr, ":") {
		addr = "localhost" + addr
	}
	return fmt.Sprintf("http://%s/", addr)
}
