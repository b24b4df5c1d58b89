package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
)

// counter is a room that counts the messages it got, snapshots the count,
// and can be made to panic or to grow its snapshot.
type counter struct {
	n       int
	pad     int // bytes of padding in the snapshot
	created chan []byte
}

func (h *counter) OnCreate(r *rooms.Room, snapshot []byte) error {
	if len(snapshot) > 0 {
		var st struct{ N int }
		if err := json.Unmarshal(snapshot, &st); err != nil {
			return err
		}
		h.n = st.N
	}
	if h.created != nil {
		h.created <- snapshot
	}
	return nil
}

func (h *counter) OnMessage(r *rooms.Room, p *rooms.Player, m wsactor.Message) error {
	switch t := m.Text(); {
	case t == "panic":
		panic("asked to")
	case strings.HasPrefix(t, "pad "):
		h.pad, _ = strconv.Atoi(strings.TrimPrefix(t, "pad "))
		r.SaveSnapshot()
		return nil
	case t == "save":
		r.SaveSnapshot()
	default:
		h.n++
	}
	return r.Send(p, wsactor.Text(fmt.Sprintf("n=%d", h.n)))
}

func (h *counter) Snapshot(*rooms.Room) ([]byte, error) {
	return json.Marshal(struct {
		N   int
		Pad string
	}{h.n, strings.Repeat("x", h.pad)})
}

func counterKind(created chan []byte, adjust ...func(*rooms.Kind)) rooms.Kind {
	k := rooms.Kind{Name: "counter", New: func() rooms.Handler { return &counter{created: created} }}
	for _, f := range adjust {
		f(&k)
	}
	return k
}

// TestPanicRestartsFromMemory: a panic in room code is logged with the room,
// counted, and the room goes on from its in-memory state; past the budget
// the room closes and its players are told.
func TestPanicRestartsFromMemory(t *testing.T) {
	s := newServer(t, counterKind(nil, func(k *rooms.Kind) { k.MaxRestarts = 2 }))
	a := s.dial(t, "a")
	a.Join("counter", "c")
	for i := 1; i <= 3; i++ {
		a.Send(map[string]string{"op": "say", "text": "x"})
		a.Expect(fmt.Sprintf("n=%d", i))
	}
	a.Send(map[string]string{"op": "say", "text": "panic"})
	a.Send(map[string]string{"op": "say", "text": "x"})
	a.Expect("n=4") // the count survived the restart
	if st := s.Rooms().Stats(); st.Panics != 1 || st.Restarts != 1 {
		t.Fatalf("stats after a panic: %+v", st)
	}
	if logs := s.logs.String(); !strings.Contains(logs, "room handler panicked") || !strings.Contains(logs, "room=counter/c") || !strings.Contains(logs, "asked to") {
		t.Fatalf("the panic was not logged with the room:\n%s", logs)
	}
	a.Send(map[string]string{"op": "say", "text": "panic"})
	a.Send(map[string]string{"op": "say", "text": "x"})
	a.Expect("n=5")
	a.Send(map[string]string{"op": "say", "text": "panic"}) // third: over the budget of 2
	if ev := a.Event("left"); ev["why"] != string(rooms.LeaveRoomFailed) {
		t.Fatalf("after the budget: %v", ev)
	}
	waitFor(t, "the room's activation to end", func() bool { return s.Rooms().Stats().RoomsActive == 0 })
}

// TestSnapshotRestoresOnAnotherServer: a room saved by one server's
// activation is restored by the next activation, on another server sharing
// the store: the game state and the seats, which their players take back
// with their tokens.
func TestSnapshotRestoresOnAnotherServer(t *testing.T) {
	store := rooms.NewMemoryStore()
	created := make(chan []byte, 4)
	opts := wsactor.Options{Rooms: wsactor.RoomsOptions{Store: store}}
	one := newServerWith(t, opts, counterKind(created))
	a := one.dial(t, "a")
	tok := a.Join("counter", "kept")["token"].(string)
	if snap := <-created; snap != nil {
		t.Fatalf("a new room got the snapshot %q", snap)
	}
	for i := 1; i <= 3; i++ {
		a.Send(map[string]string{"op": "say", "text": "x"})
		a.Expect(fmt.Sprintf("n=%d", i))
	}
	// The client goes (its seat is held), then its server.
	_ = a.Conn.Close(websocket.StatusGoingAway, "")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := one.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	two := newServerWith(t, opts, counterKind(created))
	b := two.dial(t, "a-again")
	b.Send(map[string]string{"op": "reconnect", "token": tok})
	j := b.Event("joined")
	if j["seat"] != 0.0 || j["again"] != true {
		t.Fatalf("reconnect to the restored room: %v", j)
	}
	if snap := <-created; !strings.Contains(string(snap), `"N":3`) {
		t.Fatalf("the restored room got %q", snap)
	}
	b.Send(map[string]string{"op": "say", "text": "x"})
	b.Expect("n=4")
}

