// Package chatserver is the server of wsactor's chat example: rooms at
// /ws/chat/{room}, a page at / that uses the browser client, and an optional
// admin HTTP API that reaches connections by ID from outside. The protocol is
// documented in examples/chat/README.md; the command is examples/chat.
//
// It is a package of its own, rather than part of the command, so that the
// browser tests in package e2e run the very server the command runs.
package chatserver

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/client/web"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/groups"
)

// Config configures the chat server. The zero value is the open chat:
// anonymous users, no admin API.
type Config struct {
	// JWTSecret, if set, requires an HS256 JSON Web Token signed with it on
	// every connection (header, subprotocol, cookie or query "token"; see
	// auth.JWT): its "sub" is the user ID and its "name" claim the display
	// name. Rooms named "private-*" need the room in the token's "rooms"
	// claim; without a secret nobody can prove that, so they are closed.
	JWTSecret []byte
	// AdminToken, if set, serves the admin API under /api/; every call must
	// carry "Authorization: Bearer <AdminToken>".
	AdminToken string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Transport adjusts the connections' limits (tests shorten timeouts);
	// the zero value keeps wsactor's defaults (64 KiB messages...).
	Transport wsactor.TransportOptions
	// LargeRoom is the largest room whose members are listed: presence
	// events and the answer to who give a larger room's count only. Default
	// groups.DefaultPresenceLargeGroup (1,000).
	LargeRoom int
	// Node, if set, runs the chat as one node of a cluster: rooms, presence,
	// DMs and the admin API then span every node (see cluster.Start).
	Node *cluster.Node
}

//go:embed static
var static embed.FS

// New returns the chat's routes and the wsactor server behind them. The
// caller owns the server and must Shutdown it; serve the mux with
// s.ServeHandler or s.ListenAndServeHandler so that Shutdown stops the
// listener too.
func New(cfg Config) (*http.ServeMux, *wsactor.Server) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LargeRoom <= 0 {
		cfg.LargeRoom = groups.DefaultPresenceLargeGroup
	}
	opts := wsactor.Options{
		Logger:    cfg.Logger,
		Transport: cfg.Transport,
		// The runtime tells a room's members who joined and left, in
		// batches: {"type":"presence","group":room,"count":N,"joins":[..],
		// "leaves":[..]}, each entry with the meta its connection joined
		// with (groups.PresenceEvent).
		Groups: wsactor.GroupsOptions{PresenceEvents: true, PresenceLargeGroup: cfg.LargeRoom},
	}
	if cfg.Node != nil {
		opts = cfg.Node.ServerOptions(opts)
	}
	s := wsactor.New(opts)
	if cfg.Node != nil {
		cfg.Node.Attach(s)
	}
	a := &app{srv: s, largeRoom: cfg.LargeRoom}
	router := a.router()
	routeOpts := []wsactor.RouteOption{wsactor.WithPermissions(privateRooms)}
	if len(cfg.JWTSecret) > 0 {
		routeOpts = append(routeOpts,
			wsactor.WithAuthenticator(&auth.JWT{Key: cfg.JWTSecret}), // []byte: HS256 only
			wsactor.RequireAuth(),
		)
	}
	s.Handle("/ws/chat/{room}", func() wsactor.Handler { return &conn{Router: router} }, routeOpts...)

	mux := http.NewServeMux()
	mux.Handle("/ws/", s)
	page, _ := fs.Sub(static, "static")
	mux.Handle("GET /{$}", file(page, "index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /app.js", file(page, "app.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /wsactor.js", web.Handler())
	if cfg.AdminToken != "" {
		a.adminRoutes(mux, cfg.AdminToken)
	}
	operationsRoutes(mux, s, cfg.Node)
	return mux, s
}

// file serves one embedded file.
func file(fsys fs.FS, name, contentType string) http.Handler {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}
