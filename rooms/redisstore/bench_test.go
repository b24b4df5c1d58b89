package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/rooms"
)

// The benchmarks measure one call's round trip to a redis-server on
// loopback, with a bare PING as the floor a script cannot go under.
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./rooms/redisstore/

func BenchmarkPing(b *testing.B) {
	rdb := newClient(b, redistest.Start(b))
	ctx := context.Background()
	for b.Loop() {
		if err := rdb.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave saves a 1 KiB snapshot under the room's epoch, as a room
// does at its snapshot interval.
func BenchmarkSave(b *testing.B) {
	s := fresh(b, newClient(b, redistest.Start(b)), Options{})
	ctx := context.Background()
	key := rooms.Key{Kind: "bench", Name: "r"}
	epoch, _, err := s.Claim(ctx, key, "n", false)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Publish(ctx, key, epoch, rooms.Listing{Players: 2, Max: 8, Open: true}, nil); err != nil {
		b.Fatal(err)
	}
	snap := make([]byte, 1024)
	for b.Loop() {
		if err := s.Save(ctx, key, epoch, snap); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserve reserves a seat among a kind's listed rooms, of which
// some have a free seat (half of those match the filter): the script reads
// those only. Reservations last a millisecond and the free rooms have no
// seat limit, so that the kind keeps its shape whatever b.N.
func BenchmarkReserve(b *testing.B) {
	rdb := newClient(b, redistest.Start(b))
	for _, c := range []struct{ rooms, free int }{{1, 1}, {100, 100}, {1000, 1000}, {1000, 50}} {
		b.Run(fmt.Sprintf("rooms=%d/free=%d", c.rooms, c.free), func(b *testing.B) {
			s := fresh(b, rdb, Options{})
			ctx := context.Background()
			for i := range c.rooms {
				key := rooms.Key{Kind: "bench", Name: fmt.Sprintf("room%04d", i)}
				epoch, _, err := s.Claim(ctx, key, "10.0.0.1:7000", false)
				if err != nil {
					b.Fatal(err)
				}
				mode := []string{"ffa", "duel"}[i%2]
				l := rooms.Listing{Label: map[string]string{"mode": mode, "map": "docks"}, Players: 8, Max: 8, Open: true, Node: "10.0.0.1:7000"}
				if i < c.free {
					l.Players, l.Max = i%8, 0
				}
				if err := s.Publish(ctx, key, epoch, l, nil); err != nil {
					b.Fatal(err)
				}
			}
			filter := map[string]string{"mode": "ffa"}
			for b.Loop() {
				if _, _, err := s.Reserve(ctx, "bench", filter, "new", 0, time.Millisecond); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkList lists a kind of 100 rooms.
func BenchmarkList(b *testing.B) {
	s := fresh(b, newClient(b, redistest.Start(b)), Options{})
	ctx := context.Background()
	for i := range 100 {
		key := rooms.Key{Kind: "bench", Name: fmt.Sprintf("room%04d", i)}
		epoch, _, err := s.Claim(ctx, key, "10.0.0.1:7000", false)
		if err != nil {
			b.Fatal(err)
		}
		l := rooms.Listing{Label: map[string]string{"mode": "ffa"}, Players: i % 8, Max: 8, Open: true, Node: "10.0.0.1:7000"}
		if err := s.Publish(ctx, key, epoch, l, nil); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if ls, err := s.List(ctx, "bench"); err != nil || len(ls) != 100 {
			b.Fatal(len(ls), err)
		}
	}
}
