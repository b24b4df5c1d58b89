package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/client"
)

func TestSendReceive(t *testing.T) {
	s := newApp(t)
	c := dial(t, s.url, nil)
	ctx := testContext(t)
	if c.State() != client.StateOpen {
		t.Fatalf("state %v after Dial", c.State())
	}
	receiveWelcome(t, c)

	if err := c.Send(ctx, "echo", textMsg{Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	m := receive(t, c)
	if m.Kind != websocket.MessageText || m.Type != "echoed" {
		t.Fatalf("got %v %s", m.Kind, m.Data)
	}
	if got, err := client.Decode[textMsg](m); err != nil || got.Text != "hi" {
		t.Fatalf("decoded %+v, %v", got, err)
	}

	// A "type" field in the payload does not override the type argument.
	if err := c.Send(ctx, "echo", textMsg{Type: "bogus", Text: "typed"}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, c); m.Type != "echoed" || !strings.Contains(m.Text(), "typed") {
		t.Fatalf("got %s", m.Data)
	}

	if err := c.SendJSON(ctx, map[string]string{"type": "echo", "text": "raw"}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, c); m.Type != "echoed" || !strings.Contains(m.Text(), "raw") {
		t.Fatalf("got %s", m.Data)
	}

	if err := c.SendBinary(ctx, []byte{0xca, 0xfe}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, c); m.Kind != websocket.MessageBinary || string(m.Data) != "\xca\xfe" || m.Type != "" {
		t.Fatalf("got %v %x %q", m.Kind, m.Data, m.Type)
	}

	// A message the router cannot route is answered with an error envelope
	// without "req": it reaches Receive.
	if err := c.SendText(ctx, "not json"); err != nil {
		t.Fatal(err)
	}
	m = receive(t, c)
	if m.Type != "error" {
		t.Fatalf("got %s", m.Data)
	}
	if e, err := client.Decode[client.EnvelopeError](m); err != nil || e.Code != wsactor.CodeBadJSON {
		t.Fatalf("decoded %+v, %v", e, err)
	}

	if err := c.Send(ctx, "echo", "a string"); err == nil {
		t.Fatal("Send accepted a payload that is not an object")
	}
	if err := c.Send(ctx, "", nil); err == nil {
		t.Fatal("Send accepted an empty type")
	}
}

func TestRequestKeepsInterleavedMessages(t *testing.T) {
	s := newApp(t)
	c := dial(t, s.url, &client.Options{ReceiveBuffer: 1000})
	receiveWelcome(t, c)
	ctx := testContext(t)

	const requests, pushes = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i := range requests {
		wg.Go(func() {
			tag := fmt.Sprintf("t%d", i)
			var got string
			if err := c.Request(ctx, "burst", burstMsg{Tag: tag, N: pushes}, &got); err != nil {
				errs <- err
				return
			}
			if got != tag {
				errs <- fmt.Errorf("request %s got the reply %q", tag, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Every push and every foreign reply is still there, each tag's in order.
	next := map[string]int{}
	foreign := 0
	for range requests * (pushes + 1) {
		m := receive(t, c)
		switch m.Type {
		case "push":
			p, err := client.Decode[pushMsg](m)
			if err != nil {
				t.Fatal(err)
			}
			if p.I != next[p.Tag] {
				t.Fatalf("tag %s: push %d after %d", p.Tag, p.I, next[p.Tag]-1)
			}
			next[p.Tag]++
		case "reply":
			foreign++
		default:
			t.Fatalf("unexpected %s", m.Data)
		}
	}
	if len(next) != requests || foreign != requests {
		t.Fatalf("pushes by tag %v, foreign replies %d", next, foreign)
	}
	for tag, n := range next {
		if n != pushes {
			t.Errorf("tag %s: %d pushes", tag, n)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	s := newApp(t)
	c := dial(t, s.url, nil)
	receiveWelcome(t, c)
	ctx := testContext(t)

	var sum int
	if err := c.Request(ctx, "add", addMsg{A: 2, B: 40}, &sum); err != nil || sum != 42 {
		t.Fatalf("add: %d, %v", sum, err)
	}
	if err := c.Request(ctx, "add", addMsg{A: 1, B: 1}, nil); err != nil {
		t.Fatalf("add without a result: %v", err)
	}

	cases := []struct {
		typ     string
		payload any
		code    string
	}{
		{"add", addMsg{A: -1, B: 1}, "negative"},
		{"nope", nil, wsactor.CodeUnknownType},
		{"add", map[string]string{"A": "two"}, wsactor.CodeBadPayload},
	}
	for _, tc := range cases {
		err := c.Request(ctx, tc.typ, tc.payload, &sum)
		var e *client.EnvelopeError
		if !errors.As(err, &e) {
			t.Fatalf("%s: want an *EnvelopeError, got %v", tc.typ, err)
		}
		if e.Code != tc.code || e.Ref != tc.typ || e.Message == "" {
			t.Fatalf("%s: got %+v", tc.typ, e)
		}
	}

	// Nothing was left over for Receive.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if m, err := c.Receive(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("left over: %s, %v", m.Data, err)
	}
}

func TestDialContextEndsWithDial(t *testing.T) {
	s := newApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Dial(ctx, s.url, &client.Options{Logger: discard()})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	receiveWelcome(t, c)
	var sum int
	if err := c.Request(testContext(t), "add", addMsg{A: 1, B: 2}, &sum); err != nil || sum != 3 {
		t.Fatalf("add after Dial's ctx ended: %d, %v", sum, err)
	}
}

func signToken(t *testing.T, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHandshakeRejected(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := newApp(t,
		wsactor.WithAuthenticator(&auth.JWT{Key: key}),
		wsactor.RequireAuth(),
		wsactor.WithPermissions(auth.RequireClaim("rooms", auth.PathValue("room"))),
	)
	lobby := signToken(t, key, jwt.MapClaims{"sub": "bot", "rooms": []string{"lobby"}})
	elsewhere := signToken(t, key, jwt.MapClaims{"sub": "bot", "rooms": []string{"dev"}})

	cases := []struct {
		name   string
		opts   client.Options
		status int
		body   string
	}{
		{"no credentials", client.Options{}, http.StatusUnauthorized, "authentication required"},
		{"bad token", client.Options{Token: "not-a-jwt"}, http.StatusUnauthorized, "invalid credentials"},
		{"other room", client.Options{Token: elsewhere}, http.StatusForbidden, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Reconnect = true // Dial still makes one attempt
			c, err := client.Dial(testContext(t), s.url, &tc.opts)
			if err == nil {
				c.CloseNow()
				t.Fatal("the handshake succeeded")
			}
			var he *client.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("want a *HandshakeError, got %v", err)
			}
			if he.StatusCode != tc.status || he.Body != tc.body {
				t.Fatalf("got %d %q, want %d %q", he.StatusCode, he.Body, tc.status, tc.body)
			}
		})
	}

	// The token as a subprotocol, the browser's way, and in a header.
	c := dial(t, s.url, &client.Options{Token: lobby})
	if w := receiveWelcome(t, c); w.Sub != "bearer" {
		t.Fatalf("negotiated %q", w.Sub)
	}
	c = dial(t, s.url, &client.Options{HTTPHeader: http.Header{"Authorization": {"Bearer " + lobby}}})
	if w := receiveWelcome(t, c); w.Sub != "" {
		t.Fatalf("negotiated %q", w.Sub)
	}
}

func TestSlowReceiverLosesNothing(t *testing.T) {
	s := newApp(t)
	c := dial(t, s.url, &client.Options{ReceiveBuffer: 1})
	receiveWelcome(t, c)
	ctx := testContext(t)
	const n = 200 // below the server's send queue bound (256): a burst beyond it overflows, however fast the client reads
	done := make(chan error, 1)
	go func() {
		var tag string
		// The reply is read behind the pushes, so it needs Receive to drain.
		done <- c.Request(ctx, "burst", burstMsg{Tag: "slow", N: n}, &tag)
	}()
	for i := range n {
		m := receive(t, c)
		p, err := client.Decode[pushMsg](m)
		if err != nil || p.I != i {
			t.Fatalf("push %d: got %s, %v", i, m.Data, err)
		}
	}
	if m := receive(t, c); m.Type != "reply" {
		t.Fatalf("got %s", m.Data)
	}
	if err := recv(t, done, "the Request"); err != nil {
		t.Fatal(err)
	}
}

func TestEnvelopeErrorMessage(t *testing.T) {
	e := &client.EnvelopeError{Code: "negative", Message: "only natural numbers", Ref: "add"}
	if got := e.Error(); got != "client: add: negative: only natural numbers" {
		t.Fatal(got)
	}
	var decoded client.EnvelopeError
	if err := json.Unmarshal([]byte(`{"type":"error","code":"c","error":"m","ref":"r","req":1}`), &decoded); err != nil || decoded != (client.EnvelopeError{Code: "c", Message: "m", Ref: "r"}) {
		t.Fatalf("%+v, %v", decoded, err)
	}
}
