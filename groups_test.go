package wsactor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// member is driven by text commands: "join <group> <name>", "leave <group>",
// "say <group> <text>" (to everyone), "others <group> <text>" (not to self),
// "who <group>" (answered "members <JSON list>").
type member struct {
	opened chan wsactor.ID
	srv    *wsactor.Server // for who
}

func (h *member) OnOpen(c *wsactor.Conn) error {
	if h.opened != nil {
		h.opened <- c.ID()
	}
	return nil
}

func (h *member) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	cmd, rest, _ := strings.Cut(m.Text(), " ")
	group, arg, _ := strings.Cut(rest, " ")
	var err error
	switch cmd {
	case "join":
		err = c.Join(group, map[string]string{"name": arg})
	case "leave":
		err = c.Leave(group)
	case "say":
		err = c.Broadcast(group, wsactor.Text(arg))
	case "others":
		err = c.Broadcast(group, wsactor.Text(arg), c.ID())
	case "who":
		var ms []groups.Member
		if ms, err = h.srv.Groups().Members(c.Context(), group); err == nil {
			b, _ := json.Marshal(ms)
			return c.SendText("members " + string(b))
		}
	}
	if err != nil {
		return c.SendText("error: " + err.Error())
	}
	if cmd == "join" || cmd == "leave" {
		return c.SendText("ok " + cmd)
	}
	return nil
}

func groupServer(t *testing.T, opts wsactor.Options) (*testServer, chan wsactor.ID) {
	opened := make(chan wsactor.ID, 100)
	return groupServerOpened(t, opts, opened)
}

// groupServerOpened is groupServer reporting opened connections on opened.
func groupServerOpened(t *testing.T, opts wsactor.Options, opened chan wsactor.ID) (*testServer, chan wsactor.ID) {
	ts := newTestServer(t, opts, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &member{opened: opened, srv: s} },
			wsactor.WithAuthenticator(auth.AuthenticatorFunc(func(r *http.Request) (*auth.User, error) {
				if u := r.URL.Query().Get("user"); u != "" {
					return &auth.User{ID: u}, nil
				}
				return nil, nil
			})))
	})
	return ts, opened
}

// joined dials, joins group and returns the client and its ID.
func joined(t *testing.T, ts *testServer, opened chan wsactor.ID, query, group, name string) (*websocket.Conn, wsactor.ID) {
	t.Helper()
	c := dial(t, ts.url+"/ws"+query)
	id := recv(t, opened, "open")
	write(t, c, websocket.MessageText, "join "+group+" "+name)
	if got := readText(t, c); got != "ok join" {
		t.Fatalf("join: %q", got)
	}
	return c, id
}

func memberIDs(t *testing.T, ts *testServer, group string) []wsactor.ID {
	t.Helper()
	ms, err := ts.Groups().Members(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var ids []wsactor.ID
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestGroupJoinBroadcastLeaveAndAutoLeave(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{})
	a, aID := joined(t, ts, opened, "", "lobby", "ann")
	b, _ := joined(t, ts, opened, "", "lobby", "bob")
	c, cID := joined(t, ts, opened, "", "lobby", "cy")

	write(t, a, websocket.MessageText, "say lobby hello all")
	for _, cl := range []*websocket.Conn{a, b, c} {
		if got := readText(t, cl); got != "hello all" {
			t.Fatalf("broadcast: %q", got)
		}
	}
	write(t, a, websocket.MessageText, "others lobby not for ann")
	for _, cl := range []*websocket.Conn{b, c} {
		if got := readText(t, cl); got != "not for ann" {
			t.Fatalf("broadcast with exclusion: %q", got)
		}
	}
	write(t, b, websocket.MessageText, "leave lobby")
	if got := readText(t, b); got != "ok leave" {
		t.Fatalf("leave: %q", got)
	}
	write(t, c, websocket.MessageText, "say lobby after bob left")
	for _, cl := range []*websocket.Conn{a, c} {
		if got := readText(t, cl); got != "after bob left" {
			t.Fatalf("broadcast after leave: %q", got)
		}
	}
	// ann never saw her own excluded message, and bob nothing after leaving:
	// the next message each reads is a fresh marker.
	if err := ts.Send(context.Background(), aID, wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, a); got != "marker" {
		t.Fatalf("ann got an unexpected message %q", got)
	}

	// Closing leaves every group, whoever closed it.
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cy to leave the lobby on close", func() bool {
		ids := memberIDs(t, ts, "lobby")
		return len(ids) == 1 && ids[0] == aID
	})
	if gs, _ := ts.Groups().GroupsOf(context.Background(), cID); len(gs) != 0 {
		t.Fatalf("closed connection still in %v", gs)
	}
	if n, err := ts.Groups().Broadcast(context.Background(), "lobby", wsactor.Text("last")); err != nil || n != 1 {
		t.Fatalf("Broadcast after close = %d, %v", n, err)
	}
}

