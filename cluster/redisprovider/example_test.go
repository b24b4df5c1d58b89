package redisprovider_test

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/cluster/redisprovider"
)

// A node joins cluster "chat" with its membership in Redis. Every node of the
// cluster runs the same code with its own remote address.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		ContextTimeoutEnabled: true, // let the provider bound each call
	})
	provider := redisprovider.New(rdb, redisprovider.Options{
		HeartbeatInterval: time.Second,
		TTL:               3 * time.Second, // a crashed node is gone from every view within ~4 s
	})

	system := actor.NewActorSystem()
	config := cluster.Configure("chat", provider, disthash.New(),
		remote.Configure("10.0.0.5", 8090, remote.WithEndpointWriterQueueSize(4096)))
	c := cluster.New(system, config)
	c.StartMember() // panics if Redis is unreachable: check it first in real code
	defer c.Shutdown(true)

	_ = provider.Healthy() // false while Redis is unreachable
	_ = provider.Outages() // how many times it became unreachable
}
