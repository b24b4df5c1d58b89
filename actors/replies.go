package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// replies receives the answers to a runtime's requests to other nodes.
//
// protoactor's RequestFuture registers a process, arms a timer and allocates
// a condition variable for every call, and removes them again when the
// answer comes. replies is one process per runtime, registered once, that
// every request names as its sender with a request ID of its own in the
// PID's RequestId: protoactor carries that ID to the other node and back
// (remote.MessageEnvelope's SenderRequestId and TargetRequestId), so the
// answer reaches SendUserMessage with it, on the goroutine of the endpoint
// reader that received it, without a mailbox or a goroutine in between.
// The other node answers with ctx.Respond as it does a future, so nodes
// running an older wsactor answer it alike.
type replies struct {
	self *actor.PID // the process's PID, without a request ID

	mu      sync.Mutex
	next    uint32
	pending map[uint32]*pendingReply
}

// pendingReply is one request waiting for its answer. It is pooled with its
// channel and timer, so that a request allocates neither.
type pendingReply struct {
	answer chan any // buffered 1: SendUserMessage never blocks
	timer  *time.Timer
}

var pendingPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pendingReply{answer: make(chan any, 1), timer: t}
}}

// newReplies registers the runtime's replies process in system under a name
// no other process takes: the server's supervisor name with a suffix that no
// server name can have, and a sequence number, so that a server stopped and
// made again under its name in the same actor system registers anew.
func newReplies(system *actor.ActorSystem, server string) *replies {
	r := &replies{pending: make(map[uint32]*pendingReply)}
	id := SupervisorPrefix + server + "-replies" + system.ProcessRegistry.NextID()
	r.self, _ = system.ProcessRegistry.Add(r, id) // the sequence number makes the name unique
	return r
}

// register returns a new request's ID and the pendingReply its answer will
// reach. The caller must call done with both once it stops waiting.
func (r *replies) register() (uint32, *pendingReply) {
	p := pendingPool.Get().(*pendingReply)
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		// 0 means no request ID to protoactor; skip it and the IDs of
		// requests still waiting after the counter wrapped around.
		r.next++
		if _, busy := r.pending[r.next]; r.next != 0 && !busy {
			r.pending[r.next] = p
			return r.next, p
		}
	}
}

// done forgets request id: an answer that arrives later is dropped. p goes
// back to the pool with an empty channel and a stopped timer.
func (r *replies) done(id uint32, p *pendingReply) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
	p.timer.Stop()
	select {
	case <-p.answer: // answered after the caller gave up
	default:
	}
	pendingPool.Put(p)
}

// sender is the PID a request names as its sender, carrying its ID.
func (r *replies) sender(id uint32) *actor.PID {
	return &actor.PID{Address: r.self.Address, Id: r.self.Id, RequestId: id}
}

// SendUserMessage delivers an answer to the request its PID names: a
// wire.Result, or an *actor.DeadLetterResponse when the target did not
// exist (on the other node, or on this one when the endpoint to that node
// was down).
func (r *replies) SendUserMessage(pid *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	r.mu.Lock()
	p := r.pending[pid.GetRequestId()]
	if p != nil {
		select {
		case p.answer <- msg:
		default: // a second answer to one request: the first one counts
		}
	}
	r.mu.Unlock()
}

// SendSystemMessage drops system messages: nothing watches this process.
func (r *replies) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing: the process lives as long as its actor system.
func (r *replies) Stop(*actor.PID) {}
