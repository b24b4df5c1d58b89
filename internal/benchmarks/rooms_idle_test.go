package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
)

// BenchmarkRoomIdleMemory measures what an idle room costs: activated, no
// player, waiting. Each measurement runs in a fresh process (this test
// binary again, as TestHelperRoomIdle), so that nothing an earlier one left
// (protoactor's process registry keeps its grown maps) flatters a later one.
//
// The implementations, N of each:
//
//   - rooms: a wsactor room of a kind with a small Handler (OnMessage and a
//     no-op Receive), activated by Manager.Tell, EmptyTimeout one hour so
//     that it stays; SnapshotInterval is the default (1 s).
//   - rooms-snap-off: the same with SnapshotInterval negative: the kind
//     saves only when asked, so an idle room has no 1 s snapshot timer.
//   - protoactor: the baseline of an actor per room: a named protoactor
//     actor with one time.AfterFunc timer (the empty-room timeout), no
//     wsactor. What rooms adds to it is the rooms runtime's own.
//   - struct: the floor of any Go implementation: a struct per room in a
//     map, with one time.AfterFunc timer; no goroutine, no actor.
const (
	// envRoomIdle tells a re-executed test binary to measure
	// "<impl>:<n>:<CPU window>" (TestHelperRoomIdle).
	envRoomIdle = "WSACTOR_BENCH_ROOM_IDLE"
	// envRoomIdleCounts lists the room counts, comma separated (default
	// 1000,10000).
	envRoomIdleCounts = "WSACTOR_BENCH_ROOM_IDLE_COUNTS"
	// envRoomHeapProfile names a directory: the measuring process writes
	// its heap profile there (<impl>-<n>.heap), sampling every allocation,
	// while the rooms are idle.
	envRoomHeapProfile = "WSACTOR_BENCH_ROOM_HEAPPROFILE"

	// roomIdleCPUWindow is how long the idle rooms' CPU is measured.
	roomIdleCPUWindow = 5 * time.Second
	// roomIdleTimeout keeps the idle rooms (and the baselines' timers)
	// waiting for the whole measurement.
	roomIdleTimeout = time.Hour
)

var roomIdleImpls = []string{"rooms", "rooms-snap-off", "protoactor", "struct"}

// roomIdleResult is the cost of one idle room.
type roomIdleResult struct {
	heap, live, stack, rss float64 // bytes per room
	goroutines             float64 // per room
	cpu                    float64 // CPU nanoseconds per room per second, idle
}

func (r roomIdleResult) String() string {
	return fmt.Sprintf("result %.1f %.1f %.1f %.1f %.4f %.1f", r.heap, r.live, r.stack, r.rss, r.goroutines, r.cpu)
}

func parseRoomIdleResult(line string) (roomIdleResult, error) {
	var r roomIdleResult
	_, err := fmt.Sscanf(line, "result %f %f %f %f %f %f", &r.heap, &r.live, &r.stack, &r.rss, &r.goroutines, &r.cpu)
	return r, err
}

// measureRoomIdle runs TestHelperRoomIdle for impl and n, with the idle CPU
// measured over window, and returns what it measured.
func measureRoomIdle(impl string, n int, window time.Duration) (res roomIdleResult, err error) {
	env := []string{envRoomIdle + "=" + impl + ":" + strconv.Itoa(n) + ":" + window.String()}
	if dir := os.Getenv(envRoomHeapProfile); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return res, err
		}
		env = append(env, envRoomHeapProfile+"="+abs)
	}
	h, r, err := startHelperProcess("TestHelperRoomIdle", "wsactor-bench-roomidle-*.log", env...)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, h.stop()) }()
	_ = h.stdout.SetReadDeadline(time.Now().Add(waitLimit))
	line, err := r.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("waiting for the measurement: %w", err)
	}
	return parseRoomIdleResult(strings.TrimSpace(line))
}

