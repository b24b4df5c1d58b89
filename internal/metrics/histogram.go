package metrics

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in power-of-two buckets of microseconds (the
// first holds everything under 1 µs, the last everything from about 9
// minutes up), lock-free and without allocating: cheap enough for every
// tick of every room. Quantiles are read to within a factor of two; Max is
// exact.
type Histogram struct {
	counts [histogramBuckets]atomic.Int64
	sum    atomic.Int64 // nanoseconds
	max    atomic.Int64 // nanoseconds
}

const histogramBuckets = 30

// bucket i holds durations d with 2^(i-1) µs <= d < 2^i µs (bucket 0: d < 1 µs).
func bucketOf(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	return min(bits.Len64(us), histogramBuckets-1)
}

// BucketUpper is the upper bound of bucket i.
func BucketUpper(i int) time.Duration { return time.Duration(1<<i) * time.Microsecond }

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Snapshot is a histogram's counts at one moment.
type Snapshot struct {
	Counts [histogramBuckets]int64
	Count  int64
	Sum    time.Duration
	Max    time.Duration
}

// Snapshot reads the counts (not atomically as a whole: a concurrent
// Observe may be half counted).
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum, s.Max = time.Duration(h.sum.Load()), time.Duration(h.max.Load())
	return s
}

// Quantile returns the upper bound of the bucket that holds quantile q
// (0 < q <= 1), capped by Max; 0 for an empty histogram.
func (s Snapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := int64(q * float64(s.Count))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i, n := range s.Counts {
		seen += n
		if seen >= rank {
			return min(BucketUpper(i), s.Max)
		}
	}
	return s.Max
}

// CountHistogram counts non-negative integers (recipients of a broadcast) in
// power-of-two buckets: bucket 0 holds 0, bucket i holds 2^(i-1) to 2^i-1.
// Like Histogram it is lock-free and does not allocate.
type CountHistogram struct {
	counts [countBuckets]atomic.Int64
	sum    atomic.Int64
}

const countBuckets = 32

// Observe counts n.
func (h *CountHistogram) Observe(n int) {
	h.counts[min(bits.Len64(uint64(max(n, 0))), countBuckets-1)].Add(1)
	h.sum.Add(int64(n))
}

// CountSnapshot is a CountHistogram's counts at one moment.
type CountSnapshot struct {
	Counts [countBuckets]int64
	Count  int64
	Sum    int64
}

// CountBucketUpper is the largest value bucket i holds.
func CountBucketUpper(i int) int64 { return int64(1)<<i - 1 }

// Snapshot reads the counts (not atomically as a whole).
func (h *CountHistogram) Snapshot() CountSnapshot {
	var s CountSnapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = h.sum.Load()
	return s
}
