package actors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/wire"
	"google.golang.org/protobuf/proto"
)

// Sends by ID to another node go through one outbox per peer and server, so
// that what piles up while a batch is on its way leaves as the next
// wire.DeliverBatch: protoactor's remote costs about as much per envelope
// (a remote process, the endpoint writer's queue and lookups, encoding and
// decoding by type name, a registry lookup on the other side) as the rest of
// a message's way, and a batch pays it once.
//
// Order: every Post, Send, Tell and Close from this runtime to one peer and
// server goes through its outbox in the order the callers entered it, and so
// does everything else it sends to that server's connections there (SendAs,
// SendToNode: see inline.go); a single flusher hands them on in that order,
// on one stream to that node. So a message still arrives after whatever the
// same goroutine sent to the same connection before.
//
// The stream is the node's lane (internal/lane) when both nodes have one,
// and protoactor's remote otherwise: the lane costs a fraction of the
// remote's CPU per batch. The flusher changes between them only behind a
// lane.Sync, which returns once the peer has handed on everything sent the
// other way, so the change keeps the order too. The lane is set up off the
// flusher's way (link), which meanwhile sends through the remote.

// outItem is one queued send: a data message (deliver) for the batch
// receiver, or any other message for pid, sent as it is.
type outItem struct {
	name  string // connection actor name, for a data message
	reqID uint32 // the request waiting for the answer, or 0
	typ   int32
	data  []byte

	pid    *actor.PID // for any other message
	msg    any
	sender *actor.PID // msg's sender, if not the reply process (reqID)
	system bool       // msg is a system message (a Watch)

	// control marks a Close or a Watch: small, and a caller waits on what
	// it starts, so the outbox's bound never refuses one.
	control bool
	size    int // what it counts against the outbox's bound (cost)
}

// outItemOverhead is what each queued item counts against the outbox's
// bound besides its payload: its slot (about 100 bytes) and its record's
// header in a frame.
const outItemOverhead = 128

// cost is what it counts against the outbox's bound: its payload, or the
// encoded size of a message, and outItemOverhead.
func (it *outItem) cost() int {
	if it.pid == nil {
		return len(it.data) + outItemOverhead
	}
	if m, ok := it.msg.(proto.Message); ok {
		return proto.Size(m) + outItemOverhead
	}
	return outItemOverhead
}

type outbox struct {
	rt       *Runtime
	key      routeKey   // its entry in the route table
	address  string     // the peer's actor-system address
	server   string     // the server on the peer
	receiver *actor.PID // the batch receiver of the server on the peer

	mu sync.Mutex
	// retired: dropped from the route table (see dropDeparted). A sender
	// that read the table before may still push here; what it pushes goes
	// to the table's current outbox instead, so that it cannot overtake,
	// or be overtaken by, what goes there.
	retired  bool
	items    []outItem
	spare    []outItem // the flusher's emptied array, kept between flushers
	bytes    int       // what items and the batch being sent count (outItem.cost)
	warned   time.Time // when a refusal was last logged
	flushing bool      // a flusher goroutine runs
	viaLane  bool      // the flusher sends on the lane: nothing may go around it

	// Setting up a lane, which link does off the flusher's way.
	linking   bool       // link runs
	linked    *lane.Conn // what link set up, for the flusher to change to
	linkSeq   uint64     // remoteSeq when link's Sync left
	laneAfter time.Time  // no lane before this, after a failed attempt
	laneFails int        // failed attempts in a row (up to 5: the back-off's exponent)
	// barrierFails counts the changes to a lane that failed in a row for
	// want of a timely barrier (see way).
	barrierFails int

	// remoteSeq counts the sends to the remote, each once it is done: a Sync
	// that left while it did not change since is behind all of them.
	// Changed under mu.
	remoteSeq uint64

	// The flusher's own.
	lane  *lane.Conn // the lane it sends on, or nil: the remote
	frame []byte     // a lane frame being built, kept between batches
}

// maxSpareItems bounds the array an idle outbox keeps for its next flusher
// (about 2 MiB): above the bursts of a busy peer (50 connections with 128
// posts in flight each fill 6,400 items between two flushes, and dropping
// their array cost 4% of the rate), below a pathological one's.
const maxSpareItems = 16384

// laneRetry is how long an outbox sends through the remote after its peer
// had no lane, or its lane could not be set up, before it asks again; it
// doubles with each failure in a row, up to 16 times.
const laneRetry = 10 * time.Second

// laneRelink is the pause before setting up a lane again after one broke
// before it was used, and the first after a barrier that came too late.
const laneRelink = time.Second

// barrierTimeout bounds the wait for the barrier that changes to a lane,
// which holds up what is queued meanwhile.
const barrierTimeout = time.Second

// syncTries bounds the Syncs after a lane broke.
const syncTries = 3

