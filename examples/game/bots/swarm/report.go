package swarm

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what a swarm measured in its window. Rates, InterArrival and
// RoomGaps are kept whole so that the reports of several processes merge
// exactly (MergeReports); the other summaries follow from them.
type Report struct {
	Bots    int      `json:"bots"`
	Targets []string `json:"targets"`
	Mode    string   `json:"mode"` // "rooms" (Config.Create) or "quick play"
	RampSec float64  `json:"ramp_s"`
	// WindowSec is the measured window's length.
	WindowSec float64 `json:"window_s"`
	// Seated is how many bots had a seat when the window started (all, but
	// for a ramp that timed out); OnlineAtEnd how many were seated on an
	// open connection when it ended.
	Seated      int `json:"seated"`
	OnlineAtEnd int `json:"online_at_end"`
	// States is the number of states the bots received in the window: the
	// player-ticks delivered.
	States uint64 `json:"states"`
	// Rates are each bot's states per second over the window, ascending.
	Rates      []float64 `json:"rates"`
	RateMedian float64   `json:"rate_median"`
	RateP10    float64   `json:"rate_p10"`
	RateMin    float64   `json:"rate_min"`
	// InterArrival is the time between two consecutive states of a bot,
	// over every bot (across its reconnections too).
	InterArrival      Hist    `json:"inter_arrival"`
	InterArrivalP50Ms float64 `json:"inter_arrival_p50_ms"`
	InterArrivalP99Ms float64 `json:"inter_arrival_p99_ms"`
	InterArrivalMaxMs float64 `json:"inter_arrival_max_ms"`
	// Dials counts connection attempts (the first ones included), and
	// DialErrors those that failed before a WebSocket was open.
	Dials      uint64 `json:"dials"`
	DialErrors uint64 `json:"dial_errors"`
	// Reconnects counts the seats taken after a lost connection: SeatsKept
	// the same seat of the same room (by token), SeatsLost another (the
	// seat had expired). Moves counts welcomes on a connection that stayed
	// open while its room moved to another node. Stalls counts connections
	// given up after Config.Stall without a message.
	Reconnects uint64 `json:"reconnects"`
	SeatsKept  uint64 `json:"seats_kept"`
	SeatsLost  uint64 `json:"seats_lost"`
	Moves      uint64 `json:"moves"`
	Stalls     uint64 `json:"stalls"`
	// CloseCodes counts why connections ended during the run (not the
	// bots' own closes at its end): the close code, or "no close frame".
	CloseCodes map[string]uint64 `json:"close_codes,omitempty"`
	// ServerErrors counts the error envelopes received, by code.
	ServerErrors map[string]uint64 `json:"server_errors,omitempty"`
	BadMessages  uint64            `json:"bad_messages"`
	ErrorSamples []string          `json:"error_samples,omitempty"`
	// PerBot gives each bot's own figures.
	PerBot []BotResult `json:"per_bot"`
	// RoomGaps gives, for each room, the longest time in the window in
	// which none of its bots received a state.
	RoomGaps        []RoomGap `json:"room_gaps"`
	RoomGapMedianMs float64   `json:"room_gap_median_ms"`
	RoomGapMaxMs    float64   `json:"room_gap_max_ms"`
	// ClientCPUSec is the CPU time the bots' process used in the window.
	ClientCPUSec float64 `json:"client_cpu_s"`
}

// RoomGap is one room's longest gap without a state.
type RoomGap struct {
	Room string `json:"room"`
	// GapMs is the longest time in which none of the room's bots got a
	// state; StartSec and EndSec place it from the window's start. Open
	// means that it was still going on when the window ended.
	GapMs    float64 `json:"gap_ms"`
	StartSec float64 `json:"start_s"`
	EndSec   float64 `json:"end_s"`
	Open     bool    `json:"open,omitempty"`
	// SeatGapMs is the longest time one of its bots went without a state
	// (a bot that reconnected to another node waits longer than its room).
	SeatGapMs float64 `json:"seat_gap_ms"`
}

