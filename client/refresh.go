package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/coder/websocket"
)

// wsactor's credential-refresh protocol (wsactor.WithCredentialRefresh):
// the server asks with {"type":"auth.refresh","deadline":...}, the client
// sends {"type":"auth.refresh","token":...}, asked or not, and the server
// accepts with {"type":"auth.refreshed","expires":...} or closes with 1008.
const (
	typeRefresh       = "auth.refresh"
	typeRefreshed     = "auth.refreshed"
	bearerSubprotocol = "bearer"
)

var (
	errEmptyToken    = errors.New("client: TokenSource returned an empty token")
	errNoTokenSource = errors.New("client: Refresh needs Options.TokenSource")
)

// refreshMessage is a message of the protocol, either way.
type refreshMessage struct {
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Deadline string `json:"deadline,omitempty"`
	Expires  string `json:"expires,omitempty"`
}

// refreshState counts a connection's refreshes; conn.mu guards it. The
// server handles a connection's messages in order and accepts each valid
// token with one auth.refreshed (an invalid one closes the connection), so
// the n-th acknowledgement answers the n-th token sent.
type refreshState struct {
	sent    uint64                    // tokens written
	acked   uint64                    // auth.refreshed received
	waiters map[uint64]chan time.Time // Refresh calls awaiting acknowledgement, by token number
	failed  error                     // why the last ask went unanswered, until an acknowledgement
}

// Refresh sends new credentials from Options.TokenSource now, without
// waiting for the server to ask ({"type":"auth.refresh","token":...}), for
// instance ahead of the current token's expiry or after the user's claims
// changed. It returns once the server has accepted them, with their expiry
// (zero if they never expire).
//
// While the client is reconnecting, Refresh waits for the new connection,
// like Send (that connection's handshake already used a fresh token). If the
// server refuses the token it closes the connection with 1008 (see
// TokenSource), and Refresh returns an error wrapping ErrDisconnected and
// the close (websocket.CloseStatus). A server route without
// wsactor.WithCredentialRefresh, or an anonymous connection, never
// acknowledges: Refresh then returns ctx's error when ctx ends.
func (c *Client) Refresh(ctx context.Context) (time.Time, error) {
	if c.opts.TokenSource == nil {
		return time.Time{}, errNoTokenSource
	}
	cn, err := c.conn(ctx)
	if err != nil {
		return time.Time{}, err
	}
	n, ack, err := c.sendToken(ctx, cn, true)
	if err != nil {
		return time.Time{}, err
	}
	select {
	case expires, ok := <-ack:
		if !ok {
			if c.isClosing() {
				return time.Time{}, ErrClosed
			}
			return time.Time{}, fmt.Errorf("%w: connection lost before the server accepted the credentials: %w", ErrDisconnected, cn.err)
		}
		return expires, nil
	case <-ctx.Done():
		cn.mu.Lock()
		delete(cn.refresh.waiters, n)
		cn.mu.Unlock()
		return time.Time{}, ctx.Err()
	}
}

// token calls TokenSource.
func (c *Client) token(ctx context.Context) (string, error) {
	token, err := c.opts.TokenSource(ctx)
	if err != nil {
		return "", fmt.Errorf("client: TokenSource: %w", err)
	}
	return token, nil
}

// sendToken fetches a token and sends it on cn. It returns the token's
// number and, if wait, a channel that receives its acknowledgement's expiry
// (closed if the connection ends first).
func (c *Client) sendToken(ctx context.Context, cn *conn, wait bool) (uint64, chan time.Time, error) {
	// One at a time: a token fetched later must not overtake an earlier
	// one, or the server would end up with the older credentials.
	select {
	case cn.refreshing <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	defer func() { <-cn.refreshing }()

	token, err := c.token(ctx)
	if err == nil && token == "" {
		err = errEmptyToken
	}
	if err != nil {
		return 0, nil, err
	}
	data, err := json.Marshal(refreshMessage{Type: typeRefresh, Token: token})
	if err != nil {
		return 0, nil, fmt.Errorf("client: encoding the token: %w", err)
	}

	cn.mu.Lock()
	if cn.over {
		cn.mu.Unlock()
		return 0, nil, disconnected(cn.err)
	}
	cn.refresh.sent++
	n := cn.refresh.sent
	var ack chan time.Time
	if wait {
		ack = make(chan time.Time, 1)
		if cn.refresh.waiters == nil {
			cn.refresh.waiters = make(map[uint64]chan time.Time)
		}
		cn.refresh.waiters[n] = ack
	}
	cn.mu.Unlock()

	if err := cn.ws.Write(ctx, websocket.MessageText, data); err != nil {
		// Nothing went out, or coder/websocket is closing the connection
		// because a frame was cut short: either way no acknowledgement
		// comes for this token.
		cn.mu.Lock()
		cn.refresh.sent--
		delete(cn.refresh.waiters, n)
		cn.mu.Unlock()
		return 0, nil, fmt.Errorf("client: write: %w", err)
	}
	return n, ack, nil
}

// answerRefresh answers the server's ask for new credentials on cn. It runs
// on the client's goroutine, which handles cn's loss only after it returns.
func (c *Client) answerRefresh(cn *conn) {
	_, _, err := c.sendToken(cn.ctx, cn, false)
	if err == nil {
		return
	}
	cn.mu.Lock()
	cn.refresh.failed = err
	cn.mu.Unlock()
	if c.ctx.Err() == nil { // not after Close
		c.opts.Logger.Warn("client: credential refresh failed; the server will close the connection at its deadline",
			slog.String("url", c.logURL), slog.Any("err", err))
	}
}

// onRefreshMessage handles the server's side of the protocol, on cn's
// reader goroutine, which it must not block.
func (c *Client) onRefreshMessage(cn *conn, m Message) {
	var rm refreshMessage
	_ = json.Unmarshal(m.Data, &rm) // newMessage has parsed it already
	if m.Type == typeRefresh {
		c.opts.Logger.Debug("client: server asks for new credentials", slog.String("url", c.logURL), slog.String("deadline", rm.Deadline))
		select {
		case cn.asked <- struct{}{}:
		default: // an ask is already waiting: one token answers both
		}
		return
	}
	var expires time.Time
	if rm.Expires != "" {
		expires, _ = time.Parse(time.RFC3339Nano, rm.Expires)
	}
	cn.mu.Lock()
	cn.refresh.acked++
	cn.refresh.failed = nil
	ack := cn.refresh.waiters[cn.refresh.acked]
	delete(cn.refresh.waiters, cn.refresh.acked)
	cn.mu.Unlock()
	if ack != nil {
		ack <- expires // buffered, and sent to at most once
	}
	c.opts.Logger.Debug("client: credentials refreshed", slog.String("url", c.logURL), slog.String("expires", rm.Expires))
}

// cause is why cn was lost, with the failure of an unanswered ask for new
// credentials, which is usually why the server closed it.
func (cn *conn) cause() error {
	cn.mu.Lock()
	failed := cn.refresh.failed
	cn.mu.Unlock()
	if failed == nil {
		return cn.err
	}
	return fmt.Errorf("%w (after the credential refresh failed: %w)", cn.err, failed)
}
