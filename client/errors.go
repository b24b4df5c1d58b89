package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

var (
	// ErrClosed is returned by a Client's methods after Close or CloseNow.
	ErrClosed = errors.New("client: closed")

	// ErrDisconnected is wrapped by the error of a client that lost its
	// connection for good: Reconnect is off, the server closed with a final
	// code (see Options.FinalClose), a reconnection was refused with a final
	// HTTP status, or MaxAttempts reconnections failed. The same error also
	// wraps the cause, so websocket.CloseStatus(err) returns the server's
	// close code and errors.As finds a *HandshakeError.
	//
	// A Request whose connection is lost before its answer arrives fails
	// with an error wrapping ErrDisconnected too: the server may or may not
	// have handled it.
	ErrDisconnected = errors.New("client: disconnected")
)

// HandshakeError is returned when the server answers the upgrade request
// with an HTTP status instead of switching protocols: wsactor answers 401
// for missing or invalid credentials, 403 for a denied permission or a
// rejected Connect, 503 while shutting down, and so on.
type HandshakeError struct {
	StatusCode int         // the HTTP status, such as 401
	Header     http.Header // the response's headers
	Body       string      // the start of the response body (at most 1 KiB), such as "invalid credentials"
	Err        error       // the error coder/websocket reported
}

// Error returns the status and body.
func (e *HandshakeError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("client: handshake refused: HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("client: handshake refused: HTTP %d: %s", e.StatusCode, e.Body)
}

// Unwrap returns coder/websocket's error.
func (e *HandshakeError) Unwrap() error { return e.Err }

// final reports whether retrying cannot help: a 4xx status other than 408
// and 429 says the request itself (its credentials, path or origin) is
// refused. 5xx, 408 and 429 are retried.
func (e *HandshakeError) final() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests
}

// EnvelopeError is an error envelope received from the server:
//
//	{"type":"error","code":"negative","error":"only natural numbers","ref":"calc.add","req":"..."}
//
// Request returns one (as *EnvelopeError) when the server answers the
// request with an error. Error envelopes that answer no Request reach
// Receive as ordinary messages; Decode[EnvelopeError](m) reads them.
type EnvelopeError struct {
	Code    string `json:"code"`  // the router's code (such as "unknown_type") or the application's
	Message string `json:"error"` // human-readable text
	Ref     string `json:"ref"`   // the "type" of the message that caused it, if the server knew it
}

// Error returns "client: <ref>: <code>: <message>".
func (e *EnvelopeError) Error() string {
	var b strings.Builder
	b.WriteString("client: ")
	if e.Ref != "" {
		b.WriteString(e.Ref)
		b.WriteString(": ")
	}
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// disconnected marks err as the end of the client.
func disconnected(err error) error {
	if errors.Is(err, ErrDisconnected) || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}
