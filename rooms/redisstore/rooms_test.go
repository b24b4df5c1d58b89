package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// tally counts the messages it gets, in its snapshot too, and answers the
// count.
type tally struct{ n int }

func (h *tally) OnCreate(_ *rooms.Room, snapshot []byte) error {
	if len(snapshot) > 0 {
		n, err := strconv.Atoi(string(snapshot))
		h.n = n
		return err
	}
	return nil
}

func (h *tally) OnMessage(r *rooms.Room, p *rooms.Player, _ wsactor.Message) error {
	h.n++
	return r.Send(p, wsactor.Text(fmt.Sprintf("n=%d", h.n)))
}

func (h *tally) Snapshot(*rooms.Room) ([]byte, error) { return []byte(strconv.Itoa(h.n)), nil }

// TestRoomRunsOnWhenRedisRestartsEmpty: a room whose store lost it claims it
// again and runs on from its memory, saving its state anew; its player
// notices nothing.
func TestRoomRunsOnWhenRedisRestartsEmpty(t *testing.T) {
	srv := redistest.Start(t)
	rdb := newClient(t, srv)
	store := fresh(t, rdb, Options{})
	s := wsactor.New(wsactor.Options{Rooms: wsactor.RoomsOptions{Store: store}, Logger: slog.New(slog.DiscardHandler)})
	s.Rooms().Define(rooms.Kind{Name: "tally", SnapshotInterval: 20 * time.Millisecond, New: func() rooms.Handler { return &tally{} }})
	s.Handle("/play", func() wsactor.Handler { return roomstest.NewPlayer(s.Rooms()) })
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	c := roomstest.Dial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/play", "p")
	c.Join("tally", "t")
	for i := 1; i <= 3; i++ {
		c.Send(map[string]string{"op": "say", "text": "x"})
		c.Expect(fmt.Sprintf("n=%d", i))
	}
	srv.Stop()
	srv.Restart()
	c.Send(map[string]string{"op": "say", "text": "x"})
	c.Expect("n=4")
	ctx := testCtx(t)
	waitFor(t, "the room saved again after the loss", func() bool {
		ls, err := s.Rooms().List(ctx, "tally", nil)
		return err == nil && len(ls) == 1 && ls[0].Players == 1
	})
	// The state is back in Redis: the next activation would start from it.
	_, snap, err := store.Claim(ctx, rooms.Key{Kind: "tally", Name: "t"}, "elsewhere", true)
	if err != nil || string(snap) == "" {
		t.Fatalf("snapshot after the loss: %q, %v", snap, err)
	}
	if !strings.Contains(string(snap), `"seats"`) {
		t.Fatalf("snapshot after the loss has no seats: %s", snap)
	}
}
