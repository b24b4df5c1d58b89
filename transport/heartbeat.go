package transport

import (
	"context"
	"time"
)

// The heartbeat is a timer, not a goroutine: it fires at the next ping or
// idle deadline, whichever comes first, and re-arms itself. A goroutine exists
// only while a ping waits for its pong.

// nextHeartbeat returns how long until the heartbeat must next run, and false
// when neither pings nor the idle timeout are enabled.
func (c *Conn) nextHeartbeat(now time.Time) (time.Duration, bool) {
	var d time.Duration
	if c.opts.PingInterval > 0 {
		d = c.opts.PingInterval
		if !c.nextPing.IsZero() {
			d = c.nextPing.Sub(now)
		}
	}
	if c.opts.IdleTimeout > 0 {
		idle := time.Unix(0, c.lastRead.Load()).Add(c.opts.IdleTimeout).Sub(now)
		if d == 0 || idle < d {
			d = idle
		}
	}
	if c.opts.PingInterval <= 0 && c.opts.IdleTimeout <= 0 {
		return 0, false
	}
	return max(d, time.Millisecond), true
}

func (c *Conn) beat() {
	select {
	case <-c.ending:
		return
	default:
	}
	now := time.Now()
	if c.parked.Load() {
		// The handler is behind, not the client: pongs and messages wait in
		// the socket. Check again later.
		c.lastRead.Store(now.UnixNano())
		if c.opts.PingInterval > 0 {
			c.nextPing = now.Add(c.opts.PingInterval)
		}
		if d, ok := c.nextHeartbeat(now); ok {
			c.heartbeat.Reset(d)
		}
		return
	}
	if t := c.opts.IdleTimeout; t > 0 && now.Sub(time.Unix(0, c.lastRead.Load())) >= t {
		c.Close(StatusGoingAway, ReasonIdleTimeout)
		return
	}
	if c.opts.PingInterval > 0 && !now.Before(c.nextPing) {
		// A client that sent a message within the last interval is alive:
		// ping it one interval after that message instead (at 15,000
		// chatty connections, pings were the runtime's whole CPU overhead
		// over a bare server). A client that sends but never reads is still
		// caught by WriteTimeout.
		if last := time.Unix(0, c.lastRead.Load()); last.After(c.nextPing.Add(-c.opts.PingInterval)) {
			c.nextPing = last.Add(c.opts.PingInterval)
			if d, ok := c.nextHeartbeat(now); ok {
				c.heartbeat.Reset(d)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.PongTimeout)
		err := c.ws.Ping(ctx)
		late := ctx.Err() != nil
		cancel()
		if err != nil {
			if late {
				// The client is not answering, so there is nobody to hand a
				// close frame to.
				c.CloseNow(StatusInternalError, ReasonPingTimeout)
			}
			// Otherwise the socket is already gone and the reader reports why.
			return
		}
		now = time.Now()
		c.nextPing = now.Add(c.opts.PingInterval)
	}
	if d, ok := c.nextHeartbeat(now); ok {
		c.heartbeat.Reset(d)
	}
}