// routeKey names a server on another node as connection IDs spell it: the
// server's name and the node's address in base64url.
type routeKey struct{ server, addr64 string }

// routeTable maps the servers on other nodes that this runtime has sent to
// to their outboxes. It is replaced, never changed: a send by ID reads it
// without a lock, and there is one entry per peer and server, added once
// and dropped once its node has left the cluster and it is idle (see
// route): in a cluster whose nodes come and go on new addresses, each
// departed node's outboxes, with the buffers of their largest bursts, would
// otherwise stay for the life of the process.
type routeTable struct{ byKey map[routeKey]*outbox }

// route returns the outbox to server on the node at address (addr64 in an
// ID), adding it to the route table on first use.
func (rt *Runtime) route(server, addr64, address string) *outbox {
	key := routeKey{server, addr64}
	if o := rt.routes.Load().byKey[key]; o != nil {
		return o
	}
	rt.routesMu.Lock()
	defer rt.routesMu.Unlock()
	old := rt.routes.Load().byKey
	if o := old[key]; o != nil {
		return o
	}
	// The key's strings are parts of an ID; cloned, the table keeps no ID.
	key = routeKey{strings.Clone(server), strings.Clone(addr64)}
	o := &outbox{rt: rt, key: key, address: address, server: key.server, receiver: actor.NewPID(address, receiverName(server))}
	next := make(map[routeKey]*outbox, len(old)+1)
	maps.Copy(next, old)
	rt.dropDeparted(next) // the table is copied anyway
	next[key] = o
	rt.routes.Store(&routeTable{byKey: next})
	return o
}

// retireIfIdle retires the outbox if it has nothing queued or being sent
// and sets up no lane, and reports whether it did.
func (o *outbox) retireIfIdle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.flushing || len(o.items) != 0 || o.linking {
		return false
	}
	o.retired = true
	return true
}

// successor returns the outbox that replaced a retired one in the route
// table, adding one if the table has none.
func (o *outbox) successor() *outbox { return o.rt.route(o.key.server, o.key.addr64, o.address) }

// dropDeparted deletes from table, and retires, the outboxes of nodes that
// have left the cluster and that have nothing left to send. A send to such
// a node fails before it looks at the table (resolve), and one that comes
// back gets a new outbox.
func (rt *Runtime) dropDeparted(table map[routeKey]*outbox) {
	maps.DeleteFunc(table, func(_ routeKey, o *outbox) bool { return !rt.NodeAlive(o.address) && o.retireIfIdle() })
}

// pruneIfDeparted drops the outboxes of departed nodes when o's node has
// left: o was busy when its node left (a flush ran, or a link, which ends
// in success or failure), so the prune on departure kept it, and nothing
// else would drop it until another outbox is added. Call it once o may
// have become idle.
func (o *outbox) pruneIfDeparted() {
	if !o.rt.NodeAlive(o.address) {
		o.rt.PruneRoutes()
	}
}

// PruneRoutes drops the outboxes of departed nodes that have nothing left
// to send, as adding an outbox does. The runtime calls it when its cluster
// view tells of a departure (see Cluster) and when an outbox to a departed
// node becomes idle.
func (rt *Runtime) PruneRoutes() {
	rt.routesMu.Lock()
	defer rt.routesMu.Unlock()
	old := rt.routes.Load().byKey
	next := maps.Clone(old)
	rt.dropDeparted(next)
	if len(next) != len(old) {
		rt.routes.Store(&routeTable{byKey: next})
	}
}

// Routes returns how many servers on other nodes the runtime keeps an
// outbox for: those it has sent to, less those of departed nodes dropped
// since.
func (rt *Runtime) Routes() int { return len(rt.routes.Load().byKey) }

// remoteConn is a connection on another node, as resolve finds it.
type remoteConn struct {
	o    *outbox // to the connection's node and server
	name string  // the connection actor's name
}

// pid returns the connection actor's PID.
func (c remoteConn) pid() *actor.PID {
	return actor.NewPID(c.o.address, SupervisorPrefix+c.o.server+"/"+c.name)
}

// push queues it and starts a flusher unless one runs. It never blocks on
// the network: when what is queued for the peer would pass the runtime's
// NodeQueueBytes it refuses it with ErrNodeQueueFull, unless it is control.
func (o *outbox) push(it outItem) error {
	it.size = it.cost()
	o.mu.Lock()
	if o.retired {
		o.mu.Unlock()
		return o.successor().push(it)
	}
	if err := o.admitLocked(&it); err != nil {
		o.mu.Unlock()
		return o.refused(err)
	}
	o.items = append(o.items, it)
	start := !o.flushing
	o.flushing = true
	o.mu.Unlock()
	if start {
		go o.flush()
	}
	return nil
}

