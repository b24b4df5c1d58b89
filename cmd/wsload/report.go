package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type report struct {
	Config   runConfig     `json:"config"`
	Machine  machine       `json:"machine"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Rounds   []roundResult `json:"rounds"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	MemTotal  string `json:"mem_total"`
	LoadAvg   string `json:"load_avg"`
}

func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, LoadAvg: readLoadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	return m
}

func (m machine) String() string {
	return fmt.Sprintf("%d CPUs, %s, Linux %s, %s RAM, load average %s", m.CPUs, m.GoVersion, m.Kernel, m.MemTotal, m.LoadAvg)
}

// readLoadAvg returns the 1-, 5- and 15-minute load averages: how busy the
// shared machine was, to read the numbers against.
func readLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// readCPUPressure returns the share of the last 60 s during which runnable
// tasks waited for a CPU (/proc/pressure/cpu, "some avg60"), in percent:
// near 100 means the machine was oversubscribed throughout.
func readCPUPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return "?"
	}
	for f := range strings.FieldsSeq(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg60="); ok {
			return v + "%"
		}
	}
	return "?"
}

// roundResult is one server kind's run in one round.
type roundResult struct {
	Kind          string `json:"kind"`
	Round         int    `json:"round"`
	LoadAvgBefore string `json:"load_avg_before"`
	LoadAvgAfter  string `json:"load_avg_after"`
	CPUPressure   string `json:"cpu_pressure_avg60_after"`

	Conns       int            `json:"conns"`
	Connected   int            `json:"connected"`
	DialErrors  int            `json:"dial_errors"`
	Dropped     int            `json:"dropped_conns"`
	CloseCodes  map[string]int `json:"close_codes,omitempty"`
	Lost        uint64         `json:"lost"`
	BadMessages uint64         `json:"bad_messages"`
	WriteErrors uint64         `json:"write_errors"`
	RampSec     float64        `json:"ramp_s"`

	Sent             uint64         `json:"sent"`
	Received         uint64         `json:"received"`
	ThroughputPerSec float64        `json:"throughput_per_s"`
	Latency          latencySummary `json:"latency"`
	ClientCPUSec     float64        `json:"client_cpu_s"`

	// Server CPU during the steady phase, per message written and in cores.
	ServerCPUPerMsgUs float64 `json:"server_cpu_us_per_msg"`
	ServerCores       float64 `json:"server_cores"`
	// Growth from the empty server, per open connection: idle (after a
	// forced collection, all connected, no traffic) and under load.
	IdleHeapStackPerConn  float64 `json:"idle_heap_stack_b_per_conn"`
	IdleRSSPerConn        float64 `json:"idle_rss_b_per_conn"`
	IdleGoroutinesPerConn float64 `json:"idle_goroutines_per_conn"`
	LoadRSSPerConn        float64 `json:"load_rss_b_per_conn"`
	LoadGoroutinesPerConn float64 `json:"load_goroutines_per_conn"`

	// Broadcast is the broadcast mode's result.
	Broadcast *broadcastRound `json:"broadcast,omitempty"`

	Server struct {
		Base, Idle, Start, Load, End serverStats
	} `json:"server"`
	Clients []clientSummary `json:"clients"`
}

// derive fills the totals and the per-connection figures.
func (r *roundResult) derive() {
	r.CloseCodes = map[string]int{}
	var h hist
	var steady float64
	for i := range r.Clients {
		c := &r.Clients[i]
		r.Connected += c.Connected
		r.DialErrors += c.DialErrors
		r.Dropped += c.Dropped
		r.Lost += c.Lost
		r.BadMessages += c.BadMessages
		r.WriteErrors += c.WriteErrors
		r.Sent += c.Sent
		r.Received += c.Received
		r.ThroughputPerSec += c.ThroughputPerSec
		r.ClientCPUSec += c.CPUSec
		steady = max(steady, c.SteadySec)
		for code, n := range c.CloseCodes {
			r.CloseCodes[code] += n
		}
		h = h.merge(c.Hist)
		c.Hist = hist{} // merged; keep the JSON small
	}
	r.Latency = h.summary()
	s := &r.Server
	// Per message written: an echo, or a push.
	if n := s.End.MsgsOut - s.Start.MsgsOut; n > 0 {
		r.ServerCPUPerMsgUs = float64(s.End.CPUNs-s.Start.CPUNs) / float64(n) / 1e3
	}
	if steady > 0 {
		r.ServerCores = float64(s.End.CPUNs-s.Start.CPUNs) / 1e9 / steady
	}
	if b := r.Broadcast; b != nil && b.Complete > 0 && r.Connected > 0 {
		b.CPUPerMember = float64(s.End.CPUNs-s.Start.CPUNs) / float64(b.Complete*r.Connected) / 1e3
	}
	if n := float64(s.Idle.Open); n > 0 {
		r.IdleHeapStackPerConn = (float64(s.Idle.HeapInuse+s.Idle.StackInuse) - float64(s.Base.HeapInuse+s.Base.StackInuse)) / n
		r.IdleRSSPerConn = (float64(s.Idle.RSS) - float64(s.Base.RSS)) / n
		r.IdleGoroutinesPerConn = float64(s.Idle.Goroutines-s.Base.Goroutines) / n
	}
	if n := float64(s.Load.Open); n > 0 {
		r.LoadRSSPerConn = (float64(s.Load.RSS) - float64(s.Base.RSS)) / n
		r.LoadGoroutinesPerConn = float64(s.Load.Goroutines-s.Base.Goroutines) / n
	}
}

