package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/redisstore"
)

// The nodes of a cluster share one Redis; each gives its rooms a Store on
// it, under the same prefix. Package cluster does this for its nodes.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "localhost:6379",
		// With this, the rooms' StoreTimeout bounds every call, even while
		// Redis is unreachable.
		ContextTimeoutEnabled: true,
	})
	store := redisstore.New(rdb, redisstore.Options{KeyPrefix: "game:rooms:prod:"})
	srv := wsactor.New(wsactor.Options{Rooms: wsactor.RoomsOptions{Store: store}})
	_ = srv
}

// What the rooms package does with a store, by hand: matchmaking reserves a
// seat, the room's activation claims it under a fencing epoch and saves its
// state; an activation whose node was cut off while another took over is
// fenced out.
func ExampleStore_Claim() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	store := redisstore.New(rdb, redisstore.Options{KeyPrefix: "example:"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	name, reservation, err := store.Reserve(ctx, "duel", map[string]string{"mode": "ranked"}, "r-1", 2, 10*time.Second)
	if err != nil {
		fmt.Println(err) // Redis unreachable: matchmaking fails with this
		return
	}
	key := rooms.Key{Kind: "duel", Name: name}
	old, _, _ := store.Claim(ctx, key, "10.0.0.1:7000", false)
	_ = store.Publish(ctx, key, old, rooms.Listing{Label: map[string]string{"mode": "ranked"}, Players: 1, Max: 2, Open: true}, []string{reservation})

	// 10.0.0.1 stops answering; 10.0.0.2 takes the room over.
	epoch, snapshot, _ := store.Claim(ctx, key, "10.0.0.2:7000", true)
	_ = store.Save(ctx, key, epoch, append(snapshot, "moves"...))

	// 10.0.0.1 comes back and tries to save: it must stop without writing.
	if err := store.Save(ctx, key, old, []byte("stale")); errors.Is(err, rooms.ErrFenced) {
		fmt.Println("fenced")
	}
}