// admitLocked counts it against the outbox's bound, or refuses it: the
// outbox already holds something and would hold more than the bound with
// it. (One item always fits, as a connection's send queue takes one
// message larger than its bound.) Called under mu; the caller unlocks and
// then calls refused with the error, which logs it outside the lock (a log
// handler may well send).
func (o *outbox) admitLocked(it *outItem) error {
	limit := o.rt.nodeQueueBytes
	if !it.control && limit > 0 && o.bytes > 0 && o.bytes+it.size > limit {
		o.rt.counters.NodeQueueFull.Add(1)
		if now := time.Now(); now.Sub(o.warned) >= time.Minute {
			o.warned = now
			return &queueFullError{queued: o.bytes, limit: limit}
		}
		return ErrNodeQueueFull
	}
	o.bytes += it.size
	return nil
}

// queueFullError is ErrNodeQueueFull for the refusal that is logged.
type queueFullError struct{ queued, limit int }

func (e *queueFullError) Error() string        { return ErrNodeQueueFull.Error() }
func (e *queueFullError) Is(target error) bool { return target == ErrNodeQueueFull }

// refused logs err from admitLocked if it is the refusal to log, and
// returns ErrNodeQueueFull.
func (o *outbox) refused(err error) error {
	if e, ok := err.(*queueFullError); ok {
		o.rt.logger.Warn("wsactor: the queue to a node is full: refusing messages for it until it drains; the node, or the network to it, takes them slower than this node sends",
			slog.String("node", o.address), slog.String("server", o.server), slog.Int("queued_bytes", e.queued), slog.Int("limit", e.limit))
	}
	return ErrNodeQueueFull
}

// sendOrPush calls direct (a send through the remote) at once, under the
// outbox's lock, if nothing is queued or being handed over and the outbox
// neither sends on a lane nor has one ready to change to (so nothing can be
// overtaken), and queues it otherwise. A Send waits for its answer anyway,
// so it gains nothing from waiting for a flusher goroutine to start; it
// takes the flusher's way only behind earlier messages, which it must not
// overtake, or to change to a lane.
//
// Queued, it counts against the bound as push's are, and may be refused.
func (o *outbox) sendOrPush(it outItem, direct func()) error {
	o.mu.Lock()
	if o.retired {
		o.mu.Unlock()
		return o.successor().sendOrPush(it, direct)
	}
	if !o.flushing && !o.viaLane && o.linked == nil {
		direct()
		o.remoteSeq++
		o.startLink()
		o.mu.Unlock()
		return nil
	}
	it.size = it.cost()
	if err := o.admitLocked(&it); err != nil {
		o.mu.Unlock()
		return o.refused(err)
	}
	o.items = append(o.items, it)
	start := !o.flushing
	o.flushing = true
	o.mu.Unlock()
	if start {
		go o.flush()
	}
	return nil
}

// flush hands everything queued on, consecutive data messages as one
// batch, until the outbox is empty.
func (o *outbox) flush() {
	o.mu.Lock()
	items := o.spare
	o.spare = nil
	o.mu.Unlock()
	sent := 0 // what the batch just sent counted against the bound
	for {
		o.mu.Lock()
		o.bytes -= sent
		if len(o.items) == 0 {
			o.flushing = false
			// Keep the array: a flusher that starts with none grows one
			// from nothing, and that was a third of a remote Post's cost.
			// But not a burst's large one, which an idle outbox would
			// hold for good.
			if cap(items) <= maxSpareItems {
				o.spare = items[:0]
			}
			o.mu.Unlock()
			o.pruneIfDeparted()
			return
		}
		// Swap buffers: the next pushes fill the array this flush emptied.
		items, o.items = o.items, items[:0]
		o.mu.Unlock()
		o.send(items)
		sent = 0
		for i := range items {
			sent += items[i].size
		}
		clear(items) // let the payloads go
	}
}

// send hands items on: on the lane if there is one, or else, and after the
// lane broke, through the remote.
func (o *outbox) send(items []outItem) {
	for len(items) > 0 {
		c := o.way()
		if c == nil {
			o.sendRemote(items)
			return
		}
		items = o.sendLane(c, items)
	}
}