func TestGroupsFromOutsideByID(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{})
	ctx := context.Background()
	a := dial(t, ts.url+"/ws?user=ann")
	aID := recv(t, opened, "open")
	hub := ts.Groups()
	if err := hub.Join(ctx, "vip", aID, map[string]string{"name": "Ann"}); err != nil {
		t.Fatal(err)
	}
	ms, err := hub.Members(ctx, "vip")
	if err != nil || len(ms) != 1 || ms[0].ID != aID || ms[0].User != "ann" || ms[0].Meta["name"] != "Ann" {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	if n, err := hub.BroadcastJSON(ctx, "vip", map[string]string{"type": "notice"}); err != nil || n != 1 {
		t.Fatalf("BroadcastJSON = %d, %v", n, err)
	}
	if got := readText(t, a); got != `{"type":"notice"}` {
		t.Fatalf("got %q", got)
	}
	if err := hub.Leave(ctx, "vip", aID); err != nil {
		t.Fatal(err)
	}
	if ids := memberIDs(t, ts, "vip"); len(ids) != 0 {
		t.Fatalf("still members: %v", ids)
	}
	for _, g := range []string{"", strings.Repeat("g", groups.MaxGroupLen+1)} {
		if err := hub.Join(ctx, g, aID, nil); !errors.Is(err, groups.ErrInvalidGroup) {
			t.Fatalf("Join(%d-byte group): want ErrInvalidGroup, got %v", len(g), err)
		}
		if _, err := hub.Broadcast(ctx, g, wsactor.Text("x")); !errors.Is(err, groups.ErrInvalidGroup) {
			t.Fatalf("Broadcast(%d-byte group): want ErrInvalidGroup, got %v", len(g), err)
		}
	}
	if err := hub.Join(ctx, "vip", "garbage", nil); !errors.Is(err, wsactor.ErrInvalidID) {
		t.Fatalf("malformed ID: %v", err)
	}
	if err := a.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "close", func() bool { return ts.Stats().ConnectionsOpen == 0 })
	if err := hub.Join(ctx, "vip", aID, nil); !errors.Is(err, wsactor.ErrConnectionNotFound) {
		t.Fatalf("join a closed connection: want ErrConnectionNotFound, got %v", err)
	}
	if n, err := hub.Broadcast(ctx, "nobody", wsactor.Text("x")); n != 0 || err != nil {
		t.Fatalf("Broadcast to an empty group = %d, %v", n, err)
	}
}

func TestSendToUserReachesEveryTab(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{})
	tab1 := dial(t, ts.url+"/ws?user=ann")
	recv(t, opened, "open")
	tab2 := dial(t, ts.url+"/ws?user=ann")
	recv(t, opened, "open")
	other := dial(t, ts.url+"/ws?user=bob")
	bobID := recv(t, opened, "open")
	n, err := ts.Groups().SendToUser(context.Background(), "ann", wsactor.Text("for ann"))
	if err != nil || n != 2 {
		t.Fatalf("SendToUser = %d, %v", n, err)
	}
	for _, c := range []*websocket.Conn{tab1, tab2} {
		if got := readText(t, c); got != "for ann" {
			t.Fatalf("got %q", got)
		}
	}
	if err := ts.Send(context.Background(), bobID, wsactor.Text("marker")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, other); got != "marker" {
		t.Fatalf("bob received ann's message: %q", got)
	}
	if err := tab1.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the closed tab to leave the user index", func() bool {
		n, _ := ts.Groups().SendToUser(context.Background(), "ann", wsactor.Text("again"))
		return n == 1
	})
	if n, _ := ts.Groups().SendToUser(context.Background(), "nobody", wsactor.Text("x")); n != 0 {
		t.Fatalf("unknown user reached %d", n)
	}
}

