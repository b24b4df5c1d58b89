package actors

import (
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// Everything one node sends to the connections of a server on another node
// takes one way, the outbox to that node and server: the sends by ID (Post,
// Send, Tell, Close), the messages sent to a connection's PID (SendAs: a
// room's answers, Conn.Tell), and the deliveries to a node's rooms and groups
// (SendToNode). On the other node, a delivery is handed on by an inline
// process (HandleInline) on the goroutine that received it, not through a
// mailbox, so what it posts to connections keeps its place among the rest of
// the stream. An actor's mailbox in between would let a Post sent after a
// broadcast overtake it.

// InlineFunc handles a message sent to an inline process; sender is the
// message's sender, or nil. It runs on the goroutine that handed the
// message on (protoactor's endpoint reader, a lane's reader, or a local
// sender), one message at a time for each of them: it must not block.
type InlineFunc func(msg any, sender *actor.PID)

type inlineProcess struct{ fn InlineFunc }

func (p inlineProcess) SendUserMessage(_ *actor.PID, message any) {
	_, msg, sender := actor.UnwrapEnvelope(message)
	p.fn(msg, sender)
}

// SendSystemMessage drops system messages: an inline process has no life to
// watch, it is there as long as its owner.
func (inlineProcess) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing: remove, from HandleInline, ends the process.
func (inlineProcess) Stop(*actor.PID) {}

// HandleInline registers fn as the process called name in the runtime's
// actor system, in place of any process of that name (a server stopped and
// made again takes its name over), and returns its PID and a function that
// removes it. Peers reach it with SendToNode.
func (rt *Runtime) HandleInline(name string, fn InlineFunc) (pid *actor.PID, remove func()) {
	reg := rt.system.ProcessRegistry
	reg.Remove(actor.NewPID(reg.Address, name))
	pid, _ = reg.Add(inlineProcess{fn}, name)
	return pid, func() { reg.Remove(pid) }
}

// SendToNode sends msg to the process called name on the node at address
// (an inline process of this runtime's server there) through the outbox to
// that node and server, so that it keeps its order with what this node
// sends to that server's connections by ID and with SendAs. To this node, or
// a node that is not a live member, it is sent as it is. Across nodes, msg
// must be a protobuf message. When the queue to the node is full
// (Config.NodeQueueBytes), msg is dropped, counted, and ErrNodeQueueFull
// returned.
func (rt *Runtime) SendToNode(address, name string, msg any) error {
	pid := actor.NewPID(address, name)
	if o := rt.outboxTo(rt.server, address); o != nil {
		return o.sendOrPush(outItem{pid: pid, msg: msg}, func() { rt.system.Root.Send(pid, msg) })
	}
	rt.system.Root.Send(pid, msg)
	return nil
}

// SendAs sends msg to pid with sender as its sender (none if nil). To a
// connection on another live node it goes through the outbox to that node
// and the connection's server, as Post and Tell do, so that it keeps its
// order with them and with SendToNode. To anything else it is sent as it is.
// Across nodes, msg must be a protobuf message (see EncodeValue); it is
// dropped, counted, and ErrNodeQueueFull returned, when the queue to the
// node is full (callers that cannot act on it, a reply, may ignore it).
func (rt *Runtime) SendAs(pid *actor.PID, msg any, sender *actor.PID) error {
	direct := func() {
		if sender != nil {
			rt.system.Root.RequestWithCustomSender(pid, msg, sender)
		} else {
			rt.system.Root.Send(pid, msg)
		}
	}
	if o := rt.connOutbox(pid); o != nil {
		return o.sendOrPush(outItem{pid: pid, msg: msg, sender: sender}, direct)
	}
	direct()
	return nil
}

// connOutbox returns the outbox to the connection pid if it is one of
// another node (see outboxTo), or nil.
func (rt *Runtime) connOutbox(pid *actor.PID) *outbox {
	if pid == nil {
		return nil
	}
	rest, ok := strings.CutPrefix(pid.Id, SupervisorPrefix)
	if !ok {
		return nil
	}
	server, name, ok := strings.Cut(rest, "/")
	if !ok || !ValidServerName(server) || !validName(name) {
		return nil
	}
	return rt.outboxTo(server, pid.Address)
}

// outboxTo returns the outbox to server on the node at address: the one
// there is, whether or not the node is a live member now (a send that went
// around it could overtake what it holds, were the node back), or a new one
// to a live member. It returns nil for this node, and for a node that is
// not a live member and was never sent to.
func (rt *Runtime) outboxTo(server, address string) *outbox {
	if address == rt.system.Address() {
		return nil
	}
	addr64 := b64.EncodeToString([]byte(address))
	if o := rt.routes.Load().byKey[routeKey{server, addr64}]; o != nil {
		return o
	}
	if !rt.NodeAlive(address) {
		return nil
	}
	return rt.route(server, addr64, address)
}
