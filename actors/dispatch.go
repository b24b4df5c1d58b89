package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// mailboxThroughput is how many messages a mailbox handles before it lets
// other goroutines run: protoactor's default.
const mailboxThroughput = 300

// maxIdleWorkers bounds the goroutines a runtime keeps parked for its
// mailboxes: enough for the mailboxes that run at once on a busy node, few
// enough that their stacks do not matter (GC shrinks a parked one's).
const maxIdleWorkers = 128

// dispatcher runs connection mailboxes for one Runtime. protoactor's
// default starts a goroutine each time an idle mailbox gets a message: for a
// connection that is one goroutine per inbound frame, whose stack then grows
// (and is copied) twice on the way down to the socket write — about 8% of a
// server's CPU in the echo load test. Here a mailbox runs on a parked worker
// when one is idle, whose stack is already grown, and on a new goroutine
// otherwise (which parks afterwards if fewer than maxIdleWorkers are). So a
// handler that blocks holds one worker and never the others: when none is
// idle, the next mailbox gets a goroutine of its own, as with protoactor's
// dispatcher.
type dispatcher struct {
	idle chan *worker

	mu      sync.Mutex // orders park against stop
	stopped bool
}

type worker struct {
	run chan func() // one function, or nil to exit
}

var _ actor.Dispatcher = (*dispatcher)(nil)

func newDispatcher() *dispatcher {
	return &dispatcher{idle: make(chan *worker, maxIdleWorkers)}
}

// Schedule runs fn on an idle worker or a new goroutine, never on the
// caller's.
func (d *dispatcher) Schedule(fn func()) {
	select {
	case w := <-d.idle:
		w.run <- fn // buffered: the worker took itself off, so it is empty
	default:
		go d.work(fn)
	}
}

// Throughput is protoactor's default.
func (d *dispatcher) Throughput() int { return mailboxThroughput }

func (d *dispatcher) work(fn func()) {
	var w *worker
	for fn != nil {
		fn()
		if w == nil {
			w = &worker{run: make(chan func(), 1)}
		}
		if !d.park(w) {
			return
		}
		fn = <-w.run
	}
}

// park offers w for the next Schedule, and reports false when there are
// enough idle workers or the runtime has stopped: the goroutine ends.
func (d *dispatcher) park(w *worker) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	select {
	case d.idle <- w:
		return true
	default:
		return false
	}
}

// stop ends the parked workers; mailboxes scheduled afterwards (a late
// message to a stopping actor) run on goroutines of their own.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	for {
		select {
		case w := <-d.idle:
			w.run <- nil
		default:
			return
		}
	}
}
