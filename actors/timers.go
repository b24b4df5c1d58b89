package actors

import (
	"sync/atomic"
	"time"
)

// Timer delivers a message to the connection's Receiver after a delay, once
// or periodically, through the connection's mailbox (so the tick never runs
// concurrently with other handler methods). Timers stop when the connection
// ends and when its handler restarts.
type Timer struct {
	c       *Conn
	msg     any
	every   time.Duration
	t       *time.Timer
	stopped atomic.Bool
}

type timerTick struct{ timer *Timer }

// After delivers msg to the handler's Receive once, after d.
func (c *Conn) After(d time.Duration, msg any) *Timer { return c.startTimer(d, 0, msg) }

// Every delivers msg to the handler's Receive every d. The next tick is
// scheduled when the previous one has been handled, so ticks never pile up
// behind a slow handler.
func (c *Conn) Every(d time.Duration, msg any) *Timer { return c.startTimer(d, d, msg) }

func (c *Conn) startTimer(d, every time.Duration, msg any) *Timer {
	t := &Timer{c: c, msg: msg, every: every}
	c.mu.Lock()
	if c.timers == nil {
		c.timers = make(map[*Timer]struct{})
	}
	c.timers[t] = struct{}{}
	c.mu.Unlock()
	tick := &timerTick{timer: t}
	t.t = time.AfterFunc(d, func() { c.rt.system.Root.Send(c.pid, tick) })
	return t
}

// Stop cancels the timer. A tick already in the mailbox is discarded.
func (t *Timer) Stop() {
	if t.stopped.Swap(true) {
		return
	}
	t.t.Stop()
	t.c.mu.Lock()
	delete(t.c.timers, t)
	t.c.mu.Unlock()
}

// fired is called on the actor goroutine when a tick arrives; it reports
// whether the tick should be delivered and re-arms a periodic timer.
func (t *Timer) fired() bool {
	if t.stopped.Load() {
		return false
	}
	if t.every > 0 {
		t.t.Reset(t.every)
	} else {
		t.Stop()
	}
	return true
}

func (c *Conn) stopTimers() {
	c.mu.Lock()
	timers := c.timers
	c.timers = nil
	c.mu.Unlock()
	for t := range timers {
		t.stopped.Store(true)
		t.t.Stop()
	}
}
