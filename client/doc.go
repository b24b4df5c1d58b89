// Package client is a Go client for wsactor servers, for bots, tests and
// load tools. It dials with github.com/coder/websocket and speaks wsactor's
// JSON envelope protocol: {"type": ..., "req": ..., fields...}, answered by
// {"type":"reply","req":...,"data":...} or
// {"type":"error","code":...,"error":...,"ref":...,"req":...}.
//
// Three entry points:
//
//   - Dial connects and returns a Client. With Options.Reconnect it redials
//     with exponential backoff and full jitter whenever the connection is
//     lost, and calls Options.OnConnect after every (re)connection, to
//     re-join rooms.
//   - Client.Send sends {"type": typ, ...payload's fields}; Client.Request
//     sends one with a fresh "req" and waits for the reply or the error
//     envelope that answers it.
//   - Client.Receive returns everything else the server sends, in order,
//     across reconnections.
//
// For a route with wsactor.WithCredentialRefresh, set Options.TokenSource:
// every handshake gets a fresh token, and when the server says the
// connection's token has expired ("auth.refresh"), the client fetches a new
// one and sends it, without the application's help; Client.Refresh sends one
// unasked.
//
// Every blocking call takes a context. Errors are values: *HandshakeError for
// a refused upgrade (with its HTTP status), *EnvelopeError for an error
// envelope, ErrDisconnected and ErrClosed for a client that has ended, and
// websocket.CloseStatus(err) for the close code the server sent.
package client
