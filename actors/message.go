package actors

import (
	"encoding/json"
	"fmt"

	"github.com/wsactor/wsactor/transport"
)

// MessageType is MessageText or MessageBinary.
type MessageType = transport.MessageType

// The two kinds of WebSocket data message.
const (
	MessageText   = transport.MessageText
	MessageBinary = transport.MessageBinary
)

// Message is one WebSocket data message, inbound or outbound.
type Message struct {
	Type MessageType
	Data []byte
}

// Text returns a text message.
func Text(s string) Message { return Message{Type: MessageText, Data: []byte(s)} }

// Binary returns a binary message. b is not copied.
func Binary(b []byte) Message { return Message{Type: MessageBinary, Data: b} }

// JSON returns a text message holding v encoded as JSON.
func JSON(v any) (Message, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Message{}, fmt.Errorf("wsactor: encode JSON: %w", err)
	}
	return Message{Type: MessageText, Data: b}, nil
}

// Text returns the payload as a string.
func (m Message) Text() string { return string(m.Data) }

// DecodeJSON decodes the payload into v.
func (m Message) DecodeJSON(v any) error {
	if err := json.Unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("wsactor: decode JSON message: %w", err)
	}
	return nil
}

// DecodeJSON decodes a message's JSON payload into a new T.
func DecodeJSON[T any](m Message) (T, error) {
	var v T
	err := m.DecodeJSON(&v)
	return v, err
}
