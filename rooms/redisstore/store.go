package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsactor/wsactor/rooms"
)

// DefaultRoomTTL is Options.RoomTTL's default.
const DefaultRoomTTL = 24 * time.Hour

// TombstoneTTL is how long a deleted room's epoch is kept (rooms.Store's
// Delete: a day).
const TombstoneTTL = 24 * time.Hour

// Options configure a Store. The zero value is usable.
type Options struct {
	// KeyPrefix starts every key (see the package documentation for the
	// layout). Nodes of one cluster must share it; clusters sharing a Redis
	// must not. Default "wsactor:rooms:".
	KeyPrefix string
	// Logger reports listings in Redis that cannot be read and rooms
	// dropped because their keys expired. Failed calls are returned, not
	// logged. Default slog.Default().
	Logger *slog.Logger
	// RoomTTL is how long a room's data outlives its last write: every
	// write of its activation (Claim, Save, Publish, Release) sets it
	// again. A room abandoned without being disposed (its node died and no
	// one used it since) is then forgotten, snapshot and listing, after
	// RoomTTL. An activation that writes nothing for RoomTTL loses its
	// room: its next write fails with rooms.ErrFenced. Keep it far above
	// the snapshot interval and the reservation TTL. Default 24 h
	// (DefaultRoomTTL).
	RoomTTL time.Duration
}

// Store is a rooms.Store in Redis, shared by the nodes of a cluster. It
// keeps no state of its own; every method is one script (one round trip)
// and is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	logger  *slog.Logger
	roomTTL int64 // ms
}

var _ rooms.Store = (*Store)(nil)

// New returns a Store that keeps its data through rdb. The client's timeouts
// (DialTimeout, ReadTimeout, MaxRetries) bound how long a call takes when
// Redis is unreachable; with ContextTimeoutEnabled, the context's deadline
// bounds it too.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "wsactor:rooms:"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RoomTTL <= 0 {
		opts.RoomTTL = DefaultRoomTTL
	}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		opts.Logger.Warn("redisstore: Redis Cluster is not supported; its scripts span hash slots and will fail with CROSSSLOT")
	}
	return &Store{rdb: rdb, prefix: opts.KeyPrefix, logger: opts.Logger, roomTTL: millis(opts.RoomTTL)}
}

// millis is d in whole milliseconds, at least 1: PEXPIRE 0 would delete.
func millis(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// member is how a name appears in keys and indexes: hex-encoded, in the
// same byte order as the names.
func member(name string) string { return hex.EncodeToString([]byte(name)) }

func (s *Store) roomPrefix(kind string) string { return s.prefix + "room:" + member(kind) + ":" }
func (s *Store) resPrefix(kind string) string  { return s.prefix + "resv:" + member(kind) + ":" }
func (s *Store) listKey(kind string) string    { return s.prefix + "list:" + member(kind) }
func (s *Store) openKey(kind string) string    { return s.prefix + "open:" + member(kind) }
func (s *Store) roomKey(key rooms.Key) string  { return s.roomPrefix(key.Kind) + member(key.Name) }
func (s *Store) resKey(key rooms.Key) string   { return s.resPrefix(key.Kind) + member(key.Name) }

// keys are the keys a write of key's activation touches: its room, its
// kind's indexes and, with reservations, its reservations.
func (s *Store) keys(key rooms.Key, reservations bool) []string {
	ks := []string{s.roomKey(key), s.listKey(key.Kind), s.openKey(key.Kind)}
	if reservations {
		ks = append(ks, s.resKey(key))
	}
	return ks
}

func unmember(m string) (string, error) {
	b, err := hex.DecodeString(m)
	return string(b), err
}

// Claim implements rooms.Store. A room Redis holds no epoch for (new, or
// lost by Redis) starts at the Redis server's clock in microseconds, above
// the epochs of activations from before a loss.
func (s *Store) Claim(ctx context.Context, key rooms.Key, owner string, force bool) (int64, []byte, error) {
	f := ""
	if force {
		f = "1"
	}
	res, err := claimScript.Run(ctx, s.rdb, s.keys(key, false), owner, f, s.roomTTL, member(key.Name)).Slice()
	if err != nil {
		return 0, nil, wrap("claim room "+key.String(), err)
	}
	if len(res) == 2 && res[0] == int64(0) {
		holder, _ := res[1].(string)
		return 0, nil, &rooms.HeldError{Owner: holder}
	}
	if len(res) != 3 || res[0] != int64(1) {
		return 0, nil, fmt.Errorf("redisstore: claim room %s: unexpected reply %v", key, res)
	}
	e, _ := res[1].(string)
	epoch, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("redisstore: claim room %s: unreadable epoch %q", key, e)
	}
	var snap []byte
	if b, ok := res[2].(string); ok {
		snap = []byte(b)
	}
	return epoch, snap, nil
}

// fenced runs one of the epoch-checked scripts: reply 0 is rooms.ErrFenced
// and -1 rooms.ErrLost, returned as they are, so that callers may compare
// them either way.
func (s *Store) fenced(ctx context.Context, what string, key rooms.Key, sc *redis.Script, keys []string, args ...any) error {
	n, err := sc.Run(ctx, s.rdb, keys, args...).Int64()
	if err != nil {
		return wrap(what+" room "+key.String(), err)
	}
	switch n {
	case 0:
		return rooms.ErrFenced
	case -1:
		return rooms.ErrLost
	}
	return nil
}

// Save implements rooms.Store.
func (s *Store) Save(ctx context.Context, key rooms.Key, epoch int64, snapshot []byte) error {
	return s.fenced(ctx, "save", key, saveScript, s.keys(key, false), epoch, snapshot, s.roomTTL, member(key.Name))
}

