package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/coder/websocket"
)

// Send sends the envelope {"type": typ, ...payload's fields}: payload must
// encode as a JSON object (a struct or a map) or be nil, and its fields sit
// beside "type", which is how wsactor.On decodes them on the server. A
// "type" field in payload is replaced by typ.
//
//	c.Send(ctx, "chat.say", say{Text: "hi"}) // {"type":"chat.say","text":"hi"}
//
// While the client is reconnecting, Send waits for the new connection,
// bounded by ctx (the error then wraps both ErrDisconnected and ctx's
// error). A Send that races with the loss of the connection fails rather
// than being repeated on the next one, since it may have been partly
// written. As with coder/websocket, a ctx that ends in the middle of the
// write closes the connection.
func (c *Client) Send(ctx context.Context, typ string, payload any) error {
	data, err := encodeEnvelope(typ, "", payload)
	if err != nil {
		return err
	}
	return c.write(ctx, websocket.MessageText, data)
}

// SendJSON sends v encoded as JSON in a text message, as it is.
func (c *Client) SendJSON(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: encoding JSON: %w", err)
	}
	return c.write(ctx, websocket.MessageText, data)
}

// SendText sends a text message.
func (c *Client) SendText(ctx context.Context, s string) error {
	return c.write(ctx, websocket.MessageText, []byte(s))
}

// SendBinary sends a binary message.
func (c *Client) SendBinary(ctx context.Context, b []byte) error {
	return c.write(ctx, websocket.MessageBinary, b)
}

func (c *Client) write(ctx context.Context, kind websocket.MessageType, data []byte) error {
	cn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	if err := cn.ws.Write(ctx, kind, data); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

var errEmptyType = errors.New("client: empty message type")

// encodeEnvelope builds {"type":typ,"req":req,...payload's fields}, without
// "req" if it is empty. Fields of payload that the server would read as
// "type" (or "req") are left out: encoding/json matches keys without regard
// to case, and the last duplicate wins.
func encodeEnvelope(typ, req string, payload any) ([]byte, error) {
	if typ == "" {
		return nil, errEmptyType
	}
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	writeJSONString(&b, typ)
	if req != "" {
		b.WriteString(`,"req":`)
		writeJSONString(&b, req)
	}
	if payload != nil {
		obj, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("client: encoding the payload of %q: %w", typ, err)
		}
		if err := appendFields(&b, obj, req != ""); err != nil {
			return nil, fmt.Errorf("client: the payload of %q: %w", typ, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// appendFields appends the members of the JSON object obj, in order.
func appendFields(b *bytes.Buffer, obj []byte, dropReq bool) error {
	if string(obj) == "null" {
		return nil
	}
	if len(obj) == 0 || obj[0] != '{' {
		return errors.New("it must encode as a JSON object or null")
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return err
		}
		if strings.EqualFold(key, "type") || (dropReq && strings.EqualFold(key, "req")) {
			continue
		}
		b.WriteByte(',')
		writeJSONString(b, key)
		b.WriteByte(':')
		b.Write(value)
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always encodes
	b.Write(enc)
}