// BotResult is one bot's figures over the window.
type BotResult struct {
	Name string `json:"name"`
	// Target is the index in Targets of the node it started on (it moves
	// to the next one each time its connection is lost).
	Target int     `json:"target"`
	Room   string  `json:"room"`
	Rate   float64 `json:"rate"`
	// GapMs is the longest time it went without a state, reconnections
	// included.
	GapMs float64 `json:"gap_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report builds the window's report at its end.
func (s *swarm) report(rampEnd time.Duration, start []uint64, end time.Duration, cpu float64) *Report {
	ws := time.Duration(s.windowStart.Load())
	window := end - ws
	mode := "quick play"
	if s.cfg.Create {
		mode = "rooms"
	}
	r := &Report{
		Bots: len(s.bots), Targets: s.targets, Mode: mode, RampSec: rampEnd.Seconds(), WindowSec: window.Seconds(),
		Seated: int(s.seatedAtStart.Load()), InterArrival: s.hist.snapshot(),
		Dials: s.dials.Load(), DialErrors: s.dialErrors.Load(), Reconnects: s.reconnects.Load(),
		SeatsKept: s.seatsKept.Load(), SeatsLost: s.seatsLost.Load(), Moves: s.moves.Load(), Stalls: s.stalls.Load(),
		BadMessages: s.badMessages.Load(), ClientCPUSec: cpu,
	}
	s.mu.Lock()
	r.CloseCodes, r.ServerErrors = maps.Clone(s.closeCodes), maps.Clone(s.serverErrors)
	r.ErrorSamples = append(slices.Clone(s.dialErrorSamples), s.sessionErrorSample...)
	s.mu.Unlock()

	// openGap is how long ago, at the window's end, something last happened
	// (its start, if it never did in the window).
	openGap := func(last time.Duration) time.Duration { return end - max(last, ws) }
	seatGaps := map[*roomStats]time.Duration{}
	for i, b := range s.bots {
		n := b.states.Load() - start[i]
		r.States += n
		r.Rates = append(r.Rates, float64(n)/window.Seconds())
		if b.online.Load() {
			r.OnlineAtEnd++
		}
		gap := max(time.Duration(b.gap.Load()), openGap(time.Duration(b.last.Load())))
		res := BotResult{Name: b.name, Target: b.index % len(s.cfg.Targets), Rate: r.Rates[i], GapMs: ms(gap)}
		if rs := b.rs.Load(); rs != nil {
			seatGaps[rs] = max(seatGaps[rs], gap)
			res.Room = rs.name
		}
		r.PerBot = append(r.PerBot, res)
	}
	for _, rs := range s.rooms.sorted() {
		rs.mu.Lock()
		g := RoomGap{Room: rs.name, GapMs: ms(rs.gap), EndSec: (rs.gapEnd - ws).Seconds()}
		if open := openGap(rs.last); open > rs.gap {
			g.GapMs, g.EndSec, g.Open = ms(open), window.Seconds(), true
		}
		rs.mu.Unlock()
		g.StartSec = g.EndSec - g.GapMs/1e3
		g.SeatGapMs = ms(seatGaps[rs])
		r.RoomGaps = append(r.RoomGaps, g)
	}
	r.summarize()
	return r
}

// summarize derives the summaries from Rates, InterArrival and RoomGaps.
func (r *Report) summarize() {
	sort.Float64s(r.Rates)
	r.RateMedian, r.RateP10 = quantile(r.Rates, 0.5), quantile(r.Rates, 0.1)
	if len(r.Rates) > 0 {
		r.RateMin = r.Rates[0]
	}
	r.InterArrivalP50Ms = ms(r.InterArrival.Quantile(0.5))
	r.InterArrivalP99Ms = ms(r.InterArrival.Quantile(0.99))
	r.InterArrivalMaxMs = float64(r.InterArrival.MaxUs) / 1e3
	gaps := make([]float64, 0, len(r.RoomGaps))
	for _, g := range r.RoomGaps {
		gaps = append(gaps, g.GapMs)
	}
	sort.Float64s(gaps)
	r.RoomGapMedianMs = quantile(gaps, 0.5)
	r.RoomGapMaxMs = quantile(gaps, 1)
}

// quantile returns the q-quantile of sorted values (nearest rank), 0 for
// none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// MergeReports combines the reports of the processes of one swarm (split
// with Config.Part) into the report of the whole. A room reported by several
// processes (quick play) keeps its longest gaps.
func MergeReports(reports ...*Report) *Report {
	out := &Report{CloseCodes: map[string]uint64{}, ServerErrors: map[string]uint64{}}
	rooms := map[string]RoomGap{}
	for _, r := range reports {
		out.Bots += r.Bots
		out.Targets, out.Mode = r.Targets, r.Mode
		out.RampSec, out.WindowSec = max(out.RampSec, r.RampSec), max(out.WindowSec, r.WindowSec)
		out.Seated += r.Seated
		out.OnlineAtEnd += r.OnlineAtEnd
		out.States += r.States
		out.Rates = append(out.Rates, r.Rates...)
		out.PerBot = append(out.PerBot, r.PerBot...)
		out.InterArrival = out.InterArrival.merge(r.InterArrival)
		out.Dials += r.Dials
		out.DialErrors += r.DialErrors
		out.Reconnects += r.Reconnects
		out.SeatsKept += r.SeatsKept
		out.SeatsLost += r.SeatsLost
		out.Moves += r.Moves
		out.Stalls += r.Stalls
		out.BadMessages += r.BadMessages
		out.ClientCPUSec += r.ClientCPUSec
		for k, v := range r.CloseCodes {
			out.CloseCodes[k] += v
		}
		for k, v := range r.ServerErrors {
			out.ServerErrors[k] += v
		}
		out.ErrorSamples = append(out.ErrorSamples, r.ErrorSamples...)
		for _, g := range r.RoomGaps {
			if prev, ok := rooms[g.Room]; ok {
				g.SeatGapMs = max(g.SeatGapMs, prev.SeatGapMs)
				if prev.GapMs > g.GapMs {
					prev.SeatGapMs = g.SeatGapMs
					g = prev
				}
			}
			rooms[g.Room] = g
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rooms)) {
		out.RoomGaps = append(out.RoomGaps, rooms[name])
	}
	out.summarize()
	return out
}

// LongestRoomGap returns the room gap that lasted longest.
func (r *Report) LongestRoomGap() (RoomGap, bool) {
	if len(r.RoomGaps) == 0 {
		return RoomGap{}, false
	}
	return slices.MaxFunc(r.RoomGaps, func(a, b RoomGap) int { return cmpFloat(a.GapMs, b.GapMs) }), true
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String is the report as a person reads it.
func (r *Report) String() string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	p("bots:          %d (%s) on %d target(s); ramp %.1f s, then a window of %.1f s", r.Bots, r.Mode, len(r.Targets), r.RampSec, r.WindowSec)
	p("seated:        %d at the window's start, %d online at its end", r.Seated, r.OnlineAtEnd)
	p("states/bot/s:  median %.2f, p10 %.2f, min %.2f (%d states in the window)", r.RateMedian, r.RateP10, r.RateMin, r.States)
	p("inter-arrival: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d intervals)", r.InterArrivalP50Ms, r.InterArrivalP99Ms, r.InterArrivalMaxMs, r.InterArrival.Count)
	p("reconnects:    %d (seat kept %d, seat lost %d), rooms moved under an open connection %d, stalls %d", r.Reconnects, r.SeatsKept, r.SeatsLost, r.Moves, r.Stalls)
	p("dials:         %d, %d failed; connections ended by the server or the network: %s", r.Dials, r.DialErrors, counts(r.CloseCodes))
	p("server errors: %s; unreadable messages %d", counts(r.ServerErrors), r.BadMessages)
	g, ok := r.LongestRoomGap()
	if ok {
		open := ""
		if g.Open {
			open = ", still open at the end"
		}
		p("room gaps:     %d rooms, longest time without a state: median %.0f ms, max %.0f ms (%s, %.1f–%.1f s into the window%s)",
			len(r.RoomGaps), r.RoomGapMedianMs, r.RoomGapMaxMs, g.Room, g.StartSec, g.EndSec, open)
	}
	p("client CPU:    %.1f s (%.0f%% of a core)", r.ClientCPUSec, 100*r.ClientCPUSec/max(r.WindowSec, 1e-9))
	for _, e := range r.ErrorSamples {
		p("  e.g. %s", e)
	}
	return sb.String()
}

func counts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Progress is a report during the run.
type Progress struct {
	Phase   string        // "ramp" or "window"
	Elapsed time.Duration // since the run started
	Bots    int
	// Online is how many bots are seated on an open connection.
	Online int
	// RateMedian and RateP10 are the states per bot per second since the
	// previous progress report.
	RateMedian, RateP10 float64
	// InterArrival is the window's so far (empty during the ramp).
	InterArrival Hist
	Reconnects   uint64
	// LongestRoomGap is the longest gap of any room so far in the window.
	LongestRoomGap time.Duration
}

func (s *swarm) progress(phase string, now, period time.Duration, prev, cur []uint64) Progress {
	p := Progress{Phase: phase, Elapsed: now, Bots: len(s.bots), InterArrival: s.hist.snapshot(), Reconnects: s.reconnects.Load()}
	rates := make([]float64, len(cur))
	for i, b := range s.bots {
		if b.online.Load() {
			p.Online++
		}
		if period > 0 {
			rates[i] = float64(cur[i]-prev[i]) / period.Seconds()
		}
	}
	sort.Float64s(rates)
	p.RateMedian, p.RateP10 = quantile(rates, 0.5), quantile(rates, 0.1)
	for _, rs := range s.rooms.sorted() {
		rs.mu.Lock()
		p.LongestRoomGap = max(p.LongestRoomGap, rs.gap)
		rs.mu.Unlock()
	}
	return p
}

// String is the progress report on one line.
func (p Progress) String() string {
	return fmt.Sprintf("%6.1fs %-6s online %d/%d  states/bot/s median %.1f p10 %.1f  inter-arrival p50 %.0fms p99 %.0fms max %.0fms  reconnects %d  longest room gap %.0fms",
		p.Elapsed.Seconds(), p.Phase, p.Online, p.Bots, p.RateMedian, p.RateP10,
		ms(p.InterArrival.Quantile(0.5)), ms(p.InterArrival.Quantile(0.99)), float64(p.InterArrival.MaxUs)/1e3,
		p.Reconnects, ms(p.LongestRoomGap))
}
