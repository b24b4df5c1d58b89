package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// errClosedByClient is the end of a connection this client closed itself.
var errClosedByClient = errors.New("client: connection closed by the client")

// conn is one WebSocket connection of a Client, from its handshake until it
// is lost. Its reader goroutine is the only one that reads the socket.
type conn struct {
	ws     *websocket.Conn
	opened time.Time // when OnConnect returned

	stop     chan struct{} // closed when the client closes this connection itself
	stopOnce sync.Once
	ended    chan struct{} // closed when the reader has stopped; err is set by then
	err      error         // why the reader stopped

	mu      sync.Mutex
	pending map[string]chan Message // Requests awaiting their answer, by "req"
	over    bool                    // the reader has stopped: no more answers
}

func newConn(ws *websocket.Conn) *conn {
	return &conn{
		ws:      ws,
		stop:    make(chan struct{}),
		ended:   make(chan struct{}),
		pending: make(map[string]chan Message),
	}
}

// read is the connection's reader goroutine. It hands answers to the Requests
// waiting for them and everything else to Receive, through the client's
// bounded inbox: when that is full it stops reading, and the socket pushes
// back on the server.
func (c *Client) read(cn *conn) {
	for {
		// Never a cancellable context: coder/websocket closes the
		// connection when a read's context ends.
		kind, data, err := cn.ws.Read(context.Background())
		if err != nil {
			cn.end(err)
			return
		}
		m := newMessage(kind, data)
		if m.req != "" && (cn.answer(m) || strings.HasPrefix(m.req, c.reqPrefix)) {
			// Answered, or the late answer of a Request that gave up
			// (its ctx ended): nobody is waiting for it.
			continue
		}
		select {
		case c.inbox <- m:
		case <-cn.stop:
			cn.end(errClosedByClient)
			return
		}
	}
}

// end records why the reader stopped and fails the Requests still waiting.
func (cn *conn) end(err error) {
	cn.mu.Lock()
	cn.err = err
	cn.over = true
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	close(cn.ended)
	for _, ch := range pending {
		close(ch)
	}
}

// isOver reports whether the reader has stopped.
func (cn *conn) isOver() bool {
	select {
	case <-cn.ended:
		return true
	default:
		return false
	}
}

// await registers a Request; it returns nil if the connection is already
// over (then nothing has been sent on it).
func (cn *conn) await(req string) chan Message {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.over {
		return nil
	}
	ch := make(chan Message, 1)
	cn.pending[req] = ch
	return ch
}

// forget unregisters a Request that gave up.
func (cn *conn) forget(req string) {
	cn.mu.Lock()
	delete(cn.pending, req)
	cn.mu.Unlock()
}

// answer hands m to the Request waiting for it, if any.
func (cn *conn) answer(m Message) bool {
	cn.mu.Lock()
	ch, ok := cn.pending[m.req]
	delete(cn.pending, m.req)
	cn.mu.Unlock()
	if ok {
		ch <- m // buffered, and sent to at most once
	}
	return ok
}

// close closes the connection on the client's initiative: with a closing
// handshake, or at once.
func (cn *conn) close(code websocket.StatusCode, reason string, now bool) error {
	cn.stopOnce.Do(func() { close(cn.stop) })
	if now {
		return cn.ws.CloseNow()
	}
	return cn.ws.Close(code, reason)
}
