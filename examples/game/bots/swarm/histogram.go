package swarm

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Inter-arrival times are counted in microseconds, in log-linear buckets:
// each value below 2·histSub has a bucket of its own, and every power of two
// above is split into histSub buckets, so that a bucket is under 1/histSub
// (1.6%) of its values wide. Recording is one atomic add, safe from every
// bot's goroutine.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// histMaxShift caps recordable values at about 2^42 µs (50 days).
	histMaxShift = 36
	histBuckets  = (histMaxShift + 2) * histSub
)

// histogram counts durations concurrently.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // µs
}

func histBucket(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1
	if shift > histMaxShift {
		return histBuckets - 1
	}
	return shift<<histSubBits + int(us>>shift)
}

// histBounds returns the smallest and largest value that falls in bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	shift := i>>histSubBits - 1
	m := uint64(i - shift<<histSubBits)
	return m << shift, (m+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[histBucket(uint64(us))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Hist is a histogram's serializable snapshot: its non-empty buckets as
// [index, count] pairs. Snapshots of several bot processes merge exactly, so
// percentiles can be taken over all of them (MergeReports).
type Hist struct {
	Buckets [][2]uint64 `json:"buckets"`
	Count   uint64      `json:"count"`
	MaxUs   int64       `json:"max_us"`
}

func (h *histogram) snapshot() Hist {
	s := Hist{Count: h.n.Load(), MaxUs: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// merge returns the histogram of both snapshots' samples together.
func (s Hist) merge(o Hist) Hist {
	counts := make(map[uint64]uint64, len(s.Buckets)+len(o.Buckets))
	for _, b := range append(s.Buckets[:len(s.Buckets):len(s.Buckets)], o.Buckets...) {
		counts[b[0]] += b[1]
	}
	out := Hist{Count: s.Count + o.Count, MaxUs: max(s.MaxUs, o.MaxUs)}
	for i := range uint64(histBuckets) {
		if c := counts[i]; c > 0 {
			out.Buckets = append(out.Buckets, [2]uint64{i, c})
		}
	}
	return out
}

// Quantile returns the duration below which a fraction q of the samples
// fall: the middle of its bucket, never above the maximum.
func (s Hist) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(s.Count))), 1)
	var seen uint64
	for _, b := range s.Buckets {
		if seen += b[1]; seen >= rank {
			lo, hi := histBounds(int(b[0]))
			return time.Duration(min((lo+hi)/2, uint64(s.MaxUs))) * time.Microsecond
		}
	}
	return time.Duration(s.MaxUs) * time.Microsecond
}
