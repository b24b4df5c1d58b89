package actors

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

const dispatchWait = 10 * time.Second

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(dispatchWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDispatcherReusesParkedWorkers checks the point of the dispatcher:
// mailboxes that run one after another run on parked workers, not on a new
// goroutine each.
func TestDispatcherReusesParkedWorkers(t *testing.T) {
	d := newDispatcher()
	defer d.stop()
	ran := make(chan struct{})
	run := func() { ran <- struct{}{} }
	d.Schedule(run) // the first one starts a worker
	<-ran
	waitUntil(t, "the worker to park", func() bool { return d.idleWorkers() == 1 })
	const n = 1000
	before := goroutinesCreated()
	for range n {
		d.Schedule(run)
		select {
		case <-ran:
		case <-time.After(dispatchWait):
			t.Fatal("a scheduled function never ran")
		}
	}
	if created := goroutinesCreated() - before; created > n/10 {
		t.Errorf("%d goroutines created for %d mailbox runs one after another; want the parked worker reused", created, n)
	}
}

// TestDispatcherNeverWaitsForABlockedWorker checks that a mailbox whose
// handler blocks holds only its own worker: everything scheduled meanwhile
// runs, on idle workers or new goroutines, and the workers never exceed
// maxIdleWorkers once they are all idle again.
func TestDispatcherNeverWaitsForABlockedWorker(t *testing.T) {
	d := newDispatcher()
	defer d.stop()
	release := make(chan struct{})
	var blocked sync.WaitGroup
	for range maxIdleWorkers + 10 { // more than could ever be parked
		blocked.Add(1)
		d.Schedule(func() { defer blocked.Done(); <-release })
	}
	var others sync.WaitGroup
	for range 100 {
		others.Add(1)
		d.Schedule(others.Done)
	}
	done := make(chan struct{})
	go func() { others.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(dispatchWait):
		t.Fatal("mailboxes scheduled while others were blocked did not run")
	}
	close(release)
	blocked.Wait()
	waitUntil(t, "the workers to park", func() bool { return d.idleWorkers() == maxIdleWorkers })
}

// TestDispatcherStopEndsItsWorkers checks that stop leaves no goroutine
// behind, and that a mailbox scheduled afterwards still runs.
func TestDispatcherStopEndsItsWorkers(t *testing.T) {
	before := runtime.NumGoroutine()
	d := newDispatcher()
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 20 {
		wg.Add(1)
		d.Schedule(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	waitUntil(t, "the workers to park", func() bool { return d.idleWorkers() == 20 })
	d.stop()
	waitUntil(t, "the workers to end", func() bool { return runtime.NumGoroutine() <= before })
	ran := make(chan struct{})
	d.Schedule(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(dispatchWait):
		t.Fatal("a mailbox scheduled after stop never ran")
	}
	waitUntil(t, "its goroutine to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestDispatcherWorkersEndWhenIdle checks that the workers a burst needed
// end about workerLinger after it, so an idle node is back to one goroutine
// per connection.
func TestDispatcherWorkersEndWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	d := newDispatcher()
	defer d.stop()
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 30 {
		wg.Add(1)
		d.Schedule(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	waitUntil(t, "the workers to park", func() bool { return d.idleWorkers() == 30 })
	waitUntil(t, "the idle workers to end", func() bool { return d.idleWorkers() == 0 && runtime.NumGoroutine() <= before })
}
