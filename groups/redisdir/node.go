package redisdir

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/groups"
)

// NodeState is what one node holds in memory about its own connections: the
// truth that ReplaceNode writes back to Redis.
type NodeState struct {
	// Groups maps a group to the node's members of it, with their user and meta.
	Groups map[string][]groups.Member
	// Users maps a user to the node's connections of theirs.
	Users map[string][]actors.ID
	// Owner names the process that holds the address now (its cluster
	// member ID). ReplaceNode records it, so that a RemoveNode for an earlier
	// process on the same address (which crashed, and whose membership
	// expired after this one started) leaves this one's connections alone.
	// Optional.
	Owner string
}

// batchArgs bounds the arguments of one script call, so that Redis, which
// runs a script to completion before anything else, stays responsive while a
// large node is replaced or removed.
const batchArgs = 4096

// RemoveNode removes every connection of the node at address from every
// group and user, and returns what it removed: how many connections, and the
// group memberships they had (to announce as leaves: Hub.AnnounceDepartures).
// It is for a node that membership has declared dead: its connections would
// otherwise stay listed forever. It is idempotent, and several survivors may
// run it at once: each connection and each membership is removed atomically
// and reported by the one call that removed it. A node that comes back
// afterwards must call ReplaceNode.
//
// owner is the dead process's member ID (see NodeState.Owner), or "". When
// the address is recorded as held by another process, which has replaced the
// dead one's entries with its own, RemoveNode removes nothing more.
func (d *Directory) RemoveNode(ctx context.Context, address, owner string) (groups.Departures, error) {
	key, ownerKey := d.nodeKey(address), d.nodeOwnerKey(address)
	var out groups.Departures
	for {
		ids, err := d.rdb.SRandMemberN(ctx, key, batchArgs/3).Result()
		if err != nil {
			return out, fmt.Errorf("redisdir: remove node %q: %w", address, err)
		}
		if len(ids) == 0 {
			break
		}
		args := make([]any, 0, 2+3*len(ids))
		args = append(args, d.prefix, owner)
		for _, id := range ids {
			args = append(args, id, 0, 0)
		}
		superseded, err := d.sync(ctx, []string{key, ownerKey}, args, &out)
		if err != nil {
			return out, fmt.Errorf("redisdir: remove node %q: %w", address, err)
		}
		if superseded {
			d.logger.Info("redisdir: a newer process holds the address of a removed node; its connections stay",
				slog.String("node", address), slog.String("removed_owner", owner))
			return out, nil
		}
	}
	if owner != "" {
		if err := forgetOwnerScript.Run(ctx, d.rdb, []string{ownerKey}, owner).Err(); err != nil {
			return out, fmt.Errorf("redisdir: remove node %q: %w", address, err)
		}
	}
	if out.Conns > 0 {
		d.logger.Info("redisdir: removed a node's connections", slog.String("node", address), slog.Int("conns", out.Conns))
	}
	return out, nil
}

// sync runs syncScript and adds what it removed to out; superseded means the
// expected owner no longer holds the node, and nothing was done.
func (d *Directory) sync(ctx context.Context, keys []string, args []any, out *groups.Departures) (superseded bool, err error) {
	res, err := syncScript.Run(ctx, d.rdb, keys, args...).Slice()
	if err != nil {
		return false, err
	}
	removed, _ := res[0].(int64)
	if removed < 0 {
		return true, nil
	}
	left, _ := res[1].([]any)
	out.Conns += int(removed)
	for i := 0; i+2 < len(left); i += 3 {
		id, _ := left[i].(string)
		encGroup, _ := left[i+1].(string)
		value, _ := left[i+2].(string)
		group, err := b64.DecodeString(encGroup)
		if err != nil {
			d.logger.Warn("redisdir: unreadable group name", slog.String("conn", id), slog.String("stored", encGroup))
			continue
		}
		m := groups.Member{ID: actors.ID(id)}
		var r record
		if err := json.Unmarshal([]byte(value), &r); err != nil {
			d.logger.Warn("redisdir: unreadable member", slog.String("group", string(group)), slog.String("conn", id), slog.Any("err", err))
		}
		m.User, m.Meta = r.User, r.Meta
		if out.Groups == nil {
			out.Groups = make(map[string][]groups.Member)
		}
		out.Groups[string(group)] = append(out.Groups[string(group)], m)
	}
	return false, nil
}

