// Package gameserver is the server of wsactor's game example: a real-time
// arena where dots pick up coins, 20 ticks a second, in rooms of up to 8
// that live anywhere in a cluster and survive the loss of their node. The
// protocol is documented in examples/game/README.md; the command is
// examples/game.
//
// Each room is a wsactor room (arena.go): its state, its rules and its
// clock run in the room's actor. Each connection (conn.go) asks for a seat
// and passes its inputs on; the room sends every player the state each
// tick, straight to the sockets.
package gameserver

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/client/web"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/rooms"
)

// Config configures the game server. The zero value is a single node.
type Config struct {
	// Node, if set, runs the game as one node of a cluster: rooms live on
	// any node, and players on any node play together.
	Node *cluster.Node
	// Address names this node to clients (the welcome's "node") and in
	// room listings on a single node: its HTTP address. In a cluster the
	// node's cluster address is used instead.
	Address string
	// Peers are the HTTP base URLs of the game's nodes (this one included),
	// which the page tries in turn when its node goes away (GET /api/peers).
	Peers []string
	// AdminToken, if set, serves the admin API (POST /api/send) to this
	// bearer token.
	AdminToken string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Transport adjusts the connections' limits (tests shorten timeouts).
	Transport wsactor.TransportOptions
}

// Game is the game server.
type Game struct {
	cfg      Config
	srv      *wsactor.Server
	nodeName string
}

//go:embed static
var static embed.FS

// New returns the game's routes and the wsactor server behind them. The
// caller owns the server and must Shutdown it.
func New(cfg Config) (*http.ServeMux, *wsactor.Server) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Game{cfg: cfg, nodeName: cfg.Address}
	opts := wsactor.Options{Name: "game", Logger: cfg.Logger, Transport: cfg.Transport}
	if cfg.Node != nil {
		opts = cfg.Node.ServerOptions(opts)
		g.nodeName = cfg.Node.Address()
	}
	g.srv = wsactor.New(opts)
	if cfg.Node != nil {
		cfg.Node.Attach(g.srv)
	}
	g.srv.Rooms().Define(Kind())
	router := g.router()
	// A page fails over to the other peers: they accept its origin.
	g.srv.Handle("GET /ws/game", func() wsactor.Handler { return &player{Router: router, g: g} },
		wsactor.WithOriginPatterns(peerOrigins(cfg.Peers)...))

	mux := http.NewServeMux()
	mux.Handle("/ws/", g.srv)
	page, _ := fs.Sub(static, "static")
	mux.Handle("GET /{$}", file(page, "index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /app.js", file(page, "app.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /wsactor.js", web.Handler())
	mux.HandleFunc("GET /api/rooms", g.apiRooms)
	mux.HandleFunc("GET /api/peers", g.apiPeers)
	if cfg.AdminToken != "" {
		mux.Handle("POST /api/send", requireBearer(cfg.AdminToken, http.HandlerFunc(g.apiSend)))
	}
	operationsRoutes(mux, g.srv, cfg.Node)
	return mux, g.srv
}

func (g *Game) rooms() *rooms.Manager { return g.srv.Rooms() }

// RoomInfo is an entry of GET /api/rooms.
type RoomInfo struct {
	Room    string `json:"room"`
	Players int    `json:"players"`
	Max     int    `json:"max"`
	Node    string `json:"node"`
}

// apiRooms lists the rooms of the whole cluster: GET /api/rooms.
func (g *Game) apiRooms(w http.ResponseWriter, r *http.Request) {
	ls, err := g.srv.Rooms().List(r.Context(), KindName, nil)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "rooms cannot be listed: "+err.Error())
		return
	}
	out := make([]RoomInfo, 0, len(ls))
	for _, l := range ls {
		node := l.Node
		if g.cfg.Node == nil {
			node = g.nodeName // one node: its rooms are all here
		}
		out = append(out, RoomInfo{Room: l.Name, Players: l.Players, Max: l.Max, Node: node})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// peerOrigins are the origin patterns of the peers' pages ("http://host:port",
// with path.Match's special characters escaped, as in "[::1]").
func peerOrigins(peers []string) []string {
	escape := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	var out []string
	for _, p := range peers {
		if u, err := url.Parse(p); err == nil && u.Host != "" {
			out = append(out, escape.Replace(u.Scheme+"://"+u.Host))
		}
	}
	return out
}

// apiPeers lists the game's nodes for the page: GET /api/peers.
func (g *Game) apiPeers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, slices.Clone(g.cfg.Peers))
}

// sendRequest is the body of POST /api/send.
type sendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// apiSend sends a notice to one player by connection ID, from any node:
// POST /api/send {"to":"<connection ID>","text":"…"} → 204, 400, 404
// (no such connection), 503 (its queue is full) or 504 (its node did not
// answer).
func (g *Game) apiSend(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil || req.Text == "" {
		writeError(w, http.StatusBadRequest, `the body must be {"to":"<connection ID>","text":"…"}`)
		return
	}
	id, err := wsactor.ParseID(req.To)
	if err != nil {
		writeError(w, http.StatusBadRequest, `"to" is not a connection ID`)
		return
	}
	m, _ := wsactor.JSON(NoticeMsg{Type: "notice", Text: req.Text})
	switch err := g.srv.Send(r.Context(), id, m); {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, wsactor.ErrConnectionNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, wsactor.ErrSendQueueFull):
		// The player is not keeping up. The default policy (OverflowClose)
		// closes it with 1013, and its page reconnects with its token,
		// under a new ID; with a drop policy a later notice may get through.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case r.Context().Err() != nil:
		// The caller went away; nobody reads this answer.
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		// The player's node did not answer in time, or failed.
		writeError(w, http.StatusGatewayTimeout, err.Error())
	}
}
