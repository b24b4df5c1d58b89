package rooms

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// saver writes one activation's state to the store off the room's goroutine:
// a room keeps ticking while Redis is slow or unreachable. Writes are made
// in order, one at a time; a snapshot or a listing that is superseded before
// it is written is never written. The room hears of failures (saveResult),
// and of a lost fence, after which nothing more is written.
type saver struct {
	m     *Manager
	key   Key
	epoch int64
	room  *actor.PID

	mu          sync.Mutex
	snap        []byte   // the latest snapshot not yet written
	listing     *Listing // likewise
	used        []string // reservations the listing accounts for
	final       finalOp
	running     bool
	fenced      bool
	lostPending bool // report ErrLost instead of writing
}

type finalOp int

const (
	noFinal finalOp = iota
	releaseClaim
	deleteRoom
	finalDone
)

func newSaver(m *Manager, key Key, epoch int64, room *actor.PID) *saver {
	return &saver{m: m, key: key, epoch: epoch, room: room}
}

func (s *saver) save(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = b
	s.kick()
}

func (s *saver) publish(l Listing, used []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing = &l
	s.used = append(s.used, used...)
	s.kick()
}

// release ends the claim after the writes already asked for.
func (s *saver) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final == noFinal {
		s.final = releaseClaim
	}
	s.kick()
}

// delete forgets the room, instead of any write still waiting.
func (s *saver) delete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap, s.listing, s.used = nil, nil, nil
	s.final = deleteRoom
	s.kick()
}

// lost makes the next write report ErrLost at once: the room could not
// claim itself again yet, and tries at its next save.
func (s *saver) lost() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fenced, s.lostPending = false, true
}

// kick starts the writer goroutine if it is not running. s.mu is held.
func (s *saver) kick() {
	if s.running || s.fenced {
		return
	}
	s.running = true
	s.m.savers.Add(1)
	go s.run()
}

func (s *saver) run() {
	defer s.m.savers.Done()
	for {
		s.mu.Lock()
		snap, listing, used, final := s.snap, s.listing, s.used, s.final
		s.snap, s.listing, s.used = nil, nil, nil
		switch {
		case s.fenced:
			s.running = false
			s.mu.Unlock()
			return
		case snap != nil || listing != nil:
			final = noFinal // the last writes first
		case final == noFinal || final == finalDone:
			s.running = false
			s.mu.Unlock()
			return
		default:
			s.final = finalDone
		}
		s.mu.Unlock()

		var err error
		isListing := false
		ctx, cancel := context.WithTimeout(context.Background(), s.m.opts.StoreTimeout)
		s.mu.Lock()
		lostPending := s.lostPending
		s.lostPending = false
		s.mu.Unlock()
		switch {
		case lostPending:
			err = ErrLost
		case snap != nil:
			err = s.m.store.Save(ctx, s.key, s.epoch, snap)
			if err == nil && listing != nil {
				isListing = true
				err = s.m.store.Publish(ctx, s.key, s.epoch, *listing, used)
			}
		case listing != nil:
			isListing = true
			err = s.m.store.Publish(ctx, s.key, s.epoch, *listing, used)
		case final == releaseClaim:
			err = s.m.store.Release(ctx, s.key, s.epoch)
		case final == deleteRoom:
			err = s.m.store.Delete(ctx, s.key, s.epoch)
		}
		cancel()
		fenced, lost := errors.Is(err, ErrFenced), errors.Is(err, ErrLost)
		if fenced || lost {
			s.mu.Lock()
			s.fenced = true // this epoch writes nothing more
			s.mu.Unlock()
		}
		if err == nil && s.m.storeDown.Swap(false) {
			s.m.logger.Info("rooms: the room store answers again")
		}
		if err != nil {
			if !fenced && !lost {
				s.m.storeFailed(s.key, err)
			}
			s.m.rt.System().Root.Send(s.room, &saveResult{err: err, fenced: fenced, lost: lost, listing: isListing})
		}
	}
}

// storeFailed counts a store failure and logs it, at most once per outage
// of the manager's store (the next success ends it).
func (m *Manager) storeFailed(key Key, err error) {
	m.storeErrors.Add(1)
	if m.storeDown.Swap(true) {
		return
	}
	m.logger.Warn("rooms: the room store failed; rooms keep running in memory and their state is saved again when it answers",
		slog.String("room", key.String()), slog.Any("err", err))
}