// way returns the lane to send on, or nil for the remote. The flusher
// changes from the remote to a lane that link set up only behind a
// lane.Sync that left after its last send to the remote, and after a lane
// broke only behind one that also ended that lane's session there: so the
// peer hands on everything sent the old way first. Setting a lane up (a
// Sync and a dial, which may take seconds with a firewall in the way) never
// holds the flusher up: meanwhile it sends through the remote.
func (o *outbox) way() *lane.Conn {
	if o.lane != nil && !o.lane.Broken() {
		return o.lane
	}
	hub := lane.Of(o.rt.system)
	if o.lane != nil {
		o.afterBreak(hub)
	}
	if hub == nil {
		return nil
	}
	o.mu.Lock()
	c, since, seq := o.linked, o.linkSeq, o.remoteSeq
	o.linked = nil
	if c == nil {
		o.startLink()
		o.mu.Unlock()
		return nil
	}
	o.mu.Unlock()
	if seq != since {
		// Something went through the remote since link's Sync left. What
		// is queued waits for this Sync, so it waits briefly: a peer that
		// does not answer in time keeps the remote for a while.
		if _, err := hub.Sync(o.address, o.server, 0, min(o.rt.requestTimeout, barrierTimeout)); err != nil {
			o.mu.Lock()
			o.barrierFails = min(o.barrierFails+1, 8)
			wait := laneRelink << (o.barrierFails - 1)
			o.laneAfter = time.Now().Add(wait)
			o.mu.Unlock()
			o.rt.logger.Warn("wsactor: a node did not confirm the change to the lane in time; sending through the remote",
				slog.String("node", o.address), slog.Any("error", err), slog.Duration("next_try_in", wait))
			return nil
		}
	}
	if c.Broken() {
		// It broke while it waited (a reset on either end, a peer that
		// restarted): not the peer's lack of a lane, so no back-off, but a
		// second's pause, so that a peer that closes every lane at once
		// costs a dial a second, not one per send.
		o.mu.Lock()
		o.laneAfter = time.Now().Add(laneRelink)
		o.mu.Unlock()
		return nil
	}
	o.mu.Lock()
	o.laneFails, o.barrierFails = 0, 0
	o.viaLane = true
	o.mu.Unlock()
	o.lane = c
	return c
}

// startLink starts link unless it runs, a lane is ready or the back-off
// after a failure lasts, or this node has no lane. Called under mu.
func (o *outbox) startLink() {
	if o.linking || o.linked != nil || o.viaLane || time.Now().Before(o.laneAfter) {
		return
	}
	if hub := lane.Of(o.rt.system); hub != nil {
		o.linking = true
		go o.link(hub)
	}
}

// link sets up the lane to the outbox's peer, if the peer has one, for the
// flusher to change to (see way).
func (o *outbox) link(hub *lane.Hub) {
	o.mu.Lock()
	seq := o.remoteSeq
	o.mu.Unlock()
	info, err := hub.Sync(o.address, o.server, 0, o.rt.requestTimeout)
	var c *lane.Conn
	if err == nil {
		c, err = hub.Link(o.address, info)
	}
	if err != nil {
		o.linkFailed(err)
		return
	}
	o.linkSucceeded(c, seq)
}

// linkSucceeded hands the lane that link set up, behind a Sync that left
// when remoteSeq was seq, to the next flusher, which changes to it.
func (o *outbox) linkSucceeded(c *lane.Conn, seq uint64) {
	o.mu.Lock()
	o.linking = false
	o.linked, o.linkSeq = c, seq
	o.mu.Unlock()
	o.pruneIfDeparted()
}

// linkFailed backs off from setting up a lane: each try costs a Sync and
// a dial, and an old node or a firewalled port fails every time.
func (o *outbox) linkFailed(err error) {
	o.mu.Lock()
	o.linking = false
	o.laneFails = min(o.laneFails+1, 5)
	wait := laneRetry << (o.laneFails - 1)
	o.laneAfter = time.Now().Add(wait)
	o.mu.Unlock()
	o.pruneIfDeparted()
	level := slog.LevelWarn
	if errors.Is(err, lane.ErrUnsupported) {
		level = slog.LevelDebug // an older node, or one without a lane
	}
	o.rt.logger.Log(context.Background(), level, "wsactor: sending to a node through the remote, not a lane",
		slog.String("node", o.address), slog.String("server", o.server), slog.Any("error", err),
		slog.Duration("next_try_in", wait))
}

// afterBreak leaves the lane that broke behind a lane.Sync that ends its
// session on the peer: what the peer received on it is handed on before
// anything goes another way. It reports what was lost.
func (o *outbox) afterBreak(hub *lane.Hub) {
	broken := o.lane
	o.lane = nil
	o.setViaLane(false)
	if hub == nil {
		o.rt.logger.Warn("wsactor: this node's lane closed; sending to a node through the remote, and frames in flight on the lane, if any were lost, are not counted",
			slog.String("node", o.address))
		return
	}
	info, err := hub.Sync(o.address, o.server, broken.ID(), o.rt.requestTimeout)
	// The barrier is what keeps the order: ask again while the peer is a
	// member that could answer (it may be busy ending the session), but not
	// for ever.
	for try := 1; err != nil && !errors.Is(err, lane.ErrUnsupported) && try < syncTries && o.rt.NodeAlive(o.address); try++ {
		info, err = hub.Sync(o.address, o.server, broken.ID(), o.rt.requestTimeout)
	}
	switch {
	case err == nil:
		if lost := broken.Lost(info.Handled); lost > 0 {
			o.rt.logger.Warn("wsactor: the lane to a node broke; frames written on it were lost",
				slog.String("node", o.address), slog.Uint64("frames", lost))
		}
	case errors.Is(err, lane.ErrUnsupported):
		// The peer closed its lane, and with it waited for the session's
		// reader: the order holds, but what it did not read is not known.
		o.rt.logger.Warn("wsactor: the lane to a node closed; frames in flight on it, if any were lost, are not counted",
			slog.String("node", o.address))
	default:
		o.rt.logger.Warn("wsactor: the lane to a node broke and the node did not confirm what it handled; messages sent after this may overtake some sent before",
			slog.String("node", o.address), slog.Any("error", err))
	}
}

