package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// sayEvery is the pace of each peer's steady traffic.
const sayEvery = 50 * time.Millisecond

// peer is one chat client of the suite and its ledger: what it sent, how
// each message was answered, and what it received.
type peer struct {
	name string // unique in the suite: the prefix of its messages' texts
	node *node
	c    *websocket.Conn

	welcome chan struct{}
	done    chan struct{} // the reader has ended

	mu       sync.Mutex
	id       string
	joined   time.Time // the welcome arrived: a member from then on
	closedAt time.Time
	closeErr error
	nextSeq  int
	sent     map[int]time.Time // when each message was written
	acked    map[int]bool      // answered with a reply: the server took it
	refused  map[int]string    // answered with an error envelope: its code
	received map[string]int    // texts of "said" messages, and how often
	closes   int               // close errors of writes (the sender saw them)
}

// connect opens a peer on n in room and waits for its welcome.
func connect(t *testing.T, n *node, room, name string, dial *websocket.DialOptions) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, n.wsURL(room, name), dial)
	if err != nil {
		t.Fatalf("peer %s on node %s: dial: %v", name, n.name, err)
	}
	c.SetReadLimit(1 << 20)
	p := &peer{
		name: name, node: n, c: c,
		welcome: make(chan struct{}), done: make(chan struct{}),
		sent: map[int]time.Time{}, acked: map[int]bool{}, refused: map[int]string{}, received: map[string]int{},
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	go p.read()
	select {
	case <-p.welcome:
	case <-p.done:
		t.Fatalf("peer %s on node %s closed before its welcome: %v", name, n.name, p.err())
	case <-time.After(10 * time.Second):
		t.Fatalf("peer %s on node %s: no welcome", name, n.name)
	}
	return p
}

// incoming is what the suite reads of a server message.
type incoming struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Text string          `json:"text"`
	Code string          `json:"code"`
	Req  json.RawMessage `json:"req"`
}

func (p *peer) read() {
	defer close(p.done)
	for {
		_, b, err := p.c.Read(context.Background())
		if err != nil {
			p.mu.Lock()
			p.closedAt, p.closeErr = time.Now(), err
			p.mu.Unlock()
			return
		}
		var m incoming
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		seq, _ := strconv.Atoi(string(m.Req))
		p.mu.Lock()
		switch m.Type {
		case "welcome":
			p.id, p.joined = m.ID, time.Now()
			close(p.welcome)
		case "said":
			p.received[m.Text]++
		case "reply":
			p.acked[seq] = true
		case "error":
			if m.Req != nil {
				p.refused[seq] = m.Code
			}
		}
		p.mu.Unlock()
	}
}

func (p *peer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeErr
}

func (p *peer) open() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func text(name string, seq int) string { return name + "#" + strconv.Itoa(seq) }

// say sends the peer's next message, with its sequence number as "req".
func (p *peer) say() {
	p.mu.Lock()
	p.nextSeq++
	seq := p.nextSeq
	p.sent[seq] = time.Now()
	p.mu.Unlock()
	msg := fmt.Sprintf(`{"type":"say","text":%q,"req":%d}`, text(p.name, seq), seq)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		p.mu.Lock()
		p.closes++
		p.mu.Unlock()
	}
}

// chatter sends a message every sayEvery until stop is closed or the peer
// is closed.
func (p *peer) chatter(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(sayEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-p.done:
			return
		case <-t.C:
			p.say()
		}
	}
}

// answered reports whether every message the peer sent was answered (or
// the peer is closed: the rest will never be).
func (p *peer) answered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closedAt.IsZero() {
		return true
	}
	for seq := range p.sent {
		if _, ok := p.refused[seq]; !ok && !p.acked[seq] {
			return false
		}
	}
	return true
}

// ledger accounts for one phase's messages.
type ledger struct {
	peers []*peer
}

// lostWithNode is how long before a node dies the messages it acknowledged
// may die with it: it had taken them but not yet passed them to the other
// nodes (a broadcast is acknowledged when the sender's node sent it on, not
// when the others received it). Their senders saw their connection break
// right after.
const lostWithNode = 500 * time.Millisecond

// problems lists every message that was lost, delivered twice, or
// delivered although refused. A message is owed to a receiver that joined
// before it was sent and is still connected, unless its sender's connection
// was lost (1006: its node died) within lostWithNode of sending it; a
// message whose sender was closed before an answer may have been delivered
// or not, but never twice.
func (l *ledger) problems() []string {
	var out []string
	for _, s := range l.peers {
		s.mu.Lock()
		sent, acked, refused := maps.Clone(s.sent), maps.Clone(s.acked), maps.Clone(s.refused)
		nodeDied := !s.closedAt.IsZero() && websocket.CloseStatus(s.closeErr) == -1
		diedAt := s.closedAt
		s.mu.Unlock()
		for seq, at := range sent {
			if nodeDied && diedAt.Sub(at) < lostWithNode {
				acked[seq] = false // may have died with the node; still never twice
			}
			txt := text(s.name, seq)
			for _, r := range l.peers {
				r.mu.Lock()
				got, joined, open := r.received[txt], r.joined, r.closedAt.IsZero()
				r.mu.Unlock()
				switch {
				case got > 1:
					out = append(out, fmt.Sprintf("%s delivered %d times to %s", txt, got, r.name))
				case refused[seq] != "" && got > 0:
					out = append(out, fmt.Sprintf("%s was refused (%s) but delivered to %s", txt, refused[seq], r.name))
				case acked[seq] && got == 0 && open && joined.Before(at):
					out = append(out, fmt.Sprintf("%s (acknowledged) never reached %s on node %s", txt, r.name, r.node.name))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// owedAll reports whether every acknowledged message reached every receiver
// it is owed to (see problems).
func (l *ledger) owedAll() bool {
	for _, p := range l.problems() {
		if strings.Contains(p, "never reached") {
			return false
		}
	}
	return true
}

// closeCode is the close code a peer received, or -1.
func (p *peer) closeCode() websocket.StatusCode {
	return websocket.CloseStatus(p.err())
}

// deafClient connects to n's room with a tiny receive buffer and never
// reads: the server must find it stalled and close it, and nobody else may
// suffer for it. It returns its connection ID.
func deafClient(t *testing.T, n *node, room string) (string, net.Conn) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	host := strings.TrimPrefix(n.base, "http://")
	req := "GET /ws/chat/" + room + "?name=deaf HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// Read just the response and the welcome, then never again.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	var got []byte
	for !strings.Contains(string(got), `"type":"welcome"`) {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("the deaf client's handshake: %v (read %q)", err, got)
		}
		got = append(got, buf[:k]...)
	}
	_, rest, _ := strings.Cut(string(got), `"id":"`)
	id, _, _ := strings.Cut(rest, `"`)
	return id, conn
}
