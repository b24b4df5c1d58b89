// Package redisprovider is a protoactor-go cluster.ClusterProvider that keeps
// cluster membership in Redis.
//
// Each member holds one key, refreshed every heartbeat and expiring after a TTL:
//
//	<prefix>cluster:<cluster name>:member:<member id>   JSON {id, host, port, kinds, started_at}
//
// Joins and clean leaves are also published on
//
//	<prefix>cluster:<cluster name>:events
//
// so peers react at once instead of at their next poll. Every node polls the
// member keys (SCAN, never KEYS) each heartbeat interval and on every event,
// and hands protoactor the full member set (itself included) when it changes.
//
// Failure behaviour:
//   - A member that stops heartbeating (crash, SIGKILL, partition from Redis)
//     disappears from every other node's view within the TTL plus one poll.
//     A clean Shutdown(true) deletes the key and publishes a leave event.
//   - While Redis is unreachable, every node keeps its last known topology,
//     logs one warning per outage and counts it (Outages, Healthy).
//   - When Redis comes back, possibly empty after a restart, each member
//     re-registers itself. For one TTL after recovery (or after a node finds
//     its own key missing) removals are suspended, so that live members which
//     have not re-registered yet are not evicted: protoactor blocks a member
//     that left the topology forever.
//
// Redis must not evict the member keys (maxmemory-policy noeviction, or no
// maxmemory): peers drop a member whose key vanished, and protoactor never
// re-admits a member id it dropped.
//
// Entry points: New with Options, passed to cluster.Configure; Healthy and
// Outages for health reporting.
package redisprovider
