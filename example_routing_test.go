package wsactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
	"github.com/wsactor/wsactor/routing"
)

// Examples of message routing by "type" and of authentication and
// permissions. Like example_test.go, they serve with httptest.NewServer and
// dial with coder/websocket over loopback. Identifiers start with
// "exRouting" so that they do not collide with the package's tests.

// exRoutingSay is the payload of a "say" message. Its fields sit beside
// "type" in the message: {"type":"say","text":"hi"}.
type exRoutingSay struct {
	Text string `json:"text"`
}

// exRoutingSaid is what the "say" handler sends back.
type exRoutingSaid struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Text string `json:"text"`
}

// exRoutingServe serves s on a loopback test server and returns its ws://
// base URL and a function that shuts both down.
func exRoutingServe(s *wsactor.Server) (url string, stop func()) {
	ts := httptest.NewServer(s)
	return "ws" + strings.TrimPrefix(ts.URL, "http"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		ts.Close()
	}
}

// exRoutingExchange sends each message and prints the one answer it gets.
func exRoutingExchange(ctx context.Context, c *websocket.Conn, msgs ...string) {
	for _, msg := range msgs {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			fmt.Println(err)
			return
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(data))
	}
}

func ExampleOn() {
	// One Router serves every connection of the route: it holds no
	// per-connection state, only the table of handlers.
	r := &wsactor.Router{}
	wsactor.On(r, "say", func(c *wsactor.Conn, m exRoutingSay) error {
		return c.SendJSON(exRoutingSaid{Type: "said", Room: c.PathValue("room"), Text: m.Text})
	})

	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/{room}", func() wsactor.Handler { return r })
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url+"/ws/lobby", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	exRoutingExchange(ctx, c, `{"type":"say","text":"hello"}`)
	// Output: {"type":"said","room":"lobby","text":"hello"}
}

// exRoutingAdd is the payload of an "add" request.
type exRoutingAdd struct {
	A int `json:"a"`
	B int `json:"b"`
}

func ExampleOnRequest() {
	r := &wsactor.Router{}
	wsactor.OnRequest(r, "add", func(c *wsactor.Conn, m exRoutingAdd) (int, error) {
		if m.A < 0 || m.B < 0 {
			// An application error code: the client gets an error envelope
			// with the request's "req", and the connection stays open.
			return 0, wsactor.MessageError("negative", "only natural numbers")
		}
		return m.A + m.B, nil
	})

	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/calc", func() wsactor.Handler { return r })
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url+"/ws/calc", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	// "req" (a short string or a safe integer) is echoed verbatim so the client can
	// match answers to requests.
	exRoutingExchange(ctx, c,
		`{"type":"add","req":7,"a":2,"b":40}`,
		`{"type":"add","req":"q-8","a":-1,"b":1}`,
	)
	// Output:
	// {"type":"reply","req":7,"data":42}
	// {"type":"error","code":"negative","message":"only natural numbers","error":"only natural numbers","ref":"add","req":"q-8"}
}

func ExampleRouter_errors() {
	r := &wsactor.Router{} // BadMessages: routing.ReplyError, the default
	wsactor.On(r, "say", func(c *wsactor.Conn, m exRoutingSay) error {
		if m.Text == "boom" {
			return errors.New("database unavailable") // logged, not sent
		}
		return c.SendText(m.Text)
	})

	// Handler errors are logged; keep them out of the example's output.
	s := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler)})
	s.Handle("/ws/chat", func() wsactor.Handler { return r })
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url+"/ws/chat", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	// Every message the Router cannot route is answered, and the connection
	// stays open.
	exRoutingExchange(ctx, c,
		`{"type":"fly","req":1}`,
		`{"text":"hi"}`,
		`{"type":"say","text":42}`,
		`not json`,
		`{"type":"say","text":"boom"}`,
		`{"type":"say","text":"still open"}`,
	)
	// Output:
	// {"type":"error","code":"unknown_type","message":"no handler for type \"fly\"","error":"no handler for type \"fly\"","ref":"fly","req":1}
	// {"type":"error","code":"missing_type","message":"message has no \"type\"","error":"message has no \"type\""}
	// {"type":"error","code":"bad_payload","message":"payload does not fit type say: field \"text\" has the wrong type (got number)","error":"payload does not fit type say: field \"text\" has the wrong type (got number)","ref":"say"}
	// {"type":"error","code":"bad_json","message":"message is not a JSON object","error":"message is not a JSON object"}
	// {"type":"error","code":"internal","message":"internal error","error":"internal error","ref":"say"}
	// still open
}

