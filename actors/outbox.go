package actors

import (
	"strings"
	"sync"

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
	receiver *actor.PID // the batch receiver of the server on the peer

	mu       sync.Mutex
	items    []outItem
	flushing bool // a flusher goroutine runs
}

// outboxFor returns the outbox to server on the node at address.
func (rt *Runtime) outboxFor(address, server string) *outbox {
	key := address + "/" + server
	if o, ok := rt.outboxes.Load(key); ok {
		return o.(*outbox)
	}
	o, _ := rt.outboxes.LoadOrStore(key, &outbox{rt: rt, receiver: actor.NewPID(address, receiverName(server))})
	return o.(*outbox)
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
	var batch *wire.DeliverBatch
	sendBatch := func() {
		if batch != nil {
			root.Send(o.receiver, batch)
			batch = nil
		}
	}
	for _, it := range items {
		if it.pid != nil {
			sendBatch()
			if it.reqID != 0 {
				root.RequestWithCustomSender(it.pid, it.msg, o.rt.replies.sender(it.reqID))
			} else {
				root.Send(it.pid, it.msg)
			}
			continue
		}
		if batch == nil {
			batch = &wire.DeliverBatch{ReplyAddress: o.rt.replies.self.Address, ReplyId: o.rt.replies.self.Id}
		}
		batch.Items = append(batch.Items, &wire.DeliverBatch_Item{Name: it.name, RequestId: it.reqID, Type: it.typ, Data: it.data})
	}
	sendBatch()
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

// SendUserMessage delivers a batch's items.
func (r *batchReceiver) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	b, ok := msg.(*wire.DeliverBatch)
	if !ok {
		return
	}
	rt := r.rt
	for _, it := range b.GetItems() {
		v, found := rt.conns.Load(it.GetName())
		if it.GetRequestId() == 0 {
			if found {
				rt.system.Root.Send(v.(*Conn).pid, &outbound{msg: MessageFromWire(it.GetType(), it.GetData())})
			}
			continue // a Post to a connection that is gone: as a dead letter before
		}
		sender := &actor.PID{Address: b.GetReplyAddress(), Id: b.GetReplyId(), RequestId: it.GetRequestId()}
		if !found {
			rt.system.Root.Send(sender, ResultOf(ErrConnectionNotFound))
			continue
		}
		rt.system.Root.RequestWithCustomSender(v.(*Conn).pid, &wire.Deliver{Type: it.GetType(), Data: it.GetData()}, sender)
	}
}

// SendSystemMessage drops system messages: nothing watches the receiver.
func (r *batchReceiver) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing: the receiver lives as long as its server's name.
func (r *batchReceiver) Stop(*actor.PID) {}

// outboxOf returns the outbox to the connection actor pid of another node,
// and the actor's name.
func (rt *Runtime) outboxOf(pid *actor.PID) (*outbox, string) {
	server, name, _ := strings.Cut(strings.TrimPrefix(pid.Id, SupervisorPrefix), "/")
	return rt.outboxFor(pid.Address, server), name
}
