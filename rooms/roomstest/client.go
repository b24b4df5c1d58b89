package roomstest

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Timeout bounds every wait of a Client.
const Timeout = 10 * time.Second

// Client is a test client of a Player route.
type Client struct {
	T    *testing.T
	Name string
	Conn *websocket.Conn
}

// Dial connects to url as name (the Player's ?name=); the connection is
// closed when the test ends.
func Dial(t *testing.T, url, name string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url+"?name="+name, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &Client{T: t, Name: name, Conn: c}
}

// Send writes v as JSON.
func (cl *Client) Send(v any) {
	cl.T.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := cl.Conn.Write(ctx, websocket.MessageText, b); err != nil {
		cl.T.Fatalf("%s: write: %v", cl.Name, err)
	}
}

// Read returns the next message.
func (cl *Client) Read() string {
	cl.T.Helper()
	return cl.readBefore(time.Now().Add(Timeout), "the next message")
}

// readBefore returns the next message, failing the test if none arrives
// before deadline; what names what the caller waits for.
func (cl *Client) readBefore(deadline time.Time, what string) string {
	cl.T.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, b, err := cl.Conn.Read(ctx)
	if err != nil {
		cl.T.Fatalf("%s: waiting for %s: read: %v", cl.Name, what, err)
	}
	return string(b)
}

// Event reads until a Player event ev and returns it; what rooms send is
// skipped, another event is a failure, and so is no ev within Timeout
// (however many other messages arrive meanwhile, ticks for instance).
func (cl *Client) Event(ev string) map[string]any {
	cl.T.Helper()
	deadline := time.Now().Add(Timeout)
	what := "an " + strconv.Quote(ev) + " event"
	for {
		s := cl.readBefore(deadline, what)
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil && m["ev"] == ev {
			return m
		}
		if m["ev"] != nil {
			cl.T.Fatalf("%s: got %s, want %s", cl.Name, s, what)
		}
	}
}

// Expect reads until the text want; a Player event before it is a failure,
// and so is no want within Timeout.
func (cl *Client) Expect(want string) {
	cl.T.Helper()
	deadline := time.Now().Add(Timeout)
	what := strconv.Quote(want)
	for {
		s := cl.readBefore(deadline, what)
		if s == want {
			return
		}
		if strings.HasPrefix(s, `{"ev":`) {
			cl.T.Fatalf("%s: got %s while waiting for %s", cl.Name, s, what)
		}
	}
}

// Join joins room kind/name and returns the joined event.
func (cl *Client) Join(kind, name string) map[string]any {
	cl.T.Helper()
	cl.Send(map[string]string{"op": "join", "kind": kind, "name": name})
	return cl.Event("joined")
}
