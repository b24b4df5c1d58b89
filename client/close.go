package client

import (
	"errors"
	"net"

	"github.com/coder/websocket"
)

// Close ends the client: it stops reconnecting, closes the connection with
// the closing handshake (code and reason as for websocket.Conn.Close: the
// reason is at most 123 bytes), and returns once the client's goroutines
// have exited. Receive then returns the messages still buffered, and every
// method returns ErrClosed.
//
// Close must not be called from OnConnect or OnDisconnect, which it would
// wait for; call it in a new goroutine there. A second call returns
// ErrClosed.
func (c *Client) Close(code websocket.StatusCode, reason string) error {
	return c.close(code, reason, false)
}

// CloseNow is Close without the closing handshake: the socket is closed at
// once.
func (c *Client) CloseNow() error {
	return c.close(0, "", true)
}

func (c *Client) close(code websocket.StatusCode, reason string, now bool) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return ErrClosed
	}
	c.closing = true
	c.closeCode, c.closeReason, c.closeNow = code, reason, now
	cn := c.cur
	c.mu.Unlock()

	c.cancel() // stops a reconnection in progress
	var err error
	if cn != nil {
		err = cn.close(code, reason, now)
		if errors.Is(err, net.ErrClosed) {
			err = nil // the connection was over already
		}
	}
	<-c.done
	return err
}
