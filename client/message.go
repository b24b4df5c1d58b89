package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/coder/websocket"
)

// Message is one message received from the server.
type Message struct {
	// Kind is websocket.MessageText or websocket.MessageBinary.
	Kind websocket.MessageType
	// Data is the message as received; it belongs to the caller.
	Data []byte
	// Type is the "type" of a text message that holds a JSON object with a
	// string "type" (such as "chat.said", or "error" for an error envelope
	// that answers no Request); "" for any other message.
	Type string

	req string // the string "req" of a "reply" or "error" envelope
}

// Text returns the message's data as a string.
func (m Message) Text() string { return string(m.Data) }

// Decode decodes a message's JSON data into a new T: the whole object, so
// T's fields sit beside "type", as in wsactor.On on the server. An error
// envelope decodes into an EnvelopeError.
func Decode[T any](m Message) (T, error) {
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return v, fmt.Errorf("client: decoding message %q: %w", m.Type, err)
	}
	return v, nil
}

// newMessage reads the routing head of a text message that holds a JSON
// object: its "type" and, for an answer, its "req".
func newMessage(kind websocket.MessageType, data []byte) Message {
	m := Message{Kind: kind, Data: data}
	if kind != websocket.MessageText {
		return m
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return m
	}
	var head struct {
		Type json.RawMessage `json:"type"`
		Req  json.RawMessage `json:"req"`
	}
	if json.Unmarshal(data, &head) != nil {
		return m
	}
	if len(head.Type) > 0 && head.Type[0] == '"' {
		_ = json.Unmarshal(head.Type, &m.Type)
	}
	// Request always sends "req" as a string; a number is someone else's.
	if (m.Type == "reply" || m.Type == "error") && len(head.Req) > 0 && head.Req[0] == '"' {
		_ = json.Unmarshal(head.Req, &m.req)
	}
	return m
}

// Receive returns the next message from the server that does not answer a
// Request: pushes, messages sent in reply to Send, and error envelopes
// without a matching "req" (with Options.TokenSource, not the
// credential-refresh protocol's messages, which the client handles).
// Messages arrive in the order the server sent
// them, across reconnections. Once the client has ended, Receive returns
// what is still buffered and then the client's error (see Err).
//
// Receive may be called from one goroutine or several; each message goes to
// one caller.
func (c *Client) Receive(ctx context.Context) (Message, error) {
	select {
	case m := <-c.inbox:
		return m, nil
	default:
	}
	select {
	case m := <-c.inbox:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-c.done:
		// The reader has stopped for good: what is buffered is all there is.
		select {
		case m := <-c.inbox:
			return m, nil
		default:
			return Message{}, c.Err()
		}
	}
}
