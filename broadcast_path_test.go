package wsactor_test

import (
	"context"
	"fmt"
	"runtime/metrics"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// goroutinesCreated reads the runtime's count of goroutines ever created.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestBroadcastToIdleMembersSkipsTheirMailboxes checks that a broadcast
// reaches an idle member's socket straight from the broadcasting goroutine:
// no mailbox goroutine, no actor dispatch and no writer goroutine per member
// while its socket takes the bytes at once. Through the mailbox, every member
// cost two goroutines per broadcast; with a writer goroutine per drain, one.
func TestBroadcastToIdleMembersSkipsTheirMailboxes(t *testing.T) {
	ts, opened := groupServer(t, wsactor.Options{})
	const members, broadcasts = 40, 10
	clients := make([]*websocket.Conn, members)
	for i := range clients {
		clients[i], _ = joined(t, ts, opened, "", "feed", "m")
	}
	got := make(chan string, members)
	for _, c := range clients {
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				got <- string(b)
			}
		}()
	}
	before := goroutinesCreated()
	for i := range broadcasts {
		if _, err := ts.Groups().Broadcast(context.Background(), "feed", wsactor.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		for range members {
			if m := recv(t, got, fmt.Sprintf("broadcast %d", i)); m != fmt.Sprint(i) {
				t.Fatalf("broadcast %d: a member got %q", i, m)
			}
		}
	}
	perDelivery := float64(goroutinesCreated()-before) / (members * broadcasts)
	t.Logf("%.2f goroutines created per delivery", perDelivery)
	if perDelivery > 0.2 {
		t.Errorf("%.2f goroutines created per delivery to an idle member whose socket has room; want none", perDelivery)
	}
}

// blocker is a handler whose Receive waits for its channel before sending
// "first": messages posted meanwhile queue in its mailbox.
type blocker struct {
	member
	release chan struct{}
}

type hold struct{}

func (h *blocker) Receive(c *wsactor.Conn, msg any) {
	if _, ok := msg.(hold); ok {
		<-h.release
		_ = c.SendText("first")
	}
}

// TestBroadcastKeepsPerSenderOrderWhileTheMemberIsBusy checks that a
// broadcast to a member whose mailbox holds this goroutine's earlier
// messages goes behind them: the fast path into the send queue is taken only
// when the mailbox is empty.
func TestBroadcastKeepsPerSenderOrderWhileTheMemberIsBusy(t *testing.T) {
	release := make(chan struct{})
	opened := make(chan wsactor.ID, 10)
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &blocker{member: member{opened: opened, srv: s}, release: release} })
	})
	c, id := joined(t, ts, opened, "", "feed", "busy")
	for range 3 {
		if err := ts.Tell(id, hold{}); err != nil {
			t.Fatal(err)
		}
		if err := ts.Post(id, wsactor.Text("second")); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Groups().Broadcast(context.Background(), "feed", wsactor.Text("third")); err != nil {
			t.Fatal(err)
		}
		release <- struct{}{}
		for _, want := range []string{"first", "second", "third"} {
			if got := readText(t, c); got != want {
				t.Fatalf("got %q, want %q: the broadcast overtook this goroutine's earlier messages", got, want)
			}
		}
	}
}
