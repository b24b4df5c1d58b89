package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
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

func keys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ks, err := rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ks)
	return ks
}

// waitFor polls cond until it holds or fails the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(ls []rooms.Listing) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}

func TestKeyLayout(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	s := New(rdb, Options{KeyPrefix: "p:", Logger: testLogger(t)})
	key := rooms.Key{Kind: "duel", Name: "r1"}
	epoch, _, err := s.Claim(ctx, key, "10.0.0.1:7000", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, key, epoch, []byte("state")); err != nil {
		t.Fatal(err)
	}
	l := rooms.Listing{Label: map[string]string{"mode": "ranked"}, Players: 1, Max: 2, Open: true, Node: "10.0.0.1:7000"}
	if err := s.Publish(ctx, key, epoch, l, nil); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Reserve(ctx, "duel", map[string]string{"mode": "ranked"}, "r2", 2, time.Minute); err != nil || n != "r1" {
		t.Fatalf("reserve: %q, %v", n, err)
	}
	// hex("duel") = 6475656c, hex("r1") = 7231
	room, resv, list, open := "p:room:6475656c:7231", "p:resv:6475656c:7231", "p:list:6475656c", "p:open:6475656c"
	if got, want := keys(t, rdb, "p:*"), []string{list, open, resv, room}; !slices.Equal(got, want) {
		t.Fatalf("keys = %q\nwant %q", got, want)
	}
	h, err := rdb.HGetAll(ctx, room).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"epoch": fmt.Sprint(epoch), "owner": "10.0.0.1:7000", "active": "1", "snap": "state",
		"listing": `{"kind":"duel","name":"r1","label":{"mode":"ranked"},"players":1,"max":2,"open":true,"node":"10.0.0.1:7000"}`,
	}
	if !maps.Equal(h, want) {
		t.Fatalf("room hash = %q\nwant %q", h, want)
	}
	// The indexes score the room by when its data expires.
	expiry := float64(rdb.PExpireTime(ctx, room).Val().Milliseconds())
	for _, index := range []string{list, open} {
		zs, err := rdb.ZRangeWithScores(ctx, index, 0, -1).Result()
		if err != nil || len(zs) != 1 || zs[0].Member != "7231" || zs[0].Score < expiry-1000 || zs[0].Score > expiry+1000 {
			t.Fatalf("%s = %v, %v; want 7231 scored about %.0f", index, zs, err, expiry)
		}
	}
	if n := rdb.ZCard(ctx, resv).Val(); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
	// Every key expires: the room and its indexes after RoomTTL, the
	// reservations with the last of them.
	for k, most := range map[string]time.Duration{room: DefaultRoomTTL, list: DefaultRoomTTL, open: DefaultRoomTTL, resv: time.Minute} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > most {
			t.Errorf("TTL of %s = %v, want in (0, %v]", k, ttl, most)
		}
	}
	// A full room leaves the free-seat index, and its used reservation goes.
	l.Players = 2
	if err := s.Publish(ctx, key, epoch, l, rdb.ZRange(ctx, resv, 0, -1).Val()); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(t, rdb, "p:*"), []string{list, room}; !slices.Equal(got, want) {
		t.Fatalf("keys of a full room = %q\nwant %q", got, want)
	}
	// Delete leaves only a tombstone: the epoch, for a day.
	if err := s.Delete(ctx, key, epoch); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, rdb, "p:*"); !slices.Equal(got, []string{room}) {
		t.Fatalf("keys after delete = %q, want only the tombstone", got)
	}
	if h := rdb.HGetAll(ctx, room).Val(); !maps.Equal(h, map[string]string{"epoch": fmt.Sprint(epoch), "tomb": "1"}) {
		t.Fatalf("tombstone = %q", h)
	}
	if ttl := rdb.PTTL(ctx, room).Val(); ttl < TombstoneTTL-time.Hour || ttl > TombstoneTTL {
		t.Fatalf("tombstone TTL = %v, want about %v", ttl, TombstoneTTL)
	}
	// The deleted activation is fenced: it cannot bring the room back.
	if err := s.Save(ctx, key, epoch, []byte("late")); !errors.Is(err, rooms.ErrFenced) {
		t.Fatalf("save after delete: %v, want ErrFenced", err)
	}
	if rdb.HExists(ctx, room, "snap").Val() {
		t.Fatal("a save after delete stored its snapshot")
	}
}

