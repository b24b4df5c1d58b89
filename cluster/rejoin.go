package cluster

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/wsactor/wsactor"
)

// A node whose peers dropped it (it could not renew its membership for
// longer than the member TTL: SIGSTOP, a long GC pause, a frozen VM, a
// partition from Redis) must never go on serving clients as if nothing
// happened: the peers no longer send it anything, so its clients would miss
// every broadcast and message from other nodes, silently. The provider finds
// out on the first heartbeat after the node resumes (see redisprovider's
// rejoin.go). The node then takes its servers out of service, closing their
// connections with 1012 so that clients reconnect (here or elsewhere) and
// resynchronise, and rejoins under a new member ID (or, with when_dropped
// stay-out, stays out and reports not ready until restarted).

// reasonDropped is the close reason and 503 body while a node is out of its
// cluster.
const reasonDropped = "service restart: node rejoining its cluster"

// MemberID returns the ID the other members know this node by: its actor
// system's ID, or after a rejoin the new member ID.
func (n *Node) MemberID() string {
	if n.provider != nil {
		if id := n.provider.MemberID(); id != "" {
			return id
		}
	}
	return n.System.ID
}

// Isolated reports whether the other members dropped this node and it has
// not rejoined: its servers refuse upgrades and it must not be sent traffic.
func (n *Node) Isolated() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isolated
}

// followDrops waits for the provider to report that the peers dropped this
// node, and handles each drop.
func (n *Node) followDrops() {
	defer n.stopped.Done()
	for {
		select {
		case <-n.stop:
			return
		case id := <-n.dropped:
			n.handleDrop(id)
		}
	}
}

func (n *Node) handleDrop(oldID string) {
	n.mu.Lock()
	n.isolated = true
	n.stats.Drops++
	servers := slices.Clone(n.servers)
	n.mu.Unlock()
	dropped := time.Now()
	for _, s := range servers {
		s.Suspend(wsactor.StatusServiceRestart, reasonDropped)
	}
	if n.cfg.Membership.WhenDropped == WhenDroppedStayOut {
		n.logger.Error("wsactor: this node was dropped from its cluster and stays out (membership.when_dropped: stay-out): its connections were closed with 1012 and upgrades get 503; restart it",
			slog.String("member", oldID))
		return
	}
	n.logger.Warn("wsactor: this node was dropped from its cluster; its connections were closed with 1012 and it rejoins",
		slog.String("member", oldID))
	n.awaitClosed(servers)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeouts.Request)
		newID, err := n.provider.Rejoin(ctx)
		cancel()
		if err == nil {
			n.rejoined(oldID, newID, time.Since(dropped))
			return
		}
		n.logger.Warn("wsactor: could not rejoin the cluster; retrying", slog.Any("err", err))
		select {
		case <-n.stop:
			return
		case <-time.After(n.cfg.Membership.HeartbeatInterval):
		}
	}
}

// awaitClosed waits, for at most the request timeout, until the servers'
// connections have closed, so that the rejoined node starts with none: a
// client that does not answer the closing handshake is not waited for.
func (n *Node) awaitClosed(servers []*wsactor.Server) {
	deadline := time.Now().Add(n.cfg.Timeouts.Request)
	for _, s := range servers {
		for s.Stats().ConnectionsOpen > 0 && time.Now().Before(deadline) {
			select {
			case <-n.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// rejoined rewrites the node's directory entries under its new member ID
// (the peers removed them when they dropped it) and serves again.
func (n *Node) rejoined(oldID, newID string, took time.Duration) {
	n.resync()
	n.mu.Lock()
	n.isolated = false
	n.stats.Rejoins++
	n.mu.Unlock()
	for _, s := range n.liveServers() { // including any attached meanwhile
		s.Resume()
	}
	n.logger.Info("wsactor: rejoined the cluster under a new member ID", slog.String("old_member", oldID),
		slog.String("member", newID), slog.Duration("out_for", took.Round(time.Millisecond)))
}
