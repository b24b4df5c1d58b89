package transport

import (
	"runtime"
	"sync"
	"time"
)

// flushLinger is how long an idle flusher waits for work before it ends: a
// steady trickle of messages keeps one alive instead of starting a goroutine
// for each, and an idle process keeps none.
const flushLinger = time.Second

// flushPool is the process's flushers: at most one goroutine per CPU that
// write the queued messages of connections handed to them (push), never
// waiting on a socket (sendQueue.flush hands a full one to its writer
// goroutine). They start when work arrives and end after flushLinger idle.
type flushPool struct {
	max  int
	wake chan struct{} // a token per idle flusher taken by push

	mu      sync.Mutex
	queue   []*sendQueue // queue[head:] wait for a flusher, each at most once (it holds q.writing)
	head    int
	workers int // running, busy or idle
	idle    int // waiting on wake, and not yet given a token
}

var flushers = newFlushPool(runtime.GOMAXPROCS(0))

func newFlushPool(n int) *flushPool {
	return &flushPool{max: n, wake: make(chan struct{}, n)}
}

// push hands q to a flusher. The caller holds q's right to write.
func (p *flushPool) push(q *sendQueue) {
	p.mu.Lock()
	p.queue = append(p.queue, q)
	start := false
	switch {
	case p.idle > 0:
		p.idle--
		p.wake <- struct{}{} // never blocks: fewer tokens are out than idle flushers
	case p.workers < p.max:
		p.workers++
		start = true
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

func (p *flushPool) work() {
	var linger *time.Timer
	p.mu.Lock()
	for {
		for p.head == len(p.queue) {
			p.idle++
			p.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(flushLinger)
			} else {
				linger.Reset(flushLinger)
			}
			select {
			case <-p.wake: // push took this flusher off idle
				p.mu.Lock()
			case <-linger.C:
				p.mu.Lock()
				select {
				case <-p.wake: // a push came just as the timer fired
				default:
					p.idle--
					p.workers--
					p.mu.Unlock()
					return
				}
			}
		}
		q := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		p.mu.Unlock()
		q.flush()
		p.mu.Lock()
	}
}
