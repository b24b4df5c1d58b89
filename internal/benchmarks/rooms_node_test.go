package benchmarks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/rooms"
)

// Room node processes: BenchmarkRoomFanout and BenchmarkRoomFailover run
// every cluster node in a process of its own (this test binary again, as
// TestHelperRoomNode): one protoactor node per process, as in production,
// and a node that can be SIGKILLed. The measuring process holds the Redis
// server and the players' connections, and drives the nodes over their
// stdin and stdout.
//
// A node process prints "ready", then "url <ws URL of /play>" and "addr
// <node address>", and then answers commands on its stdin, one line each:
//
//	place <kind> <prefix>  → placed <name>: a room name (prefix0, prefix1…)
//	                         that the identity lookup places on this node
//	stats                  → stats <deliveries> <rooms active> <CPU ns>
//	                         <ticks> <posts>
//	peers                  → peers <count>
//
// and reports, unasked, "dropped <address> <unix ns>" when a peer leaves its
// membership view and "active <rooms> <unix ns>" when the number of rooms it
// runs changes. It shuts down when its stdin closes.
//
// A connection to /play?kind=<kind>&room=<name> joins that room when it
// opens and is told "joined <seat> <reconnected>" (again when its room moved
// and took it back), or "failed <error>".

// Environment of a node process.
const (
	envRoomNode          = "WSACTOR_BENCH_ROOM_NODE" // "1"
	envRoomNodeRedis     = "WSACTOR_BENCH_ROOM_NODE_REDIS"
	envRoomNodeCluster   = "WSACTOR_BENCH_ROOM_NODE_CLUSTER"
	envRoomNodeTTL       = "WSACTOR_BENCH_ROOM_NODE_TTL"
	envRoomNodeHeartbeat = "WSACTOR_BENCH_ROOM_NODE_HEARTBEAT"

	// rnServer is the wsactor server's name on every node.
	rnServer = "rb"
	// rnEmptyTimeout disposes of the benchmark rooms soon after their
	// players leave (and of those a placement probe activated on the wrong
	// node), but not before the players of a freshly placed room join.
	rnEmptyTimeout = time.Second
	// rnPoll is how often a node process looks at its membership and rooms
	// to report changes.
	rnPoll = 5 * time.Millisecond
)

// roomProbe asks a room whether it lives on the node at Want: one that
// does not closes itself (see placeRoom). So does one told Close.
type roomProbe struct {
	Want  string
	Close bool
}

func init() { wsactor.RegisterMessage[roomProbe]("wsactor-bench.roomProbe") }

// probed holds the names of the rooms a probe found on this node.
var probed sync.Map

// answerProbe is the rooms' reaction to a roomProbe.
func answerProbe(r *rooms.Room, msg any) {
	p, ok := msg.(roomProbe)
	if !ok {
		return
	}
	if r.Actor().Self().Address == p.Want && !p.Close {
		probed.Store(r.Name(), true)
	} else {
		r.Close()
	}
}

// nodeCounters are a node process's counters the rooms update.
var nodePosts atomic.Int64 // Server.Post calls of "posts" rooms

// fanRoom steps the game every tick and sends its state to its players:
// with one Room.Broadcast ("fan"), or with one Server.Post per player
// ("posts", the naive way).
type fanRoom struct {
	s     *wsactor.Server
	posts bool
	g     gameState
}

func (h *fanRoom) OnCreate(r *rooms.Room, _ []byte) error {
	h.g = newGameState(len(r.Name()))
	return nil
}

func (h *fanRoom) OnMessage(*rooms.Room, *rooms.Player, wsactor.Message) error { return nil }

func (h *fanRoom) OnTick(r *rooms.Room, t rooms.Tick) {
	h.g.step(float32(t.Delta.Seconds()))
	m := wsactor.Binary(h.g.encode(make([]byte, 0, gameStateSize)))
	if !h.posts {
		r.Broadcast(m)
		return
	}
	for _, p := range r.Players() {
		if p.Online {
			_ = h.s.Post(p.ID, m)
			nodePosts.Add(1)
		}
	}
}

func (h *fanRoom) Receive(r *rooms.Room, msg any) { answerProbe(r, msg) }

// failRoom counts its ticks, broadcasts "t:<count>" every tick and keeps
// the count in its snapshot, saved at the default interval (1 s).
type failRoom struct{ n int64 }

func (h *failRoom) OnCreate(_ *rooms.Room, snapshot []byte) error {
	if len(snapshot) == 0 {
		return nil
	}
	return json.Unmarshal(snapshot, &h.n)
}

func (h *failRoom) OnMessage(*rooms.Room, *rooms.Player, wsactor.Message) error { return nil }

func (h *failRoom) OnTick(r *rooms.Room, _ rooms.Tick) {
	h.n++
	r.Broadcast(wsactor.Text("t:" + strconv.FormatInt(h.n, 10)))
}

func (h *failRoom) Snapshot(*rooms.Room) ([]byte, error) { return json.Marshal(h.n) }

func (h *failRoom) Receive(r *rooms.Room, msg any) { answerProbe(r, msg) }

// defineNodeKinds defines the node processes' room kinds on s. Players
// leave when their connection ends (no seat is held), so that a room empties
// as soon as a measurement closes its clients.
func defineNodeKinds(s *wsactor.Server) {
	for _, k := range []rooms.Kind{
		{Name: "fan", New: func() rooms.Handler { return &fanRoom{s: s} }},
		{Name: "posts", New: func() rooms.Handler { return &fanRoom{s: s, posts: true} }},
		{Name: "fail", New: func() rooms.Handler { return &failRoom{} }},
	} {
		k.TickRate, k.MaxPlayers, k.SeatReservation, k.EmptyTimeout = tickRate, gamePlayers, -1, rnEmptyTimeout
		s.Rooms().Define(k)
	}
}

// nodePlayer is the /play route's connection handler.
type nodePlayer struct{ s *wsactor.Server }

func (h *nodePlayer) OnOpen(c *wsactor.Conn) error {
	q := c.Query()
	return h.s.Rooms().Join(c, q.Get("kind"), q.Get("room"), nil)
}

func (h *nodePlayer) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (h *nodePlayer) OnClose(*wsactor.Conn, wsactor.StatusCode, string) {}

func (h *nodePlayer) Receive(c *wsactor.Conn, msg any) {
	switch m := msg.(type) {
	case rooms.Joined:
		_ = c.SendText(fmt.Sprintf("joined %d %v", m.Seat, m.Reconnected))
	case rooms.JoinFailed:
		_ = c.SendText("failed " + m.Err.Error())
	}
}

// nodeConfig is cluster.Default() for a node process: on 127.0.0.1, the
// measuring process's Redis, its cluster name, and the membership timings.
func nodeConfig(redisAddr, name string, ttl, heartbeat time.Duration) cluster.Config {
	cfg := cluster.Default()
	cfg.Cluster.Name = name
	cfg.Node.Host, cfg.Node.Port = "127.0.0.1", 0
	cfg.Redis.Addr = redisAddr
	cfg.Redis.KeyPrefix = "wsactor-bench:" + name + ":"
	cfg.Membership.MemberTTL, cfg.Membership.HeartbeatInterval = ttl, heartbeat
	// Generous on a loaded machine, as the cluster tests are.
	cfg.Redis.DialTimeout, cfg.Redis.ReadTimeout, cfg.Redis.WriteTimeout = 5*time.Second, 2*time.Second, 2*time.Second
	return cfg
}

// TestHelperRoomNode is not a test: the room cluster benchmarks run the
// test binary again with envRoomNode set, as one node of their cluster.
func TestHelperRoomNode(t *testing.T) {
	if os.Getenv(envRoomNode) != "1" {
		t.Skip("node process of BenchmarkRoomFanout and BenchmarkRoomFailover; runs only when re-executed by them")
	}
	ttl, err1 := time.ParseDuration(os.Getenv(envRoomNodeTTL))
	heartbeat, err2 := time.ParseDuration(os.Getenv(envRoomNodeHeartbeat))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(os.Getenv(envRoomNodeRedis), os.Getenv(envRoomNodeCluster), ttl, heartbeat)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, node, err := cluster.NewServer(context.Background(), cfg, wsactor.Options{
		Name:      rnServer,
		Logger:    logger,
		Transport: wsactor.TransportOptions{MaxMessageSize: readLimit, RateLimit: unboundLimit},
	})
	if err != nil {
		t.Fatal(err)
	}
	defineNodeKinds(s)
	s.Handle("/play", func() wsactor.Handler { return &nodePlayer{s: s} })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	out := &lockedWriter{w: os.Stdout}
	out.println("ready")
	out.println("url ws://" + l.Addr().String() + "/play")
	out.println("addr " + node.Address())
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { defer close(watched); watchNode(s, node, out, stop) }()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		out.println(nodeCommand(s, node, strings.Fields(sc.Text())))
	}
	close(stop)
	<-watched
	// The server shuts down; the node does not leave the cluster (no
	// Node.Stop): protoactor-go's Remote.Shutdown writes its endpoint
	// readers' state while they still read streams from peers
	// (remote/endpoint_reader.go:264 against :77 and :45), a data race the
	// race detector reports in a node stopped while its peers run, as
	// every node of these benchmarks is. The cluster and its Redis are
	// thrown away after a measurement, so nothing needs the graceful leave;
	// cluster/process_test.go exercises Node.Stop.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// lockedWriter writes whole lines from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s+"\n")
}

// nodeCommand runs one command of a node process and returns its answer.
func nodeCommand(s *wsactor.Server, node *cluster.Node, cmd []string) string {
	switch {
	case len(cmd) == 3 && cmd[0] == "place":
		name, err := placeRoom(s, node, cmd[1], cmd[2])
		if err != nil {
			return "error " + err.Error()
		}
		return "placed " + name
	case len(cmd) == 1 && cmd[0] == "stats":
		st := s.Rooms().Stats()
		return fmt.Sprintf("stats %d %d %d %d %d", st.Deliveries, st.RoomsActive, readCounters().cpu, st.TickLateness.Count, nodePosts.Load())
	case len(cmd) == 1 && cmd[0] == "peers":
		return fmt.Sprintf("peers %d", len(node.Peers()))
	}
	return fmt.Sprintf("error unknown command %q", strings.Join(cmd, " "))
}

// placeRoom finds a name of kind, prefix0, prefix1…, that the identity
// lookup places on this node: it activates each with a roomProbe, and a
// room activated on another node closes itself.
func placeRoom(s *wsactor.Server, node *cluster.Node, kind, prefix string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var tried []string
	for i := range 64 {
		name := prefix + strconv.Itoa(i)
		if err := s.Rooms().Tell(ctx, kind, name, roomProbe{Want: node.Address()}); err != nil {
			return "", err
		}
		// A room of this node has the probe within milliseconds of its
		// activation, which Tell waited for.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if _, ok := probed.Load(name); ok {
				// A room of this node that answered too late for an
				// earlier name would tick in the measurement: close it.
				for _, late := range tried {
					if _, ok := probed.Load(late); ok {
						if err := s.Rooms().Tell(ctx, kind, late, roomProbe{Close: true}); err != nil {
							return "", err
						}
					}
				}
				return name, nil
			}
			time.Sleep(rnPoll)
		}
		tried = append(tried, name)
	}
	return "", errors.New("none of 64 room names was placed on this node")
}

// watchNode reports the node's membership and room changes until stop.
func watchNode(s *wsactor.Server, node *cluster.Node, out *lockedWriter, stop <-chan struct{}) {
	peers := node.Peers()
	active := s.Rooms().Stats().RoomsActive
	t := time.NewTicker(rnPoll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := node.Peers()
		for _, p := range peers {
			if !slices.Contains(now, p) {
				out.println(fmt.Sprintf("dropped %s %d", p, time.Now().UnixNano()))
			}
		}
		peers = now
		if a := s.Rooms().Stats().RoomsActive; a != active {
			active = a
			out.println(fmt.Sprintf("active %d %d", a, time.Now().UnixNano()))
		}
	}
}

// roomNode is a node process seen from the measuring process.
type roomNode struct {
	proc      *helperProcess
	url, addr string
	replies   chan string    // answers to commands
	events    chan nodeEvent // dropped and active reports
	done      chan struct{}  // closed when its stdout ends
}

// nodeEvent is a report a node made unasked.
type nodeEvent struct {
	what  string // "dropped" or "active"
	value string // the address, or the number of rooms
	at    time.Time
}

