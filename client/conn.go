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

	ctx      context.Context // ends with the connection, or at Close
	cancel   context.CancelFunc
	stop     chan struct{} // closed when the client closes this connection itself
	stopOnce sync.Once
	ended    chan struct{} // closed when the reader has stopped; err is set by then
	err      error         // why the reader stopped

	asked      chan struct{} // the server asked for new credentials (buffered: one ask waits)
	refreshing chan struct{} // a one-slot lock held while a token is fetched and sent

	mu      sync.Mutex
	pending map[string]chan Message // Requests awaiting their answer, by "req"
	over    bool                    // the reader has stopped: no more answers
	refresh refreshState
}

func newConn(ctx context.Context, ws *websocket.Conn) *conn {
	cn := &conn{
		ws:         ws,
		stop:       make(chan struct{}),
		ended:      make(chan struct{}),
		asked:      make(chan struct{}, 1),
		refreshing: make(chan struct{}, 1),
		pending:    make(map[string]chan Message),
	}
	cn.ctx, cn.cancel = context.WithCancel(ctx)
	return cn
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
		if c.opts.TokenSource != nil && (m.Type == typeRefresh || m.Type == typeRefreshed) {
			c.onRefreshMessage(cn, m)
			continue
		}
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
	acks := cn.refresh.waiters
	cn.refresh.waiters = nil
	cn.mu.Unlock()
	cn.cancel()
	close(cn.ended)
	for _, ch := range pending {
		close(ch)
	}
	for _, ch := range acks {
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