func (o *outbox) setViaLane(v bool) {
	o.mu.Lock()
	o.viaLane = v
	o.mu.Unlock()
}

// sendLane writes items to c in frames of up to maxBatchBytes and returns
// those it did not write because c broke. A frame whose write failed part
// way may be lost (it is counted), as messages in flight are when the
// remote's stream breaks; one refused before a byte went is not.
func (o *outbox) sendLane(c *lane.Conn, items []outItem) []outItem {
	for len(items) > 0 {
		b := lane.AppendHeader(o.frame[:0], o.server)
		b = binary.AppendUvarint(b, uint64(len(o.rt.replies.self.Id)))
		b = append(b, o.rt.replies.self.Id...)
		start, n := len(b), 0
		for n < len(items) && (n == 0 || len(b)-start < maxBatchBytes) {
			b = o.appendRecord(b, &items[n])
			n++
		}
		err := c.Write(b)
		if cap(b) <= 4*maxBatchBytes {
			o.frame = b // keep the buffer, unless a large message grew it
		}
		switch {
		case errors.Is(err, lane.ErrBroken):
			return items // nothing was sent: they go the next way
		case err != nil:
			o.rt.logger.Warn("wsactor: the lane to a node broke while a frame was written; its messages may be lost",
				slog.String("node", o.address), slog.Int("messages", n), slog.Any("error", err))
			return items[n:]
		}
		items = items[n:]
	}
	return nil
}

// Lane records: a kind, then a data message in DeliverBatch.packed's
// format, or a message for the connection actor by its name, serialized as
// protoactor's remote does.
const (
	recordData   = 0
	recordUser   = 1 // uvarint len(name), name, uvarint request ID, uvarint len(type), type, uvarint len(data), data
	recordSystem = 2 // as recordUser, request ID 0
	// recordProcess is a message for any process by its ID, with its own
	// sender: uvarint len(id), id, uvarint len(sender address), sender
	// address, uvarint len(sender ID), sender ID (empty: none), uvarint
	// sender's request ID, then type and data as in recordUser.
	recordProcess = 3
)

func (o *outbox) appendRecord(b []byte, it *outItem) []byte {
	if it.pid == nil {
		return appendPacked(append(b, recordData), it)
	}
	data, typeName, err := remote.Serialize(it.msg, 0)
	if err != nil {
		// Tell checks what it queues, so only a bug gets here; the remote
		// would have dropped it too.
		o.rt.logger.Error("wsactor: cannot serialize a message for another node; dropped",
			slog.String("type", fmt.Sprintf("%T", it.msg)), slog.Any("error", err))
		return b
	}
	name, conn := strings.CutPrefix(it.pid.Id, SupervisorPrefix+o.server+"/")
	switch {
	case it.system && conn:
		b = append(b, recordSystem)
	case it.sender == nil && conn:
		b = append(b, recordUser)
	default:
		// Another process (a node's rooms or groups delivery), or an
		// actor's message to a connection with the actor as its sender.
		b = append(b, recordProcess)
		b = binary.AppendUvarint(b, uint64(len(it.pid.Id)))
		b = append(b, it.pid.Id...)
		var addr, id string
		var reqID uint32
		if it.sender != nil {
			addr, id, reqID = it.sender.Address, it.sender.Id, it.sender.RequestId
		}
		b = binary.AppendUvarint(b, uint64(len(addr)))
		b = append(b, addr...)
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, uint64(reqID))
		b = binary.AppendUvarint(b, uint64(len(typeName)))
		b = append(b, typeName...)
		b = binary.AppendUvarint(b, uint64(len(data)))
		return append(b, data...)
	}
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(it.reqID))
	b = binary.AppendUvarint(b, uint64(len(typeName)))
	b = append(b, typeName...)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// sendRemote hands items to protoactor's remote.
