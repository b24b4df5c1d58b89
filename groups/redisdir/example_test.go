package redisdir_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/redisdir"
)

// A cluster's nodes share one Redis; each gives its Hub a Directory on it.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "localhost:6379",
		// These bound how long a directory call takes while Redis is unreachable.
		DialTimeout: time.Second,
		ReadTimeout: time.Second,
	})
	dir := redisdir.New(rdb, redisdir.Options{KeyPrefix: "chat:"})
	_ = groups.Options{Directory: dir, PresenceEvents: true} // for groups.NewHub
}

// A node checks the directory with its heartbeat and writes its own
// connections back when Redis failed it or lost its data.
func ExampleDirectory_ReplaceNode() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	dir := redisdir.New(rdb, redisdir.Options{})
	const self = "10.0.0.1:7000" // this node's actor-system address
	// localState would read the node's own groups and users from memory,
	// with the Hub's joins and leaves held off until ReplaceNode returns.
	localState := func() redisdir.NodeState { return redisdir.NodeState{} }

	var epoch string
	failed := false
	for range time.Tick(time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		now, err := dir.Epoch(ctx)
		if err == nil && (failed || now != epoch) {
			// The Hub announced the departures this removes when they
			// happened, so they are not announced again here.
			_, err = dir.ReplaceNode(ctx, self, localState())
		}
		cancel()
		if err != nil {
			slog.Warn("directory unavailable", slog.Any("err", err))
			failed = true
			continue
		}
		epoch, failed = now, false
	}
}
