// Package redisstore is a rooms.Store in Redis, shared by every node of a
// wsactor cluster: a room's snapshot and fencing epoch, its listing and the
// seats matchmaking reserved in it outlive the node that hosted it. New
// returns one; it passes the same contract (roomstest) as rooms.MemoryStore.
//
// # Key layout
//
// Every key starts with Options.KeyPrefix (default "wsactor:rooms:"; a
// cluster passes "<redis.key_prefix>rooms:<cluster name>:"). Kinds and room
// names are opaque bytes, so they appear in keys and indexes hex-encoded
// (lowercase): no name can collide with another key or break a SCAN
// pattern, the scripts build a room's keys by appending its index entry to
// a prefix, and hex keeps the names' byte order.
//
//	<prefix>room:<hex kind>:<hex name>  HASH  the room
//	    epoch    its fencing epoch (decimal), kept when it is deleted
//	    owner    node address of the activation that claimed it last
//	    active   "1" while that activation holds it, "0" once released
//	    snap     its last snapshot (bytes)
//	    listing  its listing, JSON (rooms.Listing)
//	    tomb     "1" once deleted, until it is claimed again
//	<prefix>resv:<hex kind>:<hex name>  ZSET  reservation → expiry (ms, Redis server clock)
//	<prefix>list:<hex kind>             ZSET  hex names of the kind's listed rooms → expiry of their data (ms)
//	<prefix>open:<hex kind>             ZSET  those of them with a free seat (open, players under max), likewise
//
// # Epochs
//
// Claim, Save, Release, Delete and Publish each compare the epoch inside
// their script, so two activations can never both write. Claim adds one to
// the room's epoch; a room Redis has no epoch for (never claimed, or its
// key gone) starts at the Redis server's clock in microseconds rather than
// at 1. So epochs only grow, even across a tombstone's expiry or a loss of
// Redis's data, and a stale activation from before the loss never shares an
// epoch with the next one (the rooms package also relies on epochs growing
// to drop deliveries of an older activation). A deleted room's hash keeps
// its epoch for TombstoneTTL (a day); a write of the deleted activation
// fails with rooms.ErrFenced, like one of any activation that is not the
// room's current one.
//
// When Redis loses its data (restarted without persistence, flushed,
// evicted), every activation's next write fails with rooms.ErrFenced, since
// its room's key is gone: the rooms stop without writing, and are activated
// again on their next use, from no snapshot, at a new, higher epoch. Run
// Redis with persistence (appendonly) to keep snapshots across restarts,
// and with maxmemory-policy noeviction: the keys have TTLs, so a volatile-*
// policy could evict a live room.
//
// # Expiry and memory
//
// Nothing stays forever. Every write of a room's activation sets its hash's
// TTL to Options.RoomTTL (default 24 h) again, and its index entries'
// scores and the indexes' TTLs with it, so that a room abandoned without
// being disposed (its node died and no one used it since) is forgotten
// RoomTTL after its last write. Reservations expire by the server's clock,
// and their ZSET with the last of them. A room that Reserve listed and that
// was never activated lives as long as its reservations. List and Reserve
// prune as they read: the index entries whose score has passed (at a cost
// per room that expired, not per room listed), the entries of rooms whose
// key is gone anyway (evicted), and the listings of reserved rooms never
// activated whose reservations all expired. Publish prunes the room's
// expired reservations. Deleted rooms keep a hash of two fields for a day.
//
// # Atomicity and cost
//
// Every operation is one Lua script (EVALSHA; EVAL again after a restart
// that emptied Redis's script cache), so Redis runs nothing else meanwhile.
// Claim, Save, Release, Publish and Delete touch one room. List reads every
// room of the kind; Reserve reads the rooms with a free seat only, whose
// listings it decodes (cjson) to match the filter: on a 2-core machine, a
// Save takes about 1.3 times a PING's round trip, and Reserve 4 to 5 µs
// more per room with a free seat (1,000 of them: about 5 ms, during which
// Redis serves no one else). Rooms that lock or fill when their match
// starts keep that set small. The scripts build room keys from the
// indexes, so they need a single Redis (standalone, or Sentinel with a
// failover client): Redis Cluster refuses them (CROSSSLOT).
//
// # Failures
//
// rooms.ErrFenced and *rooms.HeldError are returned as they are. Other
// errors are go-redis errors wrapped with what was being done and the room
// (`redisstore: save room game/r1: dial tcp 127.0.0.1:6379: connect:
// connection refused`); with Redis unreachable, calls fail within the
// client's dial, read and retry limits or the context's deadline (with the
// client's ContextTimeoutEnabled), whichever comes first.
package redisstore