func (o *outbox) sendRemote(items []outItem) {
	// Counted once sent: a Sync that left before the count changed may
	// have left before some of them (see way).
	defer func() {
		o.mu.Lock()
		o.remoteSeq++
		o.mu.Unlock()
	}()
	root := o.rt.system.Root
	for len(items) > 0 {
		if it := items[0]; it.pid != nil {
			switch {
			case it.reqID != 0:
				root.RequestWithCustomSender(it.pid, it.msg, o.rt.replies.sender(it.reqID))
			case it.sender != nil:
				root.RequestWithCustomSender(it.pid, it.msg, it.sender)
			default:
				root.Send(it.pid, it.msg)
			}
			items = items[1:]
			continue
		}
		// The data messages up to the next other message, or up to
		// maxBatchBytes (a larger message goes alone), leave as one batch.
		n, size := 0, 0
		for n < len(items) && items[n].pid == nil {
			s := packedSize(&items[n])
			if n > 0 && size+s > maxBatchBytes {
				break
			}
			size += s
			n++
		}
		packed := make([]byte, 0, size)
		for i := range items[:n] {
			packed = appendPacked(packed, &items[i])
		}
		root.Send(o.receiver, &wire.DeliverBatch{ReplyAddress: o.rt.replies.self.Address, ReplyId: o.rt.replies.self.Id, Packed: packed})
		items = items[n:]
	}
}

// maxBatchBytes bounds the packed items of one wire.DeliverBatch, so that a
// burst leaves as several network messages, none of which the receiving
// node must hold whole for long, and protoactor's own batching of envelopes
// stays within reason.
const maxBatchBytes = 64 << 10

// packedSize is the length of it in wire.DeliverBatch.packed.
func packedSize(it *outItem) int {
	return uvarintLen(uint64(len(it.name))) + len(it.name) + uvarintLen(uint64(it.reqID)) +
		uvarintLen(uint64(uint32(it.typ))) + uvarintLen(uint64(len(it.data))) + len(it.data)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// appendPacked appends it to b in wire.DeliverBatch.packed's format.
func appendPacked(b []byte, it *outItem) []byte {
	b = binary.AppendUvarint(b, uint64(len(it.name)))
	b = append(b, it.name...)
	b = binary.AppendUvarint(b, uint64(it.reqID))
	b = binary.AppendUvarint(b, uint64(uint32(it.typ)))
	b = binary.AppendUvarint(b, uint64(len(it.data)))
	return append(b, it.data...)
}

// packedItem is one item read from wire.DeliverBatch.packed. name and data
// point into the batch.
type packedItem struct {
	name     []byte
	reqID    uint32
	typ      int32
	typeName []byte // a lane message record's type
	data     []byte

	// A recordProcess's: name is the process's whole ID, and the sender,
	// if senderID is not empty, is senderAddress, senderID and reqID.
	senderAddress, senderID []byte
}

// nextPacked reads the item at the start of p and returns what follows it.
// ok is false if p does not start with a whole, well-formed item.
func nextPacked(p []byte) (it packedItem, rest []byte, ok bool) {
	field := func() []byte {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil
		}
		b := p[k : k+int(n)]
		p = p[k+int(n):]
		return b
	}
	number := func(limit uint64) (uint64, bool) {
		v, k := binary.Uvarint(p)
		if k <= 0 || v > limit {
			return 0, false
		}
		p = p[k:]
		return v, true
	}
	if it.name = field(); it.name == nil {
		return it, nil, false
	}
	reqID, ok1 := number(math.MaxUint32)
	typ, ok2 := number(math.MaxUint32)
	if !ok1 || !ok2 {
		return it, nil, false
	}
	it.reqID, it.typ = uint32(reqID), int32(uint32(typ))
	if len(p) == 0 {
		return it, nil, false
	}
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return it, nil, false
	}
	it.data = p[k : k+int(n)]
	return it, p[k+int(n):], true
}

func receiverName(server string) string { return SupervisorPrefix + "deliver-" + server }

// batchReceiver is a server's end of the outboxes of the other nodes. It is
// a process without a mailbox: a batch is posted item by item, in order, to
// the connections' mailboxes on the goroutine of the endpoint reader that
// received it, which is what protoactor would have done for each message
// sent on its own.
type batchReceiver struct{ rt *Runtime }

// registerReceiver registers the server's batch receiver, and its handler
// of the node's lane if the node has one. The name is the server's, so that
// a server stopped and made again takes them over. It returns what removes
// them, unless another server of the name took them over meanwhile: Stop
// calls it, so that neither keeps a stopped runtime reachable.
func (rt *Runtime) registerReceiver() (remove func()) {
	reg := rt.system.ProcessRegistry
	name := receiverName(rt.server)
	reg.Remove(actor.NewPID(reg.Address, name))
	r := &batchReceiver{rt: rt}
	pid, _ := reg.Add(r, name)
	unhandle := func() {}
	if h := lane.Of(rt.system); h != nil {
		unhandle = h.Handle(rt.server, r.receiveFrame)
	}
	return func() {
		unhandle()
		if p, ok := reg.GetLocal(name); ok && p == actor.Process(r) {
			reg.Remove(pid)
		}
	}
}

