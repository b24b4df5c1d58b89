package redisprovider

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/redis/go-redis/v9"
)

// watchLoop polls the member keys every HeartbeatInterval and whenever an
// event arrives.
func (p *Provider) watchLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.pollNow:
		}
		if p.cluster.ActorSystem.IsStopped() {
			p.actorSystemStopped()
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.opTimeout())
		p.pollOnce(ctx)
		cancel()
	}
}

// pollOnce reads the member set from Redis and hands it to protoactor if it
// changed. On error the last topology stays in force.
func (p *Provider) pollOnce(ctx context.Context) {
	// The incarnation before the read: one that a Rejoin makes current
	// meanwhile may have written its key after the read, and is not missing.
	self := p.self.Load()
	found, err := p.fetch(ctx)
	p.observe("poll", err)
	if err != nil {
		return
	}
	if self != nil && !p.dropped.Load() {
		if _, ok := found[self.rec.ID]; !ok {
			p.reregister(ctx, self, "poll")
		}
	}
	p.localView(self, found)
	if p.inGrace() {
		// Keys may be missing only because Redis lost them and their owners
		// have not re-registered yet: keep known members, except those that
		// announced their leave.
		for id, m := range p.known {
			if _, ok := found[id]; !ok && !p.left.has(id) {
				found[id] = m
			}
		}
	}
	p.apply(ctx, found)
}

func (p *Provider) apply(ctx context.Context, found map[string]*cluster.Member) {
	sig := signature(found)
	if sig == p.knownSig {
		return
	}
	var joined, left []string
	for id := range found {
		if _, ok := p.known[id]; !ok {
			joined = append(joined, id)
		}
	}
	for id := range p.known {
		if _, ok := found[id]; !ok {
			left = append(left, id)
		}
	}
	sort.Strings(joined)
	sort.Strings(left)
	members := make([]*cluster.Member, 0, len(found))
	for _, m := range found {
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Id < members[j].Id })
	p.known, p.knownSig = found, sig
	p.logger.Info("cluster members changed", slog.Int("members", len(members)),
		slog.Any("joined", joined), slog.Any("left", left))
	// Before protoactor blocks them: once anything acts on a departure, a
	// member that was only stalled can find out.
	p.buryDeparted(ctx, left)
	p.cluster.MemberList.UpdateClusterTopology(members)
}

// signature identifies a member set by ids, addresses and kinds.
func signature(ms map[string]*cluster.Member) string {
	lines := make([]string, 0, len(ms))
	for _, m := range ms {
		kinds := slices.Clone(m.Kinds)
		sort.Strings(kinds)
		lines = append(lines, m.Id+" "+net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))+" "+strings.Join(kinds, ","))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// fetch returns the members registered in Redis, keyed by id.
func (p *Provider) fetch(ctx context.Context) (map[string]*cluster.Member, error) {
	keys, err := p.scanKeys(ctx)
	if err != nil {
		return nil, err
	}
	found := make(map[string]*cluster.Member, len(keys))
	if len(keys) == 0 {
		return found, nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err = p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue // expired between SCAN and GET
		}
		if err != nil {
			return nil, err
		}
		id, _ := p.keys.memberID(keys[i])
		rec, err := decodeRecord(b)
		if err == nil && rec.ID != id {
			err = errors.New("id in value differs from id in key")
		}
		if err != nil {
			p.reportBadKey(keys[i], err)
			continue
		}
		found[rec.ID] = rec.member()
	}
	return found, nil
}

func (p *Provider) reportBadKey(key string, err error) {
	if p.reportedBadKeys[key] {
		return
	}
	p.reportedBadKeys[key] = true
	p.logger.Warn("ignoring malformed member key", slog.String("key", key), slog.Any("error", err))
}

// scanKeys lists the member keys with SCAN, on every master or shard when
// the client spans several nodes.
func (p *Provider) scanKeys(ctx context.Context) ([]string, error) {
	match := p.keys.match()
	var mu sync.Mutex
	seen := map[string]bool{}
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, 512).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range keys {
				if _, ok := p.keys.memberID(k); ok {
					seen[k] = true
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	switch c := p.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	case *redis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	default:
		err = scan(ctx, p.client)
	}
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// eventLoop receives join and leave events and wakes the watcher. Pub/Sub is
// at-most-once, so a (re)subscription also triggers a poll; polling alone
// keeps the view correct if events are lost.
func (p *Provider) eventLoop() {
	defer p.wg.Done()
	ps := p.pubsub()
	awaitingPong := false
	for ps != nil {
		msg, err := ps.ReceiveTimeout(p.ctx, p.opts.TTL)
		if p.ctx.Err() != nil {
			return
		}
		var ne net.Error
		switch {
		case err == nil:
			awaitingPong = false
			switch m := msg.(type) {
			case *redis.Subscription:
				p.poke()
			case *redis.Message:
				p.handleEvent(m.Payload)
			}
		case errors.As(err, &ne) && ne.Timeout() && !awaitingPong:
			// Idle: check that the connection is alive.
			awaitingPong = true
			_ = ps.Ping(p.ctx)
		default:
			// Broken or silent connection: subscribe afresh after a pause.
			awaitingPong = false
			if !p.sleep(p.opts.HeartbeatInterval) {
				return
			}
			ps = p.resubscribe()
		}
	}
}

func (p *Provider) pubsub() *redis.PubSub {
	p.psMu.Lock()
	defer p.psMu.Unlock()
	if p.psClosed {
		return nil
	}
	return p.ps
}

// resubscribe replaces the subscription; nil once the provider halted.
func (p *Provider) resubscribe() *redis.PubSub {
	p.psMu.Lock()
	defer p.psMu.Unlock()
	if p.psClosed {
		return nil
	}
	_ = p.ps.Close()
	p.ps = p.client.Subscribe(p.ctx, p.keys.channel)
	return p.ps
}

func (p *Provider) handleEvent(payload string) {
	var ev event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		p.logger.Debug("ignoring malformed cluster event", slog.String("payload", payload), slog.Any("error", err))
		return
	}
	if self := p.self.Load(); self != nil && ev.ID == self.rec.ID {
		return
	}
	if ev.Type == eventLeave {
		p.left.add(ev.ID, 2*(p.opts.TTL+p.opts.HeartbeatInterval))
	}
	p.poke()
}

// leftSet remembers members that announced a clean leave, so a grace period
// does not keep them.
type leftSet struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (s *leftSet) add(id string, keep time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.at == nil {
		s.at = map[string]time.Time{}
	}
	for k, t := range s.at {
		if now.Sub(t) > keep {
			delete(s.at, k)
		}
	}
	s.at[id] = now
}

func (s *leftSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[id]
	return ok
}
