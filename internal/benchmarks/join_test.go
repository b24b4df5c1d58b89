package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/redisdir"
	"github.com/wsactor/wsactor/internal/redistest"
)

// joinConns is how many connections BenchmarkJoinLeave joins and leaves
// groups with, each from its own goroutine.
const joinConns = 64

// BenchmarkJoinLeave joins a connection to a group and leaves it again, from
// 64 goroutines at once, each with its own connection and group, against a
// Redis directory (a real redis-server) and the memory one. Each op is a join
// and a leave. The baseline, directory=…/via=directory, makes the same two
// directory calls directly: what is left between the two is the Hub's cost,
// including any waiting of one connection's change on another's.
func BenchmarkJoinLeave(b *testing.B) {
	r := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: 2 * joinConns})
	b.Cleanup(func() { _ = rdb.Close() })
	dirs := []struct {
		name string
		dir  groups.Directory
	}{
		{"redis", redisdir.New(rdb, redisdir.Options{KeyPrefix: "bench:"})},
		{"memory", groups.NewMemoryDirectory()},
	}
	for _, d := range dirs {
		s := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler), Groups: wsactor.GroupsOptions{Directory: d.dir}})
		opened := make(chan wsactor.ID, joinConns)
		s.Handle("/ws", func() wsactor.Handler { return joinMember{opened} })
		hs := httptest.NewServer(s)
		ctx := context.Background()
		var ids []wsactor.ID
		for range joinConns {
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseNow()
			ids = append(ids, <-opened)
		}
		hub := s.Groups()
		b.Run("directory="+d.name+"/via=hub", func(b *testing.B) {
			runJoinLeave(b, ids, func(ctx context.Context, g string, id wsactor.ID) error {
				if err := hub.Join(ctx, g, id, map[string]string{"name": "x"}); err != nil {
					return err
				}
				return hub.Leave(ctx, g, id)
			})
		})
		b.Run("directory="+d.name+"/via=directory", func(b *testing.B) {
			runJoinLeave(b, ids, func(ctx context.Context, g string, id wsactor.ID) error {
				if _, err := d.dir.Join(ctx, g, groups.Member{ID: id, Meta: map[string]string{"name": "x"}}); err != nil {
					return err
				}
				_, err := d.dir.Leave(ctx, g, id)
				return err
			})
		})
		sctx, cancel := context.WithTimeout(ctx, waitLimit)
		if err := s.Shutdown(sctx); err != nil {
			b.Error(err)
		}
		cancel()
		hs.Close()
	}
}

func runJoinLeave(b *testing.B, ids []wsactor.ID, op func(ctx context.Context, group string, id wsactor.ID) error) {
	var next atomic.Int64
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((len(ids) + procs - 1) / procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % len(ids)
		id, group := ids[i], fmt.Sprintf("room-%d", i)
		ctx := context.Background()
		for pb.Next() {
			if err := op(ctx, group, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// joinMember reports its connection's ID when it opens.
type joinMember struct{ opened chan<- wsactor.ID }

func (m joinMember) OnOpen(c *wsactor.Conn) error {
	m.opened <- c.ID()
	return nil
}

func (joinMember) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }
