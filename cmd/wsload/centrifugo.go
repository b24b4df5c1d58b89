package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// The centrifugo kind: Centrifugo v6 (https://centrifugal.dev), run as a
// child of "wsload serve -kind centrifugo" with its in-memory engine and
// insecure anonymous clients, so that the table shows the field's reference
// server next to bare and wsactor. Its binary is installed by
// install-centrifugo.sh (go install through the module proxy), never a
// dependency of wsactor's module. The serve process only stands in front of
// it: it reports the child's RSS, CPU time and fds from /proc and its heap,
// stacks, goroutines and clients from its Prometheus metrics, and turns
// POST /broadcast into a call to Centrifugo's HTTP publish API. The clients
// connect to Centrifugo directly and speak its JSON protocol.

// CentrifugoVersion is the version install-centrifugo.sh installs and the
// results in BENCHMARKS.md were measured with.
const CentrifugoVersion = "v6.9.1"

// centrifugoAPIKey is the HTTP API key of the child (loopback only).
const centrifugoAPIKey = "wsload"

// centrifugoConfig is the child's configuration: everything else is
// Centrifugo's default (the memory engine, JSON and Protobuf on one
// WebSocket endpoint, pings every 25 s).
func centrifugoConfig(port int) map[string]any {
	return map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"engine":      map[string]any{"type": "memory"},
		// Anonymous connections without a token, allowed to subscribe to
		// any channel: the load clients have no JWTs.
		"client":      map[string]any{"insecure": true, "allow_anonymous_connect_without_token": true, "allowed_origins": []string{"*"}},
		"http_api":    map[string]any{"key": centrifugoAPIKey},
		"prometheus":  map[string]any{"enabled": true},
		"debug":       map[string]any{"enabled": true}, // /debug/pprof/heap?gc=1 collects garbage before the idle figure
		"health":      map[string]any{"enabled": true}, // /health: the front process waits for it at start
		"usage_stats": map[string]any{"disabled": true},
	}
}

// findCentrifugo returns the binary to run: path if set, else centrifugo on
// $PATH, else in $GOBIN or $GOPATH/bin, where install-centrifugo.sh puts it.
func findCentrifugo(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if p, err := exec.LookPath("centrifugo"); err == nil {
		return p, nil
	}
	dir := os.Getenv("GOBIN")
	if dir == "" {
		dir = filepath.Join(build.Default.GOPATH, "bin")
	}
	p := filepath.Join(dir, "centrifugo")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("centrifugo %s is not installed (looked on $PATH and in %s): run cmd/wsload/install-centrifugo.sh, or pass -centrifugo PATH", CentrifugoVersion, dir)
	}
	return p, nil
}

// centrifugoServer is the serve process's view of its Centrifugo child.
type centrifugoServer struct {
	cmd    *exec.Cmd
	addr   string // the child's host:port
	dir    string // its config
	exited chan struct{}
	client *http.Client
}

// startCentrifugo runs the binary with a fresh configuration on a free
// loopback port and waits (bounded) until it answers its health check.
func startCentrifugo(ctx context.Context, bin string, stderr io.Writer) (*centrifugoServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // a race with another process for the port fails the health check below
	dir, err := os.MkdirTemp("", "wsload-centrifugo-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.json")
	b, _ := json.MarshalIndent(centrifugoConfig(port), "", "  ")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// It dies with this process, even one killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start %s: %w", bin, err), os.RemoveAll(dir))
	}
	cs := &centrifugoServer{
		cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{}),
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
	}
	go func() { _ = cmd.Wait(); close(cs.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cs.client.Get("http://" + cs.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cs, nil
			}
		}
		select {
		case <-cs.exited:
			return nil, errors.Join(fmt.Errorf("centrifugo exited at start (%v); its log is the server log", cmd.ProcessState), os.RemoveAll(dir))
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), cs.shutdown(context.Background()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("centrifugo did not answer on %s within 30 s", cs.addr), cs.shutdown(context.Background()))
		}
	}
}

// target is the URL its clients connect to.
func (cs *centrifugoServer) target() string { return "ws://" + cs.addr + "/connection/websocket" }

// ServeHTTP answers on the serve process's own /ws: the clients belong on
// Centrifugo's endpoint.
func (cs *centrifugoServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "this is the centrifugo kind's front process: connect to "+cs.target(), http.StatusNotFound)
}

// counts reports the child's clients; Centrifugo does not count messages
// per connection in a way comparable with the others, so in and out are 0.
func (cs *centrifugoServer) counts() (open, accepted, in, out int64) {
	m, _ := cs.metrics()
	n := int64(m["centrifugo_node_num_clients"])
	return n, n, 0, 0
}

// broadcast publishes b (a JSON object) to the channel through the HTTP API
// and returns -1 members: the API does not say how many it reached.
func (cs *centrifugoServer) broadcast(ctx context.Context, b []byte) (int, error) {
	body := make([]byte, 0, len(b)+48)
	body = append(body, `{"channel":"`+groupName+`","data":`...)
	body = append(body, b...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cs.addr+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", centrifugoAPIKey)
	resp, err := cs.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || bytes.Contains(reply, []byte(`"error"`)) {
		return 0, fmt.Errorf("centrifugo publish: %s: %s", resp.Status, bytes.TrimSpace(reply))
	}
	return -1, nil
}

// stats reads the child's figures: RSS, CPU time and fds from /proc, heap,
// stacks and goroutines from its Prometheus metrics. collect runs two
// garbage collections in it first (its pprof heap handler's gc=1); unlike
// the other kinds it cannot be made to return the freed memory to the OS at
// once (debug.FreeOSMemory), which its background scavenger does over time.
func (cs *centrifugoServer) stats(collect bool) serverStats {
	if collect {
		for range 2 {
			if resp, err := cs.client.Get("http://" + cs.addr + "/debug/pprof/heap?gc=1"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	pid := cs.cmd.Process.Pid
	st := serverStats{Kind: "centrifugo", Collected: collect, RSS: procRSS(pid), FDs: procFDs(pid), CPUNs: procCPU(pid).Nanoseconds()}
	m, _ := cs.metrics()
	st.HeapInuse = uint64(m["go_memstats_heap_inuse_bytes"])
	st.HeapAlloc = uint64(m["go_memstats_heap_alloc_bytes"])
	st.StackInuse = uint64(m["go_memstats_stack_inuse_bytes"])
	st.Sys = uint64(m["go_memstats_sys_bytes"])
	st.Goroutines = int(m["go_goroutines"])
	st.NumGC = uint32(m["go_gc_duration_seconds_count"])
	st.Open = int64(m["centrifugo_node_num_clients"])
	st.Accepted = st.Open
	return st
}

// metrics reads the child's Prometheus metrics without labels (and sums
// labelled series of the same name).
func (cs *centrifugoServer) metrics() (map[string]float64, error) {
	resp, err := cs.client.Get("http://" + cs.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parsePromText(resp.Body), nil
}

// parsePromText reads Prometheus's text format: "name{labels} value" lines,
// summed by name.
func parsePromText(r io.Reader) map[string]float64 {
	m := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[name] += v
		}
	}
	return m
}

// shutdown stops the child with SIGTERM (Centrifugo's graceful shutdown),
// kills it if ctx ends first, and removes its configuration.
func (cs *centrifugoServer) shutdown(ctx context.Context) error {
	_ = cs.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-cs.exited:
	case <-ctx.Done():
		_ = cs.cmd.Process.Kill()
		<-cs.exited
		err = errors.New("centrifugo did not stop in time: killed")
	}
	return errors.Join(err, os.RemoveAll(cs.dir))
}

// procRSS, procFDs and procCPU read another process's figures from /proc.
func procRSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmRSS(b)
}

func procFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// procCPU is the CPU time of the process: the run times of its threads in
// /proc/PID/task/*/schedstat, in nanoseconds, or where the kernel keeps
// none, the user + system time in /proc/PID/stat, in clock ticks of
// 1/100 s. Ticks are too coarse for a short broadcast: CI's, 500
// deliveries, took Centrifugo less than one, and its CPU read as 0.
func procCPU(pid int) time.Duration {
	if d, ok := procSchedCPU(pid); ok {
		return d
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it follow
	// its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procSchedCPU sums the run time of pid's threads from their schedstat
// files; ok is false where there are none. (A thread that exited takes its
// time with it; Go's runtime keeps its threads.)
func procSchedCPU(pid int) (d time.Duration, ok bool) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // a thread that just exited, or no schedstat
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		d += time.Duration(ns)
		ok = true
	}
	return d, ok
}

// The client side: Centrifugo's JSON protocol (protocol v2). A client sends
// commands with an id and gets replies with the same id; the server sends
// pushes (no id) and pings (an empty object, answered with an empty
// object). Several replies may share one frame, one per line.

// centrifugoMsg is one reply or push of a frame.
type centrifugoMsg struct {
	kind centrifugoKind
	id   int64  // replies
	err  string // replies with an error, and disconnect pushes
	seq  int64  // publications carrying a broadcast stamp
	t    int64
}

type centrifugoKind int

const (
	cfOther       centrifugoKind = iota // a push the tool does not use (join, leave...)
	cfPing                              // the server's ping: answer with {}
	cfReply                             // the reply to a command
	cfPublication                       // a publication in a subscribed channel
	cfDisconnect                        // the server is closing the connection
)

// parseCentrifugoFrame splits a frame into its replies and pushes.
// Publications are scanned for the broadcast stamp, not decoded: a client
// process reads thousands of them per broadcast.
func parseCentrifugoFrame(frame []byte) ([]centrifugoMsg, error) {
	var out []centrifugoMsg
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		m, err := parseCentrifugoLine(line)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

func parseCentrifugoLine(line []byte) (centrifugoMsg, error) {
	if bytes.Equal(line, []byte("{}")) {
		return centrifugoMsg{kind: cfPing}, nil
	}
	if bytes.HasPrefix(line, []byte(`{"push":`)) {
		switch {
		case bytes.Contains(line, []byte(`"pub":`)):
			seq, t, ok := scanStamp(line)
			if !ok {
				return centrifugoMsg{}, fmt.Errorf("centrifugo publication without a broadcast stamp: %.100s", line)
			}
			return centrifugoMsg{kind: cfPublication, seq: seq, t: t}, nil
		case bytes.Contains(line, []byte(`"disconnect":`)):
			return centrifugoMsg{kind: cfDisconnect, err: string(line)}, nil
		}
		return centrifugoMsg{kind: cfOther}, nil
	}
	var r struct {
		ID    int64 `json:"id"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return centrifugoMsg{}, fmt.Errorf("centrifugo frame: %w: %.100s", err, line)
	}
	m := centrifugoMsg{kind: cfReply, id: r.ID}
	if r.Error != nil {
		m.err = fmt.Sprintf("%d %s", r.Error.Code, r.Error.Message)
	}
	if r.ID == 0 {
		m.kind = cfOther
	}
	return m, nil
}

// centrifugoHandshake connects (anonymously) and, if channel is set,
// subscribes, waiting for each reply. Pings before the replies are answered.
func centrifugoHandshake(ctx context.Context, ws *websocket.Conn, channel string) error {
	if err := centrifugoCommand(ctx, ws, 1, `{"id":1,"connect":{"name":"wsload"}}`); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if channel == "" {
		return nil
	}
	cmd, _ := json.Marshal(map[string]any{"id": 2, "subscribe": map[string]string{"channel": channel}})
	if err := centrifugoCommand(ctx, ws, 2, string(cmd)); err != nil {
		return fmt.Errorf("subscribe to %q: %w", channel, err)
	}
	return nil
}

func centrifugoCommand(ctx context.Context, ws *websocket.Conn, id int64, cmd string) error {
	if err := ws.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		return err
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		msgs, err := parseCentrifugoFrame(b)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch {
			case m.kind == cfPing:
				if err := ws.Write(ctx, websocket.MessageText, []byte("{}")); err != nil {
					return err
				}
			case m.kind == cfDisconnect:
				return errors.New(m.err)
			case m.kind == cfReply && m.id == id:
				if m.err != "" {
					return errors.New(m.err)
				}
				return nil
			}
		}
	}
}
