package benchmarks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/rooms"
)

// Tick lateness under the realistic game load: every room has 8 players
// connected over real sockets, and every tick sends them the state. The
// players are held by a client process (TestHelperRoomPlayers), so that
// the measured process is the server alone; the two share the machine's
// cores all the same.
//
//   - impl=rooms: wsactor rooms; player i joins room i/8 from its
//     connection's OnOpen (Manager.Join), and each tick Broadcasts the state.
//   - impl=bare: the baseline: bare coder/websocket (bareServer, its read
//     loop on the net/http handler goroutine) and a goroutine per room on a
//     time.Ticker that writes the state to its 8 connections, one Write
//     after the other.

// envRoomPlayers tells a re-executed test binary to act as the client
// process of BenchmarkRoomTicksPlayers (with envHelperURL and envHelperConns).
const envRoomPlayers = "WSACTOR_BENCH_ROOM_PLAYERS"

// playerClients is the client process seen from the measuring process.
type playerClients struct {
	proc *helperProcess
	r    *bufio.Reader
}

// startPlayerClients starts the client process with n connections to url
// (registered as ?i=<k>) and waits until all are open and reading.
func startPlayerClients(url string, n int) (*playerClients, error) {
	h, r, err := startHelperProcess("TestHelperRoomPlayers", "wsactor-bench-roomplayers-*.log",
		envRoomPlayers+"=1", envHelperURL+"="+url, envHelperConns+"="+strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	return &playerClients{proc: h, r: r}, nil
}

// count asks the client process how many state messages its clients have
// read so far.
func (p *playerClients) count() (int64, error) {
	if _, err := io.WriteString(p.proc.stdin, "count\n"); err != nil {
		return 0, err
	}
	_ = p.proc.stdout.SetReadDeadline(time.Now().Add(waitLimit))
	line, err := p.r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("waiting for the clients' count: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "count ")
	if !ok {
		return 0, fmt.Errorf("clients: %s", strings.TrimSpace(line))
	}
	return strconv.ParseInt(rest, 10, 64)
}

func (p *playerClients) stop() error { return p.proc.stop() }

// TestHelperRoomPlayers is not a test: BenchmarkRoomTicksPlayers runs the
// test binary again with envRoomPlayers set so that its players live in
// another process. It opens the connections, reads and checks every message
// on each (one goroutine per connection), answers "count" on its stdin with
// the number of messages read, and closes everything when its stdin closes.
func TestHelperRoomPlayers(t *testing.T) {
	if os.Getenv(envRoomPlayers) != "1" {
		t.Skip("client process of BenchmarkRoomTicksPlayers; runs only when re-executed by it")
	}
	url, n := helperURLConns(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns, err := dialMany(ctx, url, n, true, nil)
	if err != nil {
		fmt.Printf("error open %d connections to %s: %v\n", n, url, err)
		t.Fatalf("open %d connections: %v", n, err)
	}
	var read, bad atomic.Int64
	var closing atomic.Bool
	var firstErr sync.Once
	var errText atomic.Value
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for {
				typ, b, err := c.Read(context.Background())
				if err != nil {
					if !closing.Load() {
						firstErr.Do(func() { errText.Store(fmt.Sprintf("connection %d: %v", i, err)) })
					}
					return
				}
				if _, ok := decodeTick(b); !ok || typ != websocket.MessageBinary {
					bad.Add(1)
					continue
				}
				read.Add(1)
			}
		})
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch e, _ := errText.Load().(string); {
		case e != "":
			fmt.Printf("error %s\n", e)
		case bad.Load() > 0:
			fmt.Printf("error %d malformed messages\n", bad.Load())
		default:
			fmt.Printf("count %d\n", read.Load())
		}
	}
	closing.Store(true)
	closeAll(conns)
	wg.Wait()
}

// roomPlayer is the wsactor server's connection handler: connection ?i=k
// joins room k/8 when it opens.
type roomPlayer struct {
	s              *wsactor.Server
	joined, failed *atomic.Int64
}

func (h *roomPlayer) OnOpen(c *wsactor.Conn) error {
	i, ok := index(c.URL().RawQuery)
	if !ok {
		return errors.New("no ?i=")
	}
	return h.s.Rooms().Join(c, "tick", roomName(i/gamePlayers), nil)
}

func (h *roomPlayer) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h *roomPlayer) OnClose(*wsactor.Conn, wsactor.StatusCode, string) {}

func (h *roomPlayer) Receive(_ *wsactor.Conn, msg any) {
	switch msg.(type) {
	case rooms.Joined:
		h.joined.Add(1)
	case rooms.JoinFailed:
		h.failed.Add(1)
	}
}

// wsPlayerRooms are wsTickRooms whose rooms the players' connections
// activate by joining; each tick broadcasts the state.
type wsPlayerRooms struct {
	*wsTickRooms
	http           *actorHTTP
	clients        *playerClients
	joined, failed atomic.Int64
}

func newWSPlayerRooms(rec *tickRecorder) *wsPlayerRooms {
	w := &wsPlayerRooms{wsTickRooms: newWSTickRooms(rec, true)}
	w.s.Handle("/", func() wsactor.Handler { return &roomPlayer{s: w.s, joined: &w.joined, failed: &w.failed} })
	w.http = &actorHTTP{s: w.s}
	return w
}

