package redisprovider

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// heartbeatLoop refreshes this member's key every HeartbeatInterval.
func (p *Provider) heartbeatLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		if p.cluster.ActorSystem.IsStopped() {
			p.actorSystemStopped()
			return
		}
		p.heartbeat()
	}
}

// heartbeat renews this member's key and, in the same round trip, looks for
// its tombstone (see rejoin.go).
func (p *Provider) heartbeat() {
	self := p.self.Load()
	if p.dropped.Load() {
		return // the peers no longer know this ID: Rejoin gives a new one
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.opTimeout())
	defer cancel()
	var refreshed *redis.BoolCmd
	var departed *redis.IntCmd
	_, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		refreshed = pipe.PExpire(ctx, self.key, p.opts.TTL)
		departed = pipe.Exists(ctx, p.keys.departed(self.rec.ID))
		return nil
	})
	p.observe("heartbeat", err)
	if err != nil {
		return
	}
	if departed.Val() > 0 {
		p.markDropped(self)
		return
	}
	if refreshed.Val() {
		p.lastRegistered.Store(time.Now().UnixNano())
		return
	}
	p.reregister(ctx, self, "heartbeat")
}

// registerUnlessDeparted writes a member's key (KEYS[1]) unless its
// tombstone (KEYS[2]) exists: a member its peers dropped rejoins under a new
// ID, and must never come back under the old one, which they would admit
// again for as long as the key lived.
var registerUnlessDeparted = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// reregister writes this member's key again after finding it missing: Redis
// restarted empty, was flushed or failed over, or this node could not
// refresh the key for longer than the TTL. If its peers dropped it meanwhile
// (its tombstone exists), it does not: the member rejoins instead. The
// check and the write are one script, because the poll that finds the key
// missing may run before the heartbeat that finds the tombstone, or, with
// the old incarnation, just after a Rejoin removed its key.
func (p *Provider) reregister(ctx context.Context, self *incarnation, by string) {
	written, err := registerUnlessDeparted.Run(ctx, p.client, []string{self.key, p.keys.departed(self.rec.ID)},
		self.json, p.opts.TTL.Milliseconds()).Int()
	p.observe("register", err)
	if err != nil {
		return
	}
	if written == 0 {
		p.markDropped(self)
		return
	}
	absent := time.Since(time.Unix(0, p.lastRegistered.Swap(time.Now().UnixNano())))
	p.beginGrace()
	p.logger.Warn("member key was missing from Redis; re-registered", slog.String("redis", p.redisAddr), slog.String("noticed_by", by),
		slog.Duration("since_last_refresh", absent.Round(time.Millisecond)))
	p.publish(ctx, self, eventJoin)
}

func (p *Provider) publish(ctx context.Context, self *incarnation, typ string) {
	err := p.client.Publish(ctx, p.keys.channel, encodeEvent(typ, self.rec.ID)).Err()
	p.observe("publish", err)
}