func ExampleRouter_closeConnection() {
	// routing.CloseConnection closes instead of answering: 1003 for an
	// unknown type or an unsupported binary message, 1007 for the rest.
	r := &wsactor.Router{BadMessages: routing.CloseConnection}
	wsactor.On(r, "say", func(c *wsactor.Conn, m exRoutingSay) error { return c.SendText(m.Text) })

	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/strict", func() wsactor.Handler { return r })
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{`{"type":"fly"}`, `{"type":"say","text":42}`} {
		c, _, err := websocket.Dial(ctx, url+"/ws/strict", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = c.Write(ctx, websocket.MessageText, []byte(msg))
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			fmt.Println(int(ce.Code), ce.Reason)
		}
		c.CloseNow()
	}
	// Output:
	// 1003 unknown_type: no handler for type "fly"
	// 1007 bad_payload: payload does not fit type say: field "text" has the wrong type (got number)
}

// exRoutingChat embeds *wsactor.Router, so it keeps the Router's OnMessage
// and adds OnOpen. The factory builds one per connection, and the handlers it
// registers are methods, so they can keep per-connection state in fields
// without locks.
type exRoutingChat struct {
	*wsactor.Router
	said int
}

func exRoutingNewChat() wsactor.Handler {
	h := &exRoutingChat{Router: &wsactor.Router{}}
	wsactor.On(h.Router, "say", h.say)
	h.Binary = func(c *wsactor.Conn, data []byte) error {
		return c.SendText(fmt.Sprintf("%d bytes", len(data)))
	}
	return h
}

func (h *exRoutingChat) OnOpen(c *wsactor.Conn) error {
	return c.SendText("welcome to " + c.PathValue("room"))
}

func (h *exRoutingChat) say(c *wsactor.Conn, m exRoutingSay) error {
	h.said++
	return c.SendText(fmt.Sprintf("#%d %s", h.said, m.Text))
}

func ExampleRouter() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/rooms/{room}", exRoutingNewChat)
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url+"/ws/rooms/dev", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_, welcome, _ := c.Read(ctx)
	fmt.Println(string(welcome))
	exRoutingExchange(ctx, c, `{"type":"say","text":"hi"}`, `{"type":"say","text":"again"}`)
	_ = c.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3})
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	// Output:
	// welcome to dev
	// #1 hi
	// #2 again
	// 3 bytes
}

// exRoutingSecret signs and verifies the examples' HS256 tokens. In an
// application it comes from a secret store, never from the source.
var exRoutingSecret = []byte("example-secret-of-at-least-32-bytes")

// exRoutingToken signs an HS256 token for sub, valid for an hour, with extra
// claims.
func exRoutingToken(sub string, extra jwt.MapClaims) string {
	claims := jwt.MapClaims{"sub": sub, "iss": "example", "aud": "chat", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		claims[k] = v
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(exRoutingSecret)
	if err != nil {
		panic(err)
	}
	return tok
}

// exRoutingGreeter greets the authenticated user.
type exRoutingGreeter struct{}

func (exRoutingGreeter) OnOpen(c *wsactor.Conn) error {
	who := "anonymous"
	if u := c.User(); u != nil {
		who = u.ID
	}
	return c.SendText(fmt.Sprintf("hello %s (subprotocol %q)", who, c.Subprotocol()))
}

func (exRoutingGreeter) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

// exRoutingDial dials url and prints the greeting, or the HTTP status and
// body of a refused upgrade.
func exRoutingDial(ctx context.Context, url string, opts *websocket.DialOptions) {
	c, resp, err := websocket.Dial(ctx, url, opts)
	switch {
	case err == nil:
		defer c.CloseNow()
		_, greeting, err := c.Read(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(greeting))
	case resp != nil:
		body, _ := io.ReadAll(resp.Body)
		fmt.Println("HTTP", resp.StatusCode, strings.TrimSpace(string(body)))
	default:
		fmt.Println(err)
	}
}

func ExampleWithAuthenticator() {
	jwtAuth := &auth.JWT{Key: exRoutingSecret, Issuer: "example", Audience: "chat"} // HS256, pinned by the key's type
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/chat", func() wsactor.Handler { return exRoutingGreeter{} },
		wsactor.WithAuthenticator(jwtAuth), wsactor.RequireAuth())
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok := exRoutingToken("ann", nil)

	// A server or a native client sends the token in the Authorization header.
	exRoutingDial(ctx, url+"/ws/chat", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
	})
	// A browser cannot set headers on a WebSocket, but it can offer
	// subprotocols: new WebSocket(url, ["bearer", token]).
	exRoutingDial(ctx, url+"/ws/chat", &websocket.DialOptions{Subprotocols: []string{"bearer", tok}})
	// No token on a route that requires one, then a forged one.
	exRoutingDial(ctx, url+"/ws/chat", nil)
	exRoutingDial(ctx, url+"/ws/chat", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok + "x"}},
	})
	// Output:
	// hello ann (subprotocol "")
	// hello ann (subprotocol "bearer")
	// HTTP 401 authentication required
	// HTTP 401 invalid credentials
}

