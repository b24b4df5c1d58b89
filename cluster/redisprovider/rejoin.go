package redisprovider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/redis/go-redis/v9"
)

// A member that stops heartbeating for longer than the TTL (SIGSTOP, a long
// GC pause, a frozen VM, a partition from Redis) is dropped by its peers, and
// protoactor never re-admits a member ID that left a topology: the member
// would come back deaf, its peers refusing to see it while it still sees
// them. So peers leave a tombstone for every member they drop, each member
// looks for its own on every heartbeat, and one that finds it rejoins under
// a new member ID (an incarnation), which its peers see as a new member at
// the same address. Locally the member always shows itself to protoactor
// under its actor-system ID, so its own topology never changes on a rejoin.

// incarnationSep separates the actor-system ID from the number of an
// incarnation in its member ID ("<system ID>.r2").
const incarnationSep = ".r"

// departedTTL is how long a tombstone lasts: longer than any stall a
// process survives, short enough that departures of a busy cluster do not
// pile up in Redis (a tombstone is one small key).
const departedTTL = 24 * time.Hour

// incarnation is one registration of this member: the record stored under
// its member ID, and that ID's key.
type incarnation struct {
	rec  *record
	key  string
	json []byte
}

func (p *Provider) newIncarnation(rec *record) (*incarnation, error) {
	b, err := rec.encode()
	if err != nil {
		return nil, fmt.Errorf("redisprovider: encode member: %w", err)
	}
	return &incarnation{rec: rec, key: p.keys.member(rec.ID), json: b}, nil
}

// MemberID returns the member ID this node's peers know it by: its actor
// system's ID until a Rejoin, then the new incarnation's. It is "" for a
// provider started as a client, or not started.
func (p *Provider) MemberID() string {
	if s := p.self.Load(); s != nil {
		return s.rec.ID
	}
	return ""
}

// Dropped reports whether the peers dropped this member and it has not
// rejoined yet.
func (p *Provider) Dropped() bool { return p.dropped.Load() }

// ErrNotDropped is returned by Rejoin when the member was not dropped.
var ErrNotDropped = errors.New("redisprovider: this member was not dropped by its peers")

// Rejoin registers this member again under a new member ID after its peers
// dropped it (see Options.OnDropped), so that they admit it as a new member
// at the same address. It returns the new ID. It fails if Redis cannot be
// reached; call it again later.
func (p *Provider) Rejoin(ctx context.Context) (string, error) {
	p.rejoinMu.Lock()
	defer p.rejoinMu.Unlock()
	old := p.self.Load()
	if old == nil || !p.dropped.Load() {
		return "", ErrNotDropped
	}
	rec := *old.rec
	rec.ID = p.cluster.ActorSystem.ID + incarnationSep + strconv.FormatInt(p.generation.Add(1), 10)
	rec.StartedAt = time.Now().UTC()
	self, err := p.newIncarnation(&rec)
	if err != nil {
		return "", err
	}
	_, err = p.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, self.key, self.json, p.opts.TTL)
		pipe.Del(ctx, old.key) // re-registered before the tombstone was seen, perhaps
		pipe.Publish(ctx, p.keys.channel, encodeEvent(eventJoin, rec.ID))
		return nil
	})
	p.observe("rejoin", err)
	if err != nil {
		return "", fmt.Errorf("redisprovider: rejoin as %s at %s: %w", rec.ID, p.redisAddr, err)
	}
	p.self.Store(self)
	p.lastRegistered.Store(time.Now().UnixNano())
	p.dropped.Store(false)
	p.logger.Info("rejoined the cluster under a new member ID", slog.String("old_member", old.rec.ID), slog.String("member", rec.ID))
	p.poke()
	return rec.ID, nil
}

// markDropped handles this member's tombstone: heartbeats stop (the old ID
// is dead to the peers) until Rejoin, which Options.OnDropped triggers, or
// the provider itself when OnDropped is nil.
func (p *Provider) markDropped(self *incarnation) {
	if p.self.Load() != self || !p.dropped.CompareAndSwap(false, true) {
		return
	}
	p.logger.Error("the other members dropped this one: it could not renew its membership for longer than the TTL (a stalled process, a long pause or a partition); it is not reachable from them under this member ID",
		slog.String("member", self.rec.ID), slog.Duration("ttl", p.opts.TTL))
	if f := p.opts.OnDropped; f != nil {
		go f(self.rec.ID)
		return
	}
	go p.rejoinUntilDone()
}

// rejoinUntilDone retries Rejoin every heartbeat until it succeeds or the
// provider stops.
func (p *Provider) rejoinUntilDone() {
	for {
		ctx, cancel := context.WithTimeout(p.ctx, p.startTimeout())
		_, err := p.Rejoin(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrNotDropped) || !p.sleep(p.opts.HeartbeatInterval) {
			return
		}
		p.logger.Warn("could not rejoin the cluster; retrying", slog.Any("error", err))
	}
}

// buryDeparted leaves a tombstone for every member this node saw leave, so
// that one that was only stalled finds out when it resumes.
func (p *Provider) buryDeparted(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	_, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, id := range ids {
			pipe.Set(ctx, p.keys.departed(id), "1", departedTTL)
		}
		return nil
	})
	p.observe("tombstone", err)
	if err != nil {
		p.logger.Warn("could not record departed members; one that was only stalled will rejoin when this node next sees it leave",
			slog.Any("members", ids), slog.Any("error", err))
	}
}

// localView replaces this member's own entries in found by the one
// protoactor knows locally (the actor-system ID): peers track incarnations,
// the local member list only ever sees itself. self is the incarnation
// current when found was read. Every incarnation's ID is the system ID and
// a suffix (see Rejoin), and all are left out by that, not by comparing
// with self: a poll that read the key a Rejoin had just written, before
// the Rejoin made it current, would otherwise show this process a peer at
// its own address, see it leave at the next poll, and leave a tombstone
// for it, which made this member rejoin once more.
func (p *Provider) localView(self *incarnation, found map[string]*cluster.Member) {
	if self == nil {
		return
	}
	systemID := p.cluster.ActorSystem.ID
	for id := range found {
		if isIncarnationOf(id, systemID) {
			delete(found, id)
		}
	}
	m := self.rec.member()
	m.Id = systemID
	found[m.Id] = m
}

// isIncarnationOf reports whether id is a member ID of the process whose
// actor system has systemID: that ID, or one a Rejoin derived from it.
func isIncarnationOf(id, systemID string) bool {
	rest, ok := strings.CutPrefix(id, systemID)
	return ok && (rest == "" || strings.HasPrefix(rest, incarnationSep))
}
