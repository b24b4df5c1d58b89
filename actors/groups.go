package actors

import (
	"context"
	"errors"
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
// they all share its bytes and one mailbox message.
type Prepared struct{ out *outbound }

// Prepare wraps m for posting to many connections. m.Data must not change
// afterwards.
func Prepare(m Message) *Prepared { return &Prepared{out: &outbound{msg: m}} }

// Post queues p for the connection through its mailbox, without waiting.
// It never blocks: the connection's own send-queue policy applies when it
// reaches the socket.
func (c *Conn) Post(p *Prepared) {
	if !c.actorDone.Load() {
		c.rt.system.Root.Send(c.pid, p.out)
	}
}

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
