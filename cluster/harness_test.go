package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/groups"
)

// ringLog keeps a node's last log lines, shown when a test fails.
type ringLog struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func newRingLog(max int) *ringLog { return &ringLog{max: max} }

func (r *ringLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *ringLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ringLogWith{r: r, attrs: attrs}
}
func (r *ringLog) WithGroup(string) slog.Handler { return r }

func (r *ringLog) Handle(_ context.Context, rec slog.Record) error { return r.handle(rec, nil) }

func (r *ringLog) handle(rec slog.Record, attrs []slog.Attr) error {
	var b strings.Builder
	b.WriteString(rec.Time.Format("15:04:05.000") + " " + rec.Level.String() + " " + rec.Message)
	for _, a := range attrs {
		b.WriteString(" " + a.String())
	}
	rec.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	if len(r.lines) > r.max {
		r.lines = slices.Delete(r.lines, 0, len(r.lines)-r.max)
	}
	return nil
}

func (r *ringLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

type ringLogWith struct {
	r     *ringLog
	attrs []slog.Attr
}

func (w *ringLogWith) Enabled(context.Context, slog.Level) bool { return true }
func (w *ringLogWith) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ringLogWith{r: w.r, attrs: append(slices.Clone(w.attrs), attrs...)}
}
func (w *ringLogWith) WithGroup(string) slog.Handler { return w }
func (w *ringLogWith) Handle(_ context.Context, rec slog.Record) error {
	return w.r.handle(rec, w.attrs)
}

// dumpLogsOnFailure prints the nodes' recent logs if t fails.
func dumpLogsOnFailure(t *testing.T, nodes ...*poolNode) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			t.Logf("recent log of node %s:\n%s", n.Address(), n.logs)
		}
	})
}

// testServer is a wsactor server of one test on one node, behind httptest.
type testServer struct {
	*wsactor.Server
	node *poolNode
	name string // the server's name (Options.Name)
	url  string // ws://127.0.0.1:port/ws
}

var serverSeq atomic.Int64

// startServers starts a wsactor server with the route /ws (see member) on
// each node, all with one fresh server name, attached to their nodes.
func startServers(t *testing.T, nodes []*poolNode, opts wsactor.Options) []*testServer {
	t.Helper()
	name := fmt.Sprintf("t%d", serverSeq.Add(1))
	out := make([]*testServer, len(nodes))
	for i, n := range nodes {
		o := opts
		o.Name = name
		if o.Logger == nil {
			o.Logger = slog.New(n.logs)
		}
		s := wsactor.New(n.ServerOptions(o))
		n.Attach(s)
		s.Handle("/ws", func() wsactor.Handler { return &member{} }, wsactor.WithAuthenticator(userFromQuery))
		hs := httptest.NewServer(s)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown of %s on %s: %v", name, n.Address(), err)
			}
			hs.Close()
		})
		out[i] = &testServer{Server: s, node: n, name: name, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	}
	return out
}

// userFromQuery authenticates ?user=NAME as NAME; no user is anonymous.
var userFromQuery = auth.AuthenticatorFunc(func(r *http.Request) (*auth.User, error) {
	if u := r.URL.Query().Get("user"); u != "" {
		return &auth.User{ID: u}, nil
	}
	return nil, nil
})

// member is the tests' connection handler. On open it joins ?group= (if
// given, with meta name=?name=) and then sends "id:<its connection ID>", so
// that a client knows its ID and that it is a member. It echoes what it gets.
type member struct{}

func (*member) OnOpen(c *wsactor.Conn) error {
	q := c.Query()
	if g := q.Get("group"); g != "" {
		if err := c.Join(g, map[string]string{"name": q.Get("name")}); err != nil {
			return err
		}
	}
	return c.SendText("id:" + string(c.ID()))
}

func (*member) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

