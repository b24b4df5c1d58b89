package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// broadcastKind names a server of BenchmarkBroadcast.
type broadcastKind string

const (
	// bareLoop is the naive baseline: one goroutine writes the message to
	// every member's socket in turn (ws.Write, synchronous).
	bareLoop broadcastKind = "bare-loop"
	// barePump is the classic Go chat hub (gorilla/websocket's chat
	// example): every member has a buffered channel and a writer goroutine
	// for its whole life; a broadcast is a non-blocking send to each channel.
	barePump broadcastKind = "bare-pump"
	// actorGroup is wsactor: the members joined a group and the broadcast is
	// Server.Groups().Broadcast (one prepared message posted to every
	// member's mailbox).
	actorGroup broadcastKind = "wsactor"
)

var broadcastKinds = []broadcastKind{bareLoop, barePump, actorGroup}

// benchGroup is the group every client of BenchmarkBroadcast joins.
const benchGroup = "bench"

// broadcastTarget is a running server whose every connection is a member of
// one group.
type broadcastTarget interface {
	URL() string
	// Members is how many connections are members of the group now.
	Members() int
	// Open is the number of connections the server has not finished with.
	Open() int64
	// Broadcast sends b (which must not change afterwards) to every member
	// and returns how many members it was sent or queued to.
	Broadcast(b []byte) (int, error)
	// Close stops the server once its clients are gone.
	Close() error
}

func startBroadcastServer(k broadcastKind) broadcastTarget {
	switch k {
	case bareLoop:
		return startBareGroup(false)
	case barePump:
		return startBareGroup(true)
	}
	return startActorGroup()
}

// bareGroup is a coder/websocket server that keeps its connections in a
// copy-on-write slice. Each connection's read loop runs on its net/http
// handler goroutine, as in the other bare benchmarks. With pump set, each
// connection also has a writer goroutine fed by a channel.
type bareGroup struct {
	bareHTTP
	pump bool

	mu      sync.Mutex // serializes joins and leaves
	members atomic.Pointer[[]*bareMember]
}

type bareMember struct {
	ws   *websocket.Conn
	send chan []byte   // pump only
	done chan struct{} // pump only: closed when the connection ends
}

func startBareGroup(pump bool) *bareGroup {
	g := &bareGroup{pump: pump}
	g.members.Store(&[]*bareMember{})
	g.http = httptest.NewServer(g)
	return g
}

func (g *bareGroup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit)
	g.open.Add(1)
	defer g.open.Add(-1)
	m := &bareMember{ws: ws}
	if g.pump {
		// The count bound wsactor's send queue had by default (it is
		// bounded in bytes now).
		m.send = make(chan []byte, 256)
		m.done = make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			m.writeLoop()
		}()
		defer func() { <-stopped }()
		defer close(m.done)
		defer ws.CloseNow() // unblocks a write in flight before waiting for the writer
	}
	g.join(m)
	defer g.leave(m)
	for {
		if _, _, err := ws.Read(context.Background()); err != nil {
			return
		}
	}
}

func (m *bareMember) writeLoop() {
	for {
		select {
		case b := <-m.send:
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			err := m.ws.Write(ctx, websocket.MessageBinary, b)
			cancel()
			if err != nil {
				return // coder/websocket closed the socket; the read loop ends too
			}
		case <-m.done:
			return
		}
	}
}

func (g *bareGroup) join(m *bareMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.members.Load()
	members := append(make([]*bareMember, 0, len(old)+1), old...)
	members = append(members, m)
	g.members.Store(&members)
}

func (g *bareGroup) leave(m *bareMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.members.Load()
	members := make([]*bareMember, 0, len(old))
	for _, x := range old {
		if x != m {
			members = append(members, x)
		}
	}
	g.members.Store(&members)
}

func (g *bareGroup) Broadcast(b []byte) (int, error) {
	members := *g.members.Load()
	if !g.pump {
		for i, m := range members {
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			err := m.ws.Write(ctx, websocket.MessageBinary, b)
			cancel()
			if err != nil {
				return i, fmt.Errorf("bare-loop: write to member %d: %w", i, err)
			}
		}
		return len(members), nil
	}
	for i, m := range members {
		select {
		case m.send <- b:
		default:
			// wsactor's default policy on a full queue: close the connection.
			_ = m.ws.CloseNow()
			return i, fmt.Errorf("bare-pump: member %d's queue is full", i)
		}
	}
	return len(members), nil
}

func (g *bareGroup) Members() int { return len(*g.members.Load()) }

// actorGroupServer is wsactor with a route whose handler joins benchGroup
// when the connection opens.
type actorGroupServer struct {
	actorHTTP
	joined atomic.Int64
}

// groupMember is shared by all connections: it joins the group on open and
// ignores what clients send. Members leave the group on close by themselves.
type groupMember struct{ joined *atomic.Int64 }

func (h *groupMember) OnOpen(c *wsactor.Conn) error {
	if err := c.Join(benchGroup, nil); err != nil {
		return err
	}
	h.joined.Add(1)
	return nil
}

func (h *groupMember) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h *groupMember) OnClose(*wsactor.Conn, wsactor.StatusCode, string) { h.joined.Add(-1) }

func startActorGroup() *actorGroupServer {
	a := &actorGroupServer{}
	a.actorHTTP = startActorHTTP(&groupMember{joined: &a.joined}, unboundLimit)
	return a
}

func (a *actorGroupServer) Broadcast(b []byte) (int, error) {
	return a.s.Groups().Broadcast(context.Background(), benchGroup, wsactor.Binary(b))
}

func (a *actorGroupServer) Members() int { return int(a.joined.Load()) }

func (a *actorGroupServer) Close() error {
	err := a.stop()
	if st := a.s.Stats(); st.SlowConsumerCloses != 0 || st.Panics != 0 || st.Dropped != 0 {
		err = errors.Join(err, fmt.Errorf("wsactor stats: %+v", st))
	}
	return err
}
