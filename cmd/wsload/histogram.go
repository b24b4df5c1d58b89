package main

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Latencies are recorded in nanoseconds in log-linear buckets: values below
// 2*subCount have a bucket each, and every power of two above is split into
// subCount buckets, so a bucket's width is under 1/subCount (0.8%) of its
// values. Recording is one atomic add, safe from every reader goroutine.
const (
	subBits  = 7
	subCount = 1 << subBits
	// maxShift caps recordable values at about 2^48 ns (three days).
	maxShift   = 40
	numBuckets = (maxShift + 2) * subCount
)

// histogram counts latencies concurrently.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	if shift > maxShift {
		return numBuckets - 1
	}
	return shift<<subBits + int(v>>shift)
}

// bucketBounds returns the smallest and largest value that falls in bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	shift := i>>subBits - 1
	m := uint64(i - shift<<subBits)
	return m << shift, (m+1)<<shift - 1
}

func (h *histogram) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	v := uint64(ns)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// hist is a histogram's serializable snapshot: the non-empty buckets as
// [index, count] pairs. Snapshots from several client processes merge
// exactly, so the orchestrator computes percentiles over all of them.
type hist struct {
	Buckets [][2]uint64 `json:"buckets"`
	Count   uint64      `json:"count"`
	SumNs   uint64      `json:"sum_ns"`
	MaxNs   uint64      `json:"max_ns"`
}

func (h *histogram) snapshot() hist {
	s := hist{Count: h.n.Load(), SumNs: h.sum.Load(), MaxNs: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// merge returns the histogram of the union of both snapshots' samples.
func (s hist) merge(o hist) hist {
	counts := make(map[uint64]uint64, len(s.Buckets)+len(o.Buckets))
	for _, b := range s.Buckets {
		counts[b[0]] += b[1]
	}
	for _, b := range o.Buckets {
		counts[b[0]] += b[1]
	}
	out := hist{Count: s.Count + o.Count, SumNs: s.SumNs + o.SumNs, MaxNs: max(s.MaxNs, o.MaxNs)}
	for i := range uint64(numBuckets) {
		if c := counts[i]; c > 0 {
			out.Buckets = append(out.Buckets, [2]uint64{i, c})
		}
	}
	return out
}

// quantile returns the value below which a fraction q of the samples fall,
// as the middle of its bucket (never above the maximum), in nanoseconds.
func (s hist) quantile(q float64) float64 {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	rank = max(rank, 1)
	var seen uint64
	for _, b := range s.Buckets {
		seen += b[1]
		if seen >= rank {
			lo, hi := bucketBounds(int(b[0]))
			return math.Min(float64(lo+hi)/2, float64(s.MaxNs))
		}
	}
	return float64(s.MaxNs)
}

// latencySummary is what the reports show, in microseconds.
type latencySummary struct {
	Count  uint64  `json:"count"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

func (s hist) summary() latencySummary {
	l := latencySummary{
		Count:  s.Count,
		P50Us:  s.quantile(0.50) / 1e3,
		P90Us:  s.quantile(0.90) / 1e3,
		P99Us:  s.quantile(0.99) / 1e3,
		P999Us: s.quantile(0.999) / 1e3,
		MaxUs:  float64(s.MaxNs) / 1e3,
	}
	if s.Count > 0 {
		l.MeanUs = float64(s.SumNs) / float64(s.Count) / 1e3
	}
	return l
}
