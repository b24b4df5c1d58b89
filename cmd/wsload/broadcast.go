package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The broadcast scenario. Every connection is a member of one group (a
// Centrifugo channel), and the orchestrator asks the server for one
// broadcast at a time (POST /broadcast?seq=N): the server stamps a JSON
// message with its wall clock just before its broadcast call (wsactor's
// Groups().Broadcast, the bare loop, Centrifugo's HTTP publish API) and makes
// the call. Each client process reports when all its connections have the
// message, with the latest arrival; the orchestrator waits for every client
// process before the next broadcast. The last member's latency is the latest
// arrival over all processes, minus the stamp.
const (
	broadcastPath = "/broadcast"
	// groupName is the group (wsactor), member set (bare) or channel
	// (Centrifugo) every connection joins with -group.
	groupName = "bench"
	// maxBroadcasts bounds -broadcasts: the clients keep a counter per
	// broadcast.
	maxBroadcasts = 100_000
)

// broadcastPayload returns the JSON message for broadcast seq, size bytes
// long (or as short as the fields allow), stamped now.
func broadcastPayload(seq int64, size int) []byte {
	b := fmt.Appendf(nil, `{"seq":%d,"t":%d,"pad":"`, seq, time.Now().UnixNano())
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// scanStamp finds the "seq" and "t" fields of a broadcast message, alone or
// wrapped in a Centrifugo push, without decoding the rest: the clients read
// thousands of them per broadcast on the same cores as the server.
func scanStamp(b []byte) (seq, t int64, ok bool) {
	seq, ok1 := scanInt(b, `"seq":`)
	t, ok2 := scanInt(b, `"t":`)
	return seq, t, ok1 && ok2
}

func scanInt(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, 64)
	return v, err == nil
}

// broadcastReply is the server's answer to POST /broadcast.
type broadcastReply struct {
	Members int   `json:"members"` // connections it was posted or written to; -1: the server does not say (Centrifugo)
	CallNs  int64 `json:"call_ns"` // how long the broadcast call took
}

// serveBroadcast handles POST /broadcast?seq=N on a serve process.
func serveBroadcast(srv loadServer, size int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseInt(r.URL.Query().Get("seq"), 10, 64)
		if err != nil || seq < 1 {
			http.Error(w, "seq must be a positive integer", http.StatusBadRequest)
			return
		}
		b := broadcastPayload(seq, size)
		start := time.Now()
		n, err := srv.broadcast(r.Context(), b)
		call := time.Since(start)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(broadcastReply{Members: n, CallNs: call.Nanoseconds()})
	}
}

// requestBroadcast asks the server at addr for broadcast seq.
func requestBroadcast(ctx context.Context, addr string, seq int) (broadcastReply, error) {
	var rep broadcastReply
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+broadcastPath+"?seq="+strconv.Itoa(seq), nil)
	if err != nil {
		return rep, err
	}
	resp, err := statsClient.Do(req)
	if err != nil {
		return rep, fmt.Errorf("broadcast %d: %w", seq, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return rep, fmt.Errorf("broadcast %d: %s: %s", seq, resp.Status, bytes.TrimSpace(msg))
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// memberSet is the bare server's group: connections in a map, and a
// snapshot slice for broadcasts rebuilt after a change.
type memberSet[T comparable] struct {
	mu      sync.Mutex
	members map[T]struct{}
	snap    atomic.Pointer[[]T]
}

func (s *memberSet[T]) add(m T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members == nil {
		s.members = make(map[T]struct{})
	}
	s.members[m] = struct{}{}
	s.snap.Store(nil)
}

func (s *memberSet[T]) remove(m T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, m)
	s.snap.Store(nil)
}

func (s *memberSet[T]) list() []T {
	if p := s.snap.Load(); p != nil {
		return *p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := make([]T, 0, len(s.members))
	for m := range s.members {
		l = append(l, m)
	}
	s.snap.Store(&l)
	return l
}

// broadcastTracker counts, in a client process, the arrivals of each
// broadcast and its latest and earliest arrival, and reports a broadcast
// once every connection of the process has it.
type broadcastTracker struct {
	conns atomic.Int64 // connections still open, which must receive each broadcast
	slots []broadcastSlot
	done  chan int64 // sequence numbers complete in this process
}

type broadcastSlot struct {
	count atomic.Int64
	last  atomic.Int64 // latest latency, ns
	first atomic.Int64 // earliest latency, ns (0: none yet)
	told  atomic.Bool  // reported on done
}

func newBroadcastTracker(broadcasts int) *broadcastTracker {
	return &broadcastTracker{slots: make([]broadcastSlot, broadcasts+1), done: make(chan int64, broadcasts+1)}
}

// arrived records broadcast seq reaching one connection lat after its stamp.
// It reports whether seq is one the tracker expects.
func (bt *broadcastTracker) arrived(seq, lat int64) bool {
	if seq < 1 || seq >= int64(len(bt.slots)) {
		return false
	}
	s := &bt.slots[seq]
	for {
		v := s.last.Load()
		if lat <= v || s.last.CompareAndSwap(v, lat) {
			break
		}
	}
	for {
		v := s.first.Load()
		if (v != 0 && lat >= v) || s.first.CompareAndSwap(v, lat) {
			break
		}
	}
	if s.count.Add(1) >= bt.conns.Load() {
		bt.complete(seq)
	}
	return true
}

// complete reports seq once.
func (bt *broadcastTracker) complete(seq int64) {
	if bt.slots[seq].told.CompareAndSwap(false, true) {
		bt.done <- seq
	}
}

// dropped takes a connection that ended out of the count: the broadcasts
// every remaining connection has are complete (its missing deliveries are
// counted as lost), rather than each waiting for the orchestrator's timeout.
func (bt *broadcastTracker) dropped() {
	n := bt.conns.Add(-1)
	if n <= 0 {
		return
	}
	for seq := 1; seq < len(bt.slots); seq++ {
		if c := bt.slots[seq].count.Load(); c > 0 && c >= n {
			bt.complete(int64(seq))
		}
	}
}

// report prints "bcast SEQ LAST_NS FIRST_NS" for each complete broadcast
// until ctx ends.
func (bt *broadcastTracker) report(ctx context.Context, out io.Writer) {
	for {
		select {
		case seq := <-bt.done:
			s := &bt.slots[seq]
			fmt.Fprintf(out, "bcast %d %d %d\n", seq, s.last.Load(), s.first.Load())
		case <-ctx.Done():
			return
		}
	}
}

// broadcastRound is what the orchestrator measured in one round of
// broadcasts.
type broadcastRound struct {
	Broadcasts   int       `json:"broadcasts"`
	Complete     int       `json:"complete"` // broadcasts every client process reported in time
	Members      int       `json:"members"`  // the server's count, -1 when it does not say
	LastP50Ms    float64   `json:"last_p50_ms"`
	LastP99Ms    float64   `json:"last_p99_ms"`
	LastMaxMs    float64   `json:"last_max_ms"`
	FirstP50Ms   float64   `json:"first_p50_ms"`
	CallMeanMs   float64   `json:"call_mean_ms"`
	DeliveriesPS float64   `json:"deliveries_per_s"`
	CPUPerMember float64   `json:"server_cpu_us_per_delivery"`
	LastMs       []float64 `json:"last_ms"` // per broadcast, in order
}

// nearestRank returns the q quantile of v (sorted) by nearest rank: with 50
// broadcasts, p99 is the slowest.
func nearestRank(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v))*q+0.999999) - 1
	return v[max(0, min(i, len(v)-1))]
}