// errors counts everything that went wrong in the round.
func (r roundResult) errors() int {
	return r.DialErrors + r.Dropped + int(r.Lost+r.BadMessages+r.WriteErrors)
}

func (r roundResult) oneLine() string {
	if b := r.Broadcast; b != nil {
		return fmt.Sprintf("round %d %-10s conns %d/%d, errors %d; %d/%d broadcasts complete, last member p50 %.1f ms p99 %.1f ms, first p50 %.2f ms, call %.2f ms, %.0f deliveries/s, server %.1f µs CPU/delivery; idle RSS %.0f B/conn, %.2f goroutines/conn; load avg %s → %s, CPU pressure %s",
			r.Round, r.Kind, r.Connected, r.Conns, r.errors(), b.Complete, b.Broadcasts, b.LastP50Ms, b.LastP99Ms, b.FirstP50Ms, b.CallMeanMs,
			b.DeliveriesPS, b.CPUPerMember, r.IdleRSSPerConn, r.IdleGoroutinesPerConn, r.LoadAvgBefore, r.LoadAvgAfter, r.CPUPressure)
	}
	return fmt.Sprintf("round %d %-7s conns %d/%d (ramp %.1fs), errors %d; %.0f msg/s, p50 %.0fµs p99 %.0fµs max %.0fµs; server %.1f µs CPU/msg, idle %.0f B/conn (RSS %.0f), %.2f goroutines/conn; load avg %s → %s, CPU pressure %s",
		r.Round, r.Kind, r.Connected, r.Conns, r.RampSec, r.errors(), r.ThroughputPerSec,
		r.Latency.P50Us, r.Latency.P99Us, r.Latency.MaxUs,
		r.ServerCPUPerMsgUs, r.IdleHeapStackPerConn, r.IdleRSSPerConn, r.IdleGoroutinesPerConn,
		r.LoadAvgBefore, r.LoadAvgAfter, r.CPUPressure)
}

// metric is one row of the comparison table.
type metric struct {
	name   string
	value  func(roundResult) float64
	digits int
	ratio  bool
}

var metrics = []metric{
	{"connections established (median of rounds)", func(r roundResult) float64 { return float64(r.Connected) }, 0, false},
	{"errors (dial, dropped, lost, corrupt; sum of rounds)", nil, 0, false},
	{"ramp-up, s", func(r roundResult) float64 { return r.RampSec }, 1, true},
	{"throughput, msg/s", func(r roundResult) float64 { return r.ThroughputPerSec }, 0, true},
	{"latency p50, µs", func(r roundResult) float64 { return r.Latency.P50Us }, 0, true},
	{"latency p90, µs", func(r roundResult) float64 { return r.Latency.P90Us }, 0, true},
	{"latency p99, µs", func(r roundResult) float64 { return r.Latency.P99Us }, 0, true},
	{"latency max, µs", func(r roundResult) float64 { return r.Latency.MaxUs }, 0, true},
	{"server CPU per message, µs", func(r roundResult) float64 { return r.ServerCPUPerMsgUs }, 1, true},
	{"server CPU, cores", func(r roundResult) float64 { return r.ServerCores }, 2, true},
	{"idle: heap + stacks per conn, B", func(r roundResult) float64 { return r.IdleHeapStackPerConn }, 0, true},
	{"idle: RSS per conn, B", func(r roundResult) float64 { return r.IdleRSSPerConn }, 0, true},
	{"idle: goroutines per conn", func(r roundResult) float64 { return r.IdleGoroutinesPerConn }, 3, true},
	{"under load: RSS per conn, B", func(r roundResult) float64 { return r.LoadRSSPerConn }, 0, true},
	{"under load: goroutines per conn", func(r roundResult) float64 { return r.LoadGoroutinesPerConn }, 3, true},
}

