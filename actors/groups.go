package actors

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/wsactor/wsactor/transport"
)

// GroupService is what connections use to join groups and broadcast; the
// server installs one (package groups' Hub). It is told when connections
// open and close, so that its indexes never hold a dead connection.
type GroupService interface {
	Join(ctx context.Context, c *Conn, group string, meta map[string]string) error
	Leave(ctx context.Context, c *Conn, group string) error
	Broadcast(ctx context.Context, group string, m Message, except ...ID) error
	// Opened runs on the actor before OnOpen; Closed after OnClose.
	Opened(c *Conn)
	Closed(c *Conn)
}

// ErrNoGroups is returned when the server has no group service.
var ErrNoGroups = errors.New("wsactor: groups are not enabled on this server")

// Join adds the connection to group, with meta for others to see (a display
// name...). It leaves every group automatically when it closes.
func (c *Conn) Join(group string, meta map[string]string) error {
	if c.rt.groups == nil {
		return ErrNoGroups
	}
	return c.rt.groups.Join(c.Context(), c, group, meta)
}

// Leave removes the connection from group.
func (c *Conn) Leave(group string) error {
	if c.rt.groups == nil {
		return ErrNoGroups
	}
	return c.rt.groups.Leave(c.Context(), c, group)
}

// Broadcast sends m to every member of group (this connection included if
// it is a member), except the listed IDs.
func (c *Conn) Broadcast(group string, m Message, except ...ID) error {
	if c.rt.groups == nil {
		return ErrNoGroups
	}
	return c.rt.groups.Broadcast(c.Context(), group, m, except...)
}

// Prepared is a message serialized once to be posted to many connections:
// they all share its bytes (and, through their mailboxes, one message).
type Prepared struct{ out *outbound }

// Prepare wraps m for posting to many connections. m.Data must not change
// afterwards.
func Prepare(m Message) *Prepared { return &Prepared{out: &outbound{msg: m}} }

// Post queues p for the connection, without waiting. It never blocks: the
// connection's own send-queue policy applies.
//
// When the connection's actor runs and its mailbox is empty, with nothing
// posted and not yet handled, p goes straight into its send queue:
// everything posted to the connection before (by this goroutine or any
// other) has then been handled, so the per-sender order holds, and a
// broadcast costs each idle member
// neither a mailbox goroutine nor an actor dispatch (about a fifth of a
// delivery's CPU). The socket write is left to the transport's flushers
// (transport.Conn.Enqueue), so that a broadcast's writes spread over every
// CPU while its caller goes on. Otherwise p goes through the mailbox, behind
// what is there.
func (c *Conn) Post(p *Prepared) {
	switch c.postWay() {
	case postDirect:
		_ = c.tc.Enqueue(p.out.msg.Type, p.out.msg.Data)
	case postMailbox:
		c.rt.tell(c, p.out)
	}
}

// post queues m for the connection, as Post does a Prepared message: Post
// by ID, and the messages other nodes post, take the same way.
func (c *Conn) post(m Message) {
	switch c.postWay() {
	case postDirect:
		_ = c.tc.Enqueue(m.Type, m.Data)
	case postMailbox:
		c.rt.tell(c, &outbound{msg: m})
	}
}

// postCopy posts a copy of m, whose data the caller reuses: into a
// recycled buffer that the send queue takes over if m goes straight there,
// into one of its own if it goes through the mailbox.
func (c *Conn) postCopy(m Message) {
	switch c.postWay() {
	case postDirect:
		_ = c.tc.EnqueueRecycled(m.Type, transport.CopyBuffer(m.Data))
	case postMailbox:
		// make and copy, which the compiler turns into one allocation that
		// is not zeroed first; bytes.Clone goes through append's growth.
		data := make([]byte, len(m.Data))
		copy(data, m.Data)
		m.Data = data
		c.rt.tell(c, &outbound{msg: m})
	}
}

// postWay is how a post reaches a connection.
type postWay int

const (
	postDropped postWay = iota // the actor has stopped: its mailbox would drop it too
	postDirect                 // straight into the send queue: the actor runs and its mailbox is empty
	postMailbox                // behind what waits in the mailbox
)

// postWay says how a post reaches the connection now. Straight into the
// send queue, a closing connection refuses it, as its actor would.
func (c *Conn) postWay() postWay {
	switch {
	case c.actorDone.Load():
		return postDropped
	case c.spawned.Load() && c.inbox.idle():
		return postDirect
	}
	return postMailbox
}

// mailboxLoad is a connection mailbox's middleware: it counts what was
// posted (user and system messages alike) and not yet handled. protoactor
// calls MessagePosted before queueing a message and MessageReceived after
// the actor has handled it; a message whose handling panicked is never
// counted out, which only keeps Post on the mailbox path for that
// connection.
type mailboxLoad struct{ n atomic.Int64 }

func (l *mailboxLoad) idle() bool { return l.n.Load() == 0 }

func (l *mailboxLoad) MailboxStarted()     {}
func (l *mailboxLoad) MessagePosted(any)   { l.n.Add(1) }
func (l *mailboxLoad) MessageReceived(any) { l.n.Add(-1) }
func (l *mailboxLoad) MailboxEmpty()       {}

// PostTo sends m to another connection, by ID, through that connection's
// mailbox, wherever it runs, without waiting. Use it rather than Server.Send
// inside handlers: Send waits on the target's mailbox, and two connections
// waiting on each other would stall until their contexts end.
func (c *Conn) PostTo(id ID, m Message) error { return c.rt.Post(id, m) }

// Closed reports whether the connection has ended (its OnClose has run or is
// running).
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
