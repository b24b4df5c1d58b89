package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/internal/metrics"
	"github.com/wsactor/wsactor/rooms"
)

// Tick lateness: rooms ticking at 20 Hz, each tick stepping and encoding a
// game of 8 dots (gameState), against the same work done by a goroutine
// per room on a time.Ticker, in the same run.
//
// Lateness is how long after it was due a tick ran. A room's is Tick.Late
// (its due time is the previous one plus the period, or the end of the
// previous tick when that ran over); a goroutine's is the time it received
// the tick minus the time the ticker put in it (the tick's due time). Both
// are recorded exactly, per tick, by the code that runs the tick, and also
// counted in a metrics.Histogram (the rooms' is Manager.Stats().TickLateness;
// its buckets are powers of two of microseconds, so its quantiles are upper
// bounds within a factor of two).

const (
	// envTickRooms and envTickSeconds set the number of rooms and the
	// measured window (defaults 1000 rooms, 30 s).
	envTickRooms   = "WSACTOR_BENCH_TICK_ROOMS"
	envTickSeconds = "WSACTOR_BENCH_TICK_SECONDS"
	// envTickPlayerRooms and envTickPlayerSeconds are the same for
	// BenchmarkRoomTicksPlayers (defaults 1000 rooms, so 8,000 sockets, and
	// 30 s).
	envTickPlayerRooms   = "WSACTOR_BENCH_TICK_PLAYER_ROOMS"
	envTickPlayerSeconds = "WSACTOR_BENCH_TICK_PLAYER_SECONDS"

	tickRate   = 20
	tickPeriod = time.Second / tickRate
	// tickWarmup runs before the measured window: the rooms activated last
	// have ticked a few times, the first garbage collections are behind.
	tickWarmup = 2 * time.Second
)

// tickRecorder is shared by every room or goroutine of one measurement:
// while on is set, each records the lateness of its ticks in its own slice,
// and counts it in hist.
type tickRecorder struct {
	on       atomic.Bool
	capacity int // of each room's slice: the window's ticks and some
	hist     metrics.Histogram
}

func newTickRecorder(window time.Duration) *tickRecorder {
	return &tickRecorder{capacity: int(window/tickPeriod) + 64}
}

// tickResult is one measurement.
type tickResult struct {
	late   []time.Duration    // every tick of the window, every room
	hist   metrics.Snapshot   // the window's ticks, bucketed (Max: the exact maximum)
	counts [2]runtimeCounters // the process, around the window
	window time.Duration
	rooms  int
	// delivered and expected count the state messages the clients read,
	// and those that the ticks of the window sent (players benchmarks).
	delivered, expected int64
}

// quantile returns the exact nearest-rank quantile of the recorded
// lateness.
func (r *tickResult) quantile(p float64) time.Duration {
	return percentile(slices.Clone(r.late), p)
}

// report reports what the tick benchmarks report.
func (r *tickResult) report(b *testing.B) {
	ticks := float64(len(r.late))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(r.quantile(50)), "late-p50-ms")
	b.ReportMetric(ms(r.quantile(90)), "late-p90-ms")
	b.ReportMetric(ms(r.quantile(99)), "late-p99-ms")
	b.ReportMetric(ms(r.quantile(99.9)), "late-p999-ms")
	b.ReportMetric(ms(slices.Max(r.late)), "late-max-ms")
	b.ReportMetric(ms(r.hist.Quantile(0.5)), "hist-p50-ms")
	b.ReportMetric(ms(r.hist.Quantile(0.99)), "hist-p99-ms")
	// The share of the nominal ticks that ran: a room that falls behind
	// skips the ticks it missed, and so does a time.Ticker.
	b.ReportMetric(100*ticks/(float64(r.rooms)*tickRate*r.window.Seconds()), "ticks-%")
	cpu := r.counts[1].cpu - r.counts[0].cpu
	b.ReportMetric(100*cpu.Seconds()/r.window.Seconds(), "cpu-%")
	b.ReportMetric(float64(cpu)/ticks/1e3, "cpu-us/tick")
	b.ReportMetric(float64(r.counts[1].mallocs-r.counts[0].mallocs)/ticks, "allocs/tick")
	if r.expected > 0 {
		b.ReportMetric(100*float64(r.delivered)/float64(r.expected), "delivered-%")
	}
}