// SendUserMessage delivers a batch's items: those of nodes from before
// packed first, then the packed ones.
func (r *batchReceiver) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	b, ok := msg.(*wire.DeliverBatch)
	if !ok {
		return
	}
	from, replyID := b.GetReplyAddress(), b.GetReplyId()
	var last lastConn
	for _, it := range b.GetItems() {
		r.deliver(from, replyID, it.GetName(), it.GetRequestId(), it.GetType(), it.GetData())
	}
	for p := b.GetPacked(); len(p) > 0; {
		it, rest, ok := nextPacked(p)
		if !ok {
			r.malformed(from, "wsactor.DeliverBatch.packed", len(p))
			return
		}
		r.deliverPacked(from, replyID, it, &last)
		p = rest
	}
}

// deliverPacked delivers an item read from a batch or a lane frame. The
// name is only looked up, never kept, so it may alias the batch; the data is
// copied, so that a message waiting in a slow connection's queue does not
// hold the whole batch (or the lane's buffer). A Post's copy comes from the
// transport's recycled buffers when it goes straight into the connection's
// send queue (postRecycled), which takes it back once written: allocating
// and collecting a copy per message was the largest cost the receiving node
// added to a message from another node. (Copying a batch's small messages
// into shared chunks saved an allocation per message but no CPU measurably,
// and would let a queued message hold a whole chunk.)
func (r *batchReceiver) deliverPacked(from, replyID string, it packedItem, last *lastConn) {
	if it.reqID == 0 {
		if c := last.lookup(r.rt, it.name); c != nil {
			c.postCopy(MessageFromWire(it.typ, it.data))
		}
		return // a Post to a connection that is gone: as a dead letter before
	}
	// make and copy, which the compiler turns into one allocation that is
	// not zeroed first; bytes.Clone goes through append's growth.
	data := make([]byte, len(it.data))
	copy(data, it.data)
	r.deliver(from, replyID, unsafe.String(unsafe.SliceData(it.name), len(it.name)), it.reqID, it.typ, data)
}

// lastConn is the connection the previous post of a batch or frame went
// to: a burst for one connection looks it up once. Its name aliases the
// batch, so it lives as long as the batch's delivery. (A connection that
// closes meanwhile drops the posts, as a lookup would: see postCopy.)
type lastConn struct {
	name []byte
	conn *Conn
}

// lookup returns the open connection called name, or nil.
func (l *lastConn) lookup(rt *Runtime, name []byte) *Conn {
	if l.conn != nil && string(name) == string(l.name) {
		return l.conn
	}
	v, found := rt.conns.Load(unsafe.String(unsafe.SliceData(name), len(name)))
	if !found {
		return nil
	}
	l.name, l.conn = name, v.(*Conn)
	return l.conn
}

// malformed counts and logs a batch or frame whose rest cannot be read:
// only a node of another wire version, or a bug, sends one.
func (r *batchReceiver) malformed(from, what string, dropped int) {
	r.rt.counters.Undecodable.Add(1)
	if undecodableWarnings.allow(what, time.Now()) {
		r.rt.logger.Warn("wsactor: malformed batch of messages from another node; the rest of it was dropped",
			slog.String("from", from), slog.String("format", what), slog.Int("bytes_dropped", dropped))
	}
}

// receiveFrame delivers a lane frame's records in order, on the lane
// reader's goroutine, as SendUserMessage does a batch's.
func (r *batchReceiver) receiveFrame(from string, p []byte) {
	var last lastConn
	left, ok := readFrame(p, func(replyID string, kind byte, it packedItem) {
		if kind == recordData {
			r.deliverPacked(from, replyID, it, &last)
		} else {
			r.deliverMessage(from, replyID, kind, it)
		}
	})
	if !ok {
		r.malformed(from, "wsactor.lane", left)
	}
}

// readFrame reads a lane frame's payload, the sender's reply process ID
// and then the records, and passes each record to fn in order. At the first
// malformed part it returns false and how many bytes were left unread.
func readFrame(p []byte, fn func(replyID string, kind byte, it packedItem)) (left int, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return len(p), false
	}
	replyID := string(p[k : k+int(n)])
	for p = p[k+int(n):]; len(p) > 0; {
		kind, left := p[0], len(p)
		var it packedItem
		switch kind {
		case recordData:
			it, p, ok = nextPacked(p[1:])
		case recordUser, recordSystem:
			it, p, ok = nextMessageRecord(p[1:])
		case recordProcess:
			it, p, ok = nextProcessRecord(p[1:])
		default:
			ok = false
		}
		if !ok {
			return left, false
		}
		fn(replyID, kind, it)
	}
	return 0, true
}