// TestSnapshotTooBig: an oversized snapshot is not saved, and the room runs on.
func TestSnapshotTooBig(t *testing.T) {
	s := newServer(t, counterKind(nil, func(k *rooms.Kind) { k.MaxSnapshotSize = 1000 }))
	a := s.dial(t, "a")
	a.Join("counter", "big")
	a.Send(map[string]string{"op": "say", "text": "pad 5000"})
	// The room counts the refusal and then logs it: the counter can be
	// read before the line is written.
	waitFor(t, "the oversized snapshot to be refused and logged", func() bool {
		return s.Rooms().Stats().SnapshotErrors > 0 && strings.Contains(s.logs.String(), "MaxSnapshotSize")
	})
	a.Send(map[string]string{"op": "say", "text": "x"})
	a.Expect("n=1")
}

// TestEmptyRoomIsDisposed: a room without players goes away after
// EmptyTimeout, with its state; the next use starts it anew.
func TestEmptyRoomIsDisposed(t *testing.T) {
	created := make(chan []byte, 4)
	s := newServer(t, counterKind(created, func(k *rooms.Kind) { k.EmptyTimeout = 50 * time.Millisecond }))
	a := s.dial(t, "a")
	a.Join("counter", "e")
	<-created
	a.Send(map[string]string{"op": "say", "text": "x"})
	a.Expect("n=1")
	a.Send(map[string]string{"op": "leave"})
	waitFor(t, "the empty room to be disposed", func() bool { return s.Rooms().Stats().RoomsActive == 0 })
	a.Join("counter", "e")
	if snap := <-created; snap != nil {
		t.Fatalf("a disposed room came back with %q", snap)
	}
	a.Send(map[string]string{"op": "say", "text": "x"})
	a.Expect("n=1")
}

// failingStore fails every call while down is set.
type failingStore struct {
	rooms.Store
	down atomic.Bool
}

var errDown = errors.New("store down")

func (f *failingStore) Save(ctx context.Context, k rooms.Key, e int64, b []byte) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Save(ctx, k, e, b)
}

func (f *failingStore) Publish(ctx context.Context, k rooms.Key, e int64, l rooms.Listing, used []string) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.Publish(ctx, k, e, l, used)
}

func (f *failingStore) List(ctx context.Context, kind string) ([]rooms.Listing, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.List(ctx, kind)
}

func (f *failingStore) Reserve(ctx context.Context, kind string, filter map[string]string, name string, max int, ttl time.Duration) (string, string, error) {
	if f.down.Load() {
		return "", "", errDown
	}
	return f.Store.Reserve(ctx, kind, filter, name, max, ttl)
}

// TestStoreDown: rooms keep running while their store fails; listing and
// matchmaking fail with a clear error; snapshots are saved when it is back.
func TestStoreDown(t *testing.T) {
	store := &failingStore{Store: rooms.NewMemoryStore()}
	s := newServerWith(t, wsactor.Options{Rooms: wsactor.RoomsOptions{Store: store}},
		counterKind(nil, func(k *rooms.Kind) { k.SnapshotInterval = 20 * time.Millisecond }))
	a := s.dial(t, "a")
	a.Join("counter", "d")
	store.down.Store(true)
	for i := 1; i <= 3; i++ {
		a.Send(map[string]string{"op": "say", "text": "x"})
		a.Expect(fmt.Sprintf("n=%d", i))
	}
	waitFor(t, "a failed save", func() bool { return s.Rooms().Stats().StoreErrors > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Rooms().List(ctx, "counter", nil); !errors.Is(err, errDown) {
		t.Fatalf("List with the store down: %v", err)
	}
	b := s.dial(t, "b")
	b.Send(map[string]any{"op": "quick", "kind": "counter"})
	if ev := b.Event("failed"); ev["code"] != "unavailable" || !containsAll(ev["err"], "matchmaking", "store down") {
		t.Fatalf("JoinOrCreate with the store down: %v", ev)
	}
	// The saver counts the failure and then logs it (storeFailed).
	waitFor(t, "the outage to be logged", func() bool { return strings.Contains(s.logs.String(), "the room store failed") })
	store.down.Store(false)
	waitFor(t, "the snapshot saved after the outage", func() bool {
		ls, err := s.Rooms().List(ctx, "counter", nil)
		return err == nil && len(ls) == 1 && ls[0].Players == 1
	})
}
