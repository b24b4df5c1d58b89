package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// State is a Client's connection state.
type State int

const (
	// StateConnecting: the connection was lost and the client is
	// reconnecting (or running OnConnect on a new connection).
	StateConnecting State = iota
	// StateOpen: connected, and OnConnect has returned.
	StateOpen
	// StateClosed: the client has ended (see Err). It never leaves this
	// state.
	StateClosed
)

// String returns "connecting", "open" or "closed".
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Client is a connection to a WebSocket server that survives reconnections
// (with Options.Reconnect). Its methods are safe for concurrent use.
//
// Each connection has one reader goroutine, and the client one more that
// watches the connection, answers the server's requests for new credentials
// (see Options.TokenSource) and reconnects; both have exited when Close or
// CloseNow returns, or when Done is closed.
type Client struct {
	url       string
	logURL    string // url without its query, which may hold a token
	opts      Options
	dialOpts  *websocket.DialOptions
	reqPrefix string // starts every "req" that Request sends
	reqSeq    atomic.Uint64
	randN     func(int64) int64
	inbox     chan Message

	ctx    context.Context // ends at Close: stops reconnecting
	cancel context.CancelFunc
	done   chan struct{} // closed once the client has ended and its goroutines have exited

	// streak counts reconnection attempts since the last connection that
	// stayed open for MaxBackoff; it sets the backoff. Only run touches it.
	streak int

	mu          sync.Mutex
	state       State
	changed     chan struct{} // closed and replaced at every state change
	cur         *conn         // the latest connection, from its handshake until it is lost
	err         error         // why the client ended, once StateClosed
	closing     bool          // Close or CloseNow was called
	closeCode   websocket.StatusCode
	closeReason string
	closeNow    bool
}

// connKey marks OnConnect's context with the connection being set up, so
// Sends made with it need not wait for StateOpen.
type connKey struct{ c *Client }

// Dial connects to a WebSocket server (a ws://, wss://, http:// or https://
// URL) and runs OnConnect, both bounded by ctx; ctx does not bound the
// connection once Dial has returned. opts may be nil.
//
// If the server refuses the upgrade, the error is a *HandshakeError with
// the HTTP status. Dial makes one attempt, even with Options.Reconnect.
func Dial(ctx context.Context, rawURL string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	c := &Client{
		url:       rawURL,
		logURL:    redact(rawURL),
		opts:      o,
		dialOpts:  o.dialOptions(o.Token),
		reqPrefix: fmt.Sprintf("c%08x.", rand.Uint32()),
		randN:     rand.Int64N,
		inbox:     make(chan Message, o.ReceiveBuffer),
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.mu.Lock()
	c.setState(StateOpen)
	c.mu.Unlock()
	go c.run(cn)
	return c, nil
}

// redact drops the query, which may carry a token, for logging.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// connect makes one connection: the handshake, its reader, and OnConnect.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	dialOpts := c.dialOpts
	if c.opts.TokenSource != nil {
		token, err := c.token(ctx)
		if err != nil {
			return nil, err
		}
		dialOpts = c.opts.dialOptions(token)
	}
	ws, resp, err := websocket.Dial(ctx, c.url, dialOpts)
	if err != nil {
		return nil, handshakeError(resp, err)
	}
	ws.SetReadLimit(c.opts.ReadLimit)
	cn := newConn(c.ctx, ws)
	go c.read(cn)
	if !c.adopt(cn) {
		return nil, ErrClosed
	}
	if c.opts.OnConnect == nil {
		cn.opened = time.Now()
		return cn, nil
	}
	if err := c.opts.OnConnect(context.WithValue(ctx, connKey{c}, cn), c); err != nil {
		_ = cn.close(websocket.StatusNormalClosure, "", false)
		<-cn.ended
		c.mu.Lock()
		if c.cur == cn {
			c.cur = nil
		}
		closing := c.closing
		c.mu.Unlock()
		if closing {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("client: OnConnect: %w", err)
	}
	cn.opened = time.Now()
	return cn, nil
}

func handshakeError(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return err
	}
	he := &HandshakeError{StatusCode: resp.StatusCode, Header: resp.Header, Err: err}
	if resp.Body != nil {
		// coder/websocket keeps the first KiB of the body for us.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		he.Body = strings.TrimSpace(string(b))
	}
	return he
}

// adopt makes cn the current connection, unless the client is closing; then
// it closes cn as Close asked and returns false.
func (c *Client) adopt(cn *conn) bool {
	c.mu.Lock()
	if !c.closing {
		c.cur = cn
		c.mu.Unlock()
		return true
	}
	code, reason, now := c.closeCode, c.closeReason, c.closeNow
	c.mu.Unlock()
	_ = cn.close(code, reason, now)
	<-cn.ended
	return false
}

