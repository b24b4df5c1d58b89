package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	hist "github.com/wsactor/wsactor/internal/metrics"
)

// Collector is a prometheus.Collector of one server's metrics (and,
// WithNode, of its cluster node's). Collect reads the runtime's counters;
// it does no I/O and takes no lock that connections need.
type Collector struct {
	srv  *wsactor.Server
	node *cluster.Node
	d    descs
}

// Option configures a Collector.
type Option func(*Collector)

// WithNode adds the cluster node's metrics: members, isolation, Redis
// health and outages, drops and rejoins. Give it to one collector per node
// (a node hosting two servers: to one of them), or the registry refuses
// the duplicate series.
func WithNode(n *cluster.Node) Option { return func(c *Collector) { c.node = n } }

// NewCollector returns the collector of s's metrics. Register it in a
// prometheus.Registry.
func NewCollector(s *wsactor.Server, opts ...Option) *Collector {
	c := &Collector{srv: s}
	for _, o := range opts {
		o(c)
	}
	c.d = newDescs(prometheus.Labels{"server": s.Name()})
	return c
}

// Describe sends the descriptors of every metric the collector may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.all() {
		ch <- d
	}
}

// Collect reads the counters and sends them as constant metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	d := &c.d
	st := c.srv.Stats()
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(d.open, float64(st.ConnectionsOpen))
	gauge(d.held, float64(st.ConnectionsHeld))
	gauge(d.ready, boolValue(c.srv.Ready()))
	counter(d.accepted, st.ConnectionsAccepted)
	for reason, n := range st.RejectedBy {
		counter(d.rejected, n, reason)
	}
	counter(d.msgIn, st.MessagesIn)
	counter(d.msgOut, st.MessagesOut)
	counter(d.bytesIn, st.BytesIn)
	counter(d.bytesOut, st.BytesOut)
	for _, cc := range st.Closes {
		counter(d.closes, cc.Count, strconv.Itoa(int(cc.Code)), cc.By)
	}
	counter(d.slow, st.SlowConsumerCloses)
	counter(d.dropped, st.Dropped)
	counter(d.rateLimited, st.RateLimited)
	counter(d.undecodable, st.MessagesUndecodable)
	counter(d.nodeQueueFull, st.NodeQueueFull)
	counter(d.panics, st.Panics)
	counter(d.restarts, st.Restarts)
	ch <- durationHistogram(d.mailbox, st.MailboxLatency)

	gs := c.srv.Groups().Stats()
	ch <- durationHistogram(d.bcastTime, gs.BroadcastDuration)
	ch <- countHistogram(d.bcastN, gs.BroadcastRecipients)
	for op, n := range gs.DirectoryOps {
		counter(d.dirOps, n, op)
	}
	for op, n := range gs.DirectoryErrors {
		counter(d.dirErrs, n, op)
	}

	rs := c.srv.Rooms().Stats()
	gauge(d.roomsActive, float64(rs.RoomsActive))
	ch <- durationHistogram(d.tickLate, rs.TickLateness)
	counter(d.failovers, rs.Failovers)
	counter(d.roomPanics, rs.Panics)
	counter(d.roomRestarts, rs.Restarts)
	counter(d.roomFenced, rs.Fenced)
	counter(d.roomStoreErrs, rs.StoreErrors)

	if n := c.node; n != nil {
		ns := n.Stats()
		gauge(d.members, float64(len(n.Peers())+1))
		gauge(d.isolated, boolValue(n.Isolated()))
		gauge(d.redisUp, boolValue(ns.RedisHealthy))
		counter(d.redisOutages, ns.RedisOutages)
		counter(d.drops, ns.Drops)
		counter(d.rejoins, ns.Rejoins)
		counter(d.resyncs, ns.Resyncs)
		counter(d.departures, ns.Departures)
		if l := ns.Lane; l != nil {
			gauge(d.laneSessions, float64(l.Sessions), "in")
			gauge(d.laneSessions, float64(l.Links), "out")
			counter(d.laneFrames, int64(l.FramesIn), "in")
			counter(d.laneFrames, int64(l.FramesOut), "out")
			counter(d.laneLost, int64(l.FramesLost))
			counter(d.laneRefused, int64(l.Refused))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// durationHistogram converts the runtime's power-of-two histogram of
// durations (bucket i: under 2^i µs; the last is open) to a Prometheus one
// in seconds. Its buckets' bounds are exclusive where Prometheus's are
// inclusive: a duration of exactly 2^i µs is counted one bucket up.
func durationHistogram(desc *prometheus.Desc, s hist.Snapshot) prometheus.Metric {
	buckets := make(map[float64]uint64, len(s.Counts)-1)
	var cum uint64
	for i := range len(s.Counts) - 1 {
		cum += uint64(s.Counts[i])
		buckets[hist.BucketUpper(i).Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(desc, uint64(s.Count), s.Sum.Seconds(), buckets)
}

// countHistogram converts a power-of-two histogram of counts (bucket i
// holds up to 2^i-1; the last is open).
func countHistogram(desc *prometheus.Desc, s hist.CountSnapshot) prometheus.Metric {
	buckets := make(map[float64]uint64, len(s.Counts)-1)
	var cum uint64
	for i := range len(s.Counts) - 1 {
		cum += uint64(s.Counts[i])
		buckets[float64(hist.CountBucketUpper(i))] = cum
	}
	return prometheus.MustNewConstHistogram(desc, uint64(s.Count), float64(s.Sum), buckets)
}
