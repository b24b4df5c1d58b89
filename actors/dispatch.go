package actors

import (
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// mailboxThroughput is how many messages a mailbox handles before it lets
// other goroutines run: protoactor's default.
const mailboxThroughput = 300

// maxIdleWorkers bounds the goroutines a runtime keeps parked for its
// mailboxes: enough for the mailboxes that run at once on a busy node, few
// enough that their stacks do not matter.
const maxIdleWorkers = 128

// workerLinger is how long a parked worker waits for a mailbox before it
// ends: a busy node keeps the workers it uses, and an idle one is back to a
// single goroutine per connection a second later.
const workerLinger = time.Second

// dispatcher runs connection mailboxes for one Runtime. protoactor's
// default starts a goroutine each time an idle mailbox gets a message: for a
// connection that is one goroutine per inbound frame, whose stack then grows
// (and is copied) twice on the way down to the socket write, about 8% of a
// server's CPU in the echo load test. Here a mailbox runs on a parked worker
// when one is idle, whose stack is already grown, and on a new goroutine
// otherwise (which parks afterwards if fewer than maxIdleWorkers are). So a
// handler that blocks holds one worker and never the others: when none is
// idle, the next mailbox gets a goroutine of its own, as with protoactor's
// dispatcher. The most recently parked worker is used first, so the ones a
// quieter load no longer needs sit at the bottom and end after workerLinger.
type dispatcher struct {
	mu      sync.Mutex
	idle    []*worker // a stack: the last parked on top
	stopped bool
}

type worker struct {
	run    chan func() // one function, or nil to end
	parked bool        // in idle; guarded by dispatcher.mu
	linger *time.Timer // ends the worker when it has been parked too long
}

var _ actor.Dispatcher = (*dispatcher)(nil)

func newDispatcher() *dispatcher { return &dispatcher{} }

// Schedule runs fn on an idle worker or a new goroutine, never on the
// caller's.
func (d *dispatcher) Schedule(fn func()) {
	d.mu.Lock()
	if n := len(d.idle); n > 0 {
		w := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		w.parked = false
		d.mu.Unlock()
		w.run <- fn // buffered, and empty while the worker was parked
		return
	}
	d.mu.Unlock()
	go d.work(fn)
}

// Throughput is protoactor's default.
func (d *dispatcher) Throughput() int { return mailboxThroughput }

func (d *dispatcher) work(fn func()) {
	w := &worker{run: make(chan func(), 1)}
	for fn != nil {
		fn()
		if !d.park(w) {
			return
		}
		if w.linger == nil {
			w.linger = time.NewTimer(workerLinger)
		} else {
			w.linger.Reset(workerLinger)
		}
		select {
		case fn = <-w.run:
		case <-w.linger.C:
			if d.unpark(w) {
				return
			}
			fn = <-w.run // Schedule took it just now: its function is on the way
		}
	}
}

// park offers w for the next Schedule, and reports false when there are
// enough idle workers or the runtime has stopped: the goroutine ends.
func (d *dispatcher) park(w *worker) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || len(d.idle) >= maxIdleWorkers {
		return false
	}
	d.idle = append(d.idle, w)
	w.parked = true
	return true
}

// unpark takes w off the idle stack, and reports false if Schedule has
// already taken it.
func (d *dispatcher) unpark(w *worker) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !w.parked {
		return false
	}
	i := slices.Index(d.idle, w)
	d.idle = slices.Delete(d.idle, i, i+1)
	w.parked = false
	return true
}

// idleWorkers reports how many workers are parked.
func (d *dispatcher) idleWorkers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.idle)
}

// stop ends the parked workers; mailboxes scheduled afterwards (a late
// message to a stopping actor) run on goroutines of their own.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	idle := d.idle
	d.idle = nil
	for _, w := range idle {
		w.parked = false
	}
	d.mu.Unlock()
	for _, w := range idle {
		w.run <- nil
	}
}
