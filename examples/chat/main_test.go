package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

const (
	testTimeout = 10 * time.Second
	secret      = "test-secret-of-a-reasonable-length"
	adminToken  = "admin-token-for-tests"
)

// chat is a running chat server for one test.
type chat struct {
	t  *testing.T
	ts *httptest.Server
	s  *wsactor.Server
}

func startChat(t *testing.T, cfg chatserver.Config) *chat {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	mux, s := chatserver.New(cfg)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return &chat{t: t, ts: ts, s: s}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// client is one WebSocket connection to the chat. Presence events arrive
// between the other messages at moments the tests do not control, so they
// are set aside: next and expect skip them, joinedEvent and leftEvent look
// for them.
type client struct {
	t        *testing.T
	c        *websocket.Conn
	id       string
	held     []map[string]any // read while looking for a presence event
	presence []map[string]any // presence events not looked at yet
}

// dial connects to path ("/ws/chat/lobby?name=ann") and returns the
// connection, or the handshake's HTTP status if it was refused.
func (ch *chat) dial(path string, opts *websocket.DialOptions) (*client, int) {
	ch.t.Helper()
	c, resp, err := websocket.Dial(testCtx(ch.t), ch.ts.URL+path, opts)
	if err != nil {
		if resp == nil {
			ch.t.Fatalf("dial %s: %v", path, err)
		}
		return nil, resp.StatusCode
	}
	ch.t.Cleanup(func() { c.CloseNow() })
	return &client{t: ch.t, c: c}, http.StatusSwitchingProtocols
}

// join connects to a room and reads the welcome.
func (ch *chat) join(path string) *client {
	ch.t.Helper()
	cl, status := ch.dial(path, nil)
	if cl == nil {
		ch.t.Fatalf("dial %s: status %d", path, status)
	}
	w := cl.expect("welcome")
	cl.id = w["id"].(string)
	return cl
}

func (cl *client) send(v any) {
	cl.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.sendRaw(string(b))
}

func (cl *client) sendRaw(s string) {
	cl.t.Helper()
	if err := cl.c.Write(testCtx(cl.t), websocket.MessageText, []byte(s)); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

// next returns the next message that is not a presence event.
func (cl *client) next() map[string]any {
	cl.t.Helper()
	for {
		var m map[string]any
		if len(cl.held) > 0 {
			m, cl.held = cl.held[0], cl.held[1:]
		} else {
			m = cl.read()
		}
		if m["type"] != "presence" {
			return m
		}
		cl.presence = append(cl.presence, m)
	}
}

// joinedEvent waits for a presence event that lists id among its joins and
// returns its entry; leftEvent, among its leaves. The events before it are
// dropped.
func (cl *client) joinedEvent(id string) map[string]any {
	cl.t.Helper()
	return cl.presenceEntry("joins", id)
}

func (cl *client) leftEvent(id string) map[string]any {
	cl.t.Helper()
	return cl.presenceEntry("leaves", id)
}

func (cl *client) presenceEntry(list, id string) map[string]any {
	cl.t.Helper()
	for {
		for i, ev := range cl.presence {
			entries, _ := ev[list].([]any)
			for _, e := range entries {
				if e, _ := e.(map[string]any); e["id"] == id {
					cl.presence = cl.presence[i+1:]
					if ev["group"] == nil || ev["count"] == nil {
						cl.t.Fatalf("presence event %v lacks its group or count", ev)
					}
					return e
				}
			}
		}
		if m := cl.read(); m["type"] == "presence" {
			cl.presence = append(cl.presence, m)
		} else {
			cl.held = append(cl.held, m)
		}
	}
}

// nextPresence returns the next presence event.
func (cl *client) nextPresence() map[string]any {
	cl.t.Helper()
	for len(cl.presence) == 0 {
		if m := cl.read(); m["type"] == "presence" {
			cl.presence = append(cl.presence, m)
		} else {
			cl.held = append(cl.held, m)
		}
	}
	ev := cl.presence[0]
	cl.presence = cl.presence[1:]
	return ev
}

// read reads a message from the socket as a JSON object.
func (cl *client) read() map[string]any {
	cl.t.Helper()
	typ, data, err := cl.c.Read(testCtx(cl.t))
	if err != nil {
		cl.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		cl.t.Fatalf("got a %v message", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		cl.t.Fatalf("not a JSON object: %s", data)
	}
	return m
}

// expect reads the next message and checks its type.
func (cl *client) expect(typ string) map[string]any {
	cl.t.Helper()
	m := cl.next()
	if m["type"] != typ {
		cl.t.Fatalf("got %v, want a %q message", m, typ)
	}
	return m
}

// expectError reads an error envelope with this code.
func (cl *client) expectError(code string) map[string]any {
	cl.t.Helper()
	m := cl.expect("error")
	if m["code"] != code {
		cl.t.Fatalf("error envelope %v, want code %q", m, code)
	}
	if s, _ := m["error"].(string); s == "" {
		cl.t.Fatalf("error envelope %v has no message", m)
	}
	return m
}

// expectClose reads until the server closes and returns its code and reason.
func (cl *client) expectClose() (websocket.StatusCode, string) {
	cl.t.Helper()
	for {
		_, _, err := cl.c.Read(testCtx(cl.t))
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			cl.t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce.Code, ce.Reason
	}
}

// closeAsync reads in the background until the server closes, and then
// delivers its close frame (code -1 if the connection ended without one).
func (cl *client) closeAsync() <-chan websocket.CloseError {
	ch := make(chan websocket.CloseError, 1)
	ctx := testCtx(cl.t)
	go func() {
		for {
			_, _, err := cl.c.Read(ctx)
			if err == nil {
				continue
			}
			ce := websocket.CloseError{Code: -1, Reason: err.Error()}
			errors.As(err, &ce)
			ch <- ce
			return
		}
	}()
	return ch
}

func want(t *testing.T, m map[string]any, fields map[string]any) {
	t.Helper()
	for k, v := range fields {
		if m[k] != v {
			t.Errorf("%v: %q is %v, want %v", m, k, m[k], v)
		}
	}
}

func TestPage(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	for _, tc := range []struct {
		path, contentType string
		contains          []string
	}{
		{"/", "text/html", []string{`src="/app.js"`, `id="state"`, `id="members"`}},
		{"/app.js", "text/javascript", []string{`from "/wsactor.js"`, "/ws/chat/"}},
		{"/wsactor.js", "text/javascript", []string{"export function connect("}},
	} {
		resp, err := http.Get(ch.ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) {
			t.Errorf("GET %s: %d %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, s := range tc.contains {
			if !strings.Contains(string(body), s) {
				t.Errorf("GET %s lacks %q", tc.path, s)
			}
		}
	}
	for path, status := range map[string]int{
		"/ws/chat/lobby": http.StatusUpgradeRequired, // a plain GET on the WebSocket route
		"/ws/nope":       http.StatusNotFound,
		"/api/send":      http.StatusNotFound, // no admin API without -admin-token
		"/nope":          http.StatusNotFound,
	} {
		resp, err := http.Get(ch.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, status)
		}
	}
}

func TestProtocol(t *testing.T) {
	ch := startChat(t, chatserver.Config{})

	ann := ch.join("/ws/chat/lobby?name=ann")
	bob, _ := ch.dial("/ws/chat/lobby?name=bob", nil)
	w := bob.expect("welcome")
	bob.id = w["id"].(string)
	want(t, w, map[string]any{"room": "lobby", "name": "bob"})
	if _, err := wsactor.ParseID(bob.id); err != nil {
		t.Fatalf("welcome id %q: %v", bob.id, err)
	}
	// Everyone is told, the newcomer too.
	want(t, ann.joinedEvent(bob.id), map[string]any{"id": bob.id, "name": "bob"})
	want(t, bob.joinedEvent(bob.id), map[string]any{"id": bob.id, "name": "bob"})

	ann.send(map[string]any{"type": "who"})
	got := ann.expect("members")
	want(t, got, map[string]any{"room": "lobby"})
	var members []string
	for _, m := range got["members"].([]any) {
		m := m.(map[string]any)
		members = append(members, m["id"].(string)+"="+m["name"].(string))
	}
	slices.Sort(members)
	wantMembers := []string{ann.id + "=ann", bob.id + "=bob"}
	slices.Sort(wantMembers)
	if !slices.Equal(members, wantMembers) {
		t.Fatalf("members %v, want %v", members, wantMembers)
	}

	// say reaches every member, the sender included.
	ann.send(map[string]any{"type": "say", "text": "héllo, room"})
	for _, cl := range []*client{ann, bob} {
		want(t, cl.expect("said"), map[string]any{"id": ann.id, "name": "ann", "text": "héllo, room"})
	}

	// dm reaches only its target.
	bob.send(map[string]any{"type": "dm", "to": ann.id, "text": "psst"})
	want(t, ann.expect("dm"), map[string]any{"from": bob.id, "name": "bob", "text": "psst"})
	bob.send(map[string]any{"type": "say", "text": "after the dm"})
	bob.expect("said") // bob got no copy of his dm: the next message is this one
	ann.expect("said")

	// Leaving tells the others.
	bob.c.Close(websocket.StatusNormalClosure, "bye")
	want(t, ann.leftEvent(bob.id), map[string]any{"id": bob.id, "name": "bob"})

	// Another room is another group.
	cat := ch.join("/ws/chat/other?name=cat")
	ann.send(map[string]any{"type": "say", "text": "lobby only"})
	ann.expect("said")
	cat.send(map[string]any{"type": "who"})
	if ms := cat.expect("members")["members"].([]any); len(ms) != 1 {
		t.Fatalf("room other: %v", ms)
	}
}

// A room larger than LargeRoom is not listed: presence events and the answer
// to who give its count only, and lists come back when it shrinks.
func TestLargeRoomCountOnly(t *testing.T) {
	ch := startChat(t, chatserver.Config{LargeRoom: 2})
	ann := ch.join("/ws/chat/big?name=ann")
	ann.send(map[string]any{"type": "who"})
	if m := ann.expect("members"); m["count"] != 1.0 || len(m["members"].([]any)) != 1 {
		t.Fatalf("who in a room of one: %v", m)
	}
	ch.join("/ws/chat/big?name=bob")
	cat := ch.join("/ws/chat/big?name=cat")
	for {
		ev := ann.nextPresence()
		_, lists := ev["joins"]
		if lists != (ev["count"].(float64) <= 2) {
			t.Fatalf("event %v: lists for 2 members or fewer, and only then", ev)
		}
		if ev["count"] == 3.0 {
			break
		}
	}
	ann.send(map[string]any{"type": "who"})
	if m := ann.expect("members"); len(m) != 3 || m["count"] != 3.0 || m["room"] != "big" {
		t.Fatalf("who in a large room: %v, want the count only", m)
	}
	cat.c.Close(websocket.StatusNormalClosure, "")
	want(t, ann.leftEvent(cat.id), map[string]any{"name": "cat"})
}

func TestDefaultName(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	for path, name := range map[string]string{
		"/ws/chat/lobby":                                      "anon",
		"/ws/chat/lobby?name=":                                "anon",
		"/ws/chat/lobby?name=%20%20":                          "anon",
		"/ws/chat/lobby?name=%20Zo%C3%AB":                     "Zoë",
		"/ws/chat/lobby?name=" + strings.Repeat("%C3%A9", 32): strings.Repeat("é", 32), // 32 characters, 64 bytes
	} {
		cl, _ := ch.dial(path, nil)
		want(t, cl.expect("welcome"), map[string]any{"name": name})
	}
}

func TestBadMessages(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	ann := ch.join("/ws/chat/lobby?name=ann")
	cat := ch.join("/ws/chat/other?name=cat")

	ann.sendRaw(`{"type":"say","text":`)
	ann.expectError(wsactor.CodeBadJSON)
	ann.sendRaw(`hello`)
	ann.expectError(wsactor.CodeBadJSON)
	ann.sendRaw(`{"text":"no type"}`)
	ann.expectError(wsactor.CodeMissingType)
	ann.send(map[string]any{"type": "shout", "text": "hi"})
	want(t, ann.expectError(wsactor.CodeUnknownType), map[string]any{"ref": "shout"})
	ann.send(map[string]any{"type": "say", "text": 42})
	want(t, ann.expectError(wsactor.CodeBadPayload), map[string]any{"ref": "say"})
	ann.send(map[string]any{"type": "say", "text": "  "})
	ann.expectError(chatserver.CodeBadText)
	ann.send(map[string]any{"type": "say"})
	ann.expectError(chatserver.CodeBadText)
	ann.send(map[string]any{"type": "say", "text": strings.Repeat("x", chatserver.MaxTextLen+1)})
	ann.expectError(chatserver.CodeBadText)
	ann.send(map[string]any{"type": "dm", "to": "nobody", "text": "hi"})
	want(t, ann.expectError(chatserver.CodeBadTarget), map[string]any{"ref": "dm"})
	ann.send(map[string]any{"type": "dm", "text": "hi"})
	ann.expectError(chatserver.CodeBadTarget)
	ann.send(map[string]any{"type": "dm", "to": unknownID(t, ann.id), "text": "hi"})
	ann.expectError(chatserver.CodeUnknownTarget)
	ann.send(map[string]any{"type": "dm", "to": cat.id, "text": "hi"}) // in another room
	ann.expectError(chatserver.CodeUnknownTarget)
	ann.send(map[string]any{"type": "dm", "to": cat.id, "text": ""})
	ann.expectError(chatserver.CodeBadText)
	// The correlation value comes back, so a client can match the error.
	ann.send(map[string]any{"type": "dm", "to": "x", "text": "hi", "req": 7})
	want(t, ann.expectError(chatserver.CodeBadTarget), map[string]any{"req": 7.0})
	if err := ann.c.Write(testCtx(t), websocket.MessageBinary, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	ann.expectError(wsactor.CodeUnsupported)

	// Still open, and nothing leaked to the other room.
	ann.send(map[string]any{"type": "say", "text": "still here"})
	want(t, ann.expect("said"), map[string]any{"text": "still here"})
	cat.send(map[string]any{"type": "say", "text": "cat"})
	want(t, cat.expect("said"), map[string]any{"text": "cat"})
}

// unknownID returns a well-formed ID of this server that no connection has.
func unknownID(t *testing.T, like string) string {
	parts := strings.Split(like, ".")
	parts[1] = strings.Repeat("A", len(parts[1]))
	id := strings.Join(parts, ".")
	if _, err := wsactor.ParseID(id); err != nil {
		t.Fatalf("ParseID(%q): %v", id, err)
	}
	return id
}

func TestTooBig(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	ann := ch.join("/ws/chat/lobby?name=ann")
	// Just under the limit is a (bad) message; just over closes.
	ann.send(map[string]any{"type": "say", "text": strings.Repeat("x", 64<<10-64)})
	ann.expectError(chatserver.CodeBadText)
	big := `{"type":"say","text":"` + strings.Repeat("x", 64<<10) + `"}`
	if err := ann.c.Write(testCtx(t), websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	if code, reason := ann.expectClose(); code != websocket.StatusMessageTooBig || reason != "read limited at 65537 bytes" {
		t.Fatalf("close %d %q, want 1009 \"read limited at 65537 bytes\"", code, reason)
	}
}

func TestBadHandshake(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	for _, tc := range []struct{ path, reason string }{
		{"/ws/chat/Lobby", "bad_room: "},
		{"/ws/chat/-lobby", "bad_room: "},
		{"/ws/chat/" + strings.Repeat("a", 65), "bad_room: "},
		{"/ws/chat/lobby?name=" + strings.Repeat("n", 33), "bad_name: "},
		{"/ws/chat/lobby?name=a%0Ab", "bad_name: "},
	} {
		cl, status := ch.dial(tc.path, nil)
		if cl == nil {
			t.Fatalf("%s: status %d, want an upgrade and a close", tc.path, status)
		}
		code, reason := cl.expectClose()
		if code != chatserver.CloseBadRequest || !strings.HasPrefix(reason, tc.reason) {
			t.Errorf("%s: close %d %q, want %d %q…", tc.path, code, reason, chatserver.CloseBadRequest, tc.reason)
		}
	}
	// Private rooms need a token granting them, which the open chat has none of.
	if _, status := ch.dial("/ws/chat/private-dev", nil); status != http.StatusForbidden {
		t.Errorf("private room without JWT mode: %d, want 403", status)
	}
}

func TestCrossOrigin(t *testing.T) {
	ch := startChat(t, chatserver.Config{})
	h := http.Header{"Origin": {"https://elsewhere.example"}}
	if _, status := ch.dial("/ws/chat/lobby", &websocket.DialOptions{HTTPHeader: h}); status != http.StatusForbidden {
		t.Errorf("cross-origin: %d, want 403", status)
	}
	h = http.Header{"Origin": {ch.ts.URL}} // the page's own origin
	if cl, status := ch.dial("/ws/chat/lobby", &websocket.DialOptions{HTTPHeader: h}); cl == nil {
		t.Errorf("same origin: %d, want an upgrade", status)
	}
}

func token(t *testing.T, key string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWT(t *testing.T) {
	ch := startChat(t, chatserver.Config{JWTSecret: []byte(secret)})
	exp := time.Now().Add(time.Hour).Unix()
	ann := token(t, secret, jwt.MapClaims{"sub": "u-ann", "name": "Ann", "exp": exp, "rooms": []string{"private-dev"}})
	bob := token(t, secret, jwt.MapClaims{"sub": "u-bob"}) // no name claim, no rooms
	forged := token(t, "another secret", jwt.MapClaims{"sub": "u-ann"})
	expired := token(t, secret, jwt.MapClaims{"sub": "u-ann", "exp": time.Now().Add(-time.Minute).Unix()})
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u-ann"})
	unsigned, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "u-ann"}).SignedString([]byte(secret))

	bearer := func(tok string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	for _, tc := range []struct {
		name   string
		path   string
		opts   *websocket.DialOptions
		status int
	}{
		{"no token", "/ws/chat/lobby", nil, http.StatusUnauthorized},
		{"garbage", "/ws/chat/lobby?token=junk", nil, http.StatusUnauthorized},
		{"wrong key", "/ws/chat/lobby?token=" + forged, nil, http.StatusUnauthorized},
		{"expired", "/ws/chat/lobby?token=" + expired, nil, http.StatusUnauthorized},
		{"alg none", "/ws/chat/lobby?token=" + unsigned, nil, http.StatusUnauthorized},
		{"HS512 is not HS256", "/ws/chat/lobby?token=" + hs512, nil, http.StatusUnauthorized},
		{"private room without the claim", "/ws/chat/private-dev", bearer(bob), http.StatusForbidden},
		{"private room the claim does not list", "/ws/chat/private-ops", bearer(ann), http.StatusForbidden},
		{"query", "/ws/chat/lobby?token=" + ann, nil, http.StatusSwitchingProtocols},
		{"header", "/ws/chat/lobby", bearer(ann), http.StatusSwitchingProtocols},
		{"cookie", "/ws/chat/lobby", &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"token=" + ann}}}, http.StatusSwitchingProtocols},
		{"subprotocol", "/ws/chat/lobby", &websocket.DialOptions{Subprotocols: []string{"bearer", ann}}, http.StatusSwitchingProtocols},
		{"private room with the claim", "/ws/chat/private-dev", bearer(ann), http.StatusSwitchingProtocols},
	} {
		cl, status := ch.dial(tc.path, tc.opts)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
			continue
		}
		if cl != nil {
			// sub is the user; the name claim beats ?name=.
			want(t, cl.expect("welcome"), map[string]any{"user": "u-ann", "name": "Ann"})
			if tc.opts != nil && tc.opts.Subprotocols != nil && cl.c.Subprotocol() != "bearer" {
				t.Errorf("%s: subprotocol %q, want bearer", tc.name, cl.c.Subprotocol())
			}
		}
	}

	// Without a name claim, ?name= names the user; presence and messages carry the user ID.
	ch.join("/ws/chat/private-dev?name=ignored&token=" + ann)
	b, status := ch.dial("/ws/chat/lobby?name=Bobby", bearer(bob))
	if b == nil {
		t.Fatalf("bob: %d", status)
	}
	want(t, b.expect("welcome"), map[string]any{"user": "u-bob", "name": "Bobby"})
	a2 := ch.join("/ws/chat/lobby?token=" + ann)
	want(t, b.joinedEvent(a2.id), map[string]any{"id": a2.id, "user": "u-ann", "name": "Ann"})
	a2.send(map[string]any{"type": "say", "text": "hi"})
	want(t, b.expect("said"), map[string]any{"user": "u-ann", "name": "Ann"})
}

// api calls the admin API and decodes its JSON answer.
func (ch *chat) api(method, path, auth, body string) (int, any) {
	ch.t.Helper()
	req, err := http.NewRequest(method, ch.ts.URL+path, strings.NewReader(body))
	if err != nil {
		ch.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ch.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		ch.t.Fatalf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		ch.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, v
}

func TestAdminAPI(t *testing.T) {
	ch := startChat(t, chatserver.Config{AdminToken: adminToken})
	auth := "Bearer " + adminToken
	ann := ch.join("/ws/chat/lobby?name=ann")
	bob := ch.join("/ws/chat/lobby?name=bob")
	ann.joinedEvent(bob.id)
	cat := ch.join("/ws/chat/other?name=cat")

	{ // unauthorized
		for _, a := range []string{"", "Bearer wrong", "Basic " + adminToken, adminToken, "Bearer " + adminToken + "x"} {
			for _, call := range [][2]string{
				{"POST", "/api/send"}, {"POST", "/api/rooms/lobby/broadcast"}, {"GET", "/api/rooms/lobby/members"},
				{"POST", "/api/close"}, {"GET", "/api/send"}, {"GET", "/api/nope"},
			} {
				if status, _ := ch.api(call[0], call[1], a, `{}`); status != http.StatusUnauthorized {
					t.Errorf("%s %s with %q: %d, want 401", call[0], call[1], a, status)
				}
			}
		}
	}

	{ // send
		status, v := ch.api("POST", "/api/send", auth, fmt.Sprintf(`{"to":%q,"text":"from outside"}`, bob.id))
		if status != http.StatusOK {
			t.Fatalf("send: %d %v", status, v)
		}
		want(t, bob.expect("notice"), map[string]any{"text": "from outside"})
		for _, tc := range []struct {
			body   string
			status int
		}{
			{fmt.Sprintf(`{"to":%q,"text":"x"}`, unknownID(t, bob.id)), http.StatusNotFound},
			{`{"to":"not-an-id","text":"x"}`, http.StatusBadRequest},
			{fmt.Sprintf(`{"to":%q,"text":""}`, bob.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"to":%q}`, bob.id), http.StatusBadRequest},
			{`{"to":`, http.StatusBadRequest},
			{`[]`, http.StatusBadRequest},
			{fmt.Sprintf(`{"to":%q,"text":"x","extra":1}`, bob.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"to":%q,"text":"x"} {}`, bob.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"to":%q,"text":%q}`, bob.id, strings.Repeat("x", 70<<10)), http.StatusRequestEntityTooLarge},
		} {
			if status, v := ch.api("POST", "/api/send", auth, tc.body); status != tc.status {
				t.Errorf("send %.60s: %d %v, want %d", tc.body, status, v, tc.status)
			}
		}
	}

	{ // broadcast
		status, v := ch.api("POST", "/api/rooms/lobby/broadcast", auth, `{"text":"maintenance at noon"}`)
		if status != http.StatusOK || v.(map[string]any)["queued"] != 2.0 {
			t.Fatalf("broadcast: %d %v", status, v)
		}
		for _, cl := range []*client{ann, bob} {
			want(t, cl.expect("notice"), map[string]any{"text": "maintenance at noon"})
		}
		if status, v := ch.api("POST", "/api/rooms/empty/broadcast", auth, `{"text":"anyone?"}`); status != http.StatusOK || v.(map[string]any)["queued"] != 0.0 {
			t.Errorf("broadcast to an empty room: %d %v", status, v)
		}
		if status, _ := ch.api("POST", "/api/rooms/Bad!/broadcast", auth, `{"text":"x"}`); status != http.StatusBadRequest {
			t.Errorf("bad room: %d", status)
		}
		if status, _ := ch.api("POST", "/api/rooms/lobby/broadcast", auth, `{"text":" "}`); status != http.StatusBadRequest {
			t.Errorf("blank text: %d", status)
		}
		req, _ := http.NewRequest("GET", ch.ts.URL+"/api/rooms/lobby/broadcast", nil)
		req.Header.Set("Authorization", auth)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET broadcast: %v %v, want 405", resp, err)
		} else {
			resp.Body.Close()
		}
	}

	{ // members
		status, v := ch.api("GET", "/api/rooms/lobby/members", auth, "")
		if status != http.StatusOK {
			t.Fatalf("members: %d %v", status, v)
		}
		var got []string
		for _, m := range v.([]any) {
			m := m.(map[string]any)
			got = append(got, m["id"].(string)+"="+m["name"].(string))
		}
		slices.Sort(got)
		exp := []string{ann.id + "=ann", bob.id + "=bob"}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Fatalf("members %v, want %v", got, exp)
		}
		if status, v := ch.api("GET", "/api/rooms/empty/members", auth, ""); status != http.StatusOK || len(v.([]any)) != 0 {
			t.Errorf("empty room: %d %v", status, v)
		}
		if status, _ := ch.api("GET", "/api/rooms/UPPER/members", auth, ""); status != http.StatusBadRequest {
			t.Errorf("bad room: %d", status)
		}
	}

	{ // close
		for _, tc := range []struct {
			body   string
			status int
		}{
			{fmt.Sprintf(`{"id":%q,"code":1001}`, cat.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"id":%q,"code":3000}`, cat.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"id":%q,"code":5000}`, cat.id), http.StatusBadRequest},
			{fmt.Sprintf(`{"id":%q,"code":4000,"reason":%q}`, cat.id, strings.Repeat("r", 124)), http.StatusBadRequest},
			{`{"id":"nope","code":4000}`, http.StatusBadRequest},
			{`{"id":`, http.StatusBadRequest},
			{fmt.Sprintf(`{"id":%q,"code":4000}`, unknownID(t, cat.id)), http.StatusNotFound},
		} {
			if status, v := ch.api("POST", "/api/close", auth, tc.body); status != tc.status {
				t.Errorf("close %s: %d %v, want %d", tc.body, status, v, tc.status)
			}
		}
		// Server.Close waits for the closing handshake, which the client
		// answers while reading.
		bobClosed := bob.closeAsync()
		status, v := ch.api("POST", "/api/close", auth, fmt.Sprintf(`{"id":%q,"code":4000,"reason":"kicked"}`, bob.id))
		if status != http.StatusOK {
			t.Fatalf("close: %d %v", status, v)
		}
		if ce := <-bobClosed; ce.Code != 4000 || ce.Reason != "kicked" {
			t.Fatalf("bob saw close %d %q, want 4000 kicked", ce.Code, ce.Reason)
		}
		want(t, ann.leftEvent(bob.id), map[string]any{"id": bob.id, "name": "bob"})
		// Gone: the same ID is unknown now.
		if status, _ := ch.api("POST", "/api/send", auth, fmt.Sprintf(`{"to":%q,"text":"x"}`, bob.id)); status != http.StatusNotFound {
			t.Errorf("send to a closed connection: %d, want 404", status)
		}
		// The code defaults to 4000.
		catClosed := cat.closeAsync()
		if status, v := ch.api("POST", "/api/close", auth, fmt.Sprintf(`{"id":%q}`, cat.id)); status != http.StatusOK {
			t.Fatalf("close with the default code: %d %v", status, v)
		}
		if ce := <-catClosed; ce.Code != chatserver.CloseKicked {
			t.Fatalf("cat saw close %d, want %d", ce.Code, chatserver.CloseKicked)
		}
	}
}

func TestMintToken(t *testing.T) {
	var out bytes.Buffer
	if err := mintToken(&out, []string{"-jwt-secret", secret, "-sub", "ann", "-name", "Ann", "-rooms", "private-dev"}); err != nil {
		t.Fatal(err)
	}
	ch := startChat(t, chatserver.Config{JWTSecret: []byte(secret)})
	tok := strings.TrimSpace(out.String())
	ch.join("/ws/chat/private-dev?token=" + tok) // a token for a private room
	if err := mintToken(io.Discard, []string{"-sub", "ann", "-jwt-secret", ""}); err == nil {
		t.Error("a token without a secret")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", chatserver.Config{Logger: slog.New(slog.DiscardHandler)}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("run did not return after its context was cancelled")
	}
}

func TestRunReportsListenError(t *testing.T) {
	l := httptest.NewServer(http.NotFoundHandler()) // holds a port
	defer l.Close()
	addr := strings.TrimPrefix(l.URL, "http://")
	err := run(context.Background(), addr, chatserver.Config{Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("run on a busy address: got %v", err)
	}
}

func TestPageURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://localhost:8080/",
		"127.0.0.1:9000": "http://127.0.0.1:9000/",
	} {
		if got := pageURL(addr); got != want {
			t.Errorf("pageURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