func TestPresenceEvents(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	a, aID := joined(t, ts, opened, "?user=ann", "lobby", "Ann")
	// A member hears its own join too.
	want := fmt.Sprintf(`{"count":1,"group":"lobby","joins":[{"id":%q,"name":"Ann","user":"ann"}],"leaves":[],"type":"presence"}`, aID)
	if got := canonicalJSON(t, readText(t, a)); got != want {
		t.Fatalf("Ann's own join:\n got %s\nwant %s", got, want)
	}
	b, bID := joined(t, ts, opened, "?user=bob", "lobby", "Bob")
	want = fmt.Sprintf(`{"count":2,"group":"lobby","joins":[{"id":%q,"name":"Bob","user":"bob"}],"leaves":[],"type":"presence"}`, bID)
	for _, c := range []*websocket.Conn{a, b} {
		if got := canonicalJSON(t, readText(t, c)); got != want {
			t.Fatalf("Bob's join:\n got %s\nwant %s", got, want)
		}
	}
	if err := b.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf(`{"count":1,"group":"lobby","joins":[],"leaves":[{"id":%q,"name":"Bob","user":"bob"}],"type":"presence"}`, bID)
	if got := canonicalJSON(t, readText(t, a)); got != want {
		t.Fatalf("Bob's leave:\n got %s\nwant %s", got, want)
	}
	// An anonymous member's entry has no "user".
	_, cID := joined(t, ts, opened, "", "lobby", "x")
	want = fmt.Sprintf(`{"count":2,"group":"lobby","joins":[{"id":%q,"name":"x"}],"leaves":[],"type":"presence"}`, cID)
	if got := canonicalJSON(t, readText(t, a)); got != want {
		t.Fatalf("anonymous join:\n got %s\nwant %s", got, want)
	}
}

// nextPresence reads c's next message, which must be a presence event.
func nextPresence(t *testing.T, c *websocket.Conn) groups.PresenceEvent {
	t.Helper()
	s := readText(t, c)
	var ev groups.PresenceEvent
	if err := json.Unmarshal([]byte(s), &ev); err != nil {
		t.Fatalf("want a presence event, got %q: %v", s, err)
	}
	return ev
}