// run watches the connection and replaces it when it is lost, until the
// client ends.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	for cn != nil {
		select {
		case <-cn.ended:
			cn = c.lost(cn)
		case <-cn.asked:
			c.answerRefresh(cn)
		}
	}
}

// lost handles the loss of cn and returns the next connection, or nil when
// the client has ended.
func (c *Client) lost(cn *conn) *conn {
	cause := cn.cause()
	c.mu.Lock()
	if c.cur == cn {
		c.cur = nil
	}
	if c.closing {
		c.end(ErrClosed)
		c.mu.Unlock()
		return nil
	}
	final := !c.opts.Reconnect || c.final(cause)
	if final {
		c.end(disconnected(cause))
	} else {
		c.setState(StateConnecting)
	}
	c.mu.Unlock()

	c.opts.Logger.Debug("client: connection lost", slog.String("url", c.logURL), slog.Any("err", cause), slog.Bool("reconnect", !final))
	if c.opts.OnDisconnect != nil {
		c.opts.OnDisconnect(cause)
	}
	if final {
		return nil
	}
	if time.Since(cn.opened) >= c.opts.MaxBackoff {
		c.streak = 0 // a stable connection: start again from MinBackoff
	}
	next, err := c.redial()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.closing {
			err = ErrClosed
		}
		c.end(err)
		return nil
	}
	if !c.closing { // else Close is closing next, and run sees it end
		c.setState(StateOpen)
	}
	return next
}

// redial reconnects, waiting a growing random time before each attempt.
func (c *Client) redial() (*conn, error) {
	var last error
	for n := 1; ; n++ {
		if c.opts.MaxAttempts > 0 && n > c.opts.MaxAttempts {
			return nil, fmt.Errorf("%w: %d reconnection attempts failed, the last one with: %w", ErrDisconnected, n-1, last)
		}
		c.streak++
		t := time.NewTimer(backoff(c.streak, c.opts.MinBackoff, c.opts.MaxBackoff, c.randN))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
		cn, err := c.connect(ctx)
		cancel()
		if err == nil {
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if closing {
				// Close took cn as the current connection and closes it.
				<-cn.ended
				return nil, ErrClosed
			}
			c.opts.Logger.Debug("client: reconnected", slog.String("url", c.logURL), slog.Int("attempt", n))
			return cn, nil
		}
		if errors.Is(err, ErrClosed) || c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if c.final(err) {
			return nil, disconnected(err)
		}
		last = err
		c.opts.Logger.Debug("client: reconnection failed", slog.String("url", c.logURL), slog.Int("attempt", n), slog.Any("err", err))
	}
}

// final reports whether err rules out reconnecting.
func (c *Client) final(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.final()
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return c.opts.FinalClose(ce.Code, ce.Reason)
	}
	return false
}

// setState changes the state and wakes its waiters; c.mu is held.
func (c *Client) setState(s State) {
	c.state = s
	close(c.changed)
	c.changed = make(chan struct{})
}

// end ends the client with err; c.mu is held.
func (c *Client) end(err error) {
	if c.state == StateClosed {
		return
	}
	c.err = err
	c.setState(StateClosed)
	c.cancel()
}

// State returns the client's connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// WaitOpen waits until the client is open (connected, and OnConnect has
// returned). It returns the client's error if it ends first (see Err), or
// ctx's error.
func (c *Client) WaitOpen(ctx context.Context) error {
	_, err := c.wait(ctx, false)
	return err
}

// Done returns a channel that is closed when the client has ended, for good,
// and its goroutines have exited.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended: ErrClosed after Close or CloseNow, or
// an error wrapping ErrDisconnected and its cause, such as the server's
// close frame (websocket.CloseStatus(err) returns its code) or a
// *HandshakeError. It returns nil while the client is connected or
// reconnecting.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// conn returns the connection to send on, waiting for reconnection if need
// be. In OnConnect, it returns the connection being set up.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	if cn, ok := ctx.Value(connKey{c}).(*conn); ok {
		if cn.isOver() {
			return nil, disconnected(cn.err)
		}
		return cn, nil
	}
	return c.wait(ctx, true)
}

// wait waits for StateOpen and returns the current connection.
func (c *Client) wait(ctx context.Context, sending bool) (*conn, error) {
	for {
		c.mu.Lock()
		state, cn, err, changed := c.state, c.cur, c.err, c.changed
		c.mu.Unlock()
		switch {
		case state == StateClosed:
			return nil, err
		case state == StateOpen && cn != nil && !cn.isOver():
			return cn, nil
		}
		// Connecting, or open on a connection whose loss the client is
		// about to handle: either way, the state changes next.
		select {
		case <-changed:
		case <-ctx.Done():
			if sending {
				return nil, fmt.Errorf("%w: no connection: %w", ErrDisconnected, ctx.Err())
			}
			return nil, ctx.Err()
		}
	}
}
