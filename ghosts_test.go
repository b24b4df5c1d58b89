package wsactor_test

import (
	"context"
	"slices"
	"testing"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/redisdir"
	"github.com/wsactor/wsactor/internal/redistest"
)

// Redis loses the directory's data (FLUSHALL, or a restart without
// persistence) and connections close before the node rewrites its entries:
// the rewrite must not bring them back. Each closed connection is gone from
// the listing, from this node's deliveries and from the user index, and the
// remaining member heard that it left.
func TestNoGhostsAfterRedisLosesItsData(t *testing.T) {
	for _, loss := range []struct {
		name string
		lose func(t *testing.T, r *redistest.Server, rdb *redis.Client)
	}{
		{"FLUSHALL", func(t *testing.T, _ *redistest.Server, rdb *redis.Client) {
			if err := rdb.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restarted empty", func(_ *testing.T, r *redistest.Server, _ *redis.Client) {
			r.Stop()
			r.Restart()
		}},
	} {
		t.Run(loss.name, func(t *testing.T) {
			r := redistest.Start(t)
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			dir := redisdir.New(rdb, redisdir.Options{Logger: discardLogger()})
			ts, opened := groupServer(t, wsactor.Options{Groups: wsactor.GroupsOptions{Directory: dir, PresenceEvents: true}})
			ctx := context.Background()

			a, aID := joined(t, ts, opened, "?user=ann", "lobby", "Ann")
			w := watch(a, true, true)
			var doomed []*websocket.Conn
			for range 4 {
				c, _ := joined(t, ts, opened, "?user=bob", "lobby", "Bob")
				write(t, c, websocket.MessageText, "join kitchen Bob")
				if got := readText(t, c); got != "ok join" {
					t.Fatalf("join: %q", got)
				}
				doomed = append(doomed, c)
			}
			waitFor(t, "Ann to hear the joins", func() bool { return len(w.viewIDs()) == 5 })

			loss.lose(t, r, rdb)
			doomed[0].Close(websocket.StatusNormalClosure, "")
			doomed[1].CloseNow()
			doomed[2].Close(websocket.StatusGoingAway, "")
			doomed[3].CloseNow()
			waitFor(t, "the connections to close", func() bool { return ts.Stats().ConnectionsOpen == 1 })

			// What cluster.Node does when it sees Redis's epoch change.
			address, err := aID.Address()
			if err != nil {
				t.Fatal(err)
			}
			err = ts.Groups().Resync(ctx, func(ctx context.Context, gs map[string][]groups.Member, users map[string][]wsactor.ID) error {
				_, err := dir.ReplaceNode(ctx, address, redisdir.NodeState{Groups: gs, Users: users})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}

			for group, want := range map[string][]wsactor.ID{"lobby": {aID}, "kitchen": nil} {
				var got []wsactor.ID
				for _, m := range members(t, ts.Groups(), group) {
					got = append(got, m.ID)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("members of %s after the resync: %v, want %v", group, got, want)
				}
				// The local index: a broadcast is posted to live members only.
				if n, err := ts.Groups().Broadcast(ctx, group, wsactor.Text("to "+group)); err != nil || n != len(want) {
					t.Fatalf("a broadcast to %s reached %d local members (%v), want %d", group, n, err, len(want))
				}
			}
			if n, err := ts.Groups().SendToUser(ctx, "bob", wsactor.Text("x")); err != nil || n != 0 {
				t.Fatalf("SendToUser(bob) reached %d connections (%v), want 0", n, err)
			}
			waitFor(t, "Ann to hear that they left", func() bool { return slices.Equal(w.viewIDs(), []wsactor.ID{aID}) })
		})
	}
}
