package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// SetGossipInterval sets protoactor's gossip interval on every node started
// afterwards. Tests that run several nodes in one process raise it beyond
// their run time: every gossip actor of a process shuffles one package-level
// math/rand.Rand (protoactor-go cluster/informer.go:25, used at :122), a data
// race between in-process nodes. wsactor's membership does not use gossip.
// Call it before starting any node (TestMain).
func SetGossipInterval(d time.Duration) {
	extraClusterOptions = []cluster.ConfigOption{func(c *cluster.Config) { c.GossipInterval = d }}
}