// broadcastMetrics are the broadcast mode's rows, after the others.
var broadcastMetrics = []metric{
	{"broadcast: last member p50, ms", func(r roundResult) float64 { return r.Broadcast.LastP50Ms }, 1, true},
	{"broadcast: last member p99, ms", func(r roundResult) float64 { return r.Broadcast.LastP99Ms }, 1, true},
	{"broadcast: first member p50, ms", func(r roundResult) float64 { return r.Broadcast.FirstP50Ms }, 2, true},
	{"broadcast: the call, mean ms", func(r roundResult) float64 { return r.Broadcast.CallMeanMs }, 2, true},
	{"broadcast: deliveries/s", func(r roundResult) float64 { return r.Broadcast.DeliveriesPS }, 0, true},
	{"broadcast: server CPU per delivery, µs", func(r roundResult) float64 { return r.Broadcast.CPUPerMember }, 1, true},
	{"broadcast: server GC cycles during the broadcasts", func(r roundResult) float64 { return float64(r.Server.End.NumGC - r.Server.Start.NumGC) }, 0, false},
	{"broadcast: complete broadcasts (median)", func(r roundResult) float64 { return float64(r.Broadcast.Complete) }, 0, false},
}

// writeTables prints every round, then the medians per kind and each kind's
// ratio to the first, as Markdown.
func (rep *report) writeTables(w io.Writer) {
	kinds := rep.Config.Kinds
	fmt.Fprintf(w, "\n| round | kind | conns | errors | msg/s | p50 µs | p99 µs | max µs | server µs CPU/msg | idle B/conn | idle RSS B/conn | idle goroutines/conn | load avg before → after | CPU pressure |\n")
	fmt.Fprintf(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, r := range rep.Rounds {
		fmt.Fprintf(w, "| %d | %s | %s | %d | %s | %s | %s | %s | %.1f | %s | %s | %.3f | %s → %s | %s |\n",
			r.Round, r.Kind, num(float64(r.Connected), 0), r.errors(), num(r.ThroughputPerSec, 0),
			num(r.Latency.P50Us, 0), num(r.Latency.P99Us, 0), num(r.Latency.MaxUs, 0),
			r.ServerCPUPerMsgUs, num(r.IdleHeapStackPerConn, 0), num(r.IdleRSSPerConn, 0), r.IdleGoroutinesPerConn,
			r.LoadAvgBefore, r.LoadAvgAfter, r.CPUPressure)
	}
	byKind := map[string][]roundResult{}
	for _, r := range rep.Rounds {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	fmt.Fprintf(w, "\n| medians of %d round(s) | %s |", rep.Config.Rounds, strings.Join(kinds, " | "))
	for _, k := range kinds[1:] {
		fmt.Fprintf(w, " %s/%s |", k, kinds[0])
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", 2*len(kinds)-1))
	rows := metrics
	if rep.Config.Mode == modeBroadcast {
		rows = append(slices.Clone(metrics), broadcastMetrics...)
	}
	for _, m := range rows {
		fmt.Fprintf(w, "| %s |", m.name)
		vals := make([]float64, len(kinds))
		for i, k := range kinds {
			if m.value == nil {
				for _, r := range byKind[k] {
					vals[i] += float64(r.errors())
				}
			} else {
				vals[i] = median(byKind[k], m.value)
			}
			fmt.Fprintf(w, " %s |", num(vals[i], m.digits))
		}
		for i := range kinds[1:] {
			if m.ratio && vals[0] != 0 {
				fmt.Fprintf(w, " %.2f× |", vals[i+1]/vals[0])
			} else {
				fmt.Fprintf(w, " |")
			}
		}
		fmt.Fprintln(w)
	}
	codes := map[string]int{}
	for _, r := range rep.Rounds {
		for c, n := range r.CloseCodes {
			codes[r.Kind+" "+c] += n
		}
	}
	if len(codes) > 0 {
		fmt.Fprintf(w, "\nclose codes of connections dropped during a run (kind code: count; -1 = no close frame):")
		for _, k := range slices.Sorted(maps.Keys(codes)) {
			fmt.Fprintf(w, " %s: %d;", k, codes[k])
		}
		fmt.Fprintln(w)
	}
}

func median(rs []roundResult, f func(roundResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// num formats v with the given decimals and thousands separators.
func num(v float64, digits int) string {
	s := strconv.FormatFloat(v, 'f', digits, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}
