package redisdir

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/groups"
)

// Options configure a Directory. The zero value is usable.
type Options struct {
	// KeyPrefix starts every key (see the package documentation for the
	// layout). Nodes of one cluster must share it; clusters sharing a Redis
	// must not. Default "wsactor:".
	KeyPrefix string
	// Logger reports node clean-ups and data in Redis that cannot be read.
	// Failed calls are returned, not logged. Default slog.Default().
	Logger *slog.Logger
}

// Directory is a groups.Directory in Redis. It keeps no state of its own;
// every method is one or a few round trips and is safe for concurrent use.
type Directory struct {
	rdb    redis.UniversalClient
	prefix string
	logger *slog.Logger
}

var _ groups.Directory = (*Directory)(nil)

// New returns a Directory that stores its data through client. The client's
// timeouts (DialTimeout, ReadTimeout, MaxRetries) bound how long a call takes
// when Redis is unreachable; a context deadline bounds it too.
func New(client redis.UniversalClient, opts Options) *Directory {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "wsactor:"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, ok := client.(*redis.ClusterClient); ok {
		opts.Logger.Warn("redisdir: Redis Cluster is not supported; its scripts span hash slots and will fail with CROSSSLOT")
	}
	return &Directory{rdb: client, prefix: opts.KeyPrefix, logger: opts.Logger}
}

var b64 = base64.RawURLEncoding

func enc(s string) string { return b64.EncodeToString([]byte(s)) }

func (d *Directory) groupKey(group string) string {
	return d.prefix + "group:{" + enc(group) + "}:members"
}
func (d *Directory) connGroupsKey(id actors.ID) string {
	return d.prefix + "conn:{" + string(id) + "}:groups"
}
func (d *Directory) connUsersKey(id actors.ID) string {
	return d.prefix + "conn:{" + string(id) + "}:users"
}
func (d *Directory) userKey(user string) string { return d.prefix + "user:{" + enc(user) + "}:conns" }
func (d *Directory) nodeKey(address string) string {
	return d.prefix + "node:{" + enc(address) + "}:conns"
}
func (d *Directory) nodeOwnerKey(address string) string {
	return d.prefix + "node:{" + enc(address) + "}:owner"
}
func (d *Directory) epochKey() string { return d.prefix + "epoch" }