// TestHelperRoomIdle is not a test: BenchmarkRoomIdleMemory runs the test
// binary again with envRoomIdle set, to measure one implementation in a
// fresh process. It prints "ready", then the result line, and exits when its
// stdin closes.
func TestHelperRoomIdle(t *testing.T) {
	spec := os.Getenv(envRoomIdle)
	if spec == "" {
		t.Skip("measuring process of BenchmarkRoomIdleMemory; runs only when re-executed by it")
	}
	profileDir := os.Getenv(envRoomHeapProfile)
	if profileDir != "" {
		runtime.MemProfileRate = 1
	}
	fields := strings.Split(spec, ":")
	if len(fields) != 3 {
		t.Fatalf("bad %s=%q", envRoomIdle, spec)
	}
	impl := fields[0]
	n, err := strconv.Atoi(fields[1])
	window, werr := time.ParseDuration(fields[2])
	if err != nil || werr != nil || n <= 0 || window <= 0 {
		t.Fatalf("bad %s=%q", envRoomIdle, spec)
	}
	f, err := newIdleRooms(impl)
	if err != nil {
		t.Fatal(err)
	}
	res, err := measureIdleRooms(f, n, window, func() error {
		if profileDir == "" {
			return nil
		}
		return writeHeapProfile(filepath.Join(profileDir, fmt.Sprintf("%s-%d.heap", impl, n)))
	})
	if err != nil {
		fmt.Printf("error %v\n", err)
		t.Fatal(err)
	}
	fmt.Println("ready")
	fmt.Println(res)
	waitStdinClosed()
	if err := f.close(); err != nil {
		// stderr: the measuring process quotes it (stdout is drained).
		fmt.Fprintf(os.Stderr, "closing %d %s rooms: %v\n", n, impl, err)
		t.Fatal(err)
	}
}

// idleRooms is one implementation of idle rooms.
type idleRooms interface {
	// activate makes n rooms and returns once all of them are waiting.
	activate(n int) error
	close() error
}

func newIdleRooms(impl string) (idleRooms, error) {
	switch impl {
	case "rooms":
		return newWSIdleRooms(0), nil
	case "rooms-snap-off":
		return newWSIdleRooms(-1), nil
	case "protoactor":
		discard := slog.New(slog.DiscardHandler)
		system := protoactor.NewActorSystem(protoactor.WithLoggerFactory(func(*protoactor.ActorSystem) *slog.Logger { return discard }))
		return &actorIdleRooms{system: system}, nil
	case "struct":
		return &structIdleRooms{}, nil
	}
	return nil, fmt.Errorf("no idle-room implementation %q (want one of %v)", impl, roomIdleImpls)
}

// measureIdleRooms samples the process's memory, activates n rooms of f,
// samples it again once they are idle, calls profile, and measures the CPU
// the idle rooms use over window.
func measureIdleRooms(f idleRooms, n int, window time.Duration, profile func() error) (roomIdleResult, error) {
	var res roomIdleResult
	before, err := sampleMemory()
	if err != nil {
		return res, err
	}
	if err := f.activate(n); err != nil {
		return res, err
	}
	// Let what the activation started (futures' timers, savers) end.
	if err := waitSettled(before.goroutines); err != nil {
		return res, err
	}
	after, err := sampleMemory()
	if err != nil {
		return res, err
	}
	if err := profile(); err != nil {
		return res, err
	}
	c0 := readCounters()
	time.Sleep(window)
	c1 := readCounters()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	res = roomIdleResult{
		heap:       per(after.heapInuse, before.heapInuse),
		live:       per(after.heapLive, before.heapLive),
		stack:      per(after.stackInuse, before.stackInuse),
		rss:        per(after.rss, before.rss),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		cpu:        float64(c1.cpu-c0.cpu) / float64(n) / window.Seconds(),
	}
	runtime.KeepAlive(f)
	return res, nil
}

// wsIdleRooms are wsactor rooms of a kind whose Handler does nothing.
type wsIdleRooms struct {
	s *wsactor.Server
}

// roomWake is the message that activates an idle room.
type roomWake struct{}

type idleRoom struct{}

func (idleRoom) OnMessage(*rooms.Room, *rooms.Player, wsactor.Message) error { return nil }
func (idleRoom) Receive(*rooms.Room, any)                                    {}

// newWSIdleRooms makes a single-node server (memory store) with the kind
// "idle"; snapshotInterval is the kind's SnapshotInterval.
func newWSIdleRooms(snapshotInterval time.Duration) *wsIdleRooms {
	s := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler)})
	s.Rooms().Define(rooms.Kind{Name: "idle", EmptyTimeout: roomIdleTimeout, SnapshotInterval: snapshotInterval,
		New: func() rooms.Handler { return idleRoom{} }})
	return &wsIdleRooms{s: s}
}

func (w *wsIdleRooms) activate(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i := range n {
		if err := w.s.Rooms().Tell(ctx, "idle", "r"+strconv.Itoa(i), roomWake{}); err != nil {
			return fmt.Errorf("activate room %d: %w", i, err)
		}
	}
	return waitUntil("every room to run", func() bool { return w.s.Rooms().Stats().RoomsActive == int64(n) })
}

func (w *wsIdleRooms) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	return w.s.Shutdown(ctx)
}