// tickImpl is a set of ticking rooms under test.
type tickImpl interface {
	// start starts n rooms and returns once every one ticks.
	start(n int) error
	// collect stops recording and returns every room's lateness.
	collect() ([]time.Duration, error)
	// hist is the histogram of every tick's lateness so far: the rooms'
	// is Manager.Stats().TickLateness.
	hist() metrics.Snapshot
	close() error
}

// measureTicks starts n rooms of impl, lets them warm up, and measures
// window; between is called at the start and end of the window (the players
// benchmarks count deliveries there).
func measureTicks(impl tickImpl, rec *tickRecorder, n int, warmup, window time.Duration, between func() error) (res tickResult, err error) {
	defer func() { err = errors.Join(err, impl.close()) }()
	if err := impl.start(n); err != nil {
		return res, err
	}
	time.Sleep(warmup)
	if err := between(); err != nil {
		return res, err
	}
	h0 := impl.hist()
	res.counts[0] = readCounters()
	rec.on.Store(true)
	time.Sleep(window)
	rec.on.Store(false)
	res.counts[1] = readCounters()
	h1 := impl.hist()
	if err := between(); err != nil {
		return res, err
	}
	if res.late, err = impl.collect(); err != nil {
		return res, err
	}
	if len(res.late) == 0 {
		return res, errors.New("no tick ran in the window")
	}
	res.window, res.rooms = window, n
	res.hist = histDelta(h0, h1, slices.Max(res.late))
	return res, nil
}

// histDelta is the histogram of the observations between two snapshots.
// The maximum is not in the snapshots' difference: max is the exact one.
func histDelta(a, b metrics.Snapshot, max time.Duration) metrics.Snapshot {
	var d metrics.Snapshot
	for i := range d.Counts {
		d.Counts[i] = b.Counts[i] - a.Counts[i]
		d.Count += d.Counts[i]
	}
	d.Sum, d.Max = b.Sum-a.Sum, max
	return d
}

// benchRoom is the rooms' Handler: each tick steps its game and encodes the
// state; with send, it broadcasts the state to its players.
type benchRoom struct {
	rec  *tickRecorder
	send bool
	g    gameState
	buf  []byte
	late []time.Duration
}

// tickCollect asks a benchRoom for its recorded lateness.
type tickCollect struct{ reply chan<- []time.Duration }

func newBenchRoom(rec *tickRecorder, send bool) *benchRoom {
	return &benchRoom{rec: rec, send: send, buf: make([]byte, 0, gameStateSize), late: make([]time.Duration, 0, rec.capacity)}
}

func (h *benchRoom) OnCreate(r *rooms.Room, _ []byte) error {
	seed, _ := strconv.Atoi(r.Name()[1:])
	h.g = newGameState(seed)
	return nil
}

func (h *benchRoom) OnMessage(*rooms.Room, *rooms.Player, wsactor.Message) error { return nil }

func (h *benchRoom) OnTick(r *rooms.Room, t rooms.Tick) {
	h.g.step(float32(t.Delta.Seconds()))
	if h.send {
		// Broadcast queues the slice itself for every player: a fresh one
		// per tick.
		r.Broadcast(wsactor.Binary(h.g.encode(make([]byte, 0, gameStateSize))))
	} else {
		h.buf = h.g.encode(h.buf[:0])
	}
	if h.rec.on.Load() {
		h.late = append(h.late, t.Late)
	}
}

