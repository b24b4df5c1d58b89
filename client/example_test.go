package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/client"
)

// exSay is the payload of a "say" message: {"type":"say","text":"hi"}.
type exSay struct {
	Text string `json:"text"`
}

// exSaid is what the server pushes for it.
type exSaid struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

// exAdd is the payload of an "add" request.
type exAdd struct {
	A, B int
}

// exWhoami is the answer to a "whoami" request: the user, and the "n"
// claim of the token the server holds for the connection.
type exWhoami struct {
	User string `json:"user"`
	N    int    `json:"n"`
}

// exKey signs the examples' tokens.
var exKey = []byte("example-signing-key-0123456789ab")

// exLogin stands for a login service: it returns user's n-th token, which
// expires at exp.
func exLogin(user string, n int64, exp time.Time) (string, error) {
	claims := jwt.MapClaims{"sub": user, "n": n, "exp": exp.Unix()}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(exKey)
}

// exServe starts a wsactor server with a Router on /ws/{room}, and on
// /ws/private/{room} for users with a token (HS256 JWT, refreshed in
// place when it expires), and returns its ws:// base URL and a function
// that stops it.
func exServe() (string, func()) {
	r := &wsactor.Router{}
	wsactor.On(r, "say", func(c *wsactor.Conn, m exSay) error {
		return c.SendJSON(map[string]string{"type": "said", "room": c.PathValue("room"), "text": m.Text})
	})
	wsactor.OnRequest(r, "add", func(c *wsactor.Conn, m exAdd) (int, error) {
		if m.A < 0 || m.B < 0 {
			return 0, wsactor.MessageError("negative", "only natural numbers")
		}
		return m.A + m.B, nil
	})
	wsactor.OnRequest(r, "whoami", func(c *wsactor.Conn, _ struct{}) (exWhoami, error) {
		u := c.User()
		if u == nil { // on /ws/{room}
			return exWhoami{}, nil
		}
		n, _ := u.Claims["n"].(float64)
		return exWhoami{User: u.ID, N: int(n)}, nil
	})
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/{room}", func() wsactor.Handler { return r })
	s.Handle("/ws/private/{room}", func() wsactor.Handler { return r },
		wsactor.WithAuthenticator(&auth.JWT{Key: exKey}), wsactor.RequireAuth(), wsactor.WithCredentialRefresh(5*time.Second))
	ts := httptest.NewServer(s)
	return "ws" + strings.TrimPrefix(ts.URL, "http"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		ts.Close()
	}
}

func ExampleDial() {
	url, stop := exServe()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, url+"/ws/lobby", &client.Options{
		Reconnect: true, // redial with backoff when the connection is lost
		OnConnect: func(ctx context.Context, c *client.Client) error {
			// Runs after every (re)connection, before other Sends go out.
			return c.Send(ctx, "say", exSay{Text: "hello, I am back"})
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close(websocket.StatusNormalClosure, "bye")

	// A request waits for its own reply; other messages wait for Receive.
	var sum int
	if err := c.Request(ctx, "add", exAdd{A: 2, B: 40}, &sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sum:", sum)

	// An error envelope answering a request is an *EnvelopeError.
	err = c.Request(ctx, "add", exAdd{A: -1, B: 1}, &sum)
	var e *client.EnvelopeError
	if errors.As(err, &e) {
		fmt.Println("error:", e.Code, "-", e.Message)
	}

	// The push that OnConnect's "say" caused was kept for Receive.
	m, err := c.Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	said, _ := client.Decode[exSaid](m)
	fmt.Printf("%s in %s: %s\n", m.Type, said.Room, said.Text)
	// Output:
	// sum: 42
	// error: negative - only natural numbers
	// said in lobby: hello, I am back
}

func ExampleDial_handshakeError() {
	url, stop := exServe()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := client.Dial(ctx, url+"/no/such/route", nil)
	var he *client.HandshakeError
	if errors.As(err, &he) {
		fmt.Println(he.StatusCode, he.Body)
	}
	// Output:
	// 404 404 page not found
}

func ExampleDial_tokenSource() {
	url, stop := exServe()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var issued atomic.Int64
	renewed := make(chan int64, 10)
	c, err := client.Dial(ctx, url+"/ws/private/lobby", &client.Options{
		Reconnect: true,
		// Called for every handshake (reconnections get a fresh token),
		// whenever the server asks for new credentials, and by Refresh.
		TokenSource: func(ctx context.Context) (string, error) {
			n := issued.Add(1)
			if n == 1 {
				return exLogin("ann", n, time.Now().Add(2*time.Second)) // expires soon
			}
			renewed <- n
			return exLogin("ann", n, time.Now().Add(time.Hour))
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close(websocket.StatusNormalClosure, "bye")

	// The first token expires: the server asks for a new one, and the
	// client answers by itself. Receive never sees the protocol's messages.
	fmt.Println("token", <-renewed, "issued when the server asked")

	// Refresh sends one unasked, and waits for the server to accept it.
	expires, err := c.Refresh(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("token", issued.Load(), "accepted, expires in", time.Until(expires).Round(time.Hour))

	var me exWhoami
	if err := c.Request(ctx, "whoami", nil, &me); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("the server holds %s's token %d\n", me.User, me.N)
	// Output:
	// token 2 issued when the server asked
	// token 3 accepted, expires in 1h0m0s
	// the server holds ann's token 3
}
