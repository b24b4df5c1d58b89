// Package redisdir is a groups.Directory in Redis, shared by every node of a
// wsactor cluster: groups, presence and the user → connections index span
// nodes. New returns one; it passes the same contract (groupstest) as the
// in-memory directory.
//
// Beyond the interface, a Directory has what a cluster needs when things
// fail: RemoveNode drops a dead node's connections everywhere (no ghosts),
// ReplaceNode makes Redis hold exactly a live node's in-memory truth again
// after an outage, and Epoch tells when Redis has lost the directory's data.
//
// # Key layout
//
// Every key starts with Options.KeyPrefix (default "wsactor:"). Group names,
// user IDs and node addresses are opaque bytes, so they appear in keys
// base64url-encoded without padding (alphabet A–Z a–z 0–9 - _): a name
// containing ':', '{', '}', '*', spaces or any other byte can neither collide
// with another key nor break a SCAN pattern or a hash tag. Connection IDs are
// already in that alphabet plus '.', and appear as they are.
//
//	<prefix>group:{<b64 group>}:members  HASH  connection ID → JSON {"user":…,"meta":{…}}
//	<prefix>conn:{<id>}:groups           SET   b64 group names the connection is in
//	<prefix>conn:{<id>}:users            SET   b64 user IDs the connection is indexed under
//	<prefix>user:{<b64 user>}:conns      SET   connection IDs of the user
//	<prefix>node:{<b64 address>}:conns   SET   connection IDs of the node that have an entry
//	<prefix>node:{<b64 address>}:owner   STRING the process that holds the address (NodeState.Owner)
//	<prefix>epoch                        STRING see Epoch
//
// A member's user and meta are stored as JSON, so invalid UTF-8 in them reads
// back as U+FFFD, as it would in any JSON event sent to a client.
//
// A connection stays in its node's set while it is in a group or indexed
// under a user, so the set never outgrows the node's live connections. Keys
// have no TTL: the Redis server must not evict them (maxmemory-policy
// noeviction or volatile-*); dead nodes are cleaned up by RemoveNode instead.
//
// # Atomicity
//
// Every change is one Lua script, so the group hashes, the per-connection
// sets, the user sets and the node sets never disagree, whatever runs
// concurrently on any node. The scripts build the keys of a connection's
// groups and users from the per-connection sets, so they need a single Redis
// (standalone, or Sentinel with a failover client): Redis Cluster refuses
// them (CROSSSLOT) because the braces put each group, connection and user in
// its own hash slot.
//
// # Failures
//
// Methods return go-redis errors wrapped with what was being done
// (`redisdir: join "lobby": dial tcp 127.0.0.1:6379: connect: connection
// refused`); with Redis unreachable they fail within the client's dial, read
// and retry limits or the context's deadline, whichever comes first, and never
// block longer. The Directory keeps no state of its own, so there is nothing
// to repair in it: a node that saw errors, or whose Epoch changed, calls
// ReplaceNode with what it holds in memory once Redis answers again.
package redisdir