func (h *benchRoom) Receive(_ *rooms.Room, msg any) {
	if c, ok := msg.(tickCollect); ok {
		c.reply <- h.late
		h.late = nil
	}
}

// roomName names room i of the tick benchmarks.
func roomName(i int) string { return "r" + strconv.Itoa(i) }

// wsTickRooms are wsactor rooms of the kind "tick" on a single-node server.
type wsTickRooms struct {
	s *wsactor.Server
	n int
}

// newWSTickRooms makes the server; with send, the rooms broadcast each
// tick's state to their players.
func newWSTickRooms(rec *tickRecorder, send bool) *wsTickRooms {
	s := wsactor.New(wsactor.Options{
		Logger:    slog.New(slog.DiscardHandler),
		Transport: wsactor.TransportOptions{MaxMessageSize: readLimit, RateLimit: unboundLimit},
	})
	s.Rooms().Define(rooms.Kind{Name: "tick", TickRate: tickRate, MaxPlayers: gamePlayers, EmptyTimeout: -1,
		New: func() rooms.Handler { return newBenchRoom(rec, send) }})
	return &wsTickRooms{s: s}
}

func (w *wsTickRooms) start(n int) error {
	w.n = n
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i := range n {
		if err := w.s.Rooms().Tell(ctx, "tick", roomName(i), roomWake{}); err != nil {
			return fmt.Errorf("activate room %d: %w", i, err)
		}
	}
	return waitUntil("every room to run", func() bool { return w.s.Rooms().Stats().RoomsActive == int64(n) })
}

func (w *wsTickRooms) collect() ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	reply := make(chan []time.Duration, w.n)
	for i := range w.n {
		if err := w.s.Rooms().Tell(ctx, "tick", roomName(i), tickCollect{reply: reply}); err != nil {
			return nil, err
		}
	}
	var all []time.Duration
	for range w.n {
		select {
		case l := <-reply:
			all = append(all, l...)
		case <-ctx.Done():
			return nil, fmt.Errorf("collecting the rooms' lateness: %w", ctx.Err())
		}
	}
	return all, nil
}

func (w *wsTickRooms) hist() metrics.Snapshot { return w.s.Rooms().Stats().TickLateness }

func (w *wsTickRooms) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	return w.s.Shutdown(ctx)
}

// tickGoroutines is the baseline: a goroutine per room on a time.Ticker,
// doing a room's work. With send set, room i writes its state to its
// players, the connections registered under 8i…8i+7 on bare.
type tickGoroutines struct {
	rec  *tickRecorder
	bare *bareServer // nil: no players
	stop chan struct{}
	out  chan []time.Duration
	n    int
	wg   sync.WaitGroup
	// writeErrs counts failed writes to players.
	writeErrs atomic.Int64
}

func (g *tickGoroutines) start(n int) error {
	g.n, g.stop, g.out = n, make(chan struct{}), make(chan []time.Duration, n)
	for i := range n {
		var players []func([]byte) error
		if g.bare != nil {
			for j := range gamePlayers {
				push, err := g.bare.Pusher(i*gamePlayers+j, pushDirect)
				if err != nil {
					close(g.stop)
					return err
				}
				players = append(players, push)
			}
		}
		g.wg.Go(func() { g.run(i, players) })
	}
	return nil
}

func (g *tickGoroutines) run(i int, players []func([]byte) error) {
	game := newGameState(i)
	buf := make([]byte, 0, gameStateSize)
	late := make([]time.Duration, 0, g.rec.capacity)
	t := time.NewTicker(tickPeriod)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case due := <-t.C:
			now := time.Now()
			game.step(float32(now.Sub(last).Seconds()))
			last = now
			if players != nil {
				// The bare writer copies the frame out before Write
				// returns, but a fresh slice per tick does what the rooms do.
				b := game.encode(make([]byte, 0, gameStateSize))
				for _, push := range players {
					if err := push(b); err != nil {
						g.writeErrs.Add(1)
					}
				}
			} else {
				buf = game.encode(buf[:0])
			}
			l := max(now.Sub(due), 0)
			g.rec.hist.Observe(l)
			if g.rec.on.Load() {
				late = append(late, l)
			}
		case <-g.stop:
			g.out <- late
			return
		}
	}
}

