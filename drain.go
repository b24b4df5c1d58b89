package wsactor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/wsactor/wsactor/transport"
)

// Defaults of DrainOptions: Phoenix's drainer's, 10,000 connections every
// 2 s, so that a node of 50,000 clients sends them to its peers over 8 s
// rather than in one reconnection storm.
const (
	DefaultDrainBatch    = 10_000
	DefaultDrainInterval = 2 * time.Second
)

// abortGrace is how long Shutdown gives the close frames it sends when its
// context has ended, before it closes the remaining sockets: enough for a
// socket that is free to carry the frame, short enough that Shutdown returns
// promptly after its context.
const abortGrace = 50 * time.Millisecond

// DrainOptions pace how Shutdown closes the server's connections: Batch
// connections at a time, every Interval, each with 1001 "going away", so
// that the clients reconnect to the other nodes gradually. When the
// context given to Shutdown has a deadline too close for the whole plan,
// the batches come faster, so that the last is asked to close by three
// quarters of the time left (the rest is for closing handshakes, rooms'
// final snapshots and leaving the cluster). Zero fields take the defaults
// documented on them.
type DrainOptions struct {
	// Batch is how many connections are asked to close at a time.
	// Default DefaultDrainBatch (10,000); negative: all at once.
	Batch int
	// Interval is the pause between two batches. Default
	// DefaultDrainInterval (2 s).
	Interval time.Duration
}

func (o DrainOptions) withDefaults() DrainOptions {
	if o.Batch == 0 {
		o.Batch = DefaultDrainBatch
	}
	if o.Interval <= 0 {
		o.Interval = DefaultDrainInterval
	}
	return o
}

// Shutdown stops the server gracefully, bounded by ctx:
//
//  1. It stops accepting upgrades: a handshake gets "503 Service
//     Unavailable" ("server shutting down") before the upgrade, and the
//     listeners of ListenAndServe, Serve and ListenAndServeHandler close.
//  2. It drains the connections as Options.Drain says: batch after batch,
//     each connection closes with 1001 "going away" after what is queued
//     for it, and its OnClose runs.
//  3. Once every connection is gone, each room saves its last state and
//     lets go of it, for its next activation (here after a restart, or on
//     another node of a cluster); then the connection actors stop. In a
//     cluster, call Node.Stop after Shutdown: the node leaves once its rooms
//     have handed over.
//
// If ctx ends first, the connections still open get a close frame if their
// socket takes it at once, their sockets are closed, and Shutdown returns
// ctx's error without waiting for the rest (OnClose handlers and rooms'
// snapshots finish in the background). Shutdown never returns later than
// shortly after ctx ends.
//
// Shutdown may be called more than once and from several goroutines: later
// calls wait for the first to finish (or their own ctx) and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	first := false
	s.shutdownOnce.Do(func() {
		first = true
		s.shutdownErr = s.shutdown(ctx)
		close(s.shutdownDone)
	})
	if first {
		return s.shutdownErr
	}
	select {
	case <-s.shutdownDone:
		return s.shutdownErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown.Store(true)
	servers := s.httpSrvs
	s.mu.Unlock()
	// The listeners close at once; their requests in progress (the
	// application's, and handshakes) finish alongside the drain.
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.stopHTTP(ctx, servers) }()
	if s.admitted.Load() == 0 {
		s.drainedOnce.Do(func() { close(s.drained) })
	}

	errs := []error{s.drain(ctx)}
	if ctx.Err() == nil {
		select {
		case <-s.drained:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		s.abort()
	}
	errs = append(errs, <-httpDone)
	// The players are gone (their seats held): each room saves its state
	// and lets go, for its next activation, here after a restart or on
	// another node.
	if err := within(ctx, func() error { return s.rooms.Stop(ctx) }); err != nil {
		errs = append(errs, fmt.Errorf("wsactor: rooms: %w", err))
	}
	errs = append(errs, within(ctx, func() error { return s.rt.Stop(ctx) }))
	errs = append(errs, within(ctx, func() error { s.hub.Stop(); return nil }))
	if s.ownsSystem {
		s.system.Shutdown()
	}
	if err := ctx.Err(); err != nil {
		// One error for a context that ended, whichever step noticed.
		return err
	}
	return errors.Join(errs...)
}

// stopHTTP shuts the server's own http.Servers down, bounded by ctx.
func (s *Server) stopHTTP(ctx context.Context, servers []*http.Server) error {
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("wsactor: http server: %w", err))
			_ = hs.Close() // requests still running when ctx ended: their connections go now
		}
	}
	return errors.Join(errs...)
}

// drain asks the live connections to close, Options.Drain.Batch at a time.
// Connections that start meanwhile close at once. It returns ctx's error if
// ctx ended before the last batch was asked.
func (s *Server) drain(ctx context.Context) error {
	s.rt.StopAdmitting()
	conns := s.rt.Live()
	d := s.opts.Drain
	batch := d.Batch
	if batch < 0 || batch > len(conns) {
		batch = len(conns)
	}
	if batch == 0 {
		return nil
	}
	batches := (len(conns) + batch - 1) / batch
	interval := d.Interval
	if deadline, ok := ctx.Deadline(); ok && batches > 1 {
		if fit := time.Until(deadline) * 3 / 4 / time.Duration(batches-1); fit < interval {
			interval = max(fit, 0)
		}
	}
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for len(conns) > 0 {
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := min(batch, len(conns))
		for _, c := range conns[:n] {
			s.rt.AskClose(c, StatusGoingAway, transport.ReasonGoingAway)
		}
		conns = conns[n:]
		next = next.Add(interval)
	}
	return nil
}

// abort ends the connections still open when Shutdown's context has ended:
// a close frame to each whose socket is free, then, after abortGrace or
// once every connection is gone, their sockets close.
func (s *Server) abort() {
	s.rt.CloseAllSoon(StatusGoingAway, transport.ReasonGoingAway)
	t := time.NewTimer(abortGrace)
	defer t.Stop()
	select {
	case <-s.drained:
	case <-t.C:
	}
	s.rt.AbortAll(StatusGoingAway, transport.ReasonGoingAway)
}

// within runs f and returns its error, or ctx's if ctx ends first (f then
// finishes in the background). A step of Shutdown that can block on an
// actor (protoactor's StopFuture waits up to 10 s) never holds Shutdown
// past its context.
func within(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		go func() { _ = f() }()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