// startRoomNode starts a node process of cluster name on redisAddr.
func startRoomNode(redisAddr, name string, ttl, heartbeat time.Duration) (*roomNode, error) {
	h, r, err := startHelperProcess("TestHelperRoomNode", "wsactor-bench-roomnode-*.log",
		envRoomNode+"=1", envRoomNodeRedis+"="+redisAddr, envRoomNodeCluster+"="+name,
		envRoomNodeTTL+"="+ttl.String(), envRoomNodeHeartbeat+"="+heartbeat.String())
	if err != nil {
		return nil, err
	}
	_ = h.stdout.SetReadDeadline(time.Time{}) // the reader below waits as long as the process lives
	n := &roomNode{proc: h, replies: make(chan string, 16), events: make(chan nodeEvent, 1024), done: make(chan struct{})}
	go n.read(r)
	for _, v := range []*string{&n.url, &n.addr} {
		line, err := n.reply("")
		if err != nil {
			return nil, errors.Join(err, n.stop())
		}
		_, *v, _ = strings.Cut(line, " ")
	}
	return n, nil
}

// read sorts the node's lines into replies and events.
func (n *roomNode) read(r *bufio.Reader) {
	defer close(n.done)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 3 && (f[0] == "dropped" || f[0] == "active") {
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			select {
			case n.events <- nodeEvent{what: f[0], value: f[1], at: time.Unix(0, ns)}:
			default: // nobody is looking at this node's events
			}
			continue
		}
		n.replies <- strings.TrimSpace(line)
	}
}

// reply sends cmd (unless empty) and returns the next answer.
func (n *roomNode) reply(cmd string) (string, error) {
	if cmd != "" {
		if _, err := io.WriteString(n.proc.stdin, cmd+"\n"); err != nil {
			return "", fmt.Errorf("node %s: %s: %w", n.addr, cmd, err)
		}
	}
	select {
	case line := <-n.replies:
		if rest, ok := strings.CutPrefix(line, "error "); ok {
			return "", fmt.Errorf("node %s: %s: %s", n.addr, cmd, rest)
		}
		return line, nil
	case <-n.done:
		return "", fmt.Errorf("node %s ended while asked %q", n.addr, cmd)
	case <-time.After(waitLimit):
		return "", fmt.Errorf("node %s did not answer %q", n.addr, cmd)
	}
}

// nodeStats is a node's answer to "stats".
type nodeStats struct {
	deliveries, active int64
	cpu                time.Duration
	ticks, posts       int64
}

func (n *roomNode) stats() (nodeStats, error) {
	line, err := n.reply("stats")
	if err != nil {
		return nodeStats{}, err
	}
	var s nodeStats
	var cpu int64
	if _, err := fmt.Sscanf(line, "stats %d %d %d %d %d", &s.deliveries, &s.active, &cpu, &s.ticks, &s.posts); err != nil {
		return s, fmt.Errorf("node %s: %q: %w", n.addr, line, err)
	}
	s.cpu = time.Duration(cpu)
	return s, nil
}

func (n *roomNode) place(kind, prefix string) (string, error) {
	line, err := n.reply("place " + kind + " " + prefix)
	if err != nil {
		return "", err
	}
	name, ok := strings.CutPrefix(line, "placed ")
	if !ok {
		return "", fmt.Errorf("node %s: place: %q", n.addr, line)
	}
	return name, nil
}

// waitPeers waits until the node sees want peers.
func (n *roomNode) waitPeers(want int) error {
	return waitFor(fmt.Sprintf("node %s to see %d peers", n.addr, want), func() (bool, error) {
		line, err := n.reply("peers")
		return line == fmt.Sprintf("peers %d", want), err
	})
}

// waitActive waits until the node runs want rooms.
func (n *roomNode) waitActive(want int64) error {
	return waitFor(fmt.Sprintf("node %s to run %d rooms", n.addr, want), func() (bool, error) {
		st, err := n.stats()
		return st.active == want, err
	})
}

// waitFor polls cond, which may fail, for at most waitLimit.
func waitFor(what string, cond func() (bool, error)) error {
	var condErr error
	err := waitUntil(what, func() bool {
		ok, err := cond()
		condErr = err
		return ok || err != nil
	})
	return errors.Join(condErr, err)
}

// port returns the node's remote (gRPC) port.
func (n *roomNode) port() string {
	_, p, _ := net.SplitHostPort(n.addr)
	return p
}

// stop closes the node's stdin: its server shuts down and the process
// ends (without leaving the cluster: see TestHelperRoomNode).
func (n *roomNode) stop() error { return n.proc.stop() }

// kill SIGKILLs the node process and reaps it.
func (n *roomNode) kill() error {
	if err := n.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	_ = n.proc.cmd.Wait() // "signal: killed"
	<-n.done
	return n.proc.cleanup()
}