func (w *wsPlayerRooms) start(n int) error {
	w.n = n
	w.http.http = httptest.NewServer(w.s)
	players := n * gamePlayers
	var err error
	if w.clients, err = startPlayerClients(w.http.URL(), players); err != nil {
		return err
	}
	if err := waitUntil("every player to join", func() bool { return w.joined.Load()+w.failed.Load() == int64(players) }); err != nil {
		return err
	}
	if f := w.failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d joins failed", f, players)
	}
	return waitUntil("every room to run", func() bool { return w.s.Rooms().Stats().RoomsActive == int64(n) })
}

func (w *wsPlayerRooms) close() error {
	var err error
	if w.clients != nil {
		err = w.clients.stop()
	}
	if w.http.http != nil {
		err = errors.Join(err, w.http.stop())
	}
	if st := w.s.Stats(); st.SlowConsumerCloses != 0 || st.Panics != 0 || st.Dropped != 0 {
		err = errors.Join(err, fmt.Errorf("wsactor stats: %+v", st))
	}
	return err
}

// barePlayerRooms are tickGoroutines writing to the connections of a bare
// server.
type barePlayerRooms struct {
	*tickGoroutines
	clients *playerClients
}

func (b *barePlayerRooms) start(n int) error {
	b.bare = startBare()
	players := n * gamePlayers
	var err error
	if b.clients, err = startPlayerClients(b.bare.URL(), players); err != nil {
		return err
	}
	if err := waitUntil("every player to be registered", func() bool { return b.bare.reg.size() == players }); err != nil {
		return err
	}
	return b.tickGoroutines.start(n)
}

func (b *barePlayerRooms) close() error {
	err := b.tickGoroutines.close()
	if b.clients != nil {
		err = errors.Join(err, b.clients.stop())
	}
	if b.bare != nil {
		err = errors.Join(err, b.bare.Close())
	}
	return err
}

// size returns the number of registered connections.
func (r *registry[T]) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

var playerImpls = []string{"rooms", "bare"}

// measureRoomTicksPlayers measures n rooms of impl ("rooms" or "bare")
// with 8 players each.
func measureRoomTicksPlayers(impl string, n int, warmup, window time.Duration) (tickResult, error) {
	rec := newTickRecorder(window)
	var t tickImpl
	var clients func() *playerClients
	stats := func() string { return "" }
	if impl == "rooms" {
		w := newWSPlayerRooms(rec)
		t, clients = w, func() *playerClients { return w.clients }
		stats = func() string { return fmt.Sprintf(" (server stats %+v)", w.s.Stats()) }
	} else {
		b := &barePlayerRooms{tickGoroutines: &tickGoroutines{rec: rec}}
		t, clients = b, func() *playerClients { return b.clients }
	}
	var counts []int64
	res, err := measureTicks(t, rec, n, warmup, window, func() error {
		c, err := clients().count()
		counts = append(counts, c)
		if err != nil {
			err = fmt.Errorf("%w%s", err, stats())
		}
		return err
	})
	if err != nil {
		return res, err
	}
	// The ticks that ran in the window sent to 8 players each; those sent
	// at its edges may be read on the other side of a count.
	res.delivered, res.expected = counts[1]-counts[0], int64(len(res.late))*gamePlayers
	return res, nil
}

// BenchmarkRoomTicksPlayers is BenchmarkRoomTicks with 8 players per room
// connected over loopback sockets and held by a client process, each tick
// sending its 68-byte state to the room's 8 players: 1,000 rooms
// (envTickPlayerRooms) make 8,000 connections and 160,000 messages a
// second. delivered-% is the share of what the window's ticks sent that the
// clients read within it. Each run measures once; use -benchtime=1x.
func BenchmarkRoomTicksPlayers(b *testing.B) {
	n := envInt(b, envTickPlayerRooms, 1000)
	window := envSeconds(b, envTickPlayerSeconds, 30*time.Second)
	for _, impl := range playerImpls {
		b.Run("impl="+impl, func(b *testing.B) {
			res, err := measureRoomTicksPlayers(impl, n, tickWarmup, window)
			if err != nil {
				b.Fatal(err)
			}
			res.report(b)
		})
	}
}

// TestRoomTicksPlayersMeasurement runs BenchmarkRoomTicksPlayers's
// measurement with 3 rooms (24 players in a client process) for a second,
// both implementations at once, and checks that the players got the states
// the ticks sent.
func TestRoomTicksPlayersMeasurement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	const n = 3
	for _, impl := range playerImpls {
		t.Run(impl, func(t *testing.T) {
			t.Parallel() // each has its own server and client process
			res, err := measureRoomTicksPlayers(impl, n, 300*time.Millisecond, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// What was sent before the window may be read in it, and what
			// was sent in it after: on a busy machine under -race the
			// states lag the ticks by up to half a second, as many as the
			// one-second window sends. The check is that the states the
			// ticks sent are read, once each: not 8 times too few or too
			// many; the client checks the form of every one.
			if res.delivered < res.expected/2 || res.delivered > res.expected*2 {
				t.Errorf("the players read %d states in the window; its ticks sent %d", res.delivered, res.expected)
			}
			t.Logf("%s: %d ticks, %d states read (%d sent), lateness p50 %v p99 %v",
				impl, len(res.late), res.delivered, res.expected, res.quantile(50), res.quantile(99))
		})
	}
}
