package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/client"
)

// These tests run the credential-refresh protocol against a wsactor route
// with auth.JWT (HS256) and WithCredentialRefresh, with tokens that expire
// 1 to 2 s after issue.

var refreshKey = []byte("refresh-test-key-0123456789abcdef")

// sign returns user's token number n (its "n" claim), expiring at exp (a
// whole second: golang-jwt truncates "exp" to seconds). It runs in
// TokenSources, on the client's goroutines, so it returns its error rather
// than failing the test.
func sign(user string, n int, exp time.Time) (string, error) {
	claims := jwt.MapClaims{"sub": user, "n": n, "exp": exp.Unix()}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(refreshKey)
}

// soon is the expiry of a short-lived token: 1 to 2 s from now.
func soon() time.Time { return time.Now().Add(2 * time.Second).Truncate(time.Second) }

func refreshApp(t *testing.T, grace time.Duration) *testServer {
	t.Helper()
	return newApp(t, wsactor.WithAuthenticator(&auth.JWT{Key: refreshKey}), wsactor.RequireAuth(), wsactor.WithCredentialRefresh(grace))
}

// issuer is a TokenSource whose n-th call (from 1) returns next(n); it
// reports every call's n on calls.
type issuer struct {
	count atomic.Int64
	calls chan int
	next  func(n int) (string, error)
}

func newIssuer(next func(n int) (string, error)) *issuer {
	return &issuer{calls: make(chan int, 100), next: next}
}

func (is *issuer) token(ctx context.Context) (string, error) {
	n := int(is.count.Add(1))
	is.calls <- n
	return is.next(n)
}

func whoami(t *testing.T, c *client.Client) whoamiReply {
	t.Helper()
	var w whoamiReply
	if err := c.Request(testContext(t), "whoami", nil, &w); err != nil {
		t.Fatalf("whoami: %v", err)
	}
	return w
}

// eventually waits until cond holds, checking it every few milliseconds,
// for at most testTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nothingToReceive fails if a message is waiting for Receive.
func nothingToReceive(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := c.Receive(ctx); err == nil { // else ctx's error, or the client's once it has ended
		t.Fatalf("left for Receive: %s", m.Data)
	}
}

func TestTokenSourceAnswersRefresh(t *testing.T) {
	s := refreshApp(t, 5*time.Second)
	expiries := make(chan time.Time, 100)
	is := newIssuer(func(n int) (string, error) {
		exp := soon() // the first token expires soon, the others later
		if n > 1 {
			exp = time.Now().Add(time.Hour).Truncate(time.Second)
		}
		expiries <- exp
		return sign("ann", n, exp)
	})
	c := dial(t, s.url, &client.Options{TokenSource: is.token})
	ctx := testContext(t)
	if n := recv(t, is.calls, "the handshake's token"); n != 1 {
		t.Fatalf("call %d for the handshake", n)
	}
	first := recv(t, expiries, "the first token's expiry")
	if w := receiveWelcome(t, c); w.Sub != "bearer" {
		t.Fatalf("negotiated %q: the token was not offered as a subprotocol", w.Sub)
	}
	if w := whoami(t, c); w != (whoamiReply{User: "ann", N: 1}) {
		t.Fatalf("whoami: %+v", w)
	}

	// The first token expires, the server asks, and the client answers by
	// itself.
	if n := recv(t, is.calls, "a token for the server's ask"); n != 2 {
		t.Fatalf("call %d for the ask", n)
	}
	eventually(t, "the server has token 2", func() bool { return whoami(t, c).N == 2 })
	if now := time.Now(); !now.After(first) {
		t.Fatalf("refreshed at %v, before the first token expired at %v", now, first)
	}

	// Still open past the first expiry: messages flow both ways, and the
	// protocol's messages never reached Receive.
	if err := c.Send(ctx, "echo", textMsg{Text: "still here"}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, c); m.Type != "echoed" || !strings.Contains(m.Text(), "still here") {
		t.Fatalf("want the echo, got %s", m.Data)
	}

	// Refresh sends a new token unasked and returns once it is accepted.
	expires, err := c.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-expiries // token 2's
	third := recv(t, expiries, "token 3's expiry")
	if !expires.Equal(third) {
		t.Fatalf("Refresh says the credentials expire at %v, token 3 does at %v", expires, third)
	}
	if w := whoami(t, c); w.N != 3 {
		t.Fatalf("after Refresh the server has token %d", w.N)
	}
	if n := is.count.Load(); n != 3 {
		t.Fatalf("TokenSource called %d times", n)
	}
	nothingToReceive(t, c)
	if st := c.State(); st != client.StateOpen {
		t.Fatalf("state %v", st)
	}
	select {
	case ce := <-s.closes:
		t.Fatalf("the server closed a connection: %v", ce)
	default:
	}
}

