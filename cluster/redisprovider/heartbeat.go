package redisprovider

import (
	"context"
	"log/slog"
	"time"
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

func (p *Provider) heartbeat() {
	ctx, cancel := context.WithTimeout(p.ctx, p.opTimeout())
	defer cancel()
	refreshed, err := p.client.PExpire(ctx, p.selfKey, p.opts.TTL).Result()
	p.observe("heartbeat", err)
	if err != nil {
		return
	}
	if refreshed {
		p.lastRegistered.Store(time.Now().UnixNano())
		return
	}
	p.reregister(ctx, "heartbeat")
}

// reregister writes this member's key again after finding it missing: Redis
// restarted empty, was flushed or failed over, or this node could not
// refresh the key for longer than the TTL.
func (p *Provider) reregister(ctx context.Context, by string) {
	err := p.client.Set(ctx, p.selfKey, p.selfJSON, p.opts.TTL).Err()
	p.observe("register", err)
	if err != nil {
		return
	}
	absent := time.Since(time.Unix(0, p.lastRegistered.Swap(time.Now().UnixNano())))
	p.beginGrace()
	attrs := []any{slog.String("redis", p.redisAddr), slog.String("noticed_by", by),
		slog.Duration("since_last_refresh", absent.Round(time.Millisecond))}
	if absent > p.opts.TTL {
		// protoactor blocks a member id for good once it left a topology.
		attrs = append(attrs, slog.String("hint", "peers that saw this member expire will not re-admit it; restart this node if it stays isolated"))
	}
	p.logger.Warn("member key was missing from Redis; re-registered", attrs...)
	p.publish(ctx, eventJoin)
}

func (p *Provider) publish(ctx context.Context, typ string) {
	err := p.client.Publish(ctx, p.keys.channel, encodeEvent(typ, p.self.ID)).Err()
	p.observe("publish", err)
}