func ExampleWithPermissions() {
	s := wsactor.New(wsactor.Options{})
	// A token's "rooms" claim lists the rooms its holder may join.
	s.Handle("/ws/rooms/{room}", func() wsactor.Handler { return exRoutingGreeter{} },
		wsactor.WithAuthenticator(&auth.JWT{Key: exRoutingSecret}),
		wsactor.RequireAuth(),
		wsactor.WithPermissions(auth.RequireClaim("rooms", auth.PathValue("room"))))
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bearer := &websocket.DialOptions{HTTPHeader: http.Header{
		"Authorization": {"Bearer " + exRoutingToken("ann", jwt.MapClaims{"rooms": []string{"lobby", "dev"}})},
	}}
	exRoutingDial(ctx, url+"/ws/rooms/lobby", bearer)
	exRoutingDial(ctx, url+"/ws/rooms/board", bearer)
	// Output:
	// hello ann (subprotocol "")
	// HTTP 403 forbidden
}

// exRoutingAdminOnly checks a permission again for one message, after the
// handshake: a denial closes the connection with 1008 "forbidden".
type exRoutingAdminOnly struct{ exRoutingGreeter }

func (exRoutingAdminOnly) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	if m.Text() == "shutdown" {
		if err := c.Authorize(auth.RequireClaim("role", auth.Literal("admin"))); err != nil {
			return nil // Authorize has already closed the connection
		}
		return c.SendText("shutting down (not really)")
	}
	return c.Send(m)
}

func ExampleConn_Authorize() {
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/ops", func() wsactor.Handler { return exRoutingAdminOnly{} },
		wsactor.WithAuthenticator(&auth.JWT{Key: exRoutingSecret}), wsactor.RequireAuth())
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tok := range []string{
		exRoutingToken("root", jwt.MapClaims{"role": "admin"}),
		exRoutingToken("ann", nil),
	} {
		c, _, err := websocket.Dial(ctx, url+"/ws/ops", &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		_, _, _ = c.Read(ctx) // the greeting
		_ = c.Write(ctx, websocket.MessageText, []byte("shutdown"))
		_, data, err := c.Read(ctx)
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			fmt.Println("closed:", int(ce.Code), ce.Reason)
		} else {
			fmt.Println(string(data))
		}
		c.CloseNow()
	}
	// Output:
	// shutting down (not really)
	// closed: 1008 forbidden
}

// exRoutingShortLived is an authenticator whose "old" credentials expire
// 100 ms after the handshake and whose "new" ones last an hour. (auth.JWT
// does the same with a token's "exp".) A refreshed token arrives as
// "Authorization: Bearer", so that is where it looks.
var exRoutingShortLived = auth.AuthenticatorFunc(func(r *http.Request) (*auth.User, error) {
	switch r.Header.Get("Authorization") {
	case "":
		return nil, nil
	case "Bearer old":
		return &auth.User{ID: "ann", Expires: time.Now().Add(100 * time.Millisecond)}, nil
	case "Bearer new":
		return &auth.User{ID: "ann", Expires: time.Now().Add(time.Hour)}, nil
	}
	return nil, auth.ErrInvalidCredentials
})

// exRoutingReadType reads one message and prints its "type" (the rest, a
// time, changes from run to run), or how the connection closed.
func exRoutingReadType(ctx context.Context, c *websocket.Conn) {
	_, data, err := c.Read(ctx)
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		fmt.Println("closed:", int(ce.Code), ce.Reason)
	case err != nil:
		fmt.Println(err)
	default:
		env, _ := routing.DecodeEnvelope(data)
		fmt.Println(env.Type)
	}
}

func ExampleWithCredentialRefresh() {
	s := wsactor.New(wsactor.Options{})
	newHandler := func() wsactor.Handler { return exRoutingGreeter{} }
	s.Handle("/ws/strict", newHandler, wsactor.WithAuthenticator(exRoutingShortLived), wsactor.RequireAuth())
	s.Handle("/ws/refresh", newHandler, wsactor.WithAuthenticator(exRoutingShortLived), wsactor.RequireAuth(),
		wsactor.WithCredentialRefresh(5*time.Second))
	url, stop := exRoutingServe(s)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	old := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer old"}}}

	// Without WithCredentialRefresh the connection closes at expiry.
	c, _, err := websocket.Dial(ctx, url+"/ws/strict", old)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _, _ = c.Read(ctx) // the greeting
	exRoutingReadType(ctx, c)
	c.CloseNow()

	// With it, the server asks for new credentials and waits for the grace
	// period.
	c, _, err = websocket.Dial(ctx, url+"/ws/refresh", old)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_, _, _ = c.Read(ctx)     // the greeting
	exRoutingReadType(ctx, c) // {"type":"auth.refresh","deadline":"…"}
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth.refresh","token":"new"}`))
	exRoutingReadType(ctx, c) // {"type":"auth.refreshed","expires":"…"}
	exRoutingExchange(ctx, c, "still connected")
	// Output:
	// closed: 1008 credentials expired
	// auth.refresh
	// auth.refreshed
	// still connected
}
