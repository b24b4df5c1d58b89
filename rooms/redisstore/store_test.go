package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// newClient returns a client with short timeouts, so that calls fail fast
// while the server is stopped.
func newClient(t testing.TB, s *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		DialTimeout:           300 * time.Millisecond,
		ReadTimeout:           300 * time.Millisecond,
		WriteTimeout:          300 * time.Millisecond,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the outage tests cause many on purpose.
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var prefixes atomic.Int64

// fresh returns a Store with a key prefix no other test uses.
func fresh(t testing.TB, rdb redis.UniversalClient, opts Options) *Store {
	opts.KeyPrefix = fmt.Sprintf("test%d:", prefixes.Add(1))
	opts.Logger = testLogger(t)
	return New(rdb, opts)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testCtx bounds every call of a test: a hang fails instead of stalling the run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStoreContract(t *testing.T) {
	rdb := newClient(t, redistest.Start(t))
	roomstest.RunStoreContract(t, func(t *testing.T) rooms.Store { return fresh(t, rdb, Options{}) })
}
