// Package rooms runs stateful rooms — game matches, documents, auctions —
// as actors addressed by kind and name, with players who are connections of
// any node.
//
// A Kind says how to make a room (a Handler per activation) and its rules:
// tick rate, seats, how long a dropped player's seat is held, how often its
// state is saved. A room is activated on first use, wherever its name is
// placed: on a single node, in this process; in a cluster, on the one node
// that protoactor's identity lookup chooses, reached by name from every
// node. Its Handler's methods run one at a time in the room's mailbox, like
// a connection's: no locks.
//
// Players are connections. A connection asks to join (Manager.Join,
// JoinOrCreate, Reconnect) without waiting: the answer reaches its handler's
// Receive as a Joined or a JoinFailed, and the Joined carries a Ref to send
// the room messages and leave it, and an unguessable reconnection token. The
// room watches its players' connections: one that ends drops its player,
// whose seat is held for Kind.SeatReservation, and who takes it back by
// reconnecting with the token, on any node. Messages from a room to its
// players cost one network message per node, not per player.
//
// A room whose Handler gives snapshots (Snapshotter) is saved to the Store at
// the kind's interval, under a fencing epoch so that only its current
// activation can write. When the node hosting a room dies, the room is
// activated on a surviving node from its last snapshot, and its players on
// surviving nodes are attached to it again without doing anything.
package rooms
