package swarm

import (
	"testing"
	"time"

	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// TestChase: a chasing bot heads for the nearest coin and holds the
// direction until it is level with it on one axis; a bot not in the state
// wanders.
func TestChase(t *testing.T) {
	s := &swarm{cfg: Config{Targets: []string{"ws://x"}, Rooms: 1, PerRoom: 1, Duration: time.Second, WanderShare: -1}}
	if err := s.cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	b := &bot{s: s, seat: 2}
	state := func(x, y float64, coins ...gameserver.Coin) *stateMsg {
		st := &stateMsg{Items: coins}
		st.Players = append(st.Players, struct {
			Seat int     `json:"seat"`
			X    float64 `json:"x"`
			Y    float64 `json:"y"`
		}{Seat: 2, X: x, Y: y})
		return st
	}
	far := gameserver.Coin{X: 900, Y: 550}
	for _, tc := range []struct {
		name   string
		st     *stateMsg
		dx, dy int
		hold   time.Duration
	}{
		{"east", state(100, 100, gameserver.Coin{X: 340, Y: 100}, far), 1, 0, time.Second},
		{"north-west until level in x", state(500, 300, gameserver.Coin{X: 440, Y: 100}, far), -1, -1, 353553390 * time.Nanosecond},
		{"south, a short hold", state(100, 100, far, gameserver.Coin{X: 100, Y: 110}), 0, 1, chaseMin},
		{"a long way: at most TurnMax", state(0, 0, far), 1, 1, s.cfg.TurnMax},
	} {
		m, ok := b.chase(tc.st)
		if !ok || string(m.input) != string(input(tc.dx, tc.dy)) || (m.hold-tc.hold).Abs() > time.Millisecond {
			t.Errorf("%s: %s for %v (ok %v), want %s for %v", tc.name, m.input, m.hold, ok, input(tc.dx, tc.dy), tc.hold)
		}
	}
	b.seat = 5
	if _, ok := b.chase(state(100, 100, far)); ok {
		t.Error("a bot absent from the state chased")
	}
}

// TestHistogram: quantiles fall within a bucket's width of the true value,
// and merged snapshots equal the histogram of every sample.
func TestHistogram(t *testing.T) {
	var a, b, all histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * 100 * time.Microsecond // 0.1 … 100 ms
		all.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	h := all.snapshot()
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := h.Quantile(q.q); (got - q.want).Abs() > q.want/histSub {
			t.Errorf("q%.2f = %v, want %v ± 1/%d", q.q, got, q.want, histSub)
		}
	}
	m := a.snapshot().merge(b.snapshot())
	if m.Count != h.Count || m.MaxUs != h.MaxUs || len(m.Buckets) != len(h.Buckets) || m.Quantile(0.99) != h.Quantile(0.99) {
		t.Errorf("merged %+v, want %+v", m, h)
	}
	if (Hist{}).Quantile(0.5) != 0 {
		t.Error("an empty histogram has a quantile")
	}
}

// TestMergeReports: the processes of one swarm make one report; a room
// seen by two keeps its longest gap.
func TestMergeReports(t *testing.T) {
	r1 := &Report{Bots: 2, Seated: 2, States: 40, Rates: []float64{20, 19}, Reconnects: 1, SeatsKept: 1,
		CloseCodes: map[string]uint64{"1001": 1}, RoomGaps: []RoomGap{{Room: "a", GapMs: 50, SeatGapMs: 60}, {Room: "b", GapMs: 3000}}}
	r2 := &Report{Bots: 1, Seated: 1, States: 10, Rates: []float64{10},
		CloseCodes: map[string]uint64{"1001": 2}, RoomGaps: []RoomGap{{Room: "a", GapMs: 80, SeatGapMs: 90}}}
	m := MergeReports(r1, r2)
	if m.Bots != 3 || m.States != 50 || m.RateMedian != 19 || m.RateMin != 10 || m.CloseCodes["1001"] != 3 || m.SeatsKept != 1 {
		t.Errorf("merged %+v", m)
	}
	if len(m.RoomGaps) != 2 || m.RoomGaps[0].GapMs != 80 || m.RoomGaps[0].SeatGapMs != 90 || m.RoomGapMaxMs != 3000 {
		t.Errorf("room gaps %+v, max %v", m.RoomGaps, m.RoomGapMaxMs)
	}
}