func (g *tickGoroutines) collect() ([]time.Duration, error) {
	close(g.stop)
	g.wg.Wait()
	var all []time.Duration
	for range g.n {
		all = append(all, <-g.out...)
	}
	if n := g.writeErrs.Load(); n > 0 {
		return all, fmt.Errorf("%d writes to players failed", n)
	}
	return all, nil
}

func (g *tickGoroutines) hist() metrics.Snapshot { return g.rec.hist.Snapshot() }

func (g *tickGoroutines) close() error {
	if g.stop == nil {
		return nil // never started
	}
	select {
	case <-g.stop:
	default:
		close(g.stop)
		g.wg.Wait()
	}
	return nil
}

// measureRoomTicks measures n rooms of impl ("rooms" or "goroutines")
// without players.
func measureRoomTicks(impl string, n int, warmup, window time.Duration) (tickResult, error) {
	rec := newTickRecorder(window)
	var t tickImpl = &tickGoroutines{rec: rec}
	if impl == "rooms" {
		t = newWSTickRooms(rec, false)
	}
	return measureTicks(t, rec, n, warmup, window, func() error { return nil })
}

var tickImpls = []string{"rooms", "goroutines"}

// BenchmarkRoomTicks runs 1,000 rooms (envTickRooms) at 20 Hz for 30 s
// (envTickSeconds), each tick stepping 8 dots and encoding a 68-byte state
// that it does not send, against 1,000 goroutines on time.Tickers doing
// the same (impl=goroutines). It reports the lateness quantiles (exact:
// late-*-ms; bucketed like Stats().TickLateness: hist-*-ms), the share of
// the nominal ticks that ran, the process's CPU (cpu-%: of one core) and
// its allocations per tick. Each run measures once; use -benchtime=1x.
func BenchmarkRoomTicks(b *testing.B) {
	n := envInt(b, envTickRooms, 1000)
	window := envSeconds(b, envTickSeconds, 30*time.Second)
	for _, impl := range tickImpls {
		b.Run("impl="+impl, func(b *testing.B) {
			res, err := measureRoomTicks(impl, n, tickWarmup, window)
			if err != nil {
				b.Fatal(err)
			}
			res.report(b)
		})
	}
}

// TestRoomTicksMeasurement runs BenchmarkRoomTicks's measurement with a few
// rooms for a second, and checks what is structural: every room recorded
// its ticks, at about the rate, and the histogram counted them.
func TestRoomTicksMeasurement(t *testing.T) {
	const n = 10
	window := time.Second
	for _, impl := range tickImpls {
		t.Run(impl, func(t *testing.T) {
			res, err := measureRoomTicks(impl, n, 200*time.Millisecond, window)
			if err != nil {
				t.Fatal(err)
			}
			// A second at 20 Hz is 20 ticks a room; a loaded machine skips
			// some, and the window's edges may add one.
			if got := len(res.late); got < n*5 || got > n*(tickRate+2) {
				t.Errorf("%d ticks recorded over %v by %d rooms at %d Hz", got, window, n, tickRate)
			}
			// The histogram is read around the window, the rooms record
			// while a flag is set: the edges may differ by a tick a room.
			if d := res.hist.Count - int64(len(res.late)); d < -2*n || d > 2*n {
				t.Errorf("the histogram counted %d ticks in the window, the rooms recorded %d", res.hist.Count, len(res.late))
			}
			t.Logf("%s: %d ticks, lateness p50 %v p99 %v max %v", impl, len(res.late), res.quantile(50), res.quantile(99), slices.Max(res.late))
		})
	}
}