func TestRefreshFailureClosesWith1008(t *testing.T) {
	errIssuer := errors.New("token issuer unavailable")
	cases := []struct {
		name    string
		second  func() (string, error) // the answer to the server's ask
		reason  string
		wantErr error  // also wrapped by the client's error
		wantMsg string // also in the client's error
	}{
		{"TokenSource fails", func() (string, error) { return "", errIssuer }, "credentials expired", errIssuer, ""},
		{"empty token", func() (string, error) { return "", nil }, "credentials expired", nil, "empty token"},
		{"invalid token", func() (string, error) { return "not-a-jwt", nil }, "invalid credentials", nil, ""},
		{"another user's token", func() (string, error) { return sign("eve", 2, time.Now().Add(time.Hour)) }, "invalid credentials", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := refreshApp(t, 300*time.Millisecond)
			is := newIssuer(func(n int) (string, error) {
				if n == 1 {
					return sign("ann", 1, soon())
				}
				return tc.second()
			})
			opts, connected, lost := reconnecting() // 1008 is final nonetheless
			opts.TokenSource = is.token
			c := dial(t, s.url, opts)
			recv(t, connected, "OnConnect")
			receiveWelcome(t, c)

			if got := recv(t, s.closes, "the server's close"); got != (wsactor.CloseError{Code: wsactor.StatusPolicyViolation, Reason: tc.reason}) {
				t.Fatalf("the server closed with %v, want 1008 %q", got, tc.reason)
			}
			waitDone(t, c)
			err := c.Err()
			var ce websocket.CloseError
			if !errors.Is(err, client.ErrDisconnected) || !errors.As(err, &ce) ||
				ce.Code != websocket.StatusPolicyViolation || ce.Reason != tc.reason {
				t.Fatalf("Err: %v; want ErrDisconnected and 1008 %q", err, tc.reason)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Err %v does not wrap %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Err %v does not say %q", err, tc.wantMsg)
			}
			got := recv(t, lost, "OnDisconnect")
			if websocket.CloseStatus(got) != websocket.StatusPolicyViolation || (tc.wantErr != nil && !errors.Is(got, tc.wantErr)) ||
				!strings.Contains(err.Error(), got.Error()) {
				t.Fatalf("OnDisconnect got %v, Err is %v", got, err)
			}
			if n := is.count.Load(); n != 2 {
				t.Fatalf("TokenSource called %d times, want 2 (handshake, ask) and no reconnection", n)
			}
			nothingToReceive(t, c)
		})
	}
}

func TestTokenSourceOnReconnect(t *testing.T) {
	s := refreshApp(t, 5*time.Second)
	errIssuer := errors.New("token issuer unavailable")
	is := newIssuer(func(n int) (string, error) {
		if n == 2 {
			return "", errIssuer // the first reconnection attempt fails, the next one gets token 3
		}
		return sign("ann", n, time.Now().Add(time.Hour))
	})
	opts, connected, lost := reconnecting()
	opts.TokenSource = is.token
	c := dial(t, s.url, opts)
	recv(t, connected, "OnConnect")
	first := receiveWelcome(t, c)
	if w := whoami(t, c); w.N != 1 {
		t.Fatalf("first connection has token %d", w.N)
	}

	s.closeConn(t, first.ID, wsactor.StatusGoingAway, "moving")
	if err := recv(t, lost, "OnDisconnect"); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("OnDisconnect got %v", err)
	}
	recv(t, connected, "OnConnect again")
	second := receiveWelcome(t, c)
	if second.ID == first.ID || second.Sub != "bearer" {
		t.Fatalf("second connection: %+v", second)
	}
	if w := whoami(t, c); w != (whoamiReply{User: "ann", N: 3}) {
		t.Fatalf("the reconnection did not use a fresh token: %+v", w)
	}
	if n := is.count.Load(); n != 3 {
		t.Fatalf("TokenSource called %d times", n)
	}
}

func TestRefreshMessagesReachReceiveWithoutTokenSource(t *testing.T) {
	s := refreshApp(t, 5*time.Second)
	tok, err := sign("ann", 1, soon())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.url, &client.Options{Token: tok})
	ctx := testContext(t)
	receiveWelcome(t, c)

	m := receive(t, c)
	ask, err := client.Decode[struct{ Deadline time.Time }](m)
	if m.Type != "auth.refresh" || err != nil || ask.Deadline.IsZero() {
		t.Fatalf("want the server's ask, got %s (%v)", m.Data, err)
	}
	next, err := sign("ann", 2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, "auth.refresh", map[string]string{"token": next}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, c); m.Type != "auth.refreshed" {
		t.Fatalf("want auth.refreshed, got %s", m.Data)
	}
	if w := whoami(t, c); w.N != 2 {
		t.Fatalf("the server has token %d", w.N)
	}
}

func TestTokenSourceErrors(t *testing.T) {
	s := refreshApp(t, 5*time.Second)
	ctx := testContext(t)
	errIssuer := errors.New("token issuer unavailable")

	// Dial fails with TokenSource's error, without dialling.
	_, err := client.Dial(ctx, s.url, &client.Options{
		Logger:      discard(),
		TokenSource: func(context.Context) (string, error) { return "", errIssuer },
	})
	if !errors.Is(err, errIssuer) {
		t.Fatalf("Dial: %v", err)
	}
	// An empty token offers none: this route requires one.
	_, err = client.Dial(ctx, s.url, &client.Options{
		Logger:      discard(),
		TokenSource: func(context.Context) (string, error) { return "", nil },
	})
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || he.Body != "authentication required" {
		t.Fatalf("Dial with an empty token: %v", err)
	}

	// Refresh needs a TokenSource.
	tok, err := sign("ann", 1, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.url, &client.Options{Token: tok})
	if _, err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh without a TokenSource succeeded")
	}

	// A token the server refuses ends the connection, and Refresh says so.
	is := newIssuer(func(n int) (string, error) {
		if n == 1 {
			return sign("ann", 1, time.Now().Add(time.Hour))
		}
		return sign("eve", n, time.Now().Add(time.Hour))
	})
	c = dial(t, s.url, &client.Options{TokenSource: is.token})
	receiveWelcome(t, c)
	if _, err := c.Refresh(ctx); !errors.Is(err, client.ErrDisconnected) || websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("Refresh with another user's token: %v", err)
	}
	waitDone(t, c)
}
