package actors

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"maps"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/internal/wire"
)

// Sends by ID to another node go through one outbox per peer and server, so
// that what piles up while a batch is on its way leaves as the next
// wire.DeliverBatch: protoactor's remote costs about as much per envelope
// (a remote process, the endpoint writer's queue and lookups, encoding and
// decoding by type name, a registry lookup on the other side) as the rest of
// a message's way, and a batch pays it once.
//
// Order: every Post, Send, Tell and Close from this runtime to one peer and
// server goes through its outbox in the order the callers entered it, and a
// single flusher hands them to protoactor in that order, which keeps them in
// order on the one stream to that node. So a message still arrives after
// whatever the same goroutine sent to the same connection before.

// outItem is one queued send: a data message (deliver) for the batch
// receiver, or any other message for pid, sent as it is.
type outItem struct {
	name  string // connection actor name, for a data message
	reqID uint32 // the request waiting for the answer, or 0
	typ   int32
	data  []byte

	pid *actor.PID // for any other message
	msg any
}

type outbox struct {
	rt       *Runtime
	address  string     // the peer's actor-system address
	server   string     // the server on the peer
	receiver *actor.PID // the batch receiver of the server on the peer

	mu       sync.Mutex
	items    []outItem
	flushing bool // a flusher goroutine runs
}

// routeKey names a server on another node as connection IDs spell it: the
// server's name and the node's address in base64url.
type routeKey struct{ server, addr64 string }

// routeTable maps the servers on other nodes that this runtime has sent to
// to their outboxes. It is replaced, never changed: a send by ID reads it
// without a lock, and there is one entry per peer and server, added once.
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
	o := &outbox{rt: rt, address: address, server: key.server, receiver: actor.NewPID(address, receiverName(server))}
	next := make(map[routeKey]*outbox, len(old)+1)
	maps.Copy(next, old)
	next[key] = o
	rt.routes.Store(&routeTable{byKey: next})
	return o
}

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
// the network.
func (o *outbox) push(it outItem) {
	o.mu.Lock()
	o.items = append(o.items, it)
	start := !o.flushing
	o.flushing = true
	o.mu.Unlock()
	if start {
		go o.flush()
	}
}

// sendOrPush calls direct at once, under the outbox's lock, if nothing is
// queued or being handed over (so nothing can be overtaken), and queues it
// otherwise. A Send waits for its answer anyway, so it gains nothing from
// waiting for a flusher goroutine to start; it takes the flusher's way only
// behind earlier messages, which it must not overtake.
func (o *outbox) sendOrPush(it outItem, direct func()) {
	o.mu.Lock()
	if !o.flushing {
		direct()
		o.mu.Unlock()
		return
	}
	o.items = append(o.items, it)
	o.mu.Unlock()
}

// flush hands everything queued to protoactor, consecutive data messages as
// one batch, until the outbox is empty.
func (o *outbox) flush() {
	var items []outItem
	for {
		o.mu.Lock()
		if len(o.items) == 0 {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		// Swap buffers: the next pushes fill the array this flush emptied.
		items, o.items = o.items, items[:0]
		o.mu.Unlock()
		o.send(items)
		clear(items) // let the payloads go
	}
}

func (o *outbox) send(items []outItem) {
	root := o.rt.system.Root
	for len(items) > 0 {
		if it := items[0]; it.pid != nil {
			if it.reqID != 0 {
				root.RequestWithCustomSender(it.pid, it.msg, o.rt.replies.sender(it.reqID))
			} else {
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
	name  []byte
	reqID uint32
	typ   int32
	data  []byte
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

// registerReceiver registers the server's batch receiver. The name is the
// server's, so that a server stopped and made again takes it over.
func (rt *Runtime) registerReceiver() {
	reg := rt.system.ProcessRegistry
	name := receiverName(rt.server)
	reg.Remove(actor.NewPID(reg.Address, name))
	reg.Add(&batchReceiver{rt: rt}, name)
}

// SendUserMessage delivers a batch's items: those of nodes from before
// packed first, then the packed ones.
func (r *batchReceiver) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	b, ok := msg.(*wire.DeliverBatch)
	if !ok {
		return
	}
	for _, it := range b.GetItems() {
		r.deliver(b, it.GetName(), it.GetRequestId(), it.GetType(), it.GetData())
	}
	for p := b.GetPacked(); len(p) > 0; {
		it, rest, ok := nextPacked(p)
		if !ok {
			// Only a node of another wire version, or a bug, gets here: the
			// rest of the batch cannot be read, and is counted and logged.
			r.rt.counters.Undecodable.Add(1)
			if undecodableWarnings.allow("wsactor.DeliverBatch.packed", time.Now()) {
				r.rt.logger.Warn("wsactor: malformed batch of messages from another node; the rest of it was dropped",
					slog.String("from", b.GetReplyAddress()), slog.Int("bytes_dropped", len(p)))
			}
			return
		}
		// The name is only looked up, never kept, so it may alias the
		// batch; the data is copied, so that a message waiting in a slow
		// connection's queue does not hold the whole batch.
		r.deliver(b, unsafe.String(unsafe.SliceData(it.name), len(it.name)), it.reqID, it.typ, bytes.Clone(it.data))
		p = rest
	}
}

// deliver posts one item of batch b to its connection, as a request answered
// to the sender's reply process if reqID is not 0.
func (r *batchReceiver) deliver(b *wire.DeliverBatch, name string, reqID uint32, typ int32, data []byte) {
	rt := r.rt
	v, found := rt.conns.Load(name)
	if reqID == 0 {
		if found {
			rt.system.Root.Send(v.(*Conn).pid, &outbound{msg: MessageFromWire(typ, data)})
		}
		return // a Post to a connection that is gone: as a dead letter before
	}
	sender := &actor.PID{Address: b.GetReplyAddress(), Id: b.GetReplyId(), RequestId: reqID}
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