// ReplaceNode makes Redis hold exactly state for the connections of the node
// at address: it writes every connection in state with exactly its groups,
// meta and users, then removes the node's connections that are not in state.
// A node calls it after Redis failed it (calls returned errors, so Redis may
// hold connections that have since closed and lack ones that have since
// joined) or lost its data (Epoch changed). Other nodes' connections are
// untouched. Every ID in state must belong to address.
//
// Each connection is replaced atomically: a reader sees its old entries or
// its new ones, never a mix and never none. The node as a whole is not: while
// the call runs, stale connections may still be listed beside replaced ones.
// The caller must not change its own connections' entries meanwhile (the Hub
// holds its lock), or the change may be undone. On error, part of the state
// may be written; calling again is safe.
//
// It returns what it removed: connections, and group memberships that
// ended (even when the call fails part way). Whether to announce them as
// leaves is the caller's choice: the Hub announced those of its own
// closes and leaves already, even while Redis was down, but not those of an
// earlier process on the same address, which a node clears when it starts.
func (d *Directory) ReplaceNode(ctx context.Context, address string, state NodeState) (groups.Departures, error) {
	var out groups.Departures
	if err := d.replaceNode(ctx, address, state, &out); err != nil {
		return out, fmt.Errorf("redisdir: replace node %q: %w", address, err)
	}
	return out, nil
}

func (d *Directory) replaceNode(ctx context.Context, address string, state NodeState, out *groups.Departures) error {
	want, err := d.wantedConns(address, state)
	if err != nil {
		return err
	}
	key, ownerKey := d.nodeKey(address), d.nodeOwnerKey(address)
	if state.Owner != "" {
		if err := d.rdb.Set(ctx, ownerKey, state.Owner, 0).Err(); err != nil {
			return err
		}
	}
	held, err := d.nodeConns(ctx, key)
	if err != nil {
		return err
	}
	args := []any{d.prefix, ""} // the owner is this caller: no guard
	flush := func() error {
		if len(args) == 2 {
			return nil
		}
		_, err := d.sync(ctx, []string{key, ownerKey}, args, out)
		args = args[:2]
		return err
	}
	// Live connections first: after an outage, they are what listings miss.
	for _, id := range slices.Sorted(maps.Keys(want)) {
		cs := want[id]
		args = append(args, string(id), len(cs.groups))
		for _, g := range slices.Sorted(maps.Keys(cs.groups)) {
			args = append(args, g, cs.groups[g])
		}
		args = append(args, len(cs.users))
		for _, u := range slices.Sorted(maps.Keys(cs.users)) {
			args = append(args, u)
		}
		if len(args) >= batchArgs {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	stale := 0
	for _, id := range held {
		if _, ok := want[actors.ID(id)]; ok {
			continue
		}
		stale++
		if args = append(args, id, 0, 0); len(args) >= batchArgs {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	d.logger.Info("redisdir: replaced a node's connections", slog.String("node", address),
		slog.Int("conns", len(want)), slog.Int("stale", stale))
	return nil
}

// connState is what one connection should have in Redis.
type connState struct {
	groups map[string]string   // b64 group → member JSON
	users  map[string]struct{} // b64 users
}

func (d *Directory) wantedConns(address string, state NodeState) (map[actors.ID]*connState, error) {
	want := make(map[actors.ID]*connState)
	get := func(id actors.ID) (*connState, error) {
		if cs := want[id]; cs != nil {
			return cs, nil
		}
		a, err := id.Address()
		if err != nil {
			return nil, err
		}
		if a != address {
			return nil, fmt.Errorf("connection %s belongs to node %q", id, a)
		}
		cs := &connState{groups: make(map[string]string), users: make(map[string]struct{})}
		want[id] = cs
		return cs, nil
	}
	for group, members := range state.Groups {
		if !groups.ValidGroup(group) {
			return nil, fmt.Errorf("%w: %q", groups.ErrInvalidGroup, group)
		}
		for _, m := range members {
			cs, err := get(m.ID)
			if err != nil {
				return nil, err
			}
			if cs.groups[enc(group)], err = encodeMember(m); err != nil {
				return nil, err
			}
		}
	}
	for user, ids := range state.Users {
		for _, id := range ids {
			cs, err := get(id)
			if err != nil {
				return nil, err
			}
			cs.users[enc(user)] = struct{}{}
		}
	}
	return want, nil
}

// nodeConns lists a node's set without blocking Redis on a large one.
func (d *Directory) nodeConns(ctx context.Context, key string) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		ids, next, err := d.rdb.SScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	// SSCAN may return an element twice.
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Epoch returns a token that stays the same as long as Redis keeps the
// directory's data, and changes when it loses it (a restart without
// persistence, FLUSHDB, failover to an empty replica). The first call after
// such a loss, from any node, stores a new one.
//
// A node polls it (with its membership heartbeat, say) and calls ReplaceNode
// when it differs from the last one it saw, or when it is the first success
// after directory calls failed.
func (d *Directory) Epoch(ctx context.Context) (string, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	v, err := epochScript.Run(ctx, d.rdb, []string{d.epochKey()}, d.prefix, b64.EncodeToString(b[:])).Text()
	if err != nil {
		return "", fmt.Errorf("redisdir: epoch: %w", err)
	}
	return v, nil
}