// Release implements rooms.Store.
func (s *Store) Release(ctx context.Context, key rooms.Key, epoch int64) error {
	return s.fenced(ctx, "release", key, releaseScript, s.keys(key, false), epoch, s.roomTTL, member(key.Name))
}

// Delete implements rooms.Store. Once deleted, the activation of epoch is
// fenced too: a late write cannot bring the room back.
func (s *Store) Delete(ctx context.Context, key rooms.Key, epoch int64) error {
	return s.fenced(ctx, "delete", key, deleteScript, s.keys(key, true), epoch, millis(TombstoneTTL), member(key.Name))
}

// Publish implements rooms.Store.
func (s *Store) Publish(ctx context.Context, key rooms.Key, epoch int64, l rooms.Listing, used []string) error {
	l.Kind, l.Name = key.Kind, key.Name
	b, err := encodeListing(l)
	if err != nil {
		return fmt.Errorf("redisstore: publish room %s: %w", key, err)
	}
	free := "0"
	if l.Open && (l.Max <= 0 || l.Players < l.Max) {
		free = "1"
	}
	args := append(make([]any, 0, 5+len(used)), epoch, s.roomTTL, member(key.Name), b, free)
	for _, id := range used {
		args = append(args, id)
	}
	return s.fenced(ctx, "publish", key, publishScript, s.keys(key, true), args...)
}

// encodeListing is a listing as the scripts read it (cjson): without HTML
// escapes, which cjson would read back right but which waste bytes.
func encodeListing(l rooms.Listing) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// List implements rooms.Store. It also drops, from the kind's index, the
// rooms whose keys expired and the reserved rooms never activated whose
// reservations all expired.
func (s *Store) List(ctx context.Context, kind string) ([]rooms.Listing, error) {
	keys := []string{s.listKey(kind), s.openKey(kind)}
	res, err := listScript.Run(ctx, s.rdb, keys, s.roomPrefix(kind), s.resPrefix(kind)).Slice()
	if err != nil {
		return nil, wrap(fmt.Sprintf("list rooms of kind %q", kind), err)
	}
	if len(res) == 0 || len(res)%2 != 1 {
		return nil, fmt.Errorf("redisstore: list rooms of kind %q: unexpected reply of %d items", kind, len(res))
	}
	s.dropped(kind, res[0])
	out := make([]rooms.Listing, 0, len(res)/2)
	for i := 1; i < len(res); i += 2 {
		m, _ := res[i].(string)
		raw, _ := res[i+1].(string)
		name, err := unmember(m)
		if err != nil {
			s.logger.Warn("redisstore: unreadable name in the index", slog.String("kind", kind), slog.String("stored", m))
			continue
		}
		var l rooms.Listing
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			// Leave it out: a room whose listing cannot be read cannot be
			// matched or shown; its next Publish writes it anew.
			s.logger.Warn("redisstore: unreadable listing", slog.String("room", rooms.Key{Kind: kind, Name: name}.String()), slog.Any("err", err))
			continue
		}
		l.Kind, l.Name = kind, name
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b rooms.Listing) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// dropped logs the rooms a script forgot because their keys had expired or
// their reservations had.
func (s *Store) dropped(kind string, n any) {
	if k, _ := n.(int64); k > 0 {
		s.logger.Debug("redisstore: dropped rooms whose data expired from the listing", slog.String("kind", kind), slog.Int64("rooms", k))
	}
}

// Reserve implements rooms.Store. Reservations expire by the Redis server's
// clock, so nodes whose clocks disagree still agree on them. A ttl under a
// millisecond is one millisecond.
func (s *Store) Reserve(ctx context.Context, kind string, filter map[string]string, newName string, max int, ttl time.Duration) (string, string, error) {
	newKey := rooms.Key{Kind: kind, Name: newName}
	l := rooms.Listing{Kind: kind, Name: newName, Label: maps.Clone(filter), Max: max, Open: true}
	b, err := encodeListing(l)
	if err != nil {
		return "", "", fmt.Errorf("redisstore: reserve a seat in a room of kind %q: %w", kind, err)
	}
	f, err := json.Marshal(filter)
	if err != nil {
		return "", "", fmt.Errorf("redisstore: reserve a seat in a room of kind %q: %w", kind, err)
	}
	id := newReservation()
	args := []any{s.roomPrefix(kind), s.resPrefix(kind), member(newName), b, millis(ttl), id, f}
	res, err := reserveScript.Run(ctx, s.rdb, []string{s.listKey(kind), s.openKey(kind)}, args...).Slice()
	if err != nil {
		return "", "", wrap(fmt.Sprintf("reserve a seat in a room of kind %q", kind), err)
	}
	if len(res) != 2 {
		return "", "", fmt.Errorf("redisstore: reserve a seat in a room of kind %q: unexpected reply %v", kind, res)
	}
	s.dropped(kind, res[0])
	m, ok := res[1].(string)
	if !ok {
		return "", "", fmt.Errorf("redisstore: reserve: room %s already exists", newKey)
	}
	name, err := unmember(m)
	if err != nil {
		return "", "", fmt.Errorf("redisstore: reserve a seat in a room of kind %q: unreadable name %q in the index", kind, m)
	}
	return name, id, nil
}

// wrap says what failed. A deadline that passed, the context's or the
// client's, says that Redis did not answer in time: go-redis returns the
// context's error alone, without the dial failures it retried, and a read
// past its deadline as a bare "i/o timeout".
func wrap(what string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("redisstore: %s: no answer from Redis before the deadline: %w", what, err)
	}
	return fmt.Errorf("redisstore: %s: %w", what, err)
}

// newReservation returns an unguessable reservation, so that a client
// cannot take a seat held for another. crypto/rand.Read never fails (since
// Go 1.24 it crashes the program instead).
func newReservation() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