// wantPresence reads c's next presence event and checks the IDs it lists.
func wantPresence(t *testing.T, c *websocket.Conn, joins, leaves []wsactor.ID) groups.PresenceEvent {
	t.Helper()
	ev := nextPresence(t, c)
	ids := func(ms []groups.Member) []wsactor.ID {
		var out []wsactor.ID
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	if !ev.Lists || !slices.Equal(ids(ev.Joins), joins) || !slices.Equal(ids(ev.Leaves), leaves) {
		t.Fatalf("presence event %+v, want joins %v and leaves %v", ev, joins, leaves)
	}
	return ev
}

// failingLeaves is a MemoryDirectory whose Leave fails while fail is set, as
// a shared directory does while Redis is down.
type failingLeaves struct {
	*groups.MemoryDirectory
	fail atomic.Bool
}

var errDirectoryDown = errors.New("directory down")

func (d *failingLeaves) Leave(ctx context.Context, group string, id wsactor.ID) (bool, error) {
	if d.fail.Load() {
		return false, errDirectoryDown
	}
	return d.MemoryDirectory.Leave(ctx, group, id)
}

// A leave the directory fails still takes effect on this node (no more
// broadcasts reach the connection), so the other members hear it; the
// caller gets the error, and the directory catches up later.
func TestLeaveWhileDirectoryFailsStillTellsMembers(t *testing.T) {
	dir := &failingLeaves{MemoryDirectory: groups.NewMemoryDirectory()}
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{Directory: dir, PresenceEvents: true}})
	a, aID := joined(t, ts, opened, "?user=ann", "lobby", "Ann")
	wantPresence(t, a, []wsactor.ID{aID}, nil)
	b, bID := joined(t, ts, opened, "?user=bob", "lobby", "Bob")
	wantPresence(t, a, []wsactor.ID{bID}, nil)
	wantPresence(t, b, []wsactor.ID{bID}, nil)

	dir.fail.Store(true)
	write(t, b, websocket.MessageText, "leave lobby")
	if got := readText(t, b); !strings.Contains(got, errDirectoryDown.Error()) {
		t.Fatalf("leave with the directory down: %q, want the error", got)
	}
	want := fmt.Sprintf(`{"count":2,"group":"lobby","joins":[],"leaves":[{"id":%q,"name":"Bob","user":"bob"}],"type":"presence"}`, bID)
	if got := canonicalJSON(t, readText(t, a)); got != want {
		t.Fatalf("leave event (the directory still counts Bob):\n got %s\nwant %s", got, want)
	}
	// Bob no longer gets the group's broadcasts; Ann does.
	write(t, a, websocket.MessageText, "say lobby hello")
	if got := readText(t, a); got != "hello" {
		t.Fatalf("Ann got %q, want hello", got)
	}
	write(t, b, websocket.MessageText, "join elsewhere Bob")
	if got := readText(t, b); got != "ok join" {
		t.Fatalf("Bob got %q before his own reply, want ok join (no lobby broadcast)", got)
	}
	wantPresence(t, b, []wsactor.ID{bID}, nil) // his own, in elsewhere
	// Leaving again is no second event: the next thing Ann hears is hers.
	write(t, b, websocket.MessageText, "leave lobby")
	readText(t, b)
	write(t, a, websocket.MessageText, "say lobby again")
	if got := readText(t, a); got != "again" {
		t.Fatalf("Ann got %q, want again (a second left event?)", got)
	}
}

// stallingJoins is a MemoryDirectory whose joins to one group hang until
// released, as a shared directory's do while Redis is slow or unreachable.
type stallingJoins struct {
	*groups.MemoryDirectory
	group   string
	entered chan struct{}
	release chan struct{}
}

func (d *stallingJoins) Join(ctx context.Context, group string, m groups.Member) (bool, error) {
	if group == d.group {
		d.entered <- struct{}{}
		<-d.release
	}
	return d.MemoryDirectory.Join(ctx, group, m)
}

// A directory call that hangs holds up only its own connection: other
// connections still join, leave, close and get broadcasts meanwhile, so a
// slow Redis cannot stall a node's local traffic.
func TestStalledDirectoryCallBlocksOnlyItsConnection(t *testing.T) {
	dir := &stallingJoins{MemoryDirectory: groups.NewMemoryDirectory(), group: "slow", entered: make(chan struct{}, 1), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(dir.release)
		}
	}
	t.Cleanup(release)
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{Directory: dir, PresenceEvents: true}})
	a, aID := joined(t, ts, opened, "", "lobby", "Ann")
	wantPresence(t, a, []wsactor.ID{aID}, nil)
	stuck := dial(t, ts.url+"/ws")
	recv(t, opened, "open")
	write(t, stuck, websocket.MessageText, "join slow Stu")
	recv(t, dir.entered, "the stalled join")

	// While it hangs: another connection joins, hears, leaves and closes.
	b, bID := joined(t, ts, opened, "", "lobby", "Bob")
	wantPresence(t, a, []wsactor.ID{bID}, nil)
	wantPresence(t, b, []wsactor.ID{bID}, nil)
	write(t, a, websocket.MessageText, "say lobby hello")
	for _, c := range []*websocket.Conn{a, b} {
		if got := readText(t, c); got != "hello" {
			t.Fatalf("broadcast during a stalled join: got %q", got)
		}
	}
	write(t, b, websocket.MessageText, "leave lobby")
	if got := readText(t, b); got != "ok leave" {
		t.Fatalf("leave during a stalled join: %q", got)
	}
	wantPresence(t, a, nil, []wsactor.ID{bID})
	if err := b.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Groups().Broadcast(context.Background(), "lobby", wsactor.Text("from outside")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, a); got != "from outside" {
		t.Fatalf("Server broadcast during a stalled join: got %q", got)
	}

	// The stalled join completes when the directory answers.
	release()
	if got := readText(t, stuck); got != "ok join" {
		t.Fatalf("the stalled join: %q", got)
	}
	if ids := memberIDs(t, ts, "slow"); len(ids) != 1 {
		t.Fatalf("members of slow: %v", ids)
	}
}

