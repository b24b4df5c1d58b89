package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor/internal/wire"
	"github.com/wsactor/wsactor/transport"
	"google.golang.org/protobuf/proto"
)

// Cluster is this node's view of the other nodes of a cluster. The runtime
// uses it to fail fast: protoactor would spend ~10 s retrying a dead node's
// address before dropping the message.
//
// A view that also tells of departures (it has the method
// OnLeft(func(address, memberID string)), as the cluster package's does)
// has the runtime free what it keeps for a node, its outbox, as soon as
// the node has left and the outbox has nothing left to send. Without it,
// that happens when the runtime next adds an outbox, or on PruneRoutes.
type Cluster interface {
	// Alive reports whether the node at this actor-system address is a live member.
	Alive(address string) bool
	// Peers returns the addresses of the other live members.
	Peers() []string
}

// departures is a Cluster that tells of members leaving; f runs after
// Alive reports the member gone.
type departures interface {
	OnLeft(f func(address, memberID string))
}

// SetCluster installs the cluster view. Call it before serving.
func (rt *Runtime) SetCluster(c Cluster) {
	rt.cluster = c
	if d, ok := c.(departures); ok {
		d.OnLeft(func(string, string) { rt.PruneRoutes() })
	}
}

// System returns the actor system the connections run in.
func (rt *Runtime) System() *actor.ActorSystem { return rt.system }

// ServerName returns the name of the server the runtime belongs to.
func (rt *Runtime) ServerName() string { return rt.server }

// ClusterView returns the installed cluster view, or nil on a single node.
func (rt *Runtime) ClusterView() Cluster { return rt.cluster }

// IsLocal reports whether id names a connection of this node.
func (rt *Runtime) IsLocal(id ID) bool { return rt.isLocal(id) }

// Request sends a request to a remote actor and waits for its wire.Result.
func (rt *Runtime) Request(ctx context.Context, pid *actor.PID, msg proto.Message) error {
	return rt.request(ctx, pid, msg)
}

// NodeAlive reports whether address is this node or a live member.
func (rt *Runtime) NodeAlive(address string) bool {
	return address == rt.system.Address() || (rt.cluster != nil && rt.cluster.Alive(address))
}

// isLocal reports whether id names a connection of this node.
func (rt *Runtime) isLocal(id ID) bool {
	addr, err := id.Address()
	return err == nil && addr == rt.system.Address()
}

// request sends a request to a remote actor and waits for its Result,
// bounded by ctx and the runtime's request timeout. The answer comes back to
// the runtime's replies process under a request ID of this call (see
// replies), not to a protoactor future per call.
func (rt *Runtime) request(ctx context.Context, pid *actor.PID, msg proto.Message) error {
	return rt.await(ctx, pid.Address, func(id uint32) error {
		rt.system.Root.RequestWithCustomSender(pid, msg, rt.replies.sender(id))
		return nil
	})
}

// await registers a request, calls send with its ID, and waits for the
// answer from the node at address, bounded by ctx and the runtime's request
// timeout. An error from send (the request was not sent) returns at once.
func (rt *Runtime) await(ctx context.Context, address string, send func(id uint32) error) error {
	timeout := rt.requestTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	id, p := rt.replies.register()
	defer rt.replies.done(id, p)
	p.timer.Reset(timeout)
	if err := send(id); err != nil {
		return err
	}
	var res any
	select {
	case res = <-p.answer:
	case <-p.timer.C:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wsactor: no answer from node %s within %v: %w", address, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
	switch r := res.(type) {
	case *wire.Result:
		return statusError(r)
	case *actor.DeadLetterResponse:
		return ErrConnectionNotFound
	}
	return fmt.Errorf("wsactor: unexpected answer %T from node %s", res, address)
}

func statusError(r *wire.Result) error {
	switch r.GetStatus() {
	case wire.Status_OK:
		return nil
	case wire.Status_NOT_FOUND:
		return ErrConnectionNotFound
	case wire.Status_QUEUE_FULL:
		return ErrSendQueueFull
	case wire.Status_INVALID:
		return fmt.Errorf("wsactor: invalid request: %s", r.GetError())
	}
	return fmt.Errorf("wsactor: remote node failed: %s", r.GetError())
}

// ResultOf converts an error into the Result a remote caller receives.
func ResultOf(err error) *wire.Result {
	switch {
	case err == nil:
		return &wire.Result{}
	case errors.Is(err, ErrConnectionNotFound), errors.Is(err, ErrInvalidID):
		return &wire.Result{Status: wire.Status_NOT_FOUND, Error: err.Error()}
	case errors.Is(err, ErrSendQueueFull):
		return &wire.Result{Status: wire.Status_QUEUE_FULL}
	case errors.Is(err, ErrInvalidCloseCode):
		return &wire.Result{Status: wire.Status_INVALID, Error: err.Error()}
	}
	return &wire.Result{Status: wire.Status_FAILED, Error: err.Error()}
}

// MessageFromWire and ToWire convert data messages for the wire.
func MessageFromWire(typ int32, data []byte) Message {
	return Message{Type: transport.MessageType(typ), Data: data}
}

// WireType returns m's type as sent on the wire.
func WireType(m Message) int32 { return int32(m.Type) }

// watchStopped watches the actor pid on another node and returns a channel
// closed once it has stopped (or its node is gone), and a function that ends
// the watch. Call it before asking pid to stop: protoactor-go drops a Watch
// that reaches a node after the actor has gone (remote/endpoint_reader.go,
// lines 170-177 of v0.0.0-20260118094027-288962e52f3f; older versions
// answered it with Terminated), so a watch sent after the stop request could
// wait forever. The Watch sent here travels on the same stream as the
// request that follows and is queued to pid first (a lane answers a Watch
// of an actor that is gone with Terminated at once); the context's own Watch,
// which goes through the endpoint watcher, also reports the loss of the node.
func (rt *Runtime) watchStopped(rc remoteConn) (<-chan struct{}, func()) {
	pid := rc.pid()
	done := make(chan struct{})
	stopped := false
	watcher := rt.system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			c.Watch(pid)
		case *actor.Terminated:
			if m.Who.Equal(pid) && !stopped { // both watches may report
				stopped = true
				close(done)
				c.Stop(c.Self())
			}
		}
	}))
	// The Watch goes through the outbox, so on the same stream as the
	// request, whether that is the remote's or the lane's.
	watch := &actor.Watch{Watcher: watcher}
	_ = rc.o.sendOrPush(outItem{pid: pid, msg: watch, system: true, control: true}, func() { rt.system.Root.Send(pid, watch) })
	return done, func() { rt.system.Root.Stop(watcher) }
}