func TestOddNamesDoNotCollide(t *testing.T) {
	ctx := testCtx(t)
	s := fresh(t, newClient(t, redistest.Start(t)), Options{})
	// Kind and name boundaries must not blur: ("a", "b:c") is not ("a:b", "c").
	ks := []rooms.Key{{Kind: "a:b", Name: "c"}}
	for _, n := range []string{"b:c", "{x}", "*", "nul\x00byte", "\xff\xfe", "ünïcødé", "日本語", "A", "b", "b ", ""} {
		ks = append(ks, rooms.Key{Kind: "a", Name: n})
	}
	for i, k := range ks {
		e, _, err := s.Claim(ctx, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, k, e, []byte{byte(i), 0, 0xff}); err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, k, e, rooms.Listing{Players: i, Open: true}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, k, e); err != nil {
			t.Fatal(err)
		}
	}
	var inA []string
	for i, k := range ks {
		_, snap, err := s.Claim(ctx, k, "n", false)
		if err != nil || !bytes.Equal(snap, []byte{byte(i), 0, 0xff}) {
			t.Fatalf("claim %q: snapshot %v, %v", k, snap, err)
		}
		if k.Kind == "a" {
			inA = append(inA, k.Name)
		}
	}
	ls, err := s.List(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by bytes, as Go compares strings; each with its own listing.
	if slices.Sort(inA); !slices.Equal(names(ls), inA) {
		t.Fatalf("List = %q\nwant %q", names(ls), inA)
	}
	for _, l := range ls {
		i := slices.Index(ks, rooms.Key{Kind: "a", Name: l.Name})
		if l.Players != i || l.Kind != "a" {
			t.Fatalf("listing of %q = %+v, want players %d", l.Name, l, i)
		}
	}
}

// TestFreeSeatIndex: Reserve reads only the rooms whose last listing had a
// free seat; a room that fills, locks, or reopens moves out of that index
// and back in with its next Publish.
func TestFreeSeatIndex(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	s := fresh(t, rdb, Options{})
	key := rooms.Key{Kind: "k", Name: "r"}
	e, _, err := s.Claim(ctx, key, "n", false)
	if err != nil {
		t.Fatal(err)
	}
	inOpen := func() bool { return rdb.ZScore(ctx, s.openKey("k"), member("r")).Err() == nil }
	steps := []struct {
		l    rooms.Listing
		free bool
	}{
		{rooms.Listing{Players: 1, Max: 2, Open: true}, true},
		{rooms.Listing{Players: 2, Max: 2, Open: true}, false},  // full
		{rooms.Listing{Players: 1, Max: 2, Open: true}, true},   // a seat again
		{rooms.Listing{Players: 1, Max: 2, Open: false}, false}, // locked
		{rooms.Listing{Players: 5, Max: 0, Open: true}, true},   // no bound
	}
	for i, st := range steps {
		if err := s.Publish(ctx, key, e, st.l, nil); err != nil {
			t.Fatal(err)
		}
		if inOpen() != st.free {
			t.Fatalf("step %d, %+v: in the free-seat index = %v", i, st.l, !st.free)
		}
		// A save keeps the room where it is.
		if err := s.Save(ctx, key, e, []byte("x")); err != nil || inOpen() != st.free {
			t.Fatalf("step %d: after a save, in the free-seat index = %v (%v)", i, inOpen(), err)
		}
		n, _, err := s.Reserve(ctx, "k", nil, fmt.Sprint("new", i), 2, time.Millisecond)
		if err != nil || (n == "r") != st.free {
			t.Fatalf("step %d, %+v: Reserve chose %q, %v", i, st.l, n, err)
		}
		// The reservation holds its seat for 1 ms of Redis's clock, which
		// the next steps can take less than: the next step's Reserve must
		// see r as published, not as reserved, and no room made for this
		// step's reservation (as full as r then) in the way.
		waitFor(t, "the reservation to expire", func() bool {
			now, err := rdb.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			return rdb.ZCount(ctx, s.resPrefix("k")+member(n), fmt.Sprint("(", now.UnixMilli()), "+inf").Val() == 0
		})
	}
	if ls, err := s.List(ctx, "k"); err != nil || !slices.Contains(names(ls), "r") {
		t.Fatalf("List = %q, %v: a full or locked room is still listed", names(ls), err)
	}
}

