// Package roomstest holds the behaviour every rooms.Store must have, as a
// test that each implementation runs against itself.
package roomstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsactor/wsactor/rooms"
)

// RunStoreContract runs the store contract. newStore returns an empty store
// for each subtest; names must not collide between subtests (each uses its
// own kind).
func RunStoreContract(t *testing.T, newStore func(t *testing.T) rooms.Store) {
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return c
	}
	key := rooms.Key{Kind: "k", Name: "r1"}

	t.Run("claim and fence", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		e1, snap, err := s.Claim(c, key, "node-a", false)
		if err != nil || e1 < 1 || snap != nil {
			t.Fatalf("first claim: epoch %d, snapshot %q, %v", e1, snap, err)
		}
		if err := s.Save(c, key, e1, []byte("one")); err != nil {
			t.Fatalf("save: %v", err)
		}
		// Another node while the first holds it.
		var held *rooms.HeldError
		if _, _, err := s.Claim(c, key, "node-b", false); !errors.As(err, &held) || held.Owner != "node-a" {
			t.Fatalf("claim of a held room: %v", err)
		}
		e2, snap, err := s.Claim(c, key, "node-b", true)
		if err != nil || e2 <= e1 || string(snap) != "one" {
			t.Fatalf("forced claim: epoch %d (was %d), snapshot %q, %v", e2, e1, snap, err)
		}
		// The old activation is fenced out of every write.
		for name, err := range map[string]error{
			"save":    s.Save(c, key, e1, []byte("stale")),
			"publish": s.Publish(c, key, e1, rooms.Listing{Players: 1}, nil),
			"release": s.Release(c, key, e1),
			"delete":  s.Delete(c, key, e1),
		} {
			if !errors.Is(err, rooms.ErrFenced) {
				t.Errorf("%s with the old epoch: %v, want ErrFenced", name, err)
			}
		}
		if err := s.Save(c, key, e2, []byte("two")); err != nil {
			t.Fatal(err)
		}
		// Released: the next claim needs no force, and sees the last snapshot.
		if err := s.Release(c, key, e2); err != nil {
			t.Fatal(err)
		}
		e3, snap, err := s.Claim(c, key, "node-c", false)
		if err != nil || e3 <= e2 || string(snap) != "two" {
			t.Fatalf("claim after release: epoch %d, snapshot %q, %v", e3, snap, err)
		}
		// The same node may claim again (its activation restarted).
		if _, _, err := s.Claim(c, key, "node-c", false); err != nil {
			t.Fatalf("claim again by the holder: %v", err)
		}
	})

	t.Run("lost", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		k := rooms.Key{Kind: "k", Name: "never"}
		for name, err := range map[string]error{
			"save":    s.Save(c, k, 7, []byte("x")),
			"publish": s.Publish(c, k, 7, rooms.Listing{}, nil),
			"release": s.Release(c, k, 7),
			"delete":  s.Delete(c, k, 7),
		} {
			if !errors.Is(err, rooms.ErrLost) {
				t.Errorf("%s of a room the store never held: %v, want ErrLost", name, err)
			}
		}
	})

	t.Run("delete keeps the epoch", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		k := rooms.Key{Kind: "k", Name: "gone"}
		e1, _, _ := s.Claim(c, k, "a", false)
		e2, _, _ := s.Claim(c, k, "b", true)
		if err := s.Publish(c, k, e2, rooms.Listing{Players: 1, Max: 2, Open: true}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(c, k, e2, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(c, k, e2); err != nil {
			t.Fatal(err)
		}
		ls, err := s.List(c, "k")
		if err != nil || slices.ContainsFunc(ls, func(l rooms.Listing) bool { return l.Name == "gone" }) {
			t.Fatalf("list after delete: %+v, %v", ls, err)
		}
		e3, snap, err := s.Claim(c, k, "c", false)
		if err != nil || snap != nil || e3 <= e2 {
			t.Fatalf("claim after delete: epoch %d (deleted at %d), snapshot %q, %v", e3, e2, snap, err)
		}
		if err := s.Save(c, k, e1, []byte("stale")); !errors.Is(err, rooms.ErrFenced) {
			t.Fatalf("a stale activation wrote to the next room of its name: %v", err)
		}
		// Nor can the activation that deleted the room bring it back.
		k2 := rooms.Key{Kind: "k", Name: "gone2"}
		e, _, _ := s.Claim(c, k2, "a", false)
		if err := s.Delete(c, k2, e); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(c, k2, e, []byte("late")); !errors.Is(err, rooms.ErrFenced) {
			t.Fatalf("a write after Delete, with the deleting epoch: %v, want ErrFenced", err)
		}
	})

	t.Run("listings", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		for i, name := range []string{"b", "a", "c"} {
			k := rooms.Key{Kind: "lst", Name: name}
			e, _, err := s.Claim(c, k, "n", false)
			if err != nil {
				t.Fatal(err)
			}
			l := rooms.Listing{Label: map[string]string{"mode": "ffa", "i": fmt.Sprint(i)}, Players: i, Max: 4, Open: true, Node: "n"}
			if err := s.Publish(c, k, e, l, nil); err != nil {
				t.Fatal(err)
			}
		}
		other := rooms.Key{Kind: "other", Name: "a"}
		e, _, _ := s.Claim(c, other, "n", false)
		_ = s.Publish(c, other, e, rooms.Listing{Open: true}, nil)
		ls, err := s.List(c, "lst")
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(ls))
		for i, l := range ls {
			names[i] = l.Name
			if l.Kind != "lst" || l.Max != 4 || !l.Open || l.Node != "n" || l.Label["mode"] != "ffa" {
				t.Fatalf("listing %+v", l)
			}
		}
		if !slices.Equal(names, []string{"a", "b", "c"}) {
			t.Fatalf("names %v, want sorted a b c of kind lst only", names)
		}
		if empty, err := s.List(c, "none"); err != nil || len(empty) != 0 {
			t.Fatalf("list of an unknown kind: %v, %v", empty, err)
		}
	})

	t.Run("reserve", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		f := map[string]string{"mode": "duel"}
		n1, r1, err := s.Reserve(c, "res", f, "new1", 2, time.Minute)
		if err != nil || n1 != "new1" || r1 == "" {
			t.Fatalf("first reserve: %q %q %v", n1, r1, err)
		}
		// The new room's one free seat is reserved next...
		n2, r2, err := s.Reserve(c, "res", f, "new2", 2, time.Minute)
		if err != nil || n2 != "new1" || r2 == r1 {
			t.Fatalf("second reserve: %q %q %v", n2, r2, err)
		}
		// ...and then it is full with reservations: a new room.
		n3, _, err := s.Reserve(c, "res", f, "new3", 2, time.Minute)
		if err != nil || n3 != "new3" {
			t.Fatalf("third reserve: %q %v", n3, err)
		}
		// Another filter never shares a room.
		n4, _, _ := s.Reserve(c, "res", map[string]string{"mode": "ffa"}, "new4", 2, time.Minute)
		if n4 != "new4" {
			t.Fatalf("reserve with another filter went to %q", n4)
		}
		// The room activates and counts its players, using the reservations.
		k := rooms.Key{Kind: "res", Name: "new1"}
		e, _, err := s.Claim(c, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(c, k, e, rooms.Listing{Label: f, Players: 1, Max: 2, Open: true}, []string{r1}); err != nil {
			t.Fatal(err)
		}
		// One player and one reservation (r2): still full.
		if n, _, _ := s.Reserve(c, "res", f, "new5", 2, time.Minute); n == "new1" {
			t.Fatal("reserved a seat in a room whose seats are taken or reserved")
		}
		// The fullest open room is chosen.
		if err := s.Publish(c, k, e, rooms.Listing{Label: f, Players: 1, Max: 4, Open: true}, []string{r2}); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := s.Reserve(c, "res", f, "new6", 4, time.Minute); n != "new1" {
			t.Fatalf("reserve went to %q, want the fullest room new1", n)
		}
		// A closed room is never chosen.
		_ = s.Publish(c, k, e, rooms.Listing{Label: f, Players: 1, Max: 8, Open: false}, nil)
		if n, _, _ := s.Reserve(c, "res", f, "new7", 8, time.Minute); n == "new1" {
			t.Fatal("reserved a seat in a locked room")
		}
	})

	t.Run("reservations expire", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		f := map[string]string{"x": "1"}
		poll := func(what string, cond func() bool) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting until %s", what)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// A room that was only reserved, never activated, goes when its
		// reservations expire.
		if n, _, err := s.Reserve(c, "exp", f, "ghost", 1, 50*time.Millisecond); err != nil || n != "ghost" {
			t.Fatalf("reserve: %q %v", n, err)
		}
		poll("the never-activated room leaves the listings", func() bool {
			ls, err := s.List(c, "exp")
			return err == nil && !slices.ContainsFunc(ls, func(l rooms.Listing) bool { return l.Name == "ghost" })
		})
		// An expired reservation frees its seat in an activated room.
		k := rooms.Key{Kind: "exp", Name: "live"}
		e, _, err := s.Claim(c, k, "n", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(c, k, e, rooms.Listing{Label: f, Max: 1, Open: true}, nil); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := s.Reserve(c, "exp", f, "other1", 1, 50*time.Millisecond); n != "live" {
			t.Fatalf("reserve went to %q, want the open room live", n)
		}
		if n, _, _ := s.Reserve(c, "exp", f, "other2", 1, time.Minute); n != "other2" {
			t.Fatalf("a reserved seat was reserved again: %q", n)
		}
		i := 3
		poll("the expired reservation frees its seat", func() bool {
			i++
			n, _, err := s.Reserve(c, "exp", f, fmt.Sprintf("other%d", i), 1, time.Minute)
			return err == nil && n == "live"
		})
	})

	t.Run("race", func(t *testing.T) {
		s, c := newStore(t), ctx(t)
		const players, max = 50, 8
		var mu sync.Mutex
		per := map[string]int{}
		var wg sync.WaitGroup
		for i := range players {
			wg.Go(func() {
				n, _, err := s.Reserve(c, "race", map[string]string{"q": "1"}, fmt.Sprintf("room%02d", i), max, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				per[n]++
				mu.Unlock()
			})
		}
		wg.Wait()
		want := (players + max - 1) / max
		if len(per) != want {
			t.Fatalf("%d rooms for %d reservations of %d: %v", len(per), players, max, per)
		}
		for n, k := range per {
			if k > max {
				t.Fatalf("room %s got %d reservations", n, k)
			}
		}
	})
}