// record is a member's value in a group hash.
type record struct {
	User string            `json:"user,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
}

func encodeMember(m groups.Member) (string, error) {
	b, err := json.Marshal(record{User: m.User, Meta: m.Meta})
	return string(b), err
}

// Join implements groups.Directory. The ID must be a valid connection ID: its
// node address is what lets RemoveNode find it.
func (d *Directory) Join(ctx context.Context, group string, m groups.Member) (bool, error) {
	if !groups.ValidGroup(group) {
		return false, groups.ErrInvalidGroup
	}
	address, err := m.ID.Address()
	if err != nil {
		return false, fmt.Errorf("redisdir: join %q: %w", group, err)
	}
	value, err := encodeMember(m)
	if err != nil {
		return false, fmt.Errorf("redisdir: join %q: %w", group, err)
	}
	keys := []string{d.groupKey(group), d.connGroupsKey(m.ID), d.nodeKey(address)}
	n, err := joinScript.Run(ctx, d.rdb, keys, d.prefix, string(m.ID), enc(group), value).Int64()
	if err != nil {
		return false, fmt.Errorf("redisdir: join %q: %w", group, err)
	}
	return n == 1, nil
}

// Leave implements groups.Directory.
func (d *Directory) Leave(ctx context.Context, group string, id actors.ID) (bool, error) {
	address, err := id.Address()
	if err != nil || !groups.ValidGroup(group) {
		return false, nil // Join stores neither
	}
	keys := []string{d.groupKey(group), d.connGroupsKey(id), d.connUsersKey(id), d.nodeKey(address)}
	n, err := leaveScript.Run(ctx, d.rdb, keys, d.prefix, string(id), enc(group)).Int64()
	if err != nil {
		return false, fmt.Errorf("redisdir: leave %q: %w", group, err)
	}
	return n == 1, nil
}

// LeaveAll implements groups.Directory.
func (d *Directory) LeaveAll(ctx context.Context, id actors.ID) ([]string, error) {
	address, err := id.Address()
	if err != nil {
		return nil, nil
	}
	keys := []string{d.connGroupsKey(id), d.connUsersKey(id), d.nodeKey(address)}
	encoded, err := leaveAllScript.Run(ctx, d.rdb, keys, d.prefix, string(id)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisdir: leave all of %s: %w", id, err)
	}
	return d.decodeGroups(id, encoded), nil
}

// Members implements groups.Directory.
func (d *Directory) Members(ctx context.Context, group string) ([]groups.Member, error) {
	if !groups.ValidGroup(group) {
		return []groups.Member{}, nil
	}
	all, err := d.rdb.HGetAll(ctx, d.groupKey(group)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisdir: members of %q: %w", group, err)
	}
	out := make([]groups.Member, 0, len(all))
	for id, value := range all {
		m := groups.Member{ID: actors.ID(id)}
		var r record
		if err := json.Unmarshal([]byte(value), &r); err != nil {
			// Still list the connection: it is there, only its details are lost.
			d.logger.Warn("redisdir: unreadable member", slog.String("group", group), slog.String("conn", id), slog.Any("err", err))
		}
		m.User, m.Meta = r.User, r.Meta
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b groups.Member) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Count implements groups.Directory: one HLEN.
func (d *Directory) Count(ctx context.Context, group string) (int, error) {
	if !groups.ValidGroup(group) {
		return 0, nil
	}
	n, err := d.rdb.HLen(ctx, d.groupKey(group)).Result()
	if err != nil {
		return 0, fmt.Errorf("redisdir: count of %q: %w", group, err)
	}
	return int(n), nil
}

// Groups implements groups.Directory.
func (d *Directory) Groups(ctx context.Context, id actors.ID) ([]string, error) {
	encoded, err := d.rdb.SMembers(ctx, d.connGroupsKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisdir: groups of %s: %w", id, err)
	}
	return d.decodeGroups(id, encoded), nil
}

func (d *Directory) decodeGroups(id actors.ID, encoded []string) []string {
	out := make([]string, 0, len(encoded))
	for _, e := range encoded {
		g, err := b64.DecodeString(e)
		if err != nil {
			d.logger.Warn("redisdir: unreadable group name", slog.String("conn", string(id)), slog.String("stored", e))
			continue
		}
		out = append(out, string(g))
	}
	slices.Sort(out)
	return out
}

// AddUserConn implements groups.Directory. The ID must be a valid connection
// ID, as for Join.
func (d *Directory) AddUserConn(ctx context.Context, user string, id actors.ID) error {
	address, err := id.Address()
	if err != nil {
		return fmt.Errorf("redisdir: add connection of user %q: %w", user, err)
	}
	keys := []string{d.userKey(user), d.connUsersKey(id), d.nodeKey(address)}
	if err := addUserScript.Run(ctx, d.rdb, keys, d.prefix, string(id), enc(user)).Err(); err != nil {
		return fmt.Errorf("redisdir: add connection %s of user %q: %w", id, user, err)
	}
	return nil
}

// RemoveUserConn implements groups.Directory.
func (d *Directory) RemoveUserConn(ctx context.Context, user string, id actors.ID) error {
	address, err := id.Address()
	if err != nil {
		return nil // AddUserConn stores none
	}
	keys := []string{d.userKey(user), d.connUsersKey(id), d.connGroupsKey(id), d.nodeKey(address)}
	if err := removeUserScript.Run(ctx, d.rdb, keys, d.prefix, string(id), enc(user)).Err(); err != nil {
		return fmt.Errorf("redisdir: remove connection %s of user %q: %w", id, user, err)
	}
	return nil
}

// UserConns implements groups.Directory.
func (d *Directory) UserConns(ctx context.Context, user string) ([]actors.ID, error) {
	ids, err := d.rdb.SMembers(ctx, d.userKey(user)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisdir: connections of user %q: %w", user, err)
	}
	out := make([]actors.ID, len(ids))
	for i, id := range ids {
		out[i] = actors.ID(id)
	}
	slices.Sort(out)
	return out, nil
}
