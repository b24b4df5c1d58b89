// Package statuspage serves a live status page of a wsactor server: one
// HTML file with its script and styles inline (no external assets, no build
// step) that polls a JSON snapshot every second and shows connections and
// their rate, messages per second in and out, queues and slow consumers,
// closes by code, rooms and their players, and the cluster's nodes.
//
// Mount Handler at a path and at the same path with ".json" appended:
//
//	h := statuspage.Handler(srv, statuspage.WithNode(node))
//	mux.Handle("GET /status", h)
//	mux.Handle("GET /status.json", h)
//
// The page shows counters and room listings: put it behind the same
// access control as your other operator endpoints (auth.RequireBearer).
package statuspage

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/rooms"
)

//go:embed status.html
var page []byte

// MaxRooms bounds the rooms listed per kind, so that a server with many
// rooms keeps a small page; Snapshot.Rooms.Listed says how many there were.
const MaxRooms = 50

// Option configures Handler.
type Option func(*source)

// WithNode adds the cluster node's state and members to the page.
func WithNode(n *cluster.Node) Option { return func(s *source) { s.node = n } }

type source struct {
	srv  *wsactor.Server
	node *cluster.Node
}

// Handler serves the page for a path not ending in ".json", and the
// Snapshot as JSON for one that does. The page fetches the JSON at its own
// path plus ".json".
func Handler(s *wsactor.Server, opts ...Option) http.Handler {
	src := &source{srv: s}
	for _, o := range opts {
		o(src)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if strings.HasSuffix(r.URL.Path, ".json") {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(src.snapshot(ctx))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
}

// Snapshot is the JSON the page polls. Counters are totals since the
// server started; the page turns them into rates.
type Snapshot struct {
	Time   int64  `json:"time"` // unix milliseconds
	Server string `json:"server"`
	Ready  bool   `json:"ready"`

	Connections struct {
		Open       int64            `json:"open"`
		Held       int64            `json:"held"`
		Accepted   int64            `json:"accepted"`
		Rejected   int64            `json:"rejected"`
		RejectedBy map[string]int64 `json:"rejected_by"`
	} `json:"connections"`
	Messages struct {
		In       int64 `json:"in"`
		Out      int64 `json:"out"`
		BytesIn  int64 `json:"bytes_in"`
		BytesOut int64 `json:"bytes_out"`
	} `json:"messages"`
	Queues struct {
		SlowConsumerCloses int64   `json:"slow_consumer_closes"`
		Dropped            int64   `json:"dropped"`
		RateLimited        int64   `json:"rate_limited"`
		MailboxSamples     int64   `json:"mailbox_samples"`
		MailboxP50Ms       float64 `json:"mailbox_p50_ms"`
		MailboxP99Ms       float64 `json:"mailbox_p99_ms"`
	} `json:"queues"`
	Handlers struct {
		Panics   int64 `json:"panics"`
		Restarts int64 `json:"restarts"`
	} `json:"handlers"`
	Closes []Close `json:"closes"`
	Rooms  struct {
		Active    int64           `json:"active"`
		Failovers int64           `json:"failovers"`
		Ticks     int64           `json:"ticks"`
		TickP99Ms float64         `json:"tick_late_p99_ms"`
		Listed    int             `json:"listed"`
		List      []rooms.Listing `json:"list"`
		Error     string          `json:"error,omitempty"`
	} `json:"rooms"`
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Close is a count of closes with one code by one side.
type Close struct {
	Code  int    `json:"code"`
	By    string `json:"by"`
	Count int64  `json:"count"`
}

// Cluster is the node's state and the members it sees.
type Cluster struct {
	Self         string   `json:"self"`
	MemberID     string   `json:"member_id"`
	Isolated     bool     `json:"isolated"`
	RedisHealthy bool     `json:"redis_healthy"`
	RedisOutages int64    `json:"redis_outages"`
	Peers        []string `json:"peers"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (src *source) snapshot(ctx context.Context) Snapshot {
	st := src.srv.Stats()
	var s Snapshot
	s.Time = time.Now().UnixMilli()
	s.Server = src.srv.Name()
	s.Ready = src.srv.Ready()
	c := &s.Connections
	c.Open, c.Held, c.Accepted, c.Rejected, c.RejectedBy = st.ConnectionsOpen, st.ConnectionsHeld, st.ConnectionsAccepted, st.ConnectionsRejected, st.RejectedBy
	m := &s.Messages
	m.In, m.Out, m.BytesIn, m.BytesOut = st.MessagesIn, st.MessagesOut, st.BytesIn, st.BytesOut
	q := &s.Queues
	q.SlowConsumerCloses, q.Dropped, q.RateLimited = st.SlowConsumerCloses, st.Dropped, st.RateLimited
	q.MailboxSamples = st.MailboxLatency.Count
	q.MailboxP50Ms, q.MailboxP99Ms = ms(st.MailboxLatency.Quantile(0.5)), ms(st.MailboxLatency.Quantile(0.99))
	s.Handlers.Panics, s.Handlers.Restarts = st.Panics, st.Restarts
	s.Closes = make([]Close, 0, len(st.Closes))
	for _, cc := range st.Closes {
		s.Closes = append(s.Closes, Close{Code: int(cc.Code), By: cc.By, Count: cc.Count})
	}

	rm := src.srv.Rooms()
	rs := rm.Stats()
	s.Rooms.Active, s.Rooms.Failovers = rs.RoomsActive, rs.Failovers
	s.Rooms.Ticks, s.Rooms.TickP99Ms = rs.TickLateness.Count, ms(rs.TickLateness.Quantile(0.99))
	s.Rooms.List = []rooms.Listing{}
	for _, kind := range rm.Kinds() {
		ls, err := rm.List(ctx, kind, nil)
		if err != nil {
			s.Rooms.Error = err.Error()
			continue
		}
		s.Rooms.Listed += len(ls)
		s.Rooms.List = append(s.Rooms.List, ls[:min(len(ls), MaxRooms)]...)
	}

	if n := src.node; n != nil {
		ns := n.Stats()
		s.Cluster = &Cluster{
			Self: n.Address(), MemberID: n.MemberID(), Isolated: n.Isolated(),
			RedisHealthy: ns.RedisHealthy, RedisOutages: ns.RedisOutages, Peers: n.Peers(),
		}
	}
	return s
}
