package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
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

// exServe starts a wsactor server with a Router on /ws/{room} and returns
// its ws:// base URL and a function that stops it.
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
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/{room}", func() wsactor.Handler { return r })
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
