package groups

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/internal/metrics"
)

// Stats is a snapshot of a hub's counters, read by the metrics collector.
type Stats struct {
	// DirectoryOps and DirectoryErrors count the directory's calls and the
	// calls that returned an error, by operation: "join", "leave",
	// "leave_all", "members", "count", "groups", "add_user_conn",
	// "remove_user_conn", "user_conns".
	DirectoryOps, DirectoryErrors map[string]int64
	// BroadcastDuration is how long a broadcast took to reach the mailboxes
	// of this node's members of the group (one per broadcast sent here or
	// received from another node), and BroadcastRecipients how many members
	// that was.
	BroadcastDuration   metrics.Snapshot
	BroadcastRecipients metrics.CountSnapshot
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	st := Stats{
		DirectoryOps:        make(map[string]int64, numDirOps),
		DirectoryErrors:     make(map[string]int64, numDirOps),
		BroadcastDuration:   h.bcastTime.Snapshot(),
		BroadcastRecipients: h.bcastN.Snapshot(),
	}
	for op := range numDirOps {
		st.DirectoryOps[dirOpNames[op]] = h.dirStats.ops[op].Load()
		st.DirectoryErrors[dirOpNames[op]] = h.dirStats.errs[op].Load()
	}
	return st
}

// observeBroadcast records one local fan-out that began at start.
func (h *Hub) observeBroadcast(start time.Time, recipients int) {
	h.bcastTime.Observe(time.Since(start))
	h.bcastN.Observe(recipients)
}

type dirOp int

const (
	opJoin dirOp = iota
	opLeave
	opLeaveAll
	opMembers
	opCount
	opGroups
	opAddUserConn
	opRemoveUserConn
	opUserConns
	numDirOps
)

var dirOpNames = [numDirOps]string{"join", "leave", "leave_all", "members", "count", "groups", "add_user_conn", "remove_user_conn", "user_conns"}

type dirStats struct {
	ops, errs [numDirOps]atomic.Int64
}

func (s *dirStats) done(op dirOp, err error) {
	s.ops[op].Add(1)
	if err != nil {
		s.errs[op].Add(1)
	}
}

// countedDirectory counts the calls the hub makes to its directory.
type countedDirectory struct {
	d Directory
	s *dirStats
}

func (c countedDirectory) Join(ctx context.Context, group string, m Member) (bool, error) {
	ok, err := c.d.Join(ctx, group, m)
	c.s.done(opJoin, err)
	return ok, err
}

func (c countedDirectory) Leave(ctx context.Context, group string, id actors.ID) (bool, error) {
	ok, err := c.d.Leave(ctx, group, id)
	c.s.done(opLeave, err)
	return ok, err
}

func (c countedDirectory) LeaveAll(ctx context.Context, id actors.ID) ([]string, error) {
	gs, err := c.d.LeaveAll(ctx, id)
	c.s.done(opLeaveAll, err)
	return gs, err
}

func (c countedDirectory) Members(ctx context.Context, group string) ([]Member, error) {
	ms, err := c.d.Members(ctx, group)
	c.s.done(opMembers, err)
	return ms, err
}

func (c countedDirectory) Count(ctx context.Context, group string) (int, error) {
	n, err := c.d.Count(ctx, group)
	c.s.done(opCount, err)
	return n, err
}

func (c countedDirectory) Groups(ctx context.Context, id actors.ID) ([]string, error) {
	gs, err := c.d.Groups(ctx, id)
	c.s.done(opGroups, err)
	return gs, err
}

func (c countedDirectory) AddUserConn(ctx context.Context, user string, id actors.ID) error {
	err := c.d.AddUserConn(ctx, user, id)
	c.s.done(opAddUserConn, err)
	return err
}

func (c countedDirectory) RemoveUserConn(ctx context.Context, user string, id actors.ID) error {
	err := c.d.RemoveUserConn(ctx, user, id)
	c.s.done(opRemoveUserConn, err)
	return err
}

func (c countedDirectory) UserConns(ctx context.Context, user string) ([]actors.ID, error) {
	ids, err := c.d.UserConns(ctx, user)
	c.s.done(opUserConns, err)
	return ids, err
}
