package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/coder/websocket"
)

// Request sends {"type": typ, "req": <a fresh string>, ...payload's fields}
// (see Send) and waits for the answer with the same "req", which wsactor's
// OnRequest handlers send: {"type":"reply","data":...} is decoded into
// result (a pointer, or nil to ignore the data), and {"type":"error",...}
// is returned as an *EnvelopeError. A "req" field in payload is replaced.
//
// Messages that arrive meanwhile are not lost: they wait for Receive. While
// the client is reconnecting, Request waits for the new connection, like
// Send. If the connection is lost after the request was sent, Request fails
// with an error wrapping ErrDisconnected (the server may or may not have
// handled it); it is not sent again. If ctx ends first, Request returns
// ctx's error, and a late answer is discarded.
//
// The "req" values start with a prefix chosen at random for each Client, so
// they cannot be confused with values an application sends itself.
func (c *Client) Request(ctx context.Context, typ string, payload, result any) error {
	req := c.reqPrefix + strconv.FormatUint(c.reqSeq.Add(1), 36)
	data, err := encodeEnvelope(typ, req, payload)
	if err != nil {
		return err
	}
	var cn *conn
	var answer chan Message
	for answer == nil {
		if cn, err = c.conn(ctx); err != nil {
			return err
		}
		// nil if cn was lost meanwhile; nothing was sent, so the next
		// connection may carry the request.
		answer = cn.await(req)
	}
	if err := cn.ws.Write(ctx, websocket.MessageText, data); err != nil {
		cn.forget(req)
		return fmt.Errorf("client: write: %w", err)
	}
	select {
	case m, ok := <-answer:
		if !ok {
			if c.isClosing() {
				return ErrClosed
			}
			return fmt.Errorf("%w: connection lost before the answer to %q: %w", ErrDisconnected, typ, cn.err)
		}
		return decodeAnswer(typ, m, result)
	case <-ctx.Done():
		cn.forget(req)
		select {
		case m, ok := <-answer: // it arrived just in time
			if ok {
				return decodeAnswer(typ, m, result)
			}
		default:
		}
		return ctx.Err()
	}
}

func decodeAnswer(typ string, m Message, result any) error {
	if m.Type == "error" {
		e := &EnvelopeError{}
		if err := json.Unmarshal(m.Data, e); err != nil {
			return fmt.Errorf("client: malformed error envelope answering %q: %w", typ, err)
		}
		return e
	}
	if result == nil {
		return nil
	}
	var reply struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return fmt.Errorf("client: malformed reply to %q: %w", typ, err)
	}
	if len(reply.Data) == 0 {
		return nil // no "data": leave result as it is, as for null
	}
	if err := json.Unmarshal(reply.Data, result); err != nil {
		return fmt.Errorf("client: decoding the reply to %q: %w", typ, err)
	}
	return nil
}

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}