// lenField reads a uvarint length, then that many bytes, from the start of
// p, and returns them and what follows.
func lenField(p []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// requestID reads a uvarint request ID from the start of p.
func requestID(p []byte) (id uint32, rest []byte, ok bool) {
	v, k := binary.Uvarint(p)
	if k <= 0 || v > math.MaxUint32 {
		return 0, nil, false
	}
	return uint32(v), p[k:], true
}

// nextMessageRecord reads a recordUser or recordSystem body: it.name is the
// connection's name, it.data the serialized message, and typeName, returned
// in it.typeName, protoactor's name of its type.
func nextMessageRecord(p []byte) (it packedItem, rest []byte, ok bool) {
	if it.name, p, ok = lenField(p); !ok {
		return it, nil, false
	}
	if it.reqID, p, ok = requestID(p); !ok {
		return it, nil, false
	}
	return typeAndData(it, p)
}

// nextProcessRecord reads a recordProcess body into it: name (the
// process's ID), the sender's parts, typeName and data.
func nextProcessRecord(p []byte) (it packedItem, rest []byte, ok bool) {
	if it.name, p, ok = lenField(p); !ok || len(it.name) == 0 {
		return it, nil, false
	}
	if it.senderAddress, p, ok = lenField(p); !ok {
		return it, nil, false
	}
	if it.senderID, p, ok = lenField(p); !ok {
		return it, nil, false
	}
	if it.reqID, p, ok = requestID(p); !ok {
		return it, nil, false
	}
	return typeAndData(it, p)
}

// typeAndData reads the type name and the data that end a message record.
func typeAndData(it packedItem, p []byte) (packedItem, []byte, bool) {
	var ok bool
	if it.typeName, p, ok = lenField(p); !ok {
		return it, nil, false
	}
	if it.data, p, ok = lenField(p); !ok {
		return it, nil, false
	}
	return it, p, true
}

// deliverMessage delivers a message record to its process, as protoactor's
// endpoint reader does: a system message (a Watch) to the process, any
// other as a user message, with its sender: the sender's reply process if a
// connection's record has a request ID, the one named in a process record.
func (r *batchReceiver) deliverMessage(from, replyID string, kind byte, it packedItem) {
	system := kind == recordSystem
	rt := r.rt
	msg, err := remote.Deserialize(it.data, string(it.typeName), 0)
	if err != nil {
		r.malformed(from, "wsactor.lane."+string(it.typeName), len(it.data))
		return
	}
	var id string
	var sender *actor.PID
	switch {
	case kind == recordProcess:
		id = string(it.name)
		if len(it.senderID) > 0 {
			sender = &actor.PID{Address: string(it.senderAddress), Id: string(it.senderID), RequestId: it.reqID}
		}
	default:
		id = SupervisorPrefix + rt.server + "/" + string(it.name)
		if it.reqID != 0 {
			sender = &actor.PID{Address: from, Id: replyID, RequestId: it.reqID}
		}
	}
	target := actor.NewPID(rt.system.Address(), id)
	ref, found := rt.system.ProcessRegistry.GetLocal(id)
	switch {
	case system && found:
		ref.SendSystemMessage(target, msg)
	case system:
		// The remote drops a Watch of an actor that is gone, and its
		// watcher waits; this one hears at once that it is gone.
		if w, ok := msg.(*actor.Watch); ok && w.GetWatcher() != nil {
			if watcher, ok := rt.system.ProcessRegistry.Get(w.GetWatcher()); ok {
				watcher.SendSystemMessage(w.GetWatcher(), &actor.Terminated{Who: target, Why: actor.TerminatedReason_NotFound})
			}
		}
	case !found:
		if sender != nil {
			rt.system.Root.Send(sender, &actor.DeadLetterResponse{Target: target})
		}
	case sender != nil:
		ref.SendUserMessage(target, &actor.MessageEnvelope{Message: msg, Sender: sender})
	default:
		ref.SendUserMessage(target, msg)
	}
}

// deliver posts one data item to its connection, as a request answered to
// the sender's reply process (replyID on the node at from) if reqID is not
// 0.
func (r *batchReceiver) deliver(from, replyID, name string, reqID uint32, typ int32, data []byte) {
	rt := r.rt
	v, found := rt.conns.Load(name)
	if reqID == 0 {
		if found {
			v.(*Conn).post(MessageFromWire(typ, data))
		}
		return // a Post to a connection that is gone: as a dead letter before
	}
	sender := &actor.PID{Address: from, Id: replyID, RequestId: reqID}
	if !found {
		rt.system.Root.Send(sender, ResultOf(ErrConnectionNotFound))
		return
	}
	rt.system.Root.RequestWithCustomSender(v.(*Conn).pid, &wire.Deliver{Type: typ, Data: data}, sender)
}

// SendSystemMessage drops system messages: nothing watches the receiver.
func (r *batchReceiver) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing: the receiver lives as long as its server's name.
func (r *batchReceiver) Stop(*actor.PID) {}