func TestSlowGroupMemberDoesNotDelayOthers(t *testing.T) {
	// Large messages go through each member's writer goroutine; small ones
	// through the shared flushers, until the slow member's socket is full
	// and its writer goroutine takes over (enough of them to fill it).
	for _, tc := range []struct {
		name       string
		size, msgs int
	}{{"32KiB", 32 << 10, 300}, {"3KiB", 3 << 10, 3000}} {
		t.Run(tc.name, func(t *testing.T) { testSlowGroupMember(t, tc.size, tc.msgs) })
	}
}

func testSlowGroupMember(t *testing.T, size, msgs int) {
	// A long write timeout: the stuck member must stay open for the whole
	// test, however slow the machine (by default it would be cut off after 10 s).
	ts, opened := groupServer(t, wsactor.Options{Transport: wsactor.TransportOptions{Overflow: wsactor.OverflowDropNewest, WriteTimeout: 5 * time.Minute}})
	joined(t, ts, opened, "", "feed", "slow") // never reads again
	const fast = 20
	clients := make([]*websocket.Conn, fast)
	for i := range clients {
		clients[i], _ = joined(t, ts, opened, "", "feed", "fast")
	}
	// Lock-step rounds: each broadcast must reach every fast member before the
	// next one goes out, while the slow member's queue is full and its writer
	// blocked. A slow member that held up fan-out would stall the rounds.
	payload := strings.Repeat("p", size)
	got := make(chan string, fast)
	for _, c := range clients {
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				got <- string(b[:strings.IndexByte(string(b), ' ')])
			}
		}()
	}
	for i := range msgs {
		if _, err := ts.Groups().Broadcast(context.Background(), "feed", wsactor.Text(fmt.Sprintf("%d %s", i, payload))); err != nil {
			t.Fatal(err)
		}
		for range fast {
			if seq := recv(t, got, fmt.Sprintf("round %d", i)); seq != fmt.Sprint(i) {
				t.Fatalf("round %d: a fast member got message %s", i, seq)
			}
		}
	}
	if st := ts.Stats(); st.Dropped == 0 || st.ConnectionsOpen != fast+1 {
		t.Fatalf("the slow member should have dropped messages and stayed open: %+v", st)
	}
}

func TestBroadcastsRaceJoinsLeavesAndCloses(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{PresenceEvents: true}})
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := ts.Groups().Broadcast(context.Background(), "churn", wsactor.Text("tick")); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 20 {
		c := dial(t, ts.url+"/ws")
		recv(t, opened, "open")
		go func() { // drain
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			for range 5 {
				_ = c.Write(ctx, websocket.MessageText, []byte("join churn x"))
				_ = c.Write(ctx, websocket.MessageText, []byte("leave churn"))
			}
			_ = c.Write(ctx, websocket.MessageText, []byte("join churn x"))
			if i%2 == 0 {
				_ = c.CloseNow() // vanish without a close frame
			} else {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
		})
	}
	wg.Wait()
	waitFor(t, "every connection to close", func() bool { return ts.Stats().ConnectionsOpen == 0 })
	close(stop)
	bg.Wait()
	if ids := memberIDs(t, ts, "churn"); len(ids) != 0 {
		t.Fatalf("dead members remain: %v", ids)
	}
}