// actorIdleRooms are named protoactor actors, each arming one timer when it
// starts, as a room arms its empty-room timeout.
type actorIdleRooms struct {
	system *protoactor.ActorSystem
	pids   []*protoactor.PID
}

type idleActor struct {
	timer *time.Timer
}

func (a *idleActor) Receive(ctx protoactor.Context) {
	switch ctx.Message().(type) {
	case *protoactor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.timer = time.AfterFunc(roomIdleTimeout, func() { root.Send(self, roomWake{}) })
	case *protoactor.Stopped:
		a.timer.Stop()
	}
}

func (a *actorIdleRooms) activate(n int) error {
	props := protoactor.PropsFromProducer(func() protoactor.Actor { return &idleActor{} })
	for i := range n {
		pid, err := a.system.Root.SpawnNamed(props, "room-idle.r"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		a.pids = append(a.pids, pid)
	}
	// Started is handled asynchronously: one more message through each
	// mailbox proves every actor has armed its timer.
	for _, pid := range a.pids {
		if _, err := a.system.Root.RequestFuture(pid, &protoactor.Touch{}, waitLimit).Result(); err != nil {
			return err
		}
	}
	return nil
}

func (a *actorIdleRooms) close() error {
	for _, pid := range a.pids {
		if err := a.system.Root.StopFuture(pid).Wait(); err != nil {
			return err
		}
	}
	a.system.Shutdown()
	return nil
}

// structIdleRooms are structs in a map, each with a timer.
type structIdleRooms struct {
	rooms map[string]*idleStruct
}

type idleStruct struct {
	name    string
	players map[int]string
	timer   *time.Timer
	expired bool
}

func (s *structIdleRooms) activate(n int) error {
	s.rooms = make(map[string]*idleStruct)
	for i := range n {
		r := &idleStruct{name: "r" + strconv.Itoa(i), players: map[int]string{}}
		r.timer = time.AfterFunc(roomIdleTimeout, func() { r.expired = true })
		s.rooms[r.name] = r
	}
	return nil
}

func (s *structIdleRooms) close() error {
	for _, r := range s.rooms {
		r.timer.Stop()
	}
	return nil
}

// roomIdleCounts returns the room counts to measure.
func roomIdleCounts(tb testing.TB) []int {
	s := os.Getenv(envRoomIdleCounts)
	if s == "" {
		return []int{1000, 10000}
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want positive numbers, comma separated", envRoomIdleCounts, s)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkRoomIdleMemory reports, per idle room: heap in use (heap-B/room,
// after two collections), live heap objects (live-B/room), goroutine stacks
// (stack-B/room), resident memory (rss-B/room), goroutines, and the CPU the
// idle rooms use (cpu-ns/room/s: CPU nanoseconds per room per second of
// idling). Each run measures once whatever b.N is; use -benchtime=1x and
// -count for rounds.
func BenchmarkRoomIdleMemory(b *testing.B) {
	for _, n := range roomIdleCounts(b) {
		for _, impl := range roomIdleImpls {
			b.Run(fmt.Sprintf("rooms=%d/impl=%s", n, impl), func(b *testing.B) {
				res, err := measureRoomIdle(impl, n, roomIdleCPUWindow)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(res.heap+res.stack, "B/room")
				b.ReportMetric(res.heap, "heap-B/room")
				b.ReportMetric(res.live, "live-B/room")
				b.ReportMetric(res.stack, "stack-B/room")
				b.ReportMetric(res.rss, "rss-B/room")
				b.ReportMetric(res.goroutines, "goroutines/room")
				b.ReportMetric(res.cpu, "cpu-ns/room/s")
			})
		}
	}
}

// TestRoomIdleMemoryMeasurement runs BenchmarkRoomIdleMemory's measurement
// with a few rooms of each implementation, each in its measuring process
// (the four at once), and checks what is structural: every room is
// activated, none holds a goroutine, and each costs some memory.
func TestRoomIdleMemoryMeasurement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts measuring processes")
	}
	const n = 200
	for _, impl := range roomIdleImpls {
		t.Run(impl, func(t *testing.T) {
			t.Parallel() // each measures in a process of its own
			res, err := measureRoomIdle(impl, n, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if res.goroutines > 0.1 {
				t.Errorf("%.2f goroutines per idle room, want none", res.goroutines)
			}
			if res.live <= 0 {
				t.Errorf("%.0f live heap bytes per room: the rooms cost nothing, so they were not measured", res.live)
			}
			t.Logf("%s: heap %.0f B/room (live %.0f), rss %.0f B/room, %.3f goroutines/room, idle CPU %.0f ns/room/s",
				impl, res.heap, res.live, res.rss, res.goroutines, res.cpu)
		})
	}
}