// client is one WebSocket client of a test. Presence events arrive between
// the other messages at moments the tests do not control: read sets them
// aside for wantEvent.
type client struct {
	t        *testing.T
	c        *websocket.Conn
	id       wsactor.ID
	held     []string               // read by wantEvent while looking for an event
	presence []groups.PresenceEvent // not looked at yet
}

// connect opens a connection to the server's /ws with the query (user=,
// group=, name=) and reads its ID.
func (s *testServer) connect(t *testing.T, query string) *client {
	t.Helper()
	return dialClient(t, s.url+"?"+query)
}

func dialClient(t *testing.T, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	cl := &client{t: t, c: c}
	id, ok := strings.CutPrefix(cl.read(), "id:")
	if !ok {
		t.Fatalf("%s: the first message is not the connection ID", url)
	}
	cl.id = wsactor.ID(id)
	return cl
}

// read returns the next message that is not a presence event.
func (cl *client) read() string {
	cl.t.Helper()
	for {
		var s string
		if len(cl.held) > 0 {
			s, cl.held = cl.held[0], cl.held[1:]
		} else {
			s = cl.readSocket()
		}
		var ev groups.PresenceEvent
		if json.Unmarshal([]byte(s), &ev) != nil {
			return s
		}
		cl.presence = append(cl.presence, ev)
	}
}

// nextPresence returns the next presence event.
func (cl *client) nextPresence() groups.PresenceEvent {
	cl.t.Helper()
	for len(cl.presence) == 0 {
		s := cl.readSocket()
		var ev groups.PresenceEvent
		if json.Unmarshal([]byte(s), &ev) != nil {
			cl.held = append(cl.held, s)
			continue
		}
		cl.presence = append(cl.presence, ev)
	}
	ev := cl.presence[0]
	cl.presence = cl.presence[1:]
	return ev
}

func (cl *client) readSocket() string {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, b, err := cl.c.Read(ctx)
	if err != nil {
		cl.t.Fatalf("client %s: read: %v", cl.id, err)
	}
	if typ != websocket.MessageText {
		cl.t.Fatalf("client %s: got a %v message", cl.id, typ)
	}
	return string(b)
}

func (cl *client) expect(want string) {
	cl.t.Helper()
	if got := cl.read(); got != want {
		cl.t.Fatalf("client %s: got %q, want %q", cl.id, got, want)
	}
}

func (cl *client) write(s string) {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cl.c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		cl.t.Fatalf("client %s: write: %v", cl.id, err)
	}
}

// closed returns a channel that yields the close error the client gets; it
// keeps reading (and so answers the closing handshake) until then. Other
// messages are discarded.
func (cl *client) closed() <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		for {
			if _, _, err := cl.c.Read(ctx); err != nil {
				ch <- err
				return
			}
		}
	}()
	return ch
}

func wantCloseCode(t *testing.T, ch <-chan error, code websocket.StatusCode, reason string) {
	t.Helper()
	var err error
	select {
	case err = <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("the client was not closed")
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Reason != reason {
		t.Fatalf("want close %d %q, got %v", code, reason, err)
	}
}

// waitUntil polls cond until it holds; it fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memberIDs lists a group's member IDs, sorted, as hub sees them.
func memberIDs(ctx context.Context, s *wsactor.Server, group string) ([]wsactor.ID, error) {
	ms, err := s.Groups().Members(ctx, group)
	if err != nil {
		return nil, err
	}
	ids := make([]wsactor.ID, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	return ids, nil
}

func sortedIDs(ids ...wsactor.ID) []wsactor.ID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// waitMembers waits until s lists exactly want as group's members.
func waitMembers(t *testing.T, s *wsactor.Server, group string, want ...wsactor.ID) {
	t.Helper()
	want = sortedIDs(want...)
	var got []wsactor.ID
	var err error
	deadline := time.Now().Add(testTimeout)
	for {
		got, err = memberIDs(context.Background(), s, group)
		if err == nil && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members of %q: got %v (err %v), want %v", group, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