// TestReserveTieBreaksByBytes: among equally full rooms Reserve chooses the
// first name in Go's order (bytes), whatever the server's locale would say
// ("Z" before "a", "a" before "é").
func TestReserveTieBreaksByBytes(t *testing.T) {
	ctx := testCtx(t)
	s := fresh(t, newClient(t, redistest.Start(t)), Options{})
	open := []string{"é", "b", "a", "Z", "Za"}
	for _, name := range open {
		k := rooms.Key{Kind: "k", Name: name}
		e, _, err := s.Claim(ctx, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, k, e, rooms.Listing{Players: 1, Max: 100, Open: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Reserve, then lock the room chosen so that the next choice is among
	// the others: the order of the choices is the tie-break's.
	var got []string
	for range open {
		n, _, err := s.Reserve(ctx, "k", nil, "new", 100, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		k := rooms.Key{Kind: "k", Name: n}
		e, _, err := s.Claim(ctx, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, k, e, rooms.Listing{Players: 2, Max: 100, Open: false}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"Z", "Za", "a", "b", "é"}; !slices.Equal(got, want) {
		t.Fatalf("reserved in %q, want %q", got, want)
	}
}

// TestWritesRefreshTheRoomTTL checks that every write of an activation
// pushes its room's expiry back, and its index's with it. It compares the
// absolute expiry times (PEXPIRETIME), so no timing is asserted: it only
// waits for the server's clock to move on between two writes.
func TestWritesRefreshTheRoomTTL(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	s := fresh(t, rdb, Options{RoomTTL: time.Hour})
	key := rooms.Key{Kind: "ttl", Name: "r"}
	room, index := s.roomKey(key), s.listKey(key.Kind)
	var epoch int64
	expiry := func(k string) int64 { return rdb.PExpireTime(ctx, k).Val().Milliseconds() }
	writes := []struct {
		name  string
		write func() error
	}{
		{"claim", func() (err error) { epoch, _, err = s.Claim(ctx, key, "n", false); return err }},
		{"publish", func() error { return s.Publish(ctx, key, epoch, rooms.Listing{Open: true}, nil) }},
		{"save", func() error { return s.Save(ctx, key, epoch, []byte("x")) }},
		{"release", func() error { return s.Release(ctx, key, epoch) }},
		{"claim again", func() (err error) { epoch, _, err = s.Claim(ctx, key, "n", false); return err }},
	}
	var before, indexBefore int64
	for _, w := range writes {
		if before > 0 {
			// The server's clock passes the expiry set last, less the TTL.
			waitFor(t, "the server's clock moves on", func() bool {
				now, err := rdb.Time(ctx).Result()
				return err == nil && now.UnixMilli() > before-time.Hour.Milliseconds()+2
			})
		}
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		after := expiry(room)
		if after <= before {
			t.Fatalf("%s: the room expires at %d, not later than before (%d)", w.name, after, before)
		}
		if indexAfter := expiry(index); w.name != "claim" && (indexAfter < after || indexAfter <= indexBefore) {
			t.Fatalf("%s: the index expires at %d, before its room (%d) or not later than before (%d)", w.name, indexAfter, after, indexBefore)
		}
		before, indexBefore = after, expiry(index)
	}
}

// TestAbandonedRoomsExpire checks that a room nobody writes to any more
// (its node died, nobody came back) leaves nothing behind after RoomTTL, and
// that List drops its index entry while the index lives on for other rooms.
func TestAbandonedRoomsExpire(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	short := fresh(t, rdb, Options{RoomTTL: 200 * time.Millisecond})
	long := New(rdb, Options{KeyPrefix: short.prefix, Logger: testLogger(t), RoomTTL: time.Hour})
	write := func(s *Store, name string, players int) {
		t.Helper()
		k := rooms.Key{Kind: "k", Name: name}
		e, _, err := s.Claim(ctx, k, "n", false)
		if err == nil {
			err = s.Save(ctx, k, e, []byte("snap"))
		}
		if err == nil {
			err = s.Publish(ctx, k, e, rooms.Listing{Players: players, Max: 4, Open: true}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	write(long, "kept", 1)
	write(short, "lost", 3)
	lost := short.roomKey(rooms.Key{Kind: "k", Name: "lost"})
	waitFor(t, "the abandoned room's key expires", func() bool { return rdb.Exists(ctx, lost).Val() == 0 })
	index := short.listKey("k")
	if ns := rdb.ZRange(ctx, index, 0, -1).Val(); !slices.Contains(ns, member("lost")) {
		t.Fatalf("index %q: the entry is expected until a read prunes it", ns)
	}
	ls, err := long.List(ctx, "k")
	if err != nil || !slices.Equal(names(ls), []string{"kept"}) {
		t.Fatalf("List = %q, %v; want only kept", names(ls), err)
	}
	if ns := rdb.ZRange(ctx, index, 0, -1).Val(); !slices.Equal(ns, []string{member("kept")}) {
		t.Fatalf("index after List = %q, want only kept", ns)
	}
	// Reserve prunes too, and never picks a room that is gone, though it
	// is fuller: one whose key expired, one whose key was evicted before.
	write(short, "lost2", 3)
	write(long, "evicted", 3)
	lost2 := short.roomKey(rooms.Key{Kind: "k", Name: "lost2"})
	rdb.Del(ctx, long.roomKey(rooms.Key{Kind: "k", Name: "evicted"}))
	waitFor(t, "the second abandoned room's key expires", func() bool { return rdb.Exists(ctx, lost2).Val() == 0 })
	if n, _, err := long.Reserve(ctx, "k", nil, "new", 4, time.Minute); err != nil || n != "kept" {
		t.Fatalf("Reserve = %q, %v; want kept", n, err)
	}
	for _, index := range []string{index, short.openKey("k")} {
		if ns := rdb.ZRange(ctx, index, 0, -1).Val(); !slices.Equal(ns, []string{member("kept")}) {
			t.Fatalf("%s after Reserve = %q, want only kept", index, ns)
		}
	}

	// A store of short-lived rooms alone leaves no key at all, without any
	// read: rooms, indexes and reservations all expire.
	alone := fresh(t, rdb, Options{RoomTTL: 200 * time.Millisecond})
	k := rooms.Key{Kind: "k", Name: "solo"}
	e, _, err := alone.Claim(ctx, k, "n", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Publish(ctx, k, e, rooms.Listing{Max: 2, Open: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alone.Reserve(ctx, "k", nil, "other", 2, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alone.Reserve(ctx, "k2", nil, "ghost", 2, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(keys(t, rdb, alone.prefix+"*")) < 5 {
		t.Fatalf("keys %q: want a room, an index and reservations for each kind", keys(t, rdb, alone.prefix+"*"))
	}
	waitFor(t, "every key of the abandoned store expires", func() bool { return len(keys(t, rdb, alone.prefix+"*")) == 0 })
}

// TestRedisLosesItsData: a Redis restarted empty forgets every epoch. The
// next claim starts again above every epoch handed out before (the server's
// clock), and an activation from before the loss is fenced out of every
// write: its room's key is gone, then at another epoch.
func TestRedisLosesItsData(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	rdb := newClient(t, srv)
	s := fresh(t, rdb, Options{})
	key := rooms.Key{Kind: "k", Name: "r"}
	var stale int64
	for range 5 {
		e, _, err := s.Claim(ctx, key, "node-a", true)
		if err != nil {
			t.Fatal(err)
		}
		stale = e
	}
	if err := s.Save(ctx, key, stale, []byte("before")); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	srv.Restart()

	// The first calls may fail on connections the restart broke.
	var err error
	waitFor(t, "the stale activation's save answers", func() bool {
		err = s.Save(ctx, key, stale, []byte("stale"))
		return errors.Is(err, rooms.ErrLost) || err == nil
	})
	if err == nil {
		t.Fatal("an activation wrote to a room Redis had forgotten")
	}
	if n := rdb.Exists(ctx, s.roomKey(key)).Val(); n != 0 {
		t.Fatal("the refused save left a key")
	}
	// A fresh claim needs no force (nobody holds the room any more), gets
	// no snapshot, and an epoch above the stale one.
	fresh, snap, err := s.Claim(ctx, key, "node-b", false)
	if err != nil || snap != nil || fresh <= stale {
		t.Fatalf("claim after the loss: epoch %d (stale %d), snapshot %q, %v", fresh, stale, snap, err)
	}
	for name, err := range map[string]error{
		"save":    s.Save(ctx, key, stale, []byte("stale")),
		"publish": s.Publish(ctx, key, stale, rooms.Listing{Open: true}, nil),
		"release": s.Release(ctx, key, stale),
		"delete":  s.Delete(ctx, key, stale),
	} {
		if !errors.Is(err, rooms.ErrFenced) {
			t.Errorf("%s by the activation from before the loss: %v, want ErrFenced", name, err)
		}
	}
	if err := s.Save(ctx, key, fresh, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, snap, err := s.Claim(ctx, key, "node-b", false); err != nil || string(snap) != "after" {
		t.Fatalf("snapshot %q, %v; want the new activation's", snap, err)
	}
}

// TestReserveRaceAcrossClients: 50 joins racing for quick play from 50
// clients (as from 50 nodes) fill ceil(50/8) rooms, none overfull.
func TestReserveRaceAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	prefix := fresh(t, newClient(t, srv), Options{}).prefix
	const players, max = 50, 8
	stores := make([]*Store, players)
	for i := range stores {
		rdb := newClient(t, srv)
		if err := rdb.Ping(testCtx(t)).Err(); err != nil { // connected before the race
			t.Fatal(err)
		}
		stores[i] = New(rdb, Options{KeyPrefix: prefix, Logger: testLogger(t)})
	}
	ctx := testCtx(t)
	start := make(chan struct{})
	var mu sync.Mutex
	per := map[string]int{}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			n, _, err := s.Reserve(ctx, "quick", map[string]string{"mode": "ffa"}, fmt.Sprintf("room%02d", i), max, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			per[n]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if want := (players + max - 1) / max; len(per) != want {
		t.Fatalf("%d rooms for %d players of %d per room, want %d: %v", len(per), players, max, want, per)
	}
	for n, k := range per {
		if k > max {
			t.Fatalf("room %s got %d reservations, more than %d seats", n, k, max)
		}
	}
	ls, err := stores[0].List(ctx, "quick")
	if err != nil || len(ls) != len(per) {
		t.Fatalf("List = %+v, %v", ls, err)
	}
	for _, l := range ls {
		if l.Max != max || !l.Open || l.Label["mode"] != "ffa" || l.Node != "" {
			t.Fatalf("listing of a reserved room: %+v", l)
		}
	}
}

// TestUnreadableListings: data in Redis that is not a listing (written by
// another program, or corrupted) is left out of List and of Reserve's
// choice, logged, and breaks neither.
func TestUnreadableListings(t *testing.T) {
	ctx := testCtx(t)
	rdb := newClient(t, redistest.Start(t))
	var logs syncBuffer
	s := New(rdb, Options{KeyPrefix: "bad:", Logger: slog.New(slog.NewTextHandler(&logs, nil)), RoomTTL: time.Hour})
	for _, name := range []string{"a", "b"} {
		k := rooms.Key{Kind: "k", Name: name}
		e, _, err := s.Claim(ctx, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, k, e, rooms.Listing{Players: 1, Max: 4, Open: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rdb.HSet(ctx, s.roomKey(rooms.Key{Kind: "k", Name: "a"}), "listing", "{not json")
	ls, err := s.List(ctx, "k")
	if err != nil || !slices.Equal(names(ls), []string{"b"}) {
		t.Fatalf("List = %q, %v; want b only", names(ls), err)
	}
	if !strings.Contains(logs.String(), "unreadable listing") || !strings.Contains(logs.String(), "k/a") {
		t.Fatalf("log %q: want the unreadable listing of k/a", logs.String())
	}
	for range 3 {
		if n, _, err := s.Reserve(ctx, "k", nil, "new", 4, time.Minute); err != nil || n != "b" {
			t.Fatalf("Reserve = %q, %v; want b", n, err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRedisUnreachable: with nothing listening on Redis's port, every
// method fails with an error that says what failed and for which room,
// within the context's deadline; none is mistaken for a fence or a holder.
func TestRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // a closed port: connections are refused
	// A client that retries little reports the refusal itself.
	fast := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialerRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { fast.Close() })
	failAll(t, New(fast, Options{Logger: testLogger(t)}), "connection refused")
	// One with go-redis's defaults (as package cluster builds it) retries
	// until the context's deadline, and says so.
	slow := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { slow.Close() })
	failAll(t, New(slow, Options{Logger: testLogger(t)}), "connection refused", "no answer from Redis before the deadline")
}

// TestRedisUnresponsive: a Redis that accepts and never answers (a stopped
// process) holds a call no longer than its context, even with the client's
// read timeout far longer.
func TestRedisUnresponsive(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: time.Minute, WriteTimeout: time.Minute, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{Logger: testLogger(t)})
	if err := rdb.Ping(testCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	t.Cleanup(srv.Resume) // before Stop: cleanups run last first
	failAll(t, s, "no answer from Redis before the deadline")
}

// failAll calls every method with a context of one second and wants each to
// fail with a wrapped error naming the room (or kind), containing one of
// want, and to return well before a generous bound past the context.
func failAll(t *testing.T, s *Store, want ...string) {
	t.Helper()
	key := rooms.Key{Kind: "k", Name: "r1"}
	calls := map[string]func(context.Context) error{
		"Claim":   func(ctx context.Context) error { _, _, err := s.Claim(ctx, key, "n", false); return err },
		"Save":    func(ctx context.Context) error { return s.Save(ctx, key, 1, []byte("x")) },
		"Release": func(ctx context.Context) error { return s.Release(ctx, key, 1) },
		"Delete":  func(ctx context.Context) error { return s.Delete(ctx, key, 1) },
		"Publish": func(ctx context.Context) error { return s.Publish(ctx, key, 1, rooms.Listing{}, nil) },
		"List":    func(ctx context.Context) error { _, err := s.List(ctx, "k"); return err },
		"Reserve": func(ctx context.Context) error {
			_, _, err := s.Reserve(ctx, "k", nil, "r1", 2, time.Minute)
			return err
		},
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		start := time.Now()
		err := calls[name](ctx)
		took := time.Since(start)
		cancel()
		var held *rooms.HeldError
		switch {
		case err == nil:
			t.Fatalf("%s succeeded with Redis unreachable", name)
		case took > 10*time.Second: // a bound on hanging, not a timing claim
			t.Fatalf("%s returned %v after the context's deadline: %v", name, took, err)
		case errors.Is(err, rooms.ErrFenced) || errors.As(err, &held):
			t.Fatalf("%s: an outage reported as %v", name, err)
		case !strings.HasPrefix(err.Error(), "redisstore: ") || !strings.Contains(err.Error(), `"k"`) && !strings.Contains(err.Error(), "k/r1"):
			t.Errorf("%s error lacks context: %v", name, err)
		case !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(err.Error(), w) }):
			t.Errorf("%s error %q says none of %q", name, err, want)
		}
		t.Logf("%s failed after %v: %v", name, took.Round(time.Millisecond), err)
	}
}
